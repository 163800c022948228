"""Callbacks of the Trajectories page, each a plain function of plain values (unit-tested without a
browser); the wiring is at the end.

"Find features" is a background job (:func:`find_job`, registered with
:func:`callbacks.jobs.register_job`): ranking by steering loads the SAE (torch) and the analysis's
steering context, seconds on a first call. The table's rows carry each feature's per-stage means
and standard errors, so a click on a row draws its plot without asking the server for data.
"""
from __future__ import annotations

from urllib.parse import urlencode

from dash import Input, Output, State, callback, no_update
from dash.exceptions import PreventUpdate

import core.sae  # noqa: F401  (jobs run in processes forked from this server: import torch here, once)
from components import ids
from components.figures import empty_figure, trajectory_figure
from components.job_panel import job_alert
from components.trajectories_page import FIND, HIDDEN, SHOWN, lineage_text
from core.store.catalog import analysis_source_path
from core.views.trajectories import explorer_link, find_trajectories, findings_summary, trajectory_rows

from .jobs import register_job, success_alert

LINK_SHOWN = {"display": "inline-block", "marginTop": "0.5rem"}
PLOT_HEIGHT = 340


def find_job(progress, source, stages, strict):
    """Background job: the rising features along ``stages`` → (alert, table rows, shown store,
    summary, results style, an empty plot, the card link's style)."""
    findings = find_trajectories(analysis_source_path(source), list(stages or []), strict=bool(strict),
                                 progress=progress)
    rows = trajectory_rows(findings, source=source)
    shown = {"source": source, "lineage": list(findings.lineage), "n_cells": findings.n_cells}
    text = findings_summary(findings, why=False)  # the reason goes into the note below
    alert = success_alert(text, title="Found." if rows else "None found.")
    note = job_alert(findings.shift_note, color="warning", title="No steering ranking:") if findings.shift_note else None
    return (alert, rows, shown, note, SHOWN,
            empty_figure("Click a feature in the table." if rows else "No feature to plot.", height=PLOT_HEIGHT),
            HIDDEN)


def show_feature(cell, rows, shown):
    """A click in the table → (the feature's stage plot, card link text, its href, its style)."""
    fid = (cell or {}).get("rowId")
    row = next((r for r in rows or [] if str(r.get("feature")) == str(fid)), None)
    if row is None or not shown:
        raise PreventUpdate
    stages = shown["lineage"]
    n = [shown.get("n_cells", {}).get(t) for t in stages]
    title = f"Feature {row['feature']}" + (f" · {row['top_terms']}" if row.get("top_terms") else "")
    fig = trajectory_figure(stages, row["mean"], row["se"], n_cells=n, title=title, height=PLOT_HEIGHT)
    return (fig, f"Open feature {row['feature']}'s card in the Explorer →",
            explorer_link(shown["source"], row["feature"]), LINK_SHOWN)


def show_order(stages):
    """The chosen stages as "A → B → C"."""
    return lineage_text(stages)


def write_url(stages, search):
    """The URL's ``?lineage=`` follows the chosen stages (other keys kept)."""
    from callbacks.shell import parse_query

    params = {k: v for k, v in parse_query(search).items() if k != "lineage"}
    if stages:
        params["lineage"] = ",".join(stages)
    new = "?" + urlencode(params) if params else ""
    return no_update if new == (search or "") else new


register_job(FIND, find_job,
             outputs=[Output(ids.TRAJ_TABLE, "rowData"), Output(ids.TRAJ_SHOWN, "data"),
                      Output(ids.TRAJ_SUMMARY, "children"), Output(ids.TRAJ_RESULTS, "style"),
                      Output(ids.TRAJ_PLOT, "figure"), Output(ids.TRAJ_CARD_LINK, "style")],
             states=[State(ids.TRAJ_SOURCE, "data"), State(ids.TRAJ_STAGES, "value"),
                     State(ids.TRAJ_STRICT, "value")])
callback(Output(ids.TRAJ_PLOT, "figure", allow_duplicate=True), Output(ids.TRAJ_CARD_LINK, "children"),
         Output(ids.TRAJ_CARD_LINK, "href"), Output(ids.TRAJ_CARD_LINK, "style", allow_duplicate=True),
         Input(ids.TRAJ_TABLE, "cellClicked"), State(ids.TRAJ_TABLE, "rowData"), State(ids.TRAJ_SHOWN, "data"),
         prevent_initial_call=True)(show_feature)
callback(Output(ids.TRAJ_ORDER, "children"), Input(ids.TRAJ_STAGES, "value"))(show_order)
callback(Output(ids.URL, "search", allow_duplicate=True), Input(ids.TRAJ_STAGES, "value"), State(ids.URL, "search"),
         prevent_initial_call=True)(write_url)
