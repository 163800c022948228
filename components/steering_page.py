"""The Steering page: choose features, cells and a target, run the experiment in the background,
and see the latent shift, the volcano of changed genes, the enriched terms up and down, the
nearest-cell-type shift and every earlier run of the analysis.

The layout is a frame: the form is filled from the analysis (features, cell types, the run named in
the URL) by :func:`core.views.steering.steering_page_data`; the results
are drawn by :mod:`callbacks.steering` from the run stored in the analysis folder
(``steering/<run_id>/``), named in ``ids.STEER_SHOWN`` and in the URL (``?run=``), so a reload or
a second tab shows the same run.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from core.steer.request import MAX_FEATURES  # features steered together
from core.views.problem import PageProblem
from core.views.steering import VERDICT_NOTE, SteeringPageData

from . import ids
from .feature_card import grid
from .figures import empty_figure
from .job_panel import JobIds, job_panel
from .shell import PAGE_BY_SLUG

__all__ = ["layout", "RUN", "TARGET_CHOICES", "CELL_MODES", "TEST_CHOICES", "MAX_FEATURES", "feature_option",
           "TERM_COLUMNS", "HISTORY_COLUMNS", "MOVE_COLUMNS", "CHANGES_COLUMNS", "ERROR_TERM_HELP",
           "MAX_CARRIED_CELLS", "explorer_mode_option", "EXPERIMENT", "TOWARD_RANK", "TOWARD_RUN", "RUN_MODES",
           "VERDICT_COLUMNS", "EXPERIMENT_COLUMNS", "TOWARD_COLUMNS", "COMPARE_COLUMNS", "TAB_OF_MODE"]

RUN = JobIds(ids.STEER_RUN_JOB)
EXPERIMENT = JobIds(ids.STEER_EXP_JOB)
TOWARD_RANK = JobIds(ids.STEER_TOWARD_RANK_JOB)
TOWARD_RUN = JobIds(ids.STEER_TOWARD_RUN_JOB)
RUN_MODES = [{"label": "one run", "value": "run"}, {"label": "dose–response with controls", "value": "experiment"}]
EXPERIMENT_HELP = ("The feature is set to each strength × its maximum in the same cells (off is always included). "
                   "Controls, at 1× (or the largest strength): random live features of similar firing frequency, "
                   "and random directions in the embedding, each moving every cell as far as the feature does. "
                   "Each term is then judged against 50 random features and 50 random directions moved as far "
                   "(q < 0.05 against both: “specific”).")
TAB_OF_MODE = {"run": "experiment", "experiment": "experiment", "toward": "toward", "compare": "compare"}

MAX_CARRIED_CELLS = 5000         # cells the Explorer's lasso may carry here (= steering's max_cells: none dropped)
EXPLORER_MODE_LABEL = "cells selected in the Explorer"

CELL_MODES = [{"label": "cell types", "value": "types"},
              {"label": "lasso in the latent view", "value": "lasso"},
              {"label": "all cells", "value": "all"},
              {"label": EXPLORER_MODE_LABEL, "value": "explorer", "disabled": True}]
TARGET_CHOICES = [{"label": "maximum", "value": "max"}, {"label": "× maximum", "value": "factor"},
                  {"label": "percentile", "value": "percentile"}, {"label": "cell-type mean ×", "value": "mean"},
                  {"label": "off (0)", "value": "off"}, {"label": "value", "value": "value"}]
TARGET_HELP = {
    "max": "Each steered feature is set to its largest activation over all cells.",
    "factor": "Each steered feature is set to this multiple of its largest activation.",
    "percentile": "Each steered feature is set to this percentile of its activation over the cells where it fires.",
    "mean": "Each steered feature is set to its mean activation in this cell type (all its cells, zeros included) "
            "× this factor (the paper used 1.5).",
    "off": "Each steered feature is switched off (set to 0): what do the cells lose without it?",
    "value": "Each steered feature is set to this activation.",
}
TEST_CHOICES = [{"label": "paired t-test on log expression", "value": "paired-log"},
                {"label": "negative-binomial GLM (the paper's)", "value": "nb-glm"}]
ERROR_TERM_HELP = ("On: the cell keeps the part of its embedding the SAE does not reconstruct (only the steered "
                   "feature's contribution changes). Off: the SAE's reconstruction is decoded, as in the paper, so "
                   "the comparison also holds the SAE's reconstruction error.")


def feature_option(row) -> dict:
    return {"label": str(row["label"]), "value": int(row["feature"])}


def explorer_mode_option(selection: dict | None, *, source: str | None) -> dict:
    """The 'cells selected in the Explorer' choice for ``selection`` (the ``ids.STORE_CELLS`` data):
    labelled with its number of cells, disabled when it holds none for ``source``."""
    cells = (selection or {}).get("cells") if (selection or {}).get("source") == source else None
    if not cells:
        return {"label": EXPLORER_MODE_LABEL, "value": "explorer", "disabled": True}
    n = len(cells)
    return {"label": f"the {n:,} cell{'s' if n != 1 else ''} selected in the Explorer", "value": "explorer"}


def _message(problem: PageProblem) -> html.Div:
    page = PAGE_BY_SLUG["steering"]
    return html.Div([html.H2(page.title), html.P(page.summary, className="lead"),
                     dbc.Alert([html.Strong(problem.title + " "), problem.text], color=problem.level,
                               id=ids.STEER_ALERT)],
                    id=ids.STEERING_PAGE)


def layout(data: SteeringPageData) -> html.Div:
    """The Steering page for ``data`` (:func:`core.views.steering.steering_page_data`)."""
    if data.problem:
        return _message(data.problem)
    options = [feature_option(r) for _, r in data.offered.iterrows()]
    types = list(data.types)
    lower = lower_tabs(types=types, mode=data.mode)  # first when the link asks for its mode
    return html.Div([
        dcc.Store(id=ids.STEER_SOURCE, data=data.source),
        dcc.Store(id=ids.STEER_SHOWN, data={"run_id": data.run, "features": list(data.features)}),
        dcc.Store(id=ids.STEER_LASSO, data=[]),
        dcc.Store(id=ids.STEER_EXP_SHOWN, data={"experiment_id": None}),
        dcc.Download(id=ids.STEER_DOWNLOAD),
        html.Div([dbc.Alert(w, color="warning", className="py-2") for w in data.warnings], id=ids.STEER_ALERT),
        dbc.Row([
            dbc.Col(settings_card(options=options, form=data.form, n_live=data.n_live, types=types, mode=data.mode),
                    lg=5, xl=4),
            dbc.Col(latent_card(), lg=7, xl=8),
        ], className="g-3 mb-3"),
        *((lower, results_card(), history_card()) if data.mode != "run" else (results_card(), history_card(), lower)),
    ], id=ids.STEERING_PAGE)


def _shown(flag: bool) -> dict:
    return {"display": "block"} if flag else {"display": "none"}


def _label(text: str, **kwargs) -> dbc.Label:
    return dbc.Label(text, className="mb-1 fw-semibold small", **kwargs)


def settings_card(*, options: list[dict], form: dict, n_live: int, types: list[str], mode: str = "run") -> dbc.Card:
    """The form, filled with ``form`` (keys of :data:`core.views.steering.FORM_DEFAULTS`); ``mode``
    "experiment" opens it as a dose–response sweep with controls."""
    sweep = mode == "experiment"
    modes = [{**m, "disabled": True} if m["value"] == "types" and not types else m for m in CELL_MODES]
    targets = [{**t, "disabled": True} if t["value"] == "mean" and not types else t for t in TARGET_CHOICES]
    return dbc.Card([
        dbc.CardHeader(html.Span([html.Strong("Steering experiment"),
                                  html.Small(" set features in chosen cells, re-decode, compare", className="text-muted")])),
        dbc.CardBody([
            dbc.RadioItems(id=ids.STEER_MODE, options=RUN_MODES, value="experiment" if sweep else "run", inline=True,
                           className="small mb-2 fw-semibold"),
            html.Div([
                _label("Feature(s)", html_for=ids.STEER_FEATURES),
                dcc.Dropdown(id=ids.STEER_FEATURES, options=options, value=form["features"], multi=True,
                             placeholder=f"type a feature number or a term ({n_live:,} live features)",
                             maxHeight=320, optionHeight=34),
                html.Small(f"Up to {MAX_FEATURES}; each is set to the target below.", className="text-muted d-block"),
            ], className="mb-3"),
            html.Div([
                _label("Cells"),
                dbc.RadioItems(id=ids.STEER_CELL_MODE, options=modes, value=form["cell_mode"], inline=True,
                               className="small"),
                html.Div(dcc.Dropdown(id=ids.STEER_CELL_TYPES, options=[{"label": t, "value": t} for t in types],
                                      value=form["cell_types"], multi=True,
                                      placeholder="choose one or more cell types"),
                         id=ids.STEER_CELL_TYPES_BOX),
                html.Small("", id=ids.STEER_CELL_HELP, className="text-muted d-block"),
            ], className="mb-3"),
            html.Div([
                _label("Target"),
                dbc.RadioItems(id=ids.STEER_TARGET, options=targets, value=form["target"], inline=True,
                               className="small"),
                html.Div(dcc.Slider(id=ids.STEER_FACTOR, min=0.5, max=10, step=0.5, value=form["factor"],
                                    marks={v: f"×{v}" for v in (1, 2, 5, 10)},
                                    tooltip={"placement": "bottom", "always_visible": False}),
                         id=ids.STEER_FACTOR_BOX, style=_shown(form["target"] == "factor"), className="mt-2"),
                html.Div(dcc.Slider(id=ids.STEER_PERCENTILE, min=50, max=100, step=1, value=form["percentile"],
                                    marks={v: f"p{v}" for v in (50, 75, 90, 100)},
                                    tooltip={"placement": "bottom", "always_visible": False}),
                         id=ids.STEER_PERCENTILE_BOX, style=_shown(form["target"] == "percentile"), className="mt-2"),
                html.Div(dbc.Row([
                    dbc.Col(dcc.Dropdown(id=ids.STEER_MEAN_TYPE, options=[{"label": t, "value": t} for t in types],
                                         value=form["mean_type"], clearable=False,
                                         placeholder="mean of which cell type"), width=7),
                    dbc.Col(dbc.InputGroup([dbc.InputGroupText("×"),
                                            dbc.Input(id=ids.STEER_MEAN_FACTOR, type="number", min=0.05, step=0.05,
                                                      value=form["mean_factor"], size="sm")], size="sm"), width=5),
                ], className="g-2 align-items-center"), id=ids.STEER_MEAN_BOX, style=_shown(form["target"] == "mean"),
                    className="mt-2"),
                html.Div(dbc.InputGroup([dbc.InputGroupText("activation"),
                                         dbc.Input(id=ids.STEER_VALUE, type="number", min=0, step="any",
                                                   value=form["value"])], size="sm", style={"maxWidth": "16rem"}),
                         id=ids.STEER_VALUE_BOX, style=_shown(form["target"] == "value"), className="mt-2"),
                html.Small(TARGET_HELP[form["target"]], id=ids.STEER_TARGET_HELP, className="text-muted d-block"),
            ], className="mb-3", id=ids.STEER_TARGET_SECTION, style=_shown(not sweep)),
            experiment_box(form, shown=sweep),
            dbc.Row([
                dbc.Col([
                    dbc.Switch(id=ids.STEER_ERROR_TERM, label="keep the SAE error term", value=form["error_term"],
                               className="small mb-0"),
                    dbc.Tooltip(ERROR_TERM_HELP, target=ids.STEER_ERROR_TERM, placement="bottom"),
                ], width="auto"),
            ], className="mb-2"),
            html.Div([
                _label("Test"),
                dbc.RadioItems(id=ids.STEER_TEST, options=TEST_CHOICES, value=form["test"], className="small"),
            ], className="mb-3"),
            html.Div(job_panel(RUN, start_label="Run steering",
                               help="Runs in the background; the first run of an analysis loads its model "
                                    "(a few seconds)."), id=ids.STEER_RUN_BOX, style=_shown(not sweep)),
            html.Div(job_panel(EXPERIMENT, start_label="Run the sweep with controls",
                               help="One background job: every strength and every control in the same cells; "
                                    "stored in the analysis as one experiment."),
                     id=ids.STEER_EXP_BOX, style=_shown(sweep)),
        ]),
    ])


def _graph(graph_id: str, message: str, height: int) -> dcc.Graph:
    return dcc.Graph(id=graph_id, figure=empty_figure(message, height=height), style={"height": f"{height}px"},
                     config={"displaylogo": False, "scrollZoom": True,
                             "modeBarButtonsToRemove": ["autoScale2d", "toggleSpikelines"]})


def latent_card() -> dbc.Card:
    return dbc.Card([
        dbc.CardHeader(html.Span([html.Strong("Latent space"),
                                  html.Small(" PCA of the embedding · normal (grey) → steered (red) · lasso cells "
                                             "to steer them", className="text-muted")])),
        dbc.CardBody(dcc.Loading(_graph(ids.STEER_LATENT, "loading the latent space…", 520), type="circle",
                                 delay_show=400), className="p-1"),
    ], className="h-100")


def results_card() -> dbc.Card:
    return dbc.Card([
        dbc.CardHeader(html.Div([
            html.Strong("Result", className="me-2"),
            html.Span("", id=ids.STEER_SUMMARY, className="small"),
        ])),
        dbc.CardBody([
            dbc.Row([
                dbc.Col([
                    html.Div([html.H6("Changed genes (steered vs normal)", className="d-inline me-2"),
                              dbc.Button("⤓ DE table (CSV)", id=ids.STEER_EXPORT_DE, size="sm", color="secondary",
                                         outline=True, disabled=True, title="Every gene's paired test, as CSV")]),
                    dcc.Graph(id=ids.STEER_VOLCANO, figure=empty_figure("no run shown yet", height=400),
                              config={"displaylogo": False}),
                    html.H6(["Largest changes ", html.Small("top 10 up and top 10 down by log2 fold change, "
                                                            "significant or not", className="text-muted fw-normal")],
                            className="mt-2"),
                    html.Div(id=ids.STEER_CHANGES_NOTE),
                    grid(ids.STEER_CHANGES, CHANGES_COLUMNS, height="300px", row_id="gene"),
                ], lg=7),
                dbc.Col([
                    html.H6("Nearest cell type, before → after"),
                    dcc.Graph(id=ids.STEER_SHIFT, figure=empty_figure(height=300), config={"displaylogo": False}),
                    grid(ids.STEER_MOVES, MOVE_COLUMNS, height="150px"),
                ], lg=5),
            ], className="g-3"),
            dbc.Row([
                dbc.Col([html.H6([html.Span("▲ ", className="text-danger"), "Terms of the up-regulated genes ",
                                  html.Small("", id=ids.STEER_TERMS_UP_NOTE, className="text-muted fw-normal")]),
                         grid(ids.STEER_TERMS_UP, TERM_COLUMNS, height="330px", row_id="term_id")], lg=6),
                dbc.Col([html.H6([html.Span("▼ ", className="text-primary"), "Terms of the down-regulated genes ",
                                  html.Small("", id=ids.STEER_TERMS_DOWN_NOTE, className="text-muted fw-normal")]),
                         grid(ids.STEER_TERMS_DOWN, TERM_COLUMNS, height="330px", row_id="term_id")], lg=6),
            ], className="g-3 mt-1"),
        ]),
    ], id=ids.STEER_RESULTS, className="mb-3")


_NUM = {"type": "rightAligned", "filter": "agNumberColumnFilter"}


def _num(field: str, header: str, fmt: str | None = None, width: int = 90) -> dict:
    col = {"field": field, "headerName": header, "width": width, **_NUM}
    if fmt:
        col["valueFormatter"] = {"function": f"params.value == null ? '' : d3.format('{fmt}')(params.value)"}
    return col


TERM_COLUMNS = [
    {"field": "term_name", "headerName": "term", "flex": 2, "minWidth": 220, "filter": "agTextColumnFilter",
     "tooltipField": "term_name"},
    {"field": "term_link", "headerName": "GO / id", "width": 125, "cellRenderer": "markdown",
     "cellRendererParams": {"linkTarget": "_blank"}, "filter": "agTextColumnFilter"},
    _num("hits", "hits", None, 75), _num("n_term_genes", "size", None, 75),
    _num("fold_enrichment", "fold enr.", ".2f", 95), _num("binom_q", "binom q", ".2~e", 100),
    _num("mwu_q", "MWU q", ".2~e", 100),
    {"field": "genes", "headerName": "genes", "flex": 1, "minWidth": 140, "filter": "agTextColumnFilter",
     "tooltipField": "genes"},
]
CHANGES_COLUMNS = [
    {"field": "arrow", "headerName": "", "width": 48, "cellClassRules": {"text-danger": "params.value == '▲'",
                                                                          "text-primary": "params.value == '▼'"}},
    {"field": "gene", "headerName": "gene", "flex": 1, "minWidth": 110, "filter": "agTextColumnFilter"},
    _num("mean_normal", "mean normal", ".3~g", 115), _num("mean_steered", "mean steered", ".3~g", 120),
    _num("log2fc", "log2 FC", ".2f", 90), _num("qvalue", "q", ".2~e", 95),
    {"field": "passes", "headerName": "changed", "width": 95},
]
MOVE_COLUMNS = [{"field": "from", "headerName": "from (nearest before)", "flex": 1},
                {"field": "to", "headerName": "to (nearest after)", "flex": 1}, _num("cells", "cells", None, 85)]
HISTORY_COLUMNS = [
    {"field": "when", "headerName": "when", "width": 140, "sort": "desc"},
    {"field": "features", "headerName": "features", "width": 100, "filter": "agTextColumnFilter"},
    {"field": "targets", "headerName": "target", "width": 90},
    {"field": "cells", "headerName": "cells", "flex": 1, "minWidth": 150, "filter": "agTextColumnFilter",
     "tooltipField": "cells"},
    _num("n_cells", "n", None, 80), {"field": "test", "headerName": "test", "width": 100},
    {"field": "error_term", "headerName": "error term", "width": 100},
    _num("n_up", "up", None, 70), _num("n_down", "down", None, 75),
    {"field": "top_up_terms", "headerName": "top terms up", "flex": 2, "minWidth": 200,
     "tooltipField": "top_up_terms"},
    {"field": "run_id", "headerName": "run", "width": 150},
]


def history_card() -> dbc.Card:
    return dbc.Card([
        dbc.CardHeader(html.Span([html.Strong("Earlier runs of this analysis"),
                                  html.Small(" click a row to show it again (stored in the analysis folder)",
                                             className="text-muted")])),
        dbc.CardBody([
            html.Small("", id=ids.STEER_HISTORY_NOTE, className="text-muted d-block mb-1"),
            grid(ids.STEER_HISTORY, HISTORY_COLUMNS, height="240px", row_id="run_id"),
        ]),
    ], className="mb-4")


# ----------------------------------------------------------------------------- experiment, toward, compare
def experiment_box(form: dict, *, shown: bool) -> html.Div:
    """Strengths and controls of the dose–response sweep (shown in experiment mode)."""
    return html.Div([
        dbc.Row([
            dbc.Col([_label("Strengths (× maximum)", html_for=ids.STEER_EXP_STRENGTHS),
                     dbc.Input(id=ids.STEER_EXP_STRENGTHS, value=form.get("strengths", "0.5, 1, 2, 4"), size="sm",
                               debounce=True)], width=7),
            dbc.Col([_label("Controls of each kind", html_for=ids.STEER_EXP_CONTROLS),
                     dbc.Input(id=ids.STEER_EXP_CONTROLS, type="number", min=0, max=10, step=1,
                               value=form.get("controls", 2), size="sm")], width=5),
        ], className="g-2"),
        _label("Hypotheses (term ids; empty: the feature's annotated terms)", html_for=ids.STEER_EXP_HYPOTHESES),
        dbc.Input(id=ids.STEER_EXP_HYPOTHESES, value=form.get("terms", ""), size="sm", debounce=True,
                  placeholder="e.g. GO:0030218, down:GO:0006955"),
        html.Small(EXPERIMENT_HELP, className="text-muted d-block"),
        dbc.Alert(VERDICT_NOTE, color="light", className="py-1 px-2 mt-2 mb-0 small"),
    ], className="mb-3", id=ids.STEER_EXP_SETTINGS, style=_shown(shown))


VERDICT_COLUMNS = [
    {"field": "direction", "headerName": "", "width": 70},
    {"field": "term_name", "headerName": "term", "flex": 2, "minWidth": 220, "filter": "agTextColumnFilter",
     "tooltipField": "term_name"},
    {"field": "verdict", "headerName": "verdict", "width": 150, "filter": "agTextColumnFilter",
     "cellClassRules": {"text-success fw-semibold": "params.value == 'specific'",
                        "text-muted": "params.value != 'specific'"}},
    {"field": "family", "headerName": "family", "width": 110, "filter": "agTextColumnFilter",
     "headerTooltip": "hypothesis: the feature's annotated terms; exploratory: other terms enriched in the run"},
    _num("effect", "effect", "+.3f", 90), _num("null_feature_max", "most extreme feature", "+.3f", 150),
    _num("null_direction_max", "most extreme direction", "+.3f", 160),
    _num("q_feature", "q vs features", ".2~g", 120), _num("q_direction", "q vs directions", ".2~g", 130),
    _num("score", "enrichment score", ".1f", 130),
]
EXPERIMENT_COLUMNS = [
    {"field": "when", "headerName": "when", "width": 140, "sort": "desc"},
    _num("feature", "feature", None, 85), {"field": "cells", "headerName": "cells", "flex": 1, "minWidth": 150,
                                             "tooltipField": "cells"},
    _num("n_cells", "n", None, 75), {"field": "strengths", "headerName": "strengths", "width": 120},
    {"field": "control_features", "headerName": "control features", "width": 140},
    _num("n_specific", "specific", None, 90), _num("n_terms", "terms", None, 80),
    {"field": "experiment_id", "headerName": "experiment", "width": 150},
]
TOWARD_COLUMNS = [
    _num("rank", "rank", None, 70), _num("feature", "feature", None, 85), _num("target", "target", ".3~g", 90),
    _num("mean_distance_before", "distance before", ".3~g", 130),
    _num("mean_distance_after", "distance after", ".3~g", 120), _num("change", "change", ".3~g", 95),
    _num("progress", "progress", ".1%", 95), _num("nearest_target_after", "nearest to target after", ".0%", 170),
]
COMPARE_COLUMNS = [
    {"field": "direction", "headerName": "", "width": 70},
    {"field": "term_name", "headerName": "term", "flex": 2, "minWidth": 220, "filter": "agTextColumnFilter",
     "tooltipField": "term_name"},
    _num("score_a", "score A", ".1f", 90), _num("score_b", "score B", ".1f", 90),
    _num("difference", "A − B", ".1f", 90),
]


def lower_tabs(*, types: list[str], mode: str) -> dbc.Tabs:
    """The dose–response experiment shown, 'toward a cell type' and 'compare two runs'."""
    return dbc.Tabs([
        dbc.Tab(experiment_card(), label="Dose–response & controls", tab_id="experiment"),
        dbc.Tab(toward_card(types), label="Toward a cell type", tab_id="toward"),
        dbc.Tab(compare_card(), label="Compare two runs", tab_id="compare"),
    ], id=ids.STEER_LOWER_TABS, active_tab=TAB_OF_MODE.get(mode, "experiment"), className="mb-2")


def experiment_card() -> dbc.Card:
    return dbc.Card([
        dbc.CardHeader(html.Div([html.Strong("Experiment", className="me-2"),
                                 html.Span("", id=ids.STEER_EXP_SUMMARY, className="small")])),
        dbc.CardBody([
            dbc.Row([
                dbc.Col(_graph(ids.STEER_EXP_CHANGED, "no experiment shown yet", 300), lg=4),
                dbc.Col(_graph(ids.STEER_EXP_TERMS, "", 300), lg=4),
                dbc.Col(_graph(ids.STEER_EXP_TOWARD, "", 300), lg=4),
            ], className="g-2"),
            html.H6(["Verdict per term ", html.Small("each term of the feature's run at the reference strength "
                                                     "against the best control", className="text-muted fw-normal")],
                    className="mt-2"),
            grid(ids.STEER_EXP_VERDICTS, VERDICT_COLUMNS, height="300px"),
            html.H6(["Stored experiments ", html.Small("click a row to show it again", className="text-muted "
                                                       "fw-normal")], className="mt-3"),
            html.Small("", id=ids.STEER_EXP_HISTORY_NOTE, className="text-muted d-block mb-1"),
            grid(ids.STEER_EXP_HISTORY, EXPERIMENT_COLUMNS, height="200px", row_id="experiment_id"),
        ]),
    ], className="mb-4")


def toward_card(types: list[str]) -> dbc.Card:
    options = [{"label": t, "value": t} for t in types]
    return dbc.Card([
        dbc.CardHeader(html.Span([html.Strong("Steer toward a cell type"),
                                  html.Small(" rank the features that move cells of type A toward type B's centre, "
                                             "then steer the best (to its maximum)", className="text-muted")])),
        dbc.CardBody([
            dbc.Row([
                dbc.Col([_label("Cells of type (A)", html_for=ids.STEER_TOWARD_FROM),
                         dcc.Dropdown(id=ids.STEER_TOWARD_FROM, options=options, placeholder="cells of type…")],
                        md=4),
                dbc.Col([_label("Toward type (B)", html_for=ids.STEER_TOWARD_TO),
                         dcc.Dropdown(id=ids.STEER_TOWARD_TO, options=options, placeholder="target cell type…")],
                        md=4),
            ], className="g-2 mb-2"),
            dbc.Row([
                dbc.Col(job_panel(TOWARD_RANK, start_label="Rank features", help="Every live feature, at once."),
                        md=6),
                dbc.Col(job_panel(TOWARD_RUN, start_label="Steer the best",
                                  help="Steers the best-ranked feature in these cells; the run is shown above and "
                                       "stored with the other runs."), md=6),
            ], className="g-2"),
            html.Small("", id=ids.STEER_TOWARD_NOTE, className="text-muted d-block my-1"),
            grid(ids.STEER_TOWARD_TABLE, TOWARD_COLUMNS, height="300px", row_id="feature"),
        ]),
    ], className="mb-4")


def compare_card() -> dbc.Card:
    return dbc.Card([
        dbc.CardHeader(html.Span([html.Strong("Compare two runs"),
                                  html.Small(" stored runs or an experiment's runs (e.g. the feature vs a control, "
                                             "or 1× vs 4×)", className="text-muted")])),
        dbc.CardBody([
            dbc.Row([
                dbc.Col([_label("Run A", html_for=ids.STEER_CMP_A),
                         dcc.Dropdown(id=ids.STEER_CMP_A, options=[], placeholder="choose a stored run",
                                      optionHeight=40)], md=6),
                dbc.Col([_label("Run B", html_for=ids.STEER_CMP_B),
                         dcc.Dropdown(id=ids.STEER_CMP_B, options=[], placeholder="choose a stored run",
                                      optionHeight=40)], md=6),
            ], className="g-2 mb-2"),
            html.Div(id=ids.STEER_CMP_ALERT),
            dbc.Row([
                dbc.Col(dcc.Graph(id=ids.STEER_CMP_VOLCANO_A, figure=empty_figure("choose run A", height=360),
                                  config={"displaylogo": False}), md=6),
                dbc.Col(dcc.Graph(id=ids.STEER_CMP_VOLCANO_B, figure=empty_figure("choose run B", height=360),
                                  config={"displaylogo": False}), md=6),
            ], className="g-2"),
            dbc.Row([
                dbc.Col([html.H6("Terms, both runs"),
                         grid(ids.STEER_CMP_TERMS, COMPARE_COLUMNS, height="320px")], lg=7),
                dbc.Col([html.H6("Shift toward each cell type"),
                         dcc.Graph(id=ids.STEER_CMP_SHIFT, figure=empty_figure(height=300),
                                   config={"displaylogo": False})], lg=5),
            ], className="g-2 mt-1"),
        ]),
    ], className="mb-4")
