"""The page frame: navbar with the pages, the one-line source bar (details on demand), the page slot."""
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


def source_picker(options: list[dict], value: str | None) -> html.Div:
    """One line: "Source", the dropdown, refresh, and the source's summary (:func:`source_summary`)."""
    return html.Div([
        html.Span("Source", className="fw-semibold me-2 text-nowrap"),
        dcc.Dropdown(
            id=ids.PICKER_DROPDOWN,
            options=[{"label": o["label"], "value": o["value"]} for o in options],
            value=value, placeholder="Choose a shipped dataset, a file in the data folder, or an analysis",
            clearable=False, style={"flex": "0 1 26rem", "minWidth": "16rem"},
        ),
        dbc.Button("↻", id=ids.PICKER_REFRESH, color="secondary", outline=True, size="sm", className="ms-1",
                   title="Refresh the list"),
        html.Div(id=ids.PICKER_CARD, className="ms-3 flex-grow-1", style={"minWidth": 0}),
    ], id=ids.PICKER_BAR, className="d-flex align-items-center flex-wrap mb-2 small")


#: facts shown on the line itself, in this order: (fact key, how to write its value)
LINE_FACTS = (("cells", "{} cells"), ("genes", "{} genes"), ("embedding", "{}"), ("cell types", "types: {}"),
              ("live features", "{} features"))


def _count(v) -> str:
    try:
        return f"{int(str(v).replace(',', '')):,}"
    except ValueError:
        return str(v)


def summary_line(summary: dict) -> list[str]:
    """The parts of the one-line summary: name, counts, embedding, cell types, features, annotated."""
    facts = summary.get("facts", {})
    parts = [summary.get("title", "")]
    for key, fmt in LINE_FACTS:
        v = facts.get(key)
        if v not in (None, "", "None"):
            v = str(v).split(" (")[0] if key == "live features" else v
            parts.append(fmt.format(_count(v) if key in ("cells", "genes") else v))
    if "steps done" in facts:
        parts.append("annotated" if "annotated features" in facts else "not annotated")
    return [p for p in parts if p]


def source_summary(summary: dict) -> html.Div:
    """Render :func:`core.store.catalog.describe_source` output as one line (name · counts · details),
    the facts table in a collapsed ``html.Details``; an error, and each warning, as a short alert line."""
    if summary.get("error"):
        body = [html.Strong("This source cannot be used. "), html.Span(summary["error"])]
        if summary.get("fix"):
            body += [html.Span(" Fix: "), html.Span(summary["fix"])]
        return html.Div(dbc.Alert(body, color="danger", className="py-1 px-2 mb-0 small"))
    rows = [html.Tr([html.Th(k, className="fw-normal text-muted"), html.Td(str(v))])
            for k, v in summary.get("facts", {}).items()]
    parts = summary_line(summary)
    details = html.Details([
        html.Summary([html.Strong(parts[0]), html.Span(" · " + " · ".join(parts[1:]) if parts[1:] else ""),
                      html.Span(" details", className="ms-2 text-primary")], className="text-truncate"),
        dbc.Table(html.Tbody(rows), size="sm", className="mt-1 mb-1 w-auto"),
    ], id=ids.PICKER_DETAILS)
    warnings = [dbc.Alert(w, color="warning", className="py-0 px-2 mb-0 mt-1 small")
                for w in summary.get("warnings", [])]
    return html.Div([details, *warnings])


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
