"""Callbacks of the Simulation lab page: the recovery job, the stored runs, the planted-concept score.

Both jobs are background callbacks (:func:`callbacks.jobs.register_job`); they write to disk
(:mod:`core.views.simulation`: a run folder committed only when complete; the planted score as an analysis
step), and the page reads what is on disk, so a reload or a second tab loses nothing and a failed
or cancelled job leaves earlier results as they were.
"""
from __future__ import annotations

# Jobs run in processes forked from this server: import their heavy modules once, here, at start-up
# (a job forked while another thread is half-way through an import would wait on its lock forever).
import core.views.simulation  # noqa: F401
import core.simulate.experiments  # noqa: F401  (torch, the SAE code)
import core.demo.planted  # noqa: F401
import core.simulate.report  # noqa: F401
import sklearn.decomposition  # noqa: F401
import sklearn.linear_model  # noqa: F401
from dash import Input, Output, State, callback, no_update

from components import ids
from components.job_panel import job_alert
from components.simulation_page import PLANTED, RUN, no_run_message, planted_view, run_error, run_options, run_view
from core.base.errors import FeatureLensError, InputError
from core.views.simulation import SimLabConfig, list_runs, load_run, planted_analyses, planted_score_for, read_planted_score, run_simlab

from .jobs import register_job, success_alert


def _whole(value, *, label: str, default: int) -> int:
    """A form number: blank → ``default``; text or a fraction → InputError (the range is checked by the config)."""
    if value in (None, ""):
        return default
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{label} must be a whole number (got {value!r})") from None
    if x != x or x != int(x):
        raise InputError(f"{label} must be a whole number (got {value!r})")
    return int(x)


def config_from_form(cells, genes, seed, epochs) -> SimLabConfig:
    d = SimLabConfig()
    return SimLabConfig(n_cells=_whole(cells, label="cells", default=d.n_cells),
                        n_genes=_whole(genes, label="genes", default=d.n_genes),
                        seed=_whole(seed, label="seed", default=d.seed),
                        sae_epochs=_whole(epochs, label="SAE epochs", default=d.sae_epochs))


# ----------------------------------------------------------------------------- recovery runs
def recovery_job(progress, cells, genes, seed, epochs):
    """Generate the small simulation and run the recovery experiment; the new run is listed and shown."""
    config = config_from_form(cells, genes, seed, epochs)
    run = run_simlab(config, progress=progress)
    if run.reused:
        alert = job_alert("These settings were run before; showing the stored run. Change the seed or a size "
                          "for a new one.", color="info", title="Reused.")
    else:
        sae = run.best_r["sae"]
        best = ", ".join(f"{str(v).replace(chr(39) * 2, '″')} {x:.2f}" for v, x in sae.items())
        alert = success_alert(f"Best |r| of an SAE feature: {best} ({run.elapsed_s.get('total', 0):.0f} s).",
                              title="Run finished.")
    return alert, run_options(list_runs()), run.run_id


def show_run(run_id):
    """The stored run's tables, figure and findings (an alert in place when it cannot be read)."""
    if not run_id:
        return no_run_message()
    try:
        return run_view(load_run(run_id))
    except FeatureLensError as exc:
        return run_error(exc)


def refresh_runs(_n_clicks):
    return run_options(list_runs())


def write_url(run_id, search):
    """``?run=<id>`` in the URL (other keys kept), so a reload shows the same run."""
    from urllib.parse import urlencode

    from callbacks.shell import parse_query

    params = parse_query(search)
    if run_id:
        params["run"] = run_id
    else:
        params.pop("run", None)
    new = "?" + urlencode(params) if params else ""
    return no_update if new == (search or "") else new


# ----------------------------------------------------------------------------- planted score
def show_planted(name):
    """``(body, start disabled)`` for analysis ``name``: its stored score, or what to do."""
    if not name:
        return planted_view(None, None), True
    info = next((a for a in planted_analyses() if a["name"] == name), None)
    if info is None:
        return job_alert(f"{name} is not an analysis of the simulated demo dataset (any more).",
                         fix="press ↻ in the source picker or reload the page", color="warning"), True
    try:
        score = read_planted_score(name) if info["scored"] else None
    except FeatureLensError as exc:
        return job_alert(exc.message, fix=exc.fix), True
    return planted_view(name, score, annotated=info["annotated"]), not info["annotated"]


def planted_job(progress, name):
    """Compute (or reuse) the planted-concept score and store it in the analysis."""
    if not name:
        raise InputError("no analysis chosen", fix="choose an analysis built from the simulated demo dataset")
    score = planted_score_for(name, progress=progress)
    return (success_alert(f"{score['n_found']} of {score['n_programs']} planted programs found.",
                          title="Scored."), planted_view(name, score))


# ----------------------------------------------------------------------------- wiring
register_job(RUN, recovery_job,
             outputs=[Output(ids.SIM_RUNS, "options", allow_duplicate=True),
                      Output(ids.SIM_RUNS, "value", allow_duplicate=True)],
             states=[State(ids.SIM_CELLS, "value"), State(ids.SIM_GENES, "value"), State(ids.SIM_SEED, "value"),
                     State(ids.SIM_EPOCHS, "value")],
             running=[(Output(ids.SIM_RUNS_REFRESH, "disabled"), True, False)])
register_job(PLANTED, planted_job,
             outputs=[Output(ids.SIM_PLANTED_BODY, "children", allow_duplicate=True)],
             states=[State(ids.SIM_PLANTED_ANALYSIS, "value")],
             running=[(Output(ids.SIM_PLANTED_ANALYSIS, "disabled"), True, False)])
callback(Output(ids.SIM_RESULTS, "children"), Input(ids.SIM_RUNS, "value"))(show_run)
callback(Output(ids.SIM_RUNS, "options"), Input(ids.SIM_RUNS_REFRESH, "n_clicks"),
         prevent_initial_call=True)(refresh_runs)
callback(Output(ids.URL, "search", allow_duplicate=True), Input(ids.SIM_RUNS, "value"), State(ids.URL, "search"),
         prevent_initial_call=True)(write_url)
callback(Output(ids.SIM_PLANTED_BODY, "children"), Output(PLANTED.start, "disabled"),
         Input(ids.SIM_PLANTED_ANALYSIS, "value"))(show_planted)
