"""Callbacks of the Steering page. Each is a plain function of plain values (unit-tested without a
browser); the wiring is at the end.

The experiment runs as a background job (:func:`run_steering`, registered with
:func:`callbacks.jobs.register_job`): it builds a :class:`core.steer.SteerRequest` from the form,
calls :func:`core.steer.steer_into_analysis` (steer, store the run in the analysis) and returns only its id, into
``ids.STEER_SHOWN``. Everything shown is then read back from the analysis folder
(:func:`show_run`), so a reload, a second tab or a click in the history shows the same run; a
failed or cancelled job changes nothing that is shown.
"""
from __future__ import annotations

# Jobs run in processes forked from this server: import their heavy modules here, once, at start
# (a job forked while a request thread is half-way through an import would wait on its lock).
import core.annotate.enrich  # noqa: F401
import core.annotate.expression  # noqa: F401
import core.model.api  # noqa: F401
import core.model.vae  # noqa: F401  (torch)
import core.model.embeddings  # noqa: F401
import core.model.multiomics  # noqa: F401
import core.model.predict  # noqa: F401
import core.sae  # noqa: F401
import core.steer.glm  # noqa: F401

import logging
import time
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import Input, Output, State, callback, dcc, html, no_update
from dash.exceptions import PreventUpdate

from components import ids
from components.figures import (compare_shift_figure, dose_response_figure, empty_figure, latent_figure, selected_cells,
                                latent_shift_figure, nearest_type_figure, term_dose_figure, toward_dose_figure,
                                volcano_figure)
from components.steering_page import (EXPERIMENT, RUN, TARGET_HELP, TOWARD_RANK, TOWARD_RUN, explorer_mode_option,
                                      feature_option)
from core.views import explorer
from components.job_panel import exception_alert
from core.store.analysis import Analysis
from core.store.catalog import analysis_source_path
from core.base.errors import FeatureLensError
from core.steer import (SteeringResult, SteerRequest, list_experiments, list_steering_runs, load_experiment,
                        load_steering_run, rank_toward, run_experiment, save_experiment, steer_into_analysis,
                        steer_toward, steering_context)
from core.steer.request import feature_ids
from core.views.steering import (cell_type_choices, compare_shift, compare_terms, experiment_line, experiment_request,
                                 experiment_rows, feature_choices, largest_changes, latent_axes, load_any_run,
                                 run_choices, run_form, top_terms, toward_choice, toward_rows, verdict_rows)

from .jobs import register_job, success_alert

log = logging.getLogger(__name__)

AMIGO_URL = "https://amigo.geneontology.org/amigo/term/{}"
FEATURE_SEARCH_LIMIT = 100   # options returned for a typed search
LATENT_HEIGHT = 520
HIDDEN, SHOWN = {"display": "none"}, {"display": "block"}


# ----------------------------------------------------------------------------- helpers
def open_analysis(source: str | None) -> Analysis:
    """The analysis of an ``analysis:NAME`` source, freshly read from disk."""
    return Analysis.open(analysis_source_path(source))


def _alert(exc: Exception, *, what: str = "") -> dbc.Alert:
    if not isinstance(exc, FeatureLensError):
        log.exception("steering page callback failed")
    return exception_alert(exc, what=what, margin="mb-0")


# ----------------------------------------------------------------------------- the form
def steering_request(features, cell_mode, cell_types, lasso, target_kind, factor, percentile, error_term,
                     test, mean_type=None, mean_factor=None, value=None, carried=None) -> SteerRequest:
    """Form values → a :class:`~core.steer.request.SteerRequest` (InputError saying what to fix).

    ``lasso``: cell indices lassoed on this page; ``carried``: those selected in the Explorer (the
    cells of ``ids.STORE_CELLS`` when it belongs to this analysis, else None)."""
    return SteerRequest.from_form(features=features, cell_mode=cell_mode, cell_types=cell_types, lasso=lasso,
                                  carried=carried, target_kind=target_kind, factor=factor, percentile=percentile,
                                  mean_type=mean_type, mean_factor=mean_factor, value=value, error_term=error_term,
                                  test=test)


def target_controls(kind):
    """Styles of the factor slider, percentile slider, cell-type-mean box and value box; help text."""
    kind = kind if kind in TARGET_HELP else "max"
    return (SHOWN if kind == "factor" else HIDDEN, SHOWN if kind == "percentile" else HIDDEN,
            SHOWN if kind == "mean" else HIDDEN, SHOWN if kind == "value" else HIDDEN, TARGET_HELP[kind])


def carried_cells(selection, source) -> list[int] | None:
    """The cell indices of ``ids.STORE_CELLS`` if they were selected in the Explorer on ``source``."""
    selection = selection or {}
    return selection.get("cells") if selection.get("source") == source and selection.get("cells") else None


def cell_mode_options(source, selection, options):
    """The cell choices with 'cells selected in the Explorer' labelled (N cells) or disabled."""
    option = explorer_mode_option(selection, source=source)
    return [option if o.get("value") == "explorer" else o for o in options or []]


def cell_controls(mode, lasso, types, selection=None, source=None):
    """Cell-type box style and the help line under the cell choice."""
    if mode == "explorer":
        n = len(carried_cells(selection, source) or [])
        text = (f"The {n:,} cells lassoed in the Explorer's latent space." if n else
                "No cells were carried from the Explorer for this analysis: lasso cells in the Explorer's latent "
                "space, then press “Steer in these cells” under the reverse lookup.")
        return HIDDEN, text
    if mode == "lasso":
        n = len(lasso or [])
        text = (f"{n:,} cells lassoed in the latent view." if n else
                "Draw a lasso around cells in the latent view (lasso tool, top right of the plot).")
        return HIDDEN, text
    if mode == "all":
        return HIDDEN, "Every cell of the data (a random 5,000 when there are more)."
    chosen = ", ".join(types or [])
    return SHOWN, f"Cells of: {chosen}." if chosen else "Choose the cell types whose cells are steered."


def store_lasso(selected):
    """The cell indices of a lasso/box selection in the latent view (:func:`components.figures.selected_cells`)."""
    return selected_cells(selected)


def feature_options(search, value, source):
    """Dropdown options: the chosen features, then live features matching ``search`` (number or term)."""
    chosen = feature_ids(value) if value else []
    try:
        choices = feature_choices(open_analysis(source))
    except FeatureLensError:
        return no_update
    keep = choices[choices["feature"].isin(chosen)]
    q = (search or "").strip().lower()
    if not q:
        if not chosen:
            raise PreventUpdate
        rest = choices.head(0)
    elif q.isdigit():
        rest = choices[choices["feature"].astype(str).str.startswith(q)]
    else:
        rest = choices[choices["label"].str.lower().str.contains(q, regex=False)]
    rest = rest[~rest["feature"].isin(chosen)].head(FEATURE_SEARCH_LIMIT)
    return [feature_option(r) for _, r in keep.iterrows()] + [feature_option(r) for _, r in rest.iterrows()]


# ----------------------------------------------------------------------------- the job
def run_steering(progress, source, features, cell_mode, cell_types, lasso, target_kind, factor, percentile,
                 error_term, test, mean_type=None, mean_factor=None, value=None, selection=None):
    """Background job: steer, store the run, return (alert, the shown-run store). ``selection``: the
    cells carried from the Explorer (``ids.STORE_CELLS``)."""
    request = steering_request(features, cell_mode, cell_types, lasso, target_kind, factor, percentile, error_term,
                               test, mean_type, mean_factor, value, carried_cells(selection, source))
    analysis = open_analysis(source)
    t0 = time.perf_counter()
    result = steer_into_analysis(analysis, request, progress=progress)
    store_axes(analysis)
    s = result.summary()
    took = time.perf_counter() - t0
    return (success_alert(f"{s['n_up']} genes up, {s['n_down']} down in {s['n_cells']:,} cells "
                          f"({took:.1f} s). Run {result.run_id}."),
            {"run_id": result.run_id, "features": list(request.features), "at": time.time()})


def store_axes(analysis: Analysis) -> None:
    """Store the latent view's axes after a run (in the job: it has the embedding in memory)."""
    try:
        latent_axes(Analysis.open(analysis.path), embedding=steering_context(analysis).embedding, persist=True)
    except FeatureLensError as exc:  # the run is saved; only its latent view will be missing
        log.warning("latent axes of %s not stored: %s", analysis.path, exc.message)


# ----------------------------------------------------------------------------- dose–response experiment
def mode_controls(mode):
    """Styles of the target section, the one-run panel, the experiment settings and its panel."""
    sweep = mode == "experiment"
    return (HIDDEN if sweep else SHOWN, HIDDEN if sweep else SHOWN, SHOWN if sweep else HIDDEN,
            SHOWN if sweep else HIDDEN)


def run_sweep(progress, source, features, cell_mode, cell_types, lasso, error_term, test, strengths, controls,
              terms=None, selection=None):
    """Background job: the form's feature and cells swept at ``strengths`` with ``controls`` of each
    kind, its ``terms`` (text) as the hypotheses, stored as one experiment; returns (alert, the
    shown-experiment store, the tab to show)."""
    request = steering_request(features, cell_mode, cell_types, lasso, "max", None, None, error_term, test,
                               carried=carried_cells(selection, source))
    experiment = experiment_request(request, strengths=strengths, controls=controls, terms=terms)
    analysis = open_analysis(source)
    t0 = time.perf_counter()
    result = run_experiment(analysis, experiment, progress=progress)
    eid = save_experiment(analysis, result)
    s = result.summary()
    return (success_alert(f"{len(result.runs)} runs in {s['n_cells']:,} cells ({time.perf_counter() - t0:.1f} s): "
                          f"{s['n_specific_hypotheses']} of {s['n_hypotheses']} hypotheses and {s['n_specific']} of "
                          f"{s['n_terms']} terms specific. Experiment {eid}."),
            {"experiment_id": eid, "at": time.time()}, "experiment")


def pick_experiment(analysis: Analysis, shown: dict | None) -> str | None:
    """The experiment to show: the store's, else the newest of the analysis (None without one)."""
    if (shown or {}).get("experiment_id"):
        return str(shown["experiment_id"])
    stored = list_experiments(analysis)
    return str(stored["experiment_id"].iloc[-1]) if len(stored) else None


def show_experiment(shown, source):
    """Summary, changed genes / term scores / shift toward each type against strength, verdict rows."""
    blank = empty_figure("no experiment shown yet: choose “dose–response with controls” above", height=300)
    try:
        analysis = open_analysis(source)
        eid = pick_experiment(analysis, shown)
        result = load_experiment(analysis, eid) if eid else None
    except Exception as exc:  # noqa: BLE001 - shown in place
        return _alert(exc, what="This experiment cannot be shown:"), blank, blank, blank, []
    if result is None:
        return "No experiment yet.", blank, blank, blank, []
    c = result.conditions
    ref = result.experiment.reference
    changed = dose_response_figure(c, column="n_changed", title=f"Changed genes (controls at {ref:g}×)")
    terms = term_dose_figure(result.terms, wanted=top_terms(result, n=5), title="Top up-regulated terms")
    toward = toward_dose_figure(c, title="Shift toward each cell type")
    line = [html.Span(experiment_line(result)), html.Small(f"  experiment {eid}", className="text-muted")]
    return line, changed, terms, toward, verdict_rows(result)


def experiment_history(shown, source):
    """Rows of the stored-experiments table (newest first) and its note."""
    try:
        analysis = open_analysis(source)
        rows = experiment_rows(analysis)
        current = pick_experiment(analysis, shown)
    except Exception as exc:  # noqa: BLE001
        return [], _alert(exc, what="Experiments:")
    if not rows:
        return [], "No experiment in this analysis yet."
    return rows, f"{len(rows)} experiment{'s' if len(rows) != 1 else ''} stored; showing {current}"


def pick_experiment_row(cell):
    """A click in the stored-experiments table → show that experiment."""
    eid = (cell or {}).get("rowId")
    if not eid:
        raise PreventUpdate
    return {"experiment_id": str(eid), "at": time.time()}


# ----------------------------------------------------------------------------- toward a cell type
def _toward_note(ranking: pd.DataFrame, toward: str) -> str:
    best = ranking.iloc[0]
    return (f"{len(ranking):,} live features ranked; best: feature {int(best['feature'])}, which brings the cells "
            f"{float(best['progress']):.0%} closer to the centre of {toward}.")


def rank_toward_job(progress, source, type_a, type_b):
    """Background job: rank the features that move cells of ``type_a`` toward ``type_b``."""
    cells, toward = toward_choice(type_a, type_b)
    progress(0, 1, "loading the SAE and ranking every live feature…")
    ranking = rank_toward(open_analysis(source), cells=cells, toward=toward)
    progress(1, 1, "ranked")
    return success_alert(_toward_note(ranking, toward), title="Ranked."), toward_rows(ranking),         _toward_note(ranking, toward)


def run_toward_job(progress, source, type_a, type_b):
    """Background job: rank, steer the best feature in the cells of ``type_a`` and store the run;
    returns (alert, the shown-run store, ranking rows, note)."""
    cells, toward = toward_choice(type_a, type_b)
    analysis = open_analysis(source)
    res = steer_toward(analysis, cells=cells, toward=toward, progress=progress)
    store_axes(analysis)
    s = res.result.summary()
    return (success_alert(f"Feature {res.feature} steered in {s['n_cells']:,} cells of {type_a}: {s['n_up']} genes "
                          f"up, {s['n_down']} down. Run {res.result.run_id} (shown above)."),
            {"run_id": res.result.run_id, "features": [res.feature], "at": time.time()},
            toward_rows(res.ranking), _toward_note(res.ranking, toward))


# ----------------------------------------------------------------------------- compare two runs
def compare_options(shown, exp_shown, source):
    """The stored runs (plain and experiments') for both pickers; refreshed after every run."""
    try:
        options = run_choices(open_analysis(source))
    except FeatureLensError:
        return no_update, no_update
    return options, options


def _short(key: str) -> str:
    return key.split(":", 1)[1].replace(":", " · ") if ":" in key else key


def _compare_volcano(result: SteeringResult, key: str, side: str):
    de = result.de
    fig = volcano_figure(de, fold_col="log2fc", q_col="qvalue", significant_col="significant", label_col="gene",
                         title=f"{side}: {_short(key)} · {int(de['significant'].sum())} genes changed", height=360)
    fig.update_layout(xaxis_title="log2 fold change (steered vs normal)")
    return fig


def compare_runs(key_a, key_b, source):
    """Alert, volcano A, volcano B, term rows (scores in both), shift toward each type; a missing or
    unknown run → an alert with the fix, the figures shown before are kept."""
    if not key_a or not key_b:
        return (dbc.Alert("Choose two stored runs, A and B (plain runs, or an experiment's runs such as the "
                          "feature at 1× and a control).", color="info", className="py-2 small"),
                *[no_update] * 4)
    try:
        analysis = open_analysis(source)
        a, b = load_any_run(analysis, key_a), load_any_run(analysis, key_b)
    except Exception as exc:  # noqa: BLE001 - shown in place
        return (_alert(exc, what="These runs cannot be compared:"), *[no_update] * 4)
    terms = compare_terms(a, b)
    rows = terms.replace([np.inf, -np.inf], np.nan).round(2).astype(object)
    shift = compare_shift(a, b)
    note = None if key_a != key_b else dbc.Alert("A and B are the same run.", color="warning", className="py-2 small")
    return (note, _compare_volcano(a, key_a, "A"), _compare_volcano(b, key_b, "B"),
            rows.where(pd.notna(rows), None).to_dict("records"),
            compare_shift_figure(shift, label_a="A", label_b="B", title="A vs B: closer to each type's centre"))


# ----------------------------------------------------------------------------- showing a run
def pick_run(analysis: Analysis, shown: dict | None) -> str | None:
    """The run to show: the store's ``run_id``; else the newest run of the store's features (if any
    are given) or the newest run of the analysis; None when there is none."""
    shown = shown or {}
    if shown.get("run_id"):
        return str(shown["run_id"])
    runs = list_steering_runs(analysis)
    if runs.empty:
        return None
    feats = [int(f) for f in shown.get("features") or []]
    if feats:
        runs = runs[runs["features"] == ",".join(map(str, feats))]
    return str(runs["run_id"].iloc[-1]) if len(runs) else None


def term_link(term_id: str) -> str:
    """Markdown link of a GO id to AmiGO (other ids as plain text)."""
    t = str(term_id)
    return f"[{t}]({AMIGO_URL.format(t)})" if t.startswith("GO:") else t


def terms_rows(table: pd.DataFrame) -> list[dict]:
    if table is None or table.empty:
        return []
    df = table.copy()
    df.insert(0, "term_link", [term_link(t) for t in df["term_id"]])
    df = df.replace([np.inf, -np.inf], np.nan).astype(object)
    return df.where(pd.notna(df), None).to_dict("records")


def _terms_note(table: pd.DataFrame, direction: str) -> str:
    n = 0 if table is None else len(table)
    return f"({n} term{'s' if n != 1 else ''}; sort or filter any column)" if n else f"(none: no {direction} term " \
        "passes p < 0.01)"


def moves_rows(shift: pd.DataFrame) -> list[dict]:
    """From → to nearest-type counts of the cells whose nearest cell-type centre changed."""
    if shift is None or "moved" not in shift or not shift["moved"].any():
        return []
    moved = shift[shift["moved"]]
    counts = moved.groupby(["nearest_before", "nearest_after"], observed=True).size().sort_values(ascending=False)
    return [{"from": str(a), "to": str(b), "cells": int(n)} for (a, b), n in counts.items()]


def summary_line(result: SteeringResult) -> list:
    s = result.summary()
    if len(s["features"]) <= 3:
        feats = "Feature " + ", ".join(f"{f} → {lab} ({t:.3g})"
                                       for f, lab, t in zip(s["features"], s["target_labels"], s["targets"]))
    else:
        shown = ", ".join(map(str, s["features"][:3]))
        labels = sorted(set(s["target_labels"]))
        feats = f"{len(s['features'])} features ({shown}, …) → {labels[0] if len(labels) == 1 else 'their targets'}"
    sub = f" (a random {s['n_cells']:,} of {s['n_selected']:,})" if s["n_selected"] > s["n_cells"] else ""
    parts = [html.Strong(feats), f" in {s['n_cells']:,} cells{sub} ({s['cells']}) · ",
             f"error term {'on' if s['error_term'] else 'off'} · {s['test']}: ",
             html.Strong(f"{s['n_up']} genes up, {s['n_down']} down"), f" of {s['n_genes']:,}"]
    if s["top_up_terms"]:
        parts.append(f" · up: {'; '.join(s['top_up_terms'][:3])}")
    if s["top_down_terms"]:
        parts.append(f" · down: {'; '.join(s['top_down_terms'][:3])}")
    if "cells_moved_type" in s:
        parts.append(f" · {s['cells_moved_type']:,} cells changed their nearest cell type")
    return [html.Span(parts), html.Small(f"  run {result.run_id}", className="text-muted")]


def latent_view(analysis: Analysis, result: SteeringResult | None, *, source: str):
    """The latent view: cells by type (no run shown), or the run's normal → steered shift."""
    data = explorer.explorer_data(analysis.path)
    lat = data.latent()
    if result is None:
        return latent_figure(lat.coords, labels=lat.labels, types=lat.types, names=lat.cell_names,
                             colour_by="celltype", title=f"{data.n_cells:,} cells by cell type · lasso cells to "
                             "steer them", explained=lat.explained, uirevision=source, height=LATENT_HEIGHT)
    axes = latent_axes(analysis)
    before, after = axes.project(result.latent_before), axes.project(result.latent_after)
    shift = float(np.sqrt(((after - before) ** 2).sum(1)).mean()) if result.n_cells else 0.0
    title = (f"{result.n_cells:,} steered cells · mean shift {shift:.3g} on this view "
             f"({float(result.centroid_shift['shift'].mean()):.3g} in the embedding)")
    return latent_shift_figure(lat.coords, labels=lat.labels, types=lat.types, cells=result.cells, before=before,
                               after=after, title=title, uirevision=source, height=LATENT_HEIGHT)


def changes_rows(de: pd.DataFrame) -> list[dict]:
    """Rows of the 'largest changes' table (:func:`core.views.steering.largest_changes`)."""
    df = largest_changes(de, n=10)
    df.insert(0, "arrow", np.where(df["direction"] == "up", "▲", "▼"))
    df["passes"] = np.where(df["significant"], "yes", "no")
    df = df.drop(columns="significant").replace([np.inf, -np.inf], np.nan).astype(object)
    return df.where(pd.notna(df), None).to_dict("records")


def changes_note(n_significant: int, *, n_listed: int, alpha: float, min_abs_log2fc: float):
    """An explanation above the largest changes when no gene passes the thresholds (else None);
    ``n_listed``: rows of the largest-changes table."""
    if n_significant:
        return None
    if not n_listed:
        return dbc.Alert("No gene's expected expression changed at all (every log2 fold change is 0): the cells "
                         "already had this activation, or the change does not reach the expression model.",
                         color="info", className="py-2 mb-2 small")
    fold = f"{2 ** min_abs_log2fc:g}-fold" if min_abs_log2fc else "at all"
    return dbc.Alert(f"No gene changed {fold} (q < {alpha:g}), so the volcano is grey; the largest changes are "
                     "listed below anyway. The Mann–Whitney terms further down capture coordinated shifts of "
                     "many genes that are each too small to pass.", color="info", className="py-2 mb-2 small")


def show_run(shown, source):
    """Summary, latent figure, volcano, largest-changes rows, their note, nearest-type figure, moves rows,
    up rows, up note, down rows, down note, DE export disabled — all read from the run stored in the
    analysis."""
    blank_volcano = empty_figure("no run shown yet: choose features and cells, then Run steering", height=400)
    blank_shift = empty_figure(height=300)
    try:
        analysis = open_analysis(source)
        run_id = pick_run(analysis, shown)
        result = load_steering_run(analysis, run_id) if run_id else None
    except Exception as exc:  # noqa: BLE001 - shown in place
        return (_alert(exc, what="This run cannot be shown:"), _safe_latent(source, None), blank_volcano, [], None,
                blank_shift, [], [], "", [], "", True)
    latent = _safe_latent(source, result, analysis=analysis)
    if result is None:
        return ("No run yet.", latent, blank_volcano, [], None, blank_shift, [], [], "", [], "", True)
    de = result.de
    n_sig = int(de["significant"].sum())
    volcano = volcano_figure(de, fold_col="log2fc", q_col="qvalue", significant_col="significant", label_col="gene",
                             title=f"{n_sig} of {len(de):,} genes changed (q < {result.config.alpha:g}, "
                                   f"|log2 FC| ≥ {result.config.min_abs_log2fc:g})", height=400)
    volcano.update_layout(xaxis_title="log2 fold change (steered vs normal)")
    cs = result.centroid_summary()
    moved = int(result.centroid_shift["moved"].sum()) if "moved" in result.centroid_shift else 0
    shift_fig = nearest_type_figure(cs, title=f"{moved:,} of {result.n_cells:,} cells changed type")
    changes = changes_rows(de)
    note = changes_note(n_sig, n_listed=len(changes), alpha=result.config.alpha,
                        min_abs_log2fc=result.config.min_abs_log2fc)
    return (summary_line(result), latent, volcano, changes, note, shift_fig, moves_rows(result.centroid_shift),
            terms_rows(result.enrichment_up), _terms_note(result.enrichment_up, "up"),
            terms_rows(result.enrichment_down), _terms_note(result.enrichment_down, "down"), False)


def _safe_latent(source, result, *, analysis=None):
    try:
        return latent_view(analysis or open_analysis(source), result, source=source)
    except Exception as exc:  # noqa: BLE001
        msg = exc.message if isinstance(exc, FeatureLensError) else f"unexpected error: {exc}"
        if not isinstance(exc, FeatureLensError):
            log.exception("steering latent view failed")
        return empty_figure(f"the latent space could not be drawn: {msg}", height=LATENT_HEIGHT)


def history_rows(shown, source):
    """Rows of the history table (newest first) and its note."""
    try:
        analysis = open_analysis(source)
        runs = list_steering_runs(analysis)
        current = pick_run(analysis, shown)
    except Exception as exc:  # noqa: BLE001
        return [], _alert(exc, what="History:")
    if runs.empty:
        return [], "No steering run in this analysis yet."
    df = runs.iloc[::-1].copy()
    df["when"] = df["completed"].astype(str).str.replace("T", " ").str.slice(0, 16)
    df["error_term"] = np.where(df["error_term"].astype(bool), "on", "off")
    df = df.astype(object).where(pd.notna(df), None)
    note = f"{len(df)} run{'s' if len(df) != 1 else ''} stored" + (f"; showing {current}" if current else "")
    return df.to_dict("records"), note


def pick_history(cell, rows, source):
    """A click in the history table → show that run and put its settings into the form: the shown-run
    store, then features (value, options), cell mode, cell types, target, factor, percentile,
    cell-type-mean type and factor, value, error term, test."""
    run_id = (cell or {}).get("rowId")
    if not run_id:
        raise PreventUpdate
    row = next((r for r in rows or [] if r.get("run_id") == run_id), {})
    feats = [int(f) for f in str(row.get("features") or "").split(",") if f.strip().isdigit()]
    shown = {"run_id": str(run_id), "features": feats, "at": time.time()}
    try:
        analysis = open_analysis(source)
        form = run_form(analysis, str(run_id), types=cell_type_choices(analysis))
        choices = feature_choices(analysis)
    except FeatureLensError:
        form = None
    if not form:
        return (shown, *[no_update] * 12)
    options = [feature_option(r) for _, r in choices[choices["feature"].isin(form["features"])].iterrows()]
    return (shown, form["features"], options, form.get("cell_mode", no_update), form.get("cell_types", no_update),
            form["target"], form["factor"], form["percentile"], form["mean_type"], form["mean_factor"], form["value"],
            form["error_term"], form["test"])


def export_de(n_clicks, shown, source):
    if not n_clicks:
        raise PreventUpdate
    analysis = open_analysis(source)
    run_id = pick_run(analysis, shown)
    if not run_id:
        raise PreventUpdate
    de = load_steering_run(analysis, run_id).de
    return dcc.send_data_frame(de.to_csv, f"steering_{run_id}_de.csv", index=False)


def write_url(shown, source, search):
    """``?source=…&feature=…&run=…`` of the run shown (other keys kept)."""
    from callbacks.shell import parse_query

    shown = shown or {}
    params = parse_query(search)
    if source:
        params["source"] = source
    if shown.get("features"):
        params["feature"] = ",".join(str(int(f)) for f in shown["features"])
    if shown.get("run_id"):
        params["run"] = str(shown["run_id"])
    new = "?" + urlencode(params)
    return no_update if new == (search or "") else new


# ----------------------------------------------------------------------------- wiring
register_job(RUN, run_steering,
             outputs=[Output(ids.STEER_SHOWN, "data", allow_duplicate=True)],
             states=[State(ids.STEER_SOURCE, "data"), State(ids.STEER_FEATURES, "value"),
                     State(ids.STEER_CELL_MODE, "value"), State(ids.STEER_CELL_TYPES, "value"),
                     State(ids.STEER_LASSO, "data"), State(ids.STEER_TARGET, "value"),
                     State(ids.STEER_FACTOR, "value"), State(ids.STEER_PERCENTILE, "value"),
                     State(ids.STEER_ERROR_TERM, "value"), State(ids.STEER_TEST, "value"),
                     State(ids.STEER_MEAN_TYPE, "value"), State(ids.STEER_MEAN_FACTOR, "value"),
                     State(ids.STEER_VALUE, "value"), State(ids.STORE_CELLS, "data")])
callback(Output(ids.STEER_FACTOR_BOX, "style"), Output(ids.STEER_PERCENTILE_BOX, "style"),
         Output(ids.STEER_MEAN_BOX, "style"), Output(ids.STEER_VALUE_BOX, "style"),
         Output(ids.STEER_TARGET_HELP, "children"), Input(ids.STEER_TARGET, "value"))(target_controls)
callback(Output(ids.STEER_CELL_TYPES_BOX, "style"), Output(ids.STEER_CELL_HELP, "children"),
         Input(ids.STEER_CELL_MODE, "value"), Input(ids.STEER_LASSO, "data"),
         Input(ids.STEER_CELL_TYPES, "value"), Input(ids.STORE_CELLS, "data"),
         State(ids.STEER_SOURCE, "data"))(cell_controls)
callback(Output(ids.STEER_CELL_MODE, "options"), Input(ids.STEER_SOURCE, "data"), Input(ids.STORE_CELLS, "data"),
         State(ids.STEER_CELL_MODE, "options"))(cell_mode_options)
callback(Output(ids.STEER_LASSO, "data"), Input(ids.STEER_LATENT, "selectedData"),
         prevent_initial_call=True)(store_lasso)
callback(Output(ids.STEER_FEATURES, "options"), Input(ids.STEER_FEATURES, "search_value"),
         State(ids.STEER_FEATURES, "value"), State(ids.STEER_SOURCE, "data"),
         prevent_initial_call=True)(feature_options)
callback(Output(ids.STEER_SUMMARY, "children"), Output(ids.STEER_LATENT, "figure"), Output(ids.STEER_VOLCANO, "figure"),
         Output(ids.STEER_CHANGES, "rowData"), Output(ids.STEER_CHANGES_NOTE, "children"), Output(ids.STEER_SHIFT, "figure"), Output(ids.STEER_MOVES, "rowData"), Output(ids.STEER_TERMS_UP, "rowData"),
         Output(ids.STEER_TERMS_UP_NOTE, "children"), Output(ids.STEER_TERMS_DOWN, "rowData"),
         Output(ids.STEER_TERMS_DOWN_NOTE, "children"), Output(ids.STEER_EXPORT_DE, "disabled"),
         Input(ids.STEER_SHOWN, "data"), State(ids.STEER_SOURCE, "data"))(show_run)
callback(Output(ids.STEER_HISTORY, "rowData"), Output(ids.STEER_HISTORY_NOTE, "children"),
         Input(ids.STEER_SHOWN, "data"), State(ids.STEER_SOURCE, "data"))(history_rows)
callback(Output(ids.STEER_SHOWN, "data", allow_duplicate=True), Output(ids.STEER_FEATURES, "value"),
         Output(ids.STEER_FEATURES, "options", allow_duplicate=True), Output(ids.STEER_CELL_MODE, "value"),
         Output(ids.STEER_CELL_TYPES, "value"), Output(ids.STEER_TARGET, "value"), Output(ids.STEER_FACTOR, "value"),
         Output(ids.STEER_PERCENTILE, "value"), Output(ids.STEER_MEAN_TYPE, "value"), Output(ids.STEER_MEAN_FACTOR, "value"),
         Output(ids.STEER_VALUE, "value"), Output(ids.STEER_ERROR_TERM, "value"), Output(ids.STEER_TEST, "value"),
         Input(ids.STEER_HISTORY, "cellClicked"), State(ids.STEER_HISTORY, "rowData"), State(ids.STEER_SOURCE, "data"),
         prevent_initial_call=True)(pick_history)
callback(Output(ids.STEER_DOWNLOAD, "data"), Input(ids.STEER_EXPORT_DE, "n_clicks"), State(ids.STEER_SHOWN, "data"),
         State(ids.STEER_SOURCE, "data"), prevent_initial_call=True)(export_de)
callback(Output(ids.URL, "search", allow_duplicate=True), Input(ids.STEER_SHOWN, "data"),
         State(ids.STEER_SOURCE, "data"), State(ids.URL, "search"), prevent_initial_call=True)(write_url)

register_job(EXPERIMENT, run_sweep,
             outputs=[Output(ids.STEER_EXP_SHOWN, "data", allow_duplicate=True), Output(ids.STEER_LOWER_TABS, "active_tab")],
             states=[State(ids.STEER_SOURCE, "data"), State(ids.STEER_FEATURES, "value"),
                     State(ids.STEER_CELL_MODE, "value"), State(ids.STEER_CELL_TYPES, "value"),
                     State(ids.STEER_LASSO, "data"), State(ids.STEER_ERROR_TERM, "value"),
                     State(ids.STEER_TEST, "value"), State(ids.STEER_EXP_STRENGTHS, "value"),
                     State(ids.STEER_EXP_CONTROLS, "value"), State(ids.STEER_EXP_HYPOTHESES, "value"),
                     State(ids.STORE_CELLS, "data")])
register_job(TOWARD_RANK, rank_toward_job,
             outputs=[Output(ids.STEER_TOWARD_TABLE, "rowData"), Output(ids.STEER_TOWARD_NOTE, "children")],
             states=[State(ids.STEER_SOURCE, "data"), State(ids.STEER_TOWARD_FROM, "value"),
                     State(ids.STEER_TOWARD_TO, "value")])
register_job(TOWARD_RUN, run_toward_job,
             outputs=[Output(ids.STEER_SHOWN, "data", allow_duplicate=True),
                      Output(ids.STEER_TOWARD_TABLE, "rowData", allow_duplicate=True),
                      Output(ids.STEER_TOWARD_NOTE, "children", allow_duplicate=True)],
             states=[State(ids.STEER_SOURCE, "data"), State(ids.STEER_TOWARD_FROM, "value"),
                     State(ids.STEER_TOWARD_TO, "value")])
callback(Output(ids.STEER_TARGET_SECTION, "style"), Output(ids.STEER_RUN_BOX, "style"),
         Output(ids.STEER_EXP_SETTINGS, "style"), Output(ids.STEER_EXP_BOX, "style"),
         Input(ids.STEER_MODE, "value"))(mode_controls)
callback(Output(ids.STEER_EXP_SUMMARY, "children"), Output(ids.STEER_EXP_CHANGED, "figure"),
         Output(ids.STEER_EXP_TERMS, "figure"), Output(ids.STEER_EXP_TOWARD, "figure"),
         Output(ids.STEER_EXP_VERDICTS, "rowData"), Input(ids.STEER_EXP_SHOWN, "data"),
         State(ids.STEER_SOURCE, "data"))(show_experiment)
callback(Output(ids.STEER_EXP_HISTORY, "rowData"), Output(ids.STEER_EXP_HISTORY_NOTE, "children"),
         Input(ids.STEER_EXP_SHOWN, "data"), State(ids.STEER_SOURCE, "data"))(experiment_history)
callback(Output(ids.STEER_EXP_SHOWN, "data", allow_duplicate=True), Input(ids.STEER_EXP_HISTORY, "cellClicked"),
         prevent_initial_call=True)(pick_experiment_row)
callback(Output(ids.STEER_CMP_A, "options"), Output(ids.STEER_CMP_B, "options"), Input(ids.STEER_SHOWN, "data"),
         Input(ids.STEER_EXP_SHOWN, "data"), State(ids.STEER_SOURCE, "data"))(compare_options)
callback(Output(ids.STEER_CMP_ALERT, "children"), Output(ids.STEER_CMP_VOLCANO_A, "figure"),
         Output(ids.STEER_CMP_VOLCANO_B, "figure"), Output(ids.STEER_CMP_TERMS, "rowData"),
         Output(ids.STEER_CMP_SHIFT, "figure"), Input(ids.STEER_CMP_A, "value"), Input(ids.STEER_CMP_B, "value"),
         State(ids.STEER_SOURCE, "data"))(compare_runs)
