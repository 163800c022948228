"""A reusable panel for one background job: start button, cancel button, a running badge, a
progress bar with its message, and an alert area for the outcome.

How a page uses it (the steering and simulation pages do the same as the data page):

1. IDs: add one prefix to ``components/ids.py`` under the page's section, e.g.
   ``STEER_RUN_JOB = "steer-run"``; :class:`JobIds` derives every ID from it
   (``steer-run-start``, ``steer-run-cancel``, ``steer-run-bar``, …).
2. Layout (``components/<page>.py``)::

       from .job_panel import JobIds, job_panel
       RUN = JobIds(ids.STEER_RUN_JOB)
       ... job_panel(RUN, start_label="Run steering", help="Takes about a minute.") ...

3. Callback (``callbacks/<page>.py``), with :func:`callbacks.jobs.register_job`::

       from callbacks.jobs import register_job, success_alert

       def run_steering(progress, feature, cells):          # plain function: unit-test it directly
           result = core.steer(..., progress=progress)        # progress(done, total, message)
           return success_alert(f"{result.n_genes} genes changed"), figure_of(result)

       register_job(RUN, run_steering, outputs=[Output(ids.STEER_VOLCANO, "figure")],
                    states=[State(ids.STEER_FEATURE, "value"), State(ids.STEER_CELLS, "data")])

   The function's first return value goes to the panel's alert, the rest to ``outputs``. A
   raised :class:`core.base.errors.InputError` (or any exception) becomes a red alert in place and
   leaves every other output untouched; the cancel button kills the job (Dash's ``cancel=``)
   and nothing it was writing is committed (analysis steps are atomic).
"""
from __future__ import annotations

from dataclasses import dataclass

import dash_bootstrap_components as dbc
from dash import html

__all__ = ["JobIds", "job_panel", "job_alert", "RUNNING_STYLE", "IDLE_STYLE"]

RUNNING_STYLE = {"display": "block"}
IDLE_STYLE = {"display": "none"}


@dataclass(frozen=True)
class JobIds:
    """Every component ID of one job panel, derived from ``prefix`` (``<page>-<job>``)."""

    prefix: str

    @property
    def start(self) -> str:
        return f"{self.prefix}-start"

    @property
    def cancel(self) -> str:
        return f"{self.prefix}-cancel"

    @property
    def status(self) -> str:
        return f"{self.prefix}-status"

    @property
    def progress_box(self) -> str:
        return f"{self.prefix}-progress-box"

    @property
    def bar(self) -> str:
        return f"{self.prefix}-bar"

    @property
    def message(self) -> str:
        return f"{self.prefix}-message"

    @property
    def alert(self) -> str:
        return f"{self.prefix}-alert"

    def all(self) -> list[str]:
        return [self.start, self.cancel, self.status, self.progress_box, self.bar, self.message, self.alert]


def job_panel(job: JobIds, *, start_label: str, help: str | None = None, disabled: bool = False,  # noqa: A002
              color: str = "primary", alert=None, live=None) -> html.Div:
    """The panel. ``disabled``: start button disabled (e.g. a prerequisite is missing);
    ``alert``: initial content of the alert area; ``live``: components shown under the bar
    only while the job runs (e.g. a live chart fed by ``register_job(live_outputs=...)``)."""
    return html.Div([
        html.Div([
            dbc.Button(start_label, id=job.start, color=color, disabled=disabled, n_clicks=0),
            dbc.Button("Cancel", id=job.cancel, color="secondary", outline=True, disabled=True, n_clicks=0,
                       className="ms-2", title="Stop the job; nothing it was writing is kept"),
            html.Span("", id=job.status, className="ms-3 small text-primary fw-semibold", role="status"),
        ], className="d-flex align-items-center flex-wrap"),
        html.Small(help, className="text-muted d-block mt-1") if help else None,
        html.Div([
            dbc.Progress(id=job.bar, value=0, label="", striped=True, animated=True, className="mt-2",
                         style={"height": "1.25rem"}),
            html.Small("", id=job.message, className="text-muted d-block mt-1"),
            live,
        ], id=job.progress_box, style=IDLE_STYLE),
        html.Div(alert, id=job.alert, className="mt-2"),
    ], className="job-panel")


def job_alert(message: str, *, fix: str | None = None, color: str = "danger", title: str | None = None) -> dbc.Alert:
    """An outcome alert: ``color`` danger (error), success, info (cancelled) or warning."""
    body = []
    if title:
        body.append(html.Strong(title + " "))
    body.append(html.Span(message))
    if fix:
        body.append(html.Div(["Fix: ", fix], className="mt-1 small"))
    return dbc.Alert(body, color=color, className="mb-0 py-2", dismissable=color != "danger")


def exception_alert(exc: Exception, *, what: str = "", margin: str = "mb-2") -> dbc.Alert:
    """An in-place alert for ``exc``: a FeatureLensError's message and fix (warning), or
    'unexpected' with the error text (danger; the caller logs the traceback)."""
    from core.base.errors import FeatureLensError

    title = [html.Strong(what + " ")] if what else []
    if isinstance(exc, FeatureLensError):
        fix = [html.Div(f"Fix: {exc.fix}", className="mt-1")] if exc.fix else []
        return dbc.Alert(title + [exc.message] + fix, color="warning", className=f"py-2 {margin}")
    return dbc.Alert(title + [f"Unexpected error ({type(exc).__name__}: {exc}). "
                              "The rest of the page still works; please report this."],
                     color="danger", className=f"py-2 {margin}")
