"""The page frame: navbar with the pages, the source picker, the page slot."""
from __future__ import annotations

from dataclasses import dataclass

import dash_bootstrap_components as dbc
from dash import dcc, html

from . import ids


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    page_id: str
    summary: str
    available: bool = False


PAGES: tuple[Page, ...] = (
    Page("data", "Data & training", ids.DATA_PAGE,
         "Choose a dataset or an analysis, fit the built-in model, train an SAE, annotate it.", available=True),
    Page("explorer", "Explorer", ids.EXPLORER_PAGE,
         "Concept map of features linked to the latent space of the cells; feature cards; GO search.",
         available=True),
    Page("steering", "Steering", ids.STEERING_PAGE,
         "Set a feature high in chosen cells, re-decode, and see which genes and concepts change.", available=True),
    Page("compare", "Compare", ids.COMPARE_PAGE, "Two analyses side by side: matched features and shared concepts.",
         available=True),
    Page("trajectories", "Trajectories", ids.TRAJECTORIES_PAGE,
         "Features that rise along a lineage of cell types, ranked by how far steering each moves the cells.",
         available=True),
    Page("simulation", "Simulation lab", ids.SIMULATION_PAGE,
         "Ground-truth simulations: what an SAE can and cannot recover.", available=True),
)
PAGE_BY_SLUG = {p.slug: p for p in PAGES}
DEFAULT_PAGE = PAGES[0]


def navbar() -> dbc.Navbar:
    links = [
        dbc.NavItem(dbc.NavLink(p.title, href=f"/{p.slug}", id=ids.nav_link(p.slug), active="exact"))
        for p in PAGES
    ]
    return dbc.Navbar(
        dbc.Container([
            dbc.NavbarBrand("FeatureLens", href="/", className="fw-bold"),
            dbc.Nav(links, navbar=True, className="me-auto"),
        ], fluid=True),
        id=ids.NAVBAR, color="dark", dark=True, className="mb-3",
    )


def source_picker(options: list[dict], value: str | None) -> dbc.Card:
    return dbc.Card(dbc.CardBody([
        html.H5("Dataset or analysis", className="card-title"),
        dbc.InputGroup([
            dcc.Dropdown(
                id=ids.PICKER_DROPDOWN,
                options=[{"label": o["label"], "value": o["value"]} for o in options],
                value=value, placeholder="Choose a shipped dataset, a file in the data folder, or an analysis",
                clearable=False, style={"flex": "1 1 auto", "minWidth": "20rem"},
            ),
            dbc.Button("↻", id=ids.PICKER_REFRESH, color="secondary", outline=True, title="Refresh the list"),
        ]),
        html.Div(id=ids.PICKER_CARD, className="mt-3"),
    ]), className="mb-3")


def source_summary(summary: dict) -> html.Div:
    """Render :func:`core.store.catalog.describe_source` output: facts table, warnings, or an error alert."""
    if summary.get("error"):
        body = [html.Strong("This source cannot be used. "), html.Span(summary["error"])]
        if summary.get("fix"):
            body.append(html.Div(["Fix: ", summary["fix"]], className="mt-1"))
        return html.Div(dbc.Alert(body, color="danger", className="mb-0"))
    rows = [html.Tr([html.Th(k, className="fw-normal text-muted"), html.Td(str(v))])
            for k, v in summary.get("facts", {}).items()]
    parts = [html.H6(summary.get("title", "")), dbc.Table(html.Tbody(rows), size="sm", className="mb-2")]
    parts += [dbc.Alert(w, color="warning", className="py-1 mb-1") for w in summary.get("warnings", [])]
    return html.Div(parts)


def not_found(path: str) -> html.Div:
    return html.Div([
        html.H2("Page not found"),
        dbc.Alert(f"There is no page at {path!r}. Use the navigation bar above.", color="warning"),
    ], id=ids.NOT_FOUND_PAGE)


def root_layout(*, options: list[dict], default_source: str | None) -> html.Div:
    return html.Div([
        dcc.Location(id=ids.URL, refresh=False),
        dcc.Store(id=ids.STORE_SOURCE, data=default_source, storage_type="session"),
        dcc.Store(id=ids.STORE_RENDERED),  # {"page", "source"} of the page slot (see callbacks.shell)
        navbar(),
        dbc.Container([
            source_picker(options, default_source),
            html.Div(id=ids.PAGE_CONTENT),
        ], fluid=True),
    ])
