"""The Explorer: search, the concept map linked to the latent space, the cell type × feature heatmap,
reverse lookup, the feature card.

The layout is an empty frame (cheap to render) drawn from
:func:`core.views.explorer.explorer_page_data`; its figures and tables are filled by the
callbacks in :mod:`callbacks.explorer`. The URL query (``?source=…&feature=…&q=…&mode=…``)
sets the initial selection and search, so a shared link reopens the same view.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from core.views.explorer import ExplorerPageData
from core.views.problem import PageProblem

from . import ids
from .feature_card import card_layout, grid
from .figures import empty_figure
from .shell import PAGE_BY_SLUG

SEARCH_MODES = [{"label": "GO term", "value": "concept"}, {"label": "gene", "value": "gene"},
                {"label": "feature id", "value": "feature"}]
PLACEHOLDERS = {"concept": "GO keyword or id, e.g. antigen processing", "gene": "gene symbol, e.g. CD79A",
                "feature": "feature numbers, e.g. 12 or 3, 7 or 10-15"}

RESULT_COLUMNS = [
    {"field": "feature", "headerName": "feature", "width": 95, "type": "rightAligned",
     "filter": "agNumberColumnFilter"},
    {"field": "match", "headerName": "matches", "flex": 3, "minWidth": 260, "tooltipField": "match"},
    {"field": "p", "headerName": "best p / q", "width": 110, "type": "rightAligned",
     "valueFormatter": {"function": "params.value == null ? '' : d3.format('.2~e')(params.value)"}},
    {"field": "cells", "headerName": "active cells", "width": 110, "type": "rightAligned",
     "valueFormatter": {"function": "params.value == null ? '' : d3.format(',')(params.value)"}},
    {"field": "category", "headerName": "category", "flex": 1, "minWidth": 150},
]
LOOKUP_FEATURE_COLUMNS = [
    {"field": "feature", "headerName": "feature", "width": 90, "type": "rightAligned"},
    {"field": "z", "headerName": "z", "width": 80, "type": "rightAligned",
     "valueFormatter": {"function": "params.value == null ? '' : d3.format('.1f')(params.value)"}},
    {"field": "mean_in", "headerName": "mean in", "width": 90, "type": "rightAligned",
     "valueFormatter": {"function": "params.value == null ? '' : d3.format('.3~g')(params.value)"}},
    {"field": "mean_out", "headerName": "mean out", "width": 90, "type": "rightAligned",
     "valueFormatter": {"function": "params.value == null ? '' : d3.format('.3~g')(params.value)"}},
    {"field": "top_terms", "headerName": "top terms", "flex": 1, "minWidth": 200, "tooltipField": "top_terms"},
]
LOOKUP_TERM_COLUMNS = [
    {"field": "term", "headerName": "concept", "cellRenderer": "markdown",
     "cellRendererParams": {"linkTarget": "_blank"}, "flex": 2, "minWidth": 220},
    {"field": "n_features", "headerName": "features", "width": 95, "type": "rightAligned"},
    {"field": "features", "headerName": "which", "width": 110, "tooltipField": "features"},
    {"field": "best_p", "headerName": "best p", "width": 100, "type": "rightAligned",
     "valueFormatter": {"function": "params.value == null ? '' : d3.format('.2~e')(params.value)"}},
]


def _message(problem: PageProblem) -> html.Div:
    page = PAGE_BY_SLUG["explorer"]
    return html.Div([html.H2(page.title), html.P(page.summary, className="lead"),
                     dbc.Alert([html.Strong(problem.title + " "), problem.text], color=problem.level,
                               id=ids.EXPLORER_ALERT)],
                    id=ids.EXPLORER_PAGE)


def layout(data: ExplorerPageData) -> html.Div:
    """The Explorer for ``data`` (:func:`core.views.explorer.explorer_page_data`)."""
    if data.problem:
        return _message(data.problem)
    return html.Div([
        dcc.Store(id=ids.EXPLORER_SOURCE, data=data.source),
        dcc.Store(id=ids.EXPLORER_STATE, data=data.state),
        dcc.Store(id=ids.EXPLORER_HITS, data=[]),
        dcc.Store(id=ids.EXPLORER_MAP_META),
        dcc.Store(id=ids.EXPLORER_LATENT_META),
        dcc.Store(id=ids.SEARCH_GENES_READY, data=0),
        dcc.Store(id=ids.EXPLORER_CELLS),
        dcc.Store(id=ids.EXPLORER_URL_WRITTEN),
        dcc.Store(id=ids.EXPLORER_VIEWS_NEEDED),
        dcc.Store(id=ids.EXPLORER_VIEWS_READY, data=0),
        html.Div([dbc.Alert(w, color="warning", className="py-2") for w in data.warnings], id=ids.EXPLORER_ALERT),
        search_card(query=data.query, mode=data.mode),
        dbc.Row([
            dbc.Col(map_card(), lg=6),
            dbc.Col(latent_card(data.latent), lg=6),
        ], className="g-3 mb-3"),
        html.Div(id=ids.EXPLORER_SELECTION, className="mb-2"),
        heatmap_card(),
        lookup_card(),
        card_layout(),
    ], id=ids.EXPLORER_PAGE)


def search_card(*, query: str, mode: str) -> dbc.Card:
    return dbc.Card(dbc.CardBody([
        dbc.Row([
            dbc.Col(html.H5("Search features", className="mb-0"), width="auto", className="align-self-center"),
            dbc.Col(dbc.RadioItems(id=ids.SEARCH_MODE, options=SEARCH_MODES, value=mode, inline=True,
                                   className="mt-1"), width="auto"),
            dbc.Col([
                dcc.Input(id=ids.SEARCH_INPUT, type="search", value=query, debounce=0.1, list=ids.SEARCH_SUGGESTIONS,
                          placeholder=PLACEHOLDERS[mode], autoComplete="off", className="form-control"),
                html.Datalist(id=ids.SEARCH_SUGGESTIONS),
            ]),
        ], className="g-2 align-items-center"),
        html.Div(id=ids.SEARCH_STATUS, className="small text-muted mt-2"),
        html.Div([
            dbc.Button("Build the gene index", id=ids.SEARCH_BUILD_GENES, size="sm", color="primary",
                       className="me-2"),
            dbc.Progress(id=ids.SEARCH_BUILD_PROGRESS, value=0, style={"height": "6px", "width": "12rem"},
                         className="d-inline-flex align-middle"),
        ], id=ids.SEARCH_BUILD_BOX, style={"display": "none"}, className="mt-2"),
        html.Div(grid(ids.SEARCH_RESULTS, RESULT_COLUMNS, height="210px", row_id="feature"), className="mt-2"),
    ]), className="mb-3")


def _graph(graph_id: str, message: str) -> dcc.Graph:
    return dcc.Graph(id=graph_id, figure=empty_figure(message, height=460), style={"height": "460px"},
                     config={"displaylogo": False, "scrollZoom": True,
                             "modeBarButtonsToRemove": ["autoScale2d", "toggleSpikelines"]})


def _graph_card(*, title: str, hint: str, colour_id: str, colours: list[tuple[str, str]], alert_id: str,
                graph_id: str, loading: str, extra=None) -> dbc.Card:
    """A card with a title, a colour-by switch (``colours``: (label, value), the first chosen), an
    optional ``extra`` header row, and a graph."""
    return dbc.Card([
        dbc.CardHeader([dbc.Row([
            dbc.Col(html.Span([html.Strong(title), html.Small(f" {hint}", className="text-muted")])),
            dbc.Col(dbc.RadioItems(id=colour_id, inline=True, value=colours[0][1],
                                   options=[{"label": label, "value": value} for label, value in colours]),
                    width="auto"),
        ], className="g-1 align-items-center"), extra]),
        dbc.CardBody([html.Div(id=alert_id),
                      dcc.Loading(_graph(graph_id, loading), type="circle", delay_show=400)], className="p-1"),
    ])


def map_card() -> dbc.Card:
    return _graph_card(title="Concept map", hint="features by their concepts · click, or drag a box",
                       colour_id=ids.EXPLORER_MAP_COLOUR,
                       colours=[("GO category", "category"), ("local/regional/global", "locality")],
                       alert_id=ids.EXPLORER_MAP_ALERT, graph_id=ids.EXPLORER_MAP, loading="loading the concept map…")


NO_VIEWS = {"options": [{"label": "PCA", "value": "pca"}], "value": "pca", "note": "", "groups": []}


def latent_card(views: dict | None = None) -> dbc.Card:
    """The latent space; ``views`` (:func:`core.views.explorer.latent_choices`) sets the PCA/UMAP
    switch, the note on the view shown first, and the cell groups offered as colourings."""
    views = views or NO_VIEWS
    switch = dbc.Row([
        dbc.Col(dbc.RadioItems(id=ids.EXPLORER_LATENT_VIEW, inline=True, options=views["options"],
                               value=views["value"]), width="auto"),
        dbc.Col(html.Small(views["note"], id=ids.EXPLORER_LATENT_VIEW_NOTE, title=views["note"],
                           className="text-muted"), className="text-truncate"),
    ], className="g-2 align-items-center small")
    return _graph_card(title="Latent space", hint="cells · lasso cells", colour_id=ids.EXPLORER_LATENT_COLOUR,
                       colours=latent_colours(views.get("groups", [])), alert_id=ids.EXPLORER_LATENT_ALERT,
                       graph_id=ids.EXPLORER_LATENT, loading="loading the latent space…", extra=switch)


def latent_colours(groups) -> list[tuple[str, str]]:
    """The latent view's colourings (label, value): the selected feature, the cell type, then the
    data's cell ``groups`` (obs clusterings stored with the views)."""
    return [("selected feature", "feature"), ("cell type", "celltype"), *((g, f"group:{g}") for g in groups)]


def heatmap_card() -> dbc.Card:
    """Cell type × feature mean activation (filled by :func:`callbacks.explorer.update_heatmap`)."""
    return dbc.Card([
        dbc.CardHeader(html.Span([html.Strong("Cell types × features"),
                                  html.Small(" mean activation · click a cell to open the feature, a cell type "
                                             "(grey strip) to list its features", className="text-muted")])),
        dbc.CardBody([html.Div(id=ids.EXPLORER_HEATMAP_ALERT),
                      dcc.Loading(dcc.Graph(id=ids.EXPLORER_HEATMAP, figure=empty_figure("loading the heatmap…",
                                                                                         height=300),
                                            config={"displaylogo": False, "modeBarButtonsToRemove":
                                                    ["autoScale2d", "toggleSpikelines", "lasso2d", "select2d"]}),
                                  type="circle", delay_show=400)], className="p-1"),
    ], className="mb-3")


def lookup_card() -> dbc.Card:
    return dbc.Card([
        dbc.CardHeader(html.Span([html.Strong("Reverse lookup"),
                                  html.Small(" which features and concepts characterise the cells you lasso",
                                             className="text-muted")])),
        dbc.CardBody([
            html.Div("Draw a lasso around cells in the latent space.", id=ids.EXPLORER_LOOKUP_STATUS,
                     className="small text-muted mb-2"),
            html.Div([
                dbc.Button("Steer in these cells →", id=ids.EXPLORER_STEER_CELLS, size="sm", color="primary",
                           outline=True, className="me-2",
                           title="Open the Steering page with these cells as the cells to steer"),
                html.Small("", id=ids.EXPLORER_STEER_CELLS_NOTE, className="text-muted"),
            ], id=ids.EXPLORER_STEER_CELLS_BOX, style={"display": "none"}, className="mb-2"),
            dbc.Row([
                dbc.Col(grid(ids.EXPLORER_LOOKUP_FEATURES, LOOKUP_FEATURE_COLUMNS, height="240px", row_id="feature"),
                        lg=6),
                dbc.Col(grid(ids.EXPLORER_LOOKUP_TERMS, LOOKUP_TERM_COLUMNS, height="240px", row_id="term_id"),
                        lg=6),
            ], className="g-2"),
        ]),
    ], className="mb-3")


def selection_chips(features: list[int], primary: int | None) -> list:
    """Buttons for the features of a box selection on the map; the card shows the highlighted one."""
    if len(features) <= 1:
        return []
    shown = features[:40]
    chips = [dbc.Button(str(f), id=ids.explorer_pick(f), size="sm", className="me-1 mb-1",
                        color="warning" if f == primary else "light") for f in shown]
    more = [html.Small(f" … and {len(features) - len(shown)} more", className="text-muted")] \
        if len(features) > len(shown) else []
    return [html.Small(f"{len(features)} features selected; the latent space shows the sum of their "
                       "activations. Open one: ", className="text-muted me-1"), *chips, *more]
