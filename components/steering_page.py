"""The Steering page: choose features, cells and a target, run the experiment in the background,
and see the latent shift, the volcano of changed genes, the enriched terms up and down, the
nearest-cell-type shift and every earlier run of the analysis.

The layout is a frame: the form is filled from the analysis (features, cell types); the results
are drawn by :mod:`callbacks.steering` from the run stored in the analysis folder
(``steering/<run_id>/``), named in ``ids.STEER_SHOWN`` and in the URL (``?run=``), so a reload or
a second tab shows the same run.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from core.store.analysis import Analysis
from core.store.catalog import resolve_source
from core.base.errors import FeatureLensError
from core.steer.request import MAX_FEATURES  # features steered together
from core.steer.targets import parse_target
from core.views.steering import cell_type_choices, feature_choices, steerability

from . import ids
from .feature_card import grid
from .figures import empty_figure
from .job_panel import JobIds, job_panel
from .shell import PAGE_BY_SLUG

__all__ = ["layout", "RUN", "TARGET_CHOICES", "CELL_MODES", "TEST_CHOICES", "INITIAL_FEATURE_OPTIONS",
           "MAX_FEATURES", "FORM_DEFAULTS", "run_form", "feature_option", "initial_features", "open_steerable", "TERM_COLUMNS",
           "HISTORY_COLUMNS", "MOVE_COLUMNS", "CHANGES_COLUMNS", "ERROR_TERM_HELP", "MAX_CARRIED_CELLS",
           "explorer_mode_option", "target_form"]

RUN = JobIds(ids.STEER_RUN_JOB)
INITIAL_FEATURE_OPTIONS = 200     # options sent with the page; typing searches all live features

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


def open_steerable(source: str | None) -> tuple[Analysis | None, tuple[str, str, str] | None]:
    """``(analysis, None)`` when ``source`` can be steered, else ``(None, (title, text, colour))``."""
    if not source:
        return None, ("No analysis chosen.", "Pick an analysis in the list above (entries named “Analysis · …”), "
                      "or build the demo with `featurelens demo --build-only`.", "info")
    try:
        kind, path = resolve_source(source)
        if kind != "analysis":
            return None, ("Steering works on analyses.",
                          f"{source} is a dataset: fit the built-in model and train an SAE on it on the Data & "
                          "training page, then pick the analysis above.", "info")
        analysis = Analysis.open(path)
        problem = steerability(analysis)
    except FeatureLensError as exc:
        return None, ("This analysis cannot be opened.", exc.message + (f" Fix: {exc.fix}" if exc.fix else ""),
                      "danger")
    if problem:
        return None, ("This analysis cannot be steered.", f"{problem[0]} Fix: {problem[1]}", "warning")
    return analysis, None


def initial_features(query: dict[str, str], live: set[int]) -> tuple[list[int], list[str]]:
    """The features a URL asks for (``?feature=12`` or ``12,40``) and warnings about the rest."""
    raw = (query.get("feature") or "").strip()
    if not raw:
        return [], []
    out, warnings = [], []
    for part in raw.split(","):
        part = part.strip()
        try:
            f = int(part)
        except ValueError:
            warnings.append(f"The link asks for feature {part!r}, which is not a feature number; it is ignored.")
            continue
        if f not in live:
            warnings.append(f"Feature {f} is not a live feature of this SAE, so it cannot be steered; choose another.")
        elif f not in out:
            out.append(f)
    return out[:MAX_FEATURES], warnings


FORM_DEFAULTS = {"features": [], "cell_mode": "types", "cell_types": [], "target": "max", "factor": 2.0,
                 "percentile": 99.0, "mean_type": None, "mean_factor": 1.5, "value": 1.0, "error_term": True,
                 "test": "paired-log"}


def target_form(target, *, types: list[str]) -> dict:
    """The target controls (keys ``target``, ``factor``, ``percentile``, ``mean_type``, ``mean_factor``,
    ``value`` of :data:`FORM_DEFAULTS`) that write ``target`` (a stored run's target text); {} when
    the form cannot write it (e.g. different targets per feature)."""
    if isinstance(target, (list, tuple)):
        if len(set(target)) != 1:
            return {}
        target = target[0]
    try:
        t = parse_target(target)
    except FeatureLensError:
        return {}
    if t.kind == "off":
        return {"target": "off"}
    if t.kind == "max":
        return {"target": "max"} if t.factor == 1 and t.text == "max" else {"target": "factor", "factor": t.factor}
    if t.kind == "percentile":
        return {"target": "percentile", "percentile": t.percentile}
    if t.kind == "value":
        return {"target": "value", "value": t.value}
    whole = t.text[len("mean:"):]
    if whole in types:  # a type literally named like "TYPE x2" wins, as in core.steer.targets
        return {"target": "mean", "mean_type": whole, "mean_factor": 1.0}
    return {"target": "mean", "mean_type": t.cell_type, "mean_factor": t.factor} if t.cell_type in types else {}


def run_form(analysis: Analysis, run_id: str | None, *, types: list[str]) -> dict | None:
    """The form values that reproduce stored run ``run_id`` (keys of :data:`FORM_DEFAULTS`), or None
    when there is no such run. Lassoed cells (here or in the Explorer) cannot be restored: such a run
    leaves the cells as they are."""
    if not run_id or not analysis.has(f"steering/{run_id}/run.json"):
        return None
    meta = analysis.read_json(f"steering/{run_id}/run.json")
    cfg = meta.get("config", {})
    form = dict(FORM_DEFAULTS, features=[int(f) for f in meta.get("features", [])],
                error_term=bool(cfg.get("error_term", True)), test=cfg.get("test", "paired-log"))
    form.update(target_form(cfg.get("target", "max"), types=types))
    cells = str(meta.get("info", {}).get("cells", ""))
    if cells == "all":
        form["cell_mode"] = "all"
    elif cells.startswith("cell_type="):
        value = cells[len("cell_type="):]
        chosen = [value] if value in types else [t for t in value.split(",") if t in types]
        form["cell_mode"], form["cell_types"] = "types", chosen
    else:
        form.pop("cell_mode"), form.pop("cell_types")
    return form


def explorer_mode_option(selection: dict | None, *, source: str | None) -> dict:
    """The 'cells selected in the Explorer' choice for ``selection`` (the ``ids.STORE_CELLS`` data):
    labelled with its number of cells, disabled when it holds none for ``source``."""
    cells = (selection or {}).get("cells") if (selection or {}).get("source") == source else None
    if not cells:
        return {"label": EXPLORER_MODE_LABEL, "value": "explorer", "disabled": True}
    n = len(cells)
    return {"label": f"the {n:,} cell{'s' if n != 1 else ''} selected in the Explorer", "value": "explorer"}


def _message(title: str, text, colour: str) -> html.Div:
    page = PAGE_BY_SLUG["steering"]
    return html.Div([html.H2(page.title), html.P(page.summary, className="lead"),
                     dbc.Alert([html.Strong(title + " "), text], color=colour, id=ids.STEER_ALERT)],
                    id=ids.STEERING_PAGE)


def layout(*, source: str | None, query: dict[str, str]) -> html.Div:
    analysis, problem = open_steerable(source)
    if problem:
        return _message(*problem)
    try:
        choices = feature_choices(analysis)
        types = cell_type_choices(analysis)
    except FeatureLensError as exc:
        return _message("This analysis cannot be opened.", exc.message, "danger")
    if choices.empty:
        return _message("Nothing to steer.", "This SAE has no live feature (none fires on any cell); train another "
                        "one on the Data & training page.", "warning")
    features, warnings = initial_features(query, set(choices["feature"].tolist()))
    run = (query.get("run") or "").strip() or None
    try:
        form = run_form(analysis, run, types=types) or {}
    except (FeatureLensError, OSError, ValueError):
        form = {}
    if form and not features:
        features = form["features"]
    # "Steer in these N cells →" of the Explorer's lasso, unless the run named shows other cells
    carried = query.get("cells") == "explorer" and "cell_mode" not in form
    form = {**FORM_DEFAULTS, "cell_mode": "types" if types else "all", **form, "features": features}
    if carried:
        form["cell_mode"] = "explorer"
    chosen = choices[choices["feature"].isin(features)]
    first = choices.head(INITIAL_FEATURE_OPTIONS)
    options = [feature_option(r) for _, r in chosen.iterrows()] + \
        [feature_option(r) for _, r in first[~first["feature"].isin(features)].iterrows()]
    return html.Div([
        dcc.Store(id=ids.STEER_SOURCE, data=source),
        dcc.Store(id=ids.STEER_SHOWN, data={"run_id": run, "features": features}),
        dcc.Store(id=ids.STEER_LASSO, data=[]),
        dcc.Download(id=ids.STEER_DOWNLOAD),
        html.Div([dbc.Alert(w, color="warning", className="py-2") for w in warnings], id=ids.STEER_ALERT),
        dbc.Row([
            dbc.Col(settings_card(options=options, form=form, n_live=len(choices), types=types), lg=5, xl=4),
            dbc.Col(latent_card(), lg=7, xl=8),
        ], className="g-3 mb-3"),
        results_card(),
        history_card(),
    ], id=ids.STEERING_PAGE)


def _shown(flag: bool) -> dict:
    return {"display": "block"} if flag else {"display": "none"}


def _label(text: str, **kwargs) -> dbc.Label:
    return dbc.Label(text, className="mb-1 fw-semibold small", **kwargs)


def settings_card(*, options: list[dict], form: dict, n_live: int, types: list[str]) -> dbc.Card:
    """The form, filled with ``form`` (keys of :data:`FORM_DEFAULTS`)."""
    modes = [{**m, "disabled": True} if m["value"] == "types" and not types else m for m in CELL_MODES]
    targets = [{**t, "disabled": True} if t["value"] == "mean" and not types else t for t in TARGET_CHOICES]
    return dbc.Card([
        dbc.CardHeader(html.Span([html.Strong("Steering experiment"),
                                  html.Small(" set features in chosen cells, re-decode, compare", className="text-muted")])),
        dbc.CardBody([
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
            ], className="mb-3"),
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
            job_panel(RUN, start_label="Run steering",
                      help="Runs in the background; the first run of an analysis loads its model (a few seconds)."),
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
