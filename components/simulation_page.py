"""The Simulation lab page: generate the paper's small simulation, run the variable-recovery
experiment (SAE vs PCA, ICA, SVD), show the tables, a bar figure and the findings vs the paper; and
the planted-concept score of an analysis built from the simulated demo dataset.

Every run is stored on disk (:mod:`core.views.simulation`, which also lists what the page shows:
:func:`core.views.simulation.simulation_page_data`), listed in the "Run" picker and named in the URL
(``?run=<id>``), so a reload or a second tab shows the same results.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from core.base.errors import FeatureLensError
from core.views.simulation import METHOD_LABELS, SimLabConfig, SimRun, SimulationPageData

from . import ids
from .figures import recovery_bars_figure
from .job_panel import JobIds, job_alert, job_panel
from .shell import PAGE_BY_SLUG

RUN = JobIds(ids.SIM_RUN_JOB)
PLANTED = JobIds(ids.SIM_PLANTED_JOB)
VARIABLE_NAMES = {"Y": ("Y", "observed counts"), "X''": ("X″", "X · A: what drives the genes"),
                  "A": ("A", "cell activity (Poisson)"), "B": ("B", "batch noise"),
                  "X'": ("X′", "programs after batch noise"), "X": ("X", "generative programs (Binomial)")}
STATUS_COLOURS = {"reproduced": "success", "partly": "warning"}


def run_options(runs) -> list[dict]:
    """Run picker options for ``runs`` (:func:`core.views.simulation.list_runs`)."""
    return [{"label": r["label"], "value": r["run_id"]} for r in runs]


def planted_options(analyses) -> list[dict]:
    """Analysis picker options for ``analyses`` (:func:`core.views.simulation.planted_analyses`)."""
    out = []
    for a in analyses:
        note = "" if a["annotated"] else " (not annotated)"
        out.append({"label": a["name"] + note, "value": a["name"]})
    return out


def _number(label: str, input_id: str, value: int, *, help_text: str) -> dbc.Col:
    return dbc.Col([
        dbc.Label(label, html_for=input_id, className="mb-1 small fw-semibold"),
        # no min/max/step: the browser would silently drop an out-of-range number; the job says why instead
        dbc.Input(id=input_id, type="number", value=value, placeholder=str(value), size="sm"),
        html.Small(help_text, className="text-muted"),
    ], xs=6, md=3)


def layout(data: SimulationPageData) -> html.Div:
    """The lab for ``data`` (:func:`core.views.simulation.simulation_page_data`)."""
    page = PAGE_BY_SLUG["simulation"]
    runs = run_options(data.runs)
    run = data.run
    planted = planted_options(data.planted)
    d = SimLabConfig()
    return html.Div([
        html.H2(page.title),
        html.P("Simulated data with a known ground truth show what an SAE trained on a model's latent space can "
               "and cannot recover (paper §4–5).", className="lead"),
        dbc.Row([
            dbc.Col(dbc.Card([
                dbc.CardHeader(html.Span("Small simulation → variable recovery", className="fw-semibold")),
                dbc.CardBody([
                    html.P(["Three Binomial programs ", html.I("X"), " and one Poisson activity ", html.I("A"),
                            " per cell, ", html.I("X″ = X · A"), ", counts ", html.I("Y = M X″"),
                            " (no noise). A linear autoencoder is trained on the counts, a Vanilla SAE "
                            "(10 × its latent, L1 1e-3) on its latent; every ground-truth variable is then "
                            "compared with the SAE features and with PCA, ICA and SVD components of the same "
                            "latent."], className="small"),
                    dbc.Row([
                        _number("cells", ids.SIM_CELLS, d.n_cells, help_text="200–50,000"),
                        _number("genes", ids.SIM_GENES, d.n_genes, help_text="3–2,000"),
                        _number("seed", ids.SIM_SEED, d.seed, help_text="same seed, same data"),
                        _number("SAE epochs", ids.SIM_EPOCHS, d.sae_epochs, help_text="1–500"),
                    ], className="g-2 mb-3"),
                    job_panel(RUN, start_label="Generate + run recovery",
                              help="About 50 s for 2,000 cells (18 s for 600) on a 2-core CPU. A run with the same settings "
                                   "is reused; every run is kept on disk."),
                ]),
            ], className="h-100"), lg=6),
            dbc.Col(dbc.Card([
                dbc.CardHeader(html.Span("Planted-concept score (simulated demo)", className="fw-semibold")),
                dbc.CardBody(planted_card(planted)),
            ], className="h-100"), lg=6),
        ], className="g-3 mb-3"),
        dbc.Card([
            dbc.CardHeader(dbc.Row([
                dbc.Col(html.Span("Results", className="fw-semibold"), width="auto", className="align-self-center"),
                dbc.Col(dbc.InputGroup([
                    dcc.Dropdown(id=ids.SIM_RUNS, options=runs, value=run, clearable=False,
                                 placeholder="no runs yet", style={"flex": "1 1 auto", "minWidth": "18rem"}),
                    dbc.Button("↻", id=ids.SIM_RUNS_REFRESH, color="secondary", outline=True, size="sm",
                               title="Refresh the list of runs"),
                ], size="sm")),
            ], className="g-2")),
            dbc.CardBody(dcc.Loading(html.Div(no_run_message() if run is None else None, id=ids.SIM_RESULTS),
                                     delay_show=300)),
        ], className="mb-3"),
    ], id=ids.SIMULATION_PAGE)


def planted_card(options: list[dict]) -> list:
    value = options[0]["value"] if options else None
    return [
        html.P("For an analysis built from the simulated haematopoietic demo dataset (GO programs planted "
               "into the counts): the fraction of planted programs whose GO term is among the top 10 enriched "
               "terms of the SAE feature that best matches the program's activity.", className="small"),
        dcc.Dropdown(id=ids.SIM_PLANTED_ANALYSIS, options=options, value=value, clearable=False,
                     placeholder="no analysis of the simulated demo dataset", className="mb-2"),
        html.Div(id=ids.SIM_PLANTED_BODY, className="mb-2"),
        job_panel(PLANTED, start_label="Compute planted score", disabled=True, color="secondary",
                  help="Seconds; stored in the analysis (planted_score.json)."),
    ]


def no_run_message() -> dbc.Alert:
    return dbc.Alert("No simulation run yet: set the sizes above and press “Generate + run recovery”.",
                     color="info", className="mb-0")


def _variable_cell(v: str) -> html.Td:
    symbol, meaning = VARIABLE_NAMES.get(v, (v, ""))
    return html.Td([html.Strong(symbol), html.Span(f" {meaning}", className="text-muted small")])


def value_table(table, *, target: float | None, digits: int = 3) -> dbc.Table:
    """Variables (rows) × methods (columns); values ≥ ``target`` in bold green."""
    head = html.Thead(html.Tr([html.Th("variable")] + [html.Th(METHOD_LABELS.get(m, m), className="text-end")
                                                         for m in table.columns]))
    rows = []
    for v, row in table.iterrows():
        cells = [_variable_cell(str(v))]
        for m, x in row.items():
            good = target is not None and x == x and x >= target
            text = "–" if x != x else f"{x:.{digits}f}"
            cls = "text-end" + (" fw-bold text-success" if good else "") + (" table-active" if m == "sae" else "")
            cells.append(html.Td(text, className=cls))
        rows.append(html.Tr(cells))
    return dbc.Table([head, html.Tbody(rows)], size="sm", bordered=False, hover=True, className="mb-1")


def findings_table(findings: list[dict]) -> dbc.Table:
    head = html.Thead(html.Tr([html.Th("finding"), html.Th("paper"), html.Th("ours"), html.Th("")]))
    def text(x: str) -> str:
        return str(x).replace("''", "″")

    rows = [html.Tr([html.Td(text(f["finding"])), html.Td(text(f["paper"]), className="small"),
                     html.Td(text(f["ours"]), className="small"),
                     html.Td(dbc.Badge(f["status"], color=STATUS_COLOURS.get(f["status"], "danger")))])
            for f in findings]
    return dbc.Table([head, html.Tbody(rows)], size="sm", className="mb-0")


def run_view(run: SimRun) -> list:
    """The results of one stored run."""
    c, s, data = run.config, run.sae, run.data
    ae = run.autoencoder or {}
    facts = (f"{data['n_cells']:,} cells × {data['n_genes']:,} genes, {data['n_programs']} programs, seed {c['seed']}"
             f" · autoencoder {ae.get('name', '?')} ({ae.get('epochs_run', '?')} epochs)"
             f" · SAE {s['hidden']} latents, {s['live']} live, L0 {s['l0']:.1f}, FVU {s['fvu']:.3g}"
             f" · {run.elapsed_s.get('total', 0):.0f} s")
    return [
        html.Div([html.Span(facts, className="small"),
                  html.Div(f"Stored in {run.path}", className="small text-muted")], className="mb-3"),
        dbc.Row([
            dbc.Col([html.H6("Best |Pearson r| of a single unit"),
                     html.Small("Mean over each variable's dimensions of the best |r| with any one SAE feature or "
                                f"component; bold: ≥ {run.target:g}, the paper's “nearly perfect”.",
                                className="text-muted d-block mb-1"),
                     value_table(run.best_r, target=run.target)], lg=6),
            dbc.Col([html.H6("R² of a linear read-out from all units"),
                     html.Small("Linear regression of each variable on all of a method's units (training cells), "
                                "R² on the validation cells. PCA, ICA and the latent axes are linear maps of one "
                                "latent, so they read out the same.", className="text-muted d-block mb-1"),
                     value_table(run.r2, target=None)], lg=6),
        ], className="g-3 mb-2"),
        dcc.Graph(id=ids.SIM_BAR, figure=recovery_bars_figure(run.best_r, target=run.target, labels=METHOD_LABELS,
                                                              title="Variable recovery: SAE vs linear baselines"),
                  config={"displaylogo": False}, responsive=True),
        html.H6("Findings: ours vs the paper", className="mt-2"),
        findings_table(run.findings),
    ]


def run_error(exc: FeatureLensError) -> dbc.Alert:
    return job_alert(exc.message, fix=exc.fix, title="Cannot show this run:")


def planted_view(name: str | None, score: dict | None, *, annotated: bool = True) -> html.Div:
    """The stored score of ``name`` (``planted_score.json``), or what to do to get one."""
    if not name:
        return dbc.Alert(["No analysis of the simulated demo dataset in the analyses folder. Build one with ",
                          html.Code("featurelens demo --build-only"), " (or ", html.Code("make demo"),
                          "); it is scored as it is built."], color="info", className="mb-0 small")
    if score is None and not annotated:
        return dbc.Alert(f"{name} is not annotated yet: annotate it on the Data & training page first.",
                         color="warning", className="mb-0 small")
    if score is None:
        return html.Div(f"{name} has no planted-concept score yet: compute it below.", className="small text-muted")
    head = html.Div([
        html.Span(f"{score['n_found']}/{score['n_programs']}", className="fs-4 fw-semibold me-2"),
        html.Span(f"planted GO programs found in the top {score['top']} terms (score {score['score']:.2f}; "
                  f"{score['score_with_relatives']:.2f} counting near-identical relatives)", className="small"),
    ], className="mb-2")
    rows = []
    for p in score.get("programs", []):
        mark = "✓" if p["found"] else ("≈" if p.get("found_relative") else "✗")
        colour = "text-success" if p["found"] else ("text-warning" if p.get("found_relative") else "text-danger")
        rank = "—" if p.get("rank") is None else f"#{int(p['rank'])}"
        rows.append(html.Tr([html.Td(mark, className=f"fw-bold {colour}"),
                             html.Td([p["term_name"], html.Span(f" {p['term_id']}", className="text-muted small")]),
                             html.Td(p.get("scope", ""), className="small"),
                             html.Td(str(p["best_feature"]), className="text-end"),
                             html.Td(f"{p['correlation']:.2f}", className="text-end"),
                             html.Td(rank, className="text-end")]))
    table = dbc.Table([html.Thead(html.Tr([html.Th(""), html.Th("planted program (GO term)"), html.Th("scope"),
                                           html.Th("feature", className="text-end"),
                                           html.Th("r", className="text-end"),
                                           html.Th("rank", className="text-end")])),
                       html.Tbody(rows)], size="sm", className="mb-0 small")
    return html.Div([head, html.Div(table, style={"maxHeight": "260px", "overflowY": "auto"})])
