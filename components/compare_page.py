"""The Compare page: two annotated analyses side by side (matched features, similarity, shared and
unique concepts, concept-count correlation).

The pickers default to the URL's ``?a=`` and ``?b=`` (written back when they change, so a reload or
a shared link shows the same pair), else to the app's source and another annotated analysis
(:func:`core.views.compare.compare_page_data`). The
comparison itself is filled by :mod:`callbacks.compare`.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from core.views.compare import ComparePageData

from . import ids
from .feature_card import grid
from .figures import empty_figure
from .shell import PAGE_BY_SLUG

_NUM = {"type": "rightAligned", "filter": "agNumberColumnFilter"}
MATCH_COLUMNS = [
    {"field": "feature_a", "headerName": "feature A", "width": 115, **_NUM},
    {"field": "feature_b", "headerName": "feature B", "width": 115, **_NUM},
    {"field": "jaccard", "headerName": "similarity", "width": 110, **_NUM,
     "headerTooltip": "Jaccard similarity of the two features' term sets",
     "valueFormatter": {"function": "params.value == null ? '' : d3.format('.3f')(params.value)"}},
    {"field": "shared_terms", "headerName": "shared", "width": 95, **_NUM,
     "headerTooltip": "terms enriched in both features"},
    {"field": "terms_a", "headerName": "terms A", "width": 110, **_NUM, "headerTooltip": "terms of feature A"},
    {"field": "terms_b", "headerName": "terms B", "width": 110, **_NUM, "headerTooltip": "terms of feature B"},
    {"field": "top_shared", "headerName": "best shared terms", "flex": 1, "minWidth": 240,
     "tooltipField": "top_shared", "filter": "agTextColumnFilter"},
    {"field": "explore", "headerName": "open", "width": 140, "cellRenderer": "markdown", "sortable": False,
     "filter": False},
]
TERM_COLUMNS = [
    {"field": "term_name", "headerName": "concept", "flex": 2, "minWidth": 240, "tooltipField": "term_name",
     "filter": "agTextColumnFilter"},
    {"field": "term_id", "headerName": "id", "width": 125, "filter": "agTextColumnFilter"},
    {"field": "namespace", "headerName": "db", "width": 75},
    {"field": "features_a", "headerName": "features A", "width": 125, **_NUM},
    {"field": "features_b", "headerName": "features B", "width": 125, **_NUM},
]
HIDDEN = {"display": "none"}
SHOWN = {"display": "block"}


def analysis_options(analyses) -> list[dict]:
    """Dropdown options for ``analyses`` (:func:`core.views.compare.comparable_analyses`); those
    without annotations are listed but disabled."""
    return [{"label": a["name"] if a["annotated"] else f"{a['name']} (not annotated)", "value": a["name"],
             "disabled": not a["annotated"]} for a in analyses]


def _picker(label: str, picker_id: str, options: list[dict], value: str | None) -> dbc.Col:
    return dbc.Col([
        dbc.Label(label, html_for=picker_id, className="fw-semibold mb-1"),
        dcc.Dropdown(id=picker_id, options=options,
                     value=value, clearable=False,
                     placeholder="choose an annotated analysis"),
    ], md=6)


def layout(data: ComparePageData) -> html.Div:
    """The Compare page for ``data`` (:func:`core.views.compare.compare_page_data`)."""
    page = PAGE_BY_SLUG["compare"]
    options = analysis_options(data.analyses)
    a, b, n_usable = data.a, data.b, data.n_usable
    note = None
    if n_usable < 2:
        note = dbc.Alert([html.Strong("Two annotated analyses are needed. "),
                          f"The analyses folder holds {n_usable} annotated analys{'i' if n_usable == 1 else 'e'}s. "
                          "Train and annotate another on the Data & training page (e.g. the same data with another "
                          "seed or SAE size, or another model's embedding), then come back."], color="info")
    return html.Div([
        html.H2(page.title),
        html.P("Match the features of two analyses (e.g. two models of the same cells, or two SAEs) by the "
               "concepts they are annotated with, and see which concepts both find.", className="lead"),
        dbc.Card(dbc.CardBody(dbc.Row([_picker("Analysis A", ids.COMPARE_A, options, a),
                                       _picker("Analysis B", ids.COMPARE_B, options, b)], className="g-3")),
                 className="mb-3"),
        html.Div(note, id=ids.COMPARE_ALERT),
        dcc.Loading(html.Div(results_frame(), id=ids.COMPARE_RESULTS, style=HIDDEN), type="default", delay_show=300),
        dcc.Download(id=ids.COMPARE_DOWNLOAD),
    ], id=ids.COMPARE_PAGE)


def results_frame() -> list:
    """The empty frame the comparison callback fills."""
    return [
        html.Div(id=ids.COMPARE_SUMMARY, className="mb-3"),
        dbc.Card([
            dbc.CardHeader(html.Div([
                html.Span("Matched features", className="fw-semibold"),
                dbc.Button("Download CSV", id=ids.COMPARE_EXPORT_MATCHES, size="sm", color="secondary",
                           outline=True, className="float-end"),
            ])),
            dbc.CardBody([
                html.Small("Optimal one-to-one matching of A's and B's features by the similarity (Jaccard index) "
                           "of their term sets; most similar first. “open” shows a feature in the Explorer.",
                           className="text-muted d-block mb-2"),
                grid(ids.COMPARE_MATCHES, MATCH_COLUMNS, height="380px"),
            ]),
        ], className="mb-3"),
        dbc.Row([
            dbc.Col(dbc.Card([
                dbc.CardHeader(html.Span("Concept counts", className="fw-semibold")),
                dbc.CardBody([
                    html.Small("One point per concept: how many features of A (x) and of B (y) carry it.",
                               className="text-muted d-block"),
                    dcc.Graph(id=ids.COMPARE_SCATTER, figure=empty_figure(height=380), config={"displaylogo": False},
                              responsive=True),
                ]),
            ], className="h-100"), lg=5),
            dbc.Col(dbc.Card([
                dbc.CardHeader(html.Div([
                    html.Span("Concepts", className="fw-semibold"),
                    dbc.Button("Download CSV", id=ids.COMPARE_EXPORT_TERMS, size="sm", color="secondary",
                               outline=True, className="float-end"),
                ])),
                dbc.CardBody(dbc.Tabs([
                    dbc.Tab(grid(ids.COMPARE_TERMS_SHARED, TERM_COLUMNS, height="360px"), label="in both",
                            tab_id="both", id=ids.COMPARE_TAB_BOTH),
                    dbc.Tab(grid(ids.COMPARE_TERMS_ONLY_A, TERM_COLUMNS, height="360px"), label="only in A",
                            tab_id="only A", id=ids.COMPARE_TAB_ONLY_A),
                    dbc.Tab(grid(ids.COMPARE_TERMS_ONLY_B, TERM_COLUMNS, height="360px"), label="only in B",
                            tab_id="only B", id=ids.COMPARE_TAB_ONLY_B),
                ], id=ids.COMPARE_TERMS_TABS, active_tab="both")),
            ], className="h-100"), lg=7),
        ], className="g-3 mb-3"),
    ]


def _tile(value: str, label: str, help_text: str | None = None) -> dbc.Col:
    return dbc.Col(dbc.Card(dbc.CardBody([
        html.Div(value, className="fs-4 fw-semibold"),
        html.Div(label, className="small"),
        html.Div(help_text, className="small text-muted") if help_text else None,
    ], className="py-2")), md=3, sm=6)


def _num(x) -> str:
    return "–" if x is None or x != x else f"{x:.3f}"


def summary_tiles(summary: dict, *, a: str, b: str) -> html.Div:
    """The headline numbers of a comparison (``core.views.compare.AnalysisComparison.summary``)."""
    s = summary
    only_a = s["unique_terms_a"] - s["shared_terms"]
    only_b = s["unique_terms_b"] - s["shared_terms"]
    return html.Div([
        html.Div([html.Strong(a), " (A) vs ", html.Strong(b), " (B)",
                  html.Span(f" · compared in {s.get('seconds', 0):.2f} s", className="text-muted small")],
                 className="mb-2"),
        dbc.Row([
            _tile(f"{s['matched_pairs']:,}", "matched feature pairs",
                  f"of {s.get('features_a', 0):,} annotated features in A and {s.get('features_b', 0):,} in B"),
            _tile(_num(s["similarity"]), "mean similarity",
                  "Jaccard index of the term sets, averaged over the matched pairs"),
            _tile(f"{s['shared_terms']:,}", "shared concepts",
                  f"{only_a:,} only in A · {only_b:,} only in B (overlap {_num(s['term_overlap'])})"),
            _tile(f"ρ {_num(s['concept_count_spearman'])}", "concept-count correlation",
                  f"Spearman; Pearson r {_num(s['concept_count_pearson'])} (features per term, A vs B)"),
        ], className="g-2"),
    ])
