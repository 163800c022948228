"""App-wide background-job pieces: the alert for a job that died, and the job-health footer."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from . import ids


def lost_job_alert() -> dbc.Alert:
    """Hidden until a background job's process or worker dies; the manager then fills and opens it."""
    return dbc.Alert(id=ids.JOBS_ALERT, is_open=False, color="danger", dismissable=True,
                     className="m-3", style={"whiteSpace": "pre-wrap"})


def jobs_footer(*, where: str) -> html.Footer:
    """``Background jobs: <where> [Check]``: one click runs a tiny job through the same machinery."""
    return html.Footer(dbc.Container([
        html.Span(f"Background jobs: {where}", className="me-2"),
        dbc.Button("Check", id=ids.JOBS_CHECK_BUTTON, size="sm", color="secondary", outline=True,
                   className="py-0", title="Run a tiny job in the background and report which process ran it"),
        dcc.Store(id=ids.JOBS_CHECK_HOLD, data=0),
        html.Span(id=ids.JOBS_CHECK_PROGRESS, className="ms-2"),
        html.Span(id=ids.JOBS_CHECK_RESULT, className="ms-2"),
    ], fluid=True), id=ids.JOBS_FOOTER, className="text-muted small border-top mt-4 py-2")


def probe_result(probe: dict, *, manager: str) -> html.Span:
    """One line: which process ran the probe job (see ``core.runtime.jobs.JobProbe``)."""
    if probe.get("cancelled"):
        return html.Span("check cancelled", className="text-warning")
    held = f", held {probe['held_s']:.1f} s" if probe.get("held_s", 0) >= 0.05 else ""
    return html.Span(f"OK: the job ran on {probe['hostname']} (process {probe['pid']}) via {manager}{held}",
                     className="text-success")
