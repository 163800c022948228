"""The job-health check in the footer: one tiny background job through the app's job manager.

With ``FEATURELENS_BROKER_URL`` set it is queued in Redis and run by a ``featurelens worker``,
so a click answers "are the workers running, and which one took my job?".
"""
from __future__ import annotations

from dash import Input, Output, State, callback, no_update

from components import ids
from components.jobs_status import probe_result
from core.base.errors import InputError
from core.runtime.jobs import broker_url, probe_job


def manager_label() -> str:
    """Where this process's background jobs run, in words (read in the process running the job)."""
    return "Redis (a featurelens worker)" if broker_url() else "a subprocess of the app (Diskcache)"


def check_jobs(set_progress, n_clicks, hold_s):
    """Background job: report the process that ran it (``hold_s`` keeps it busy, see core.runtime.jobs.probe_job)."""
    if not n_clicks:
        return no_update
    try:
        hold = float(hold_s or 0)
        probe = probe_job(hold_s=hold, progress=lambda done, total, msg: set_progress(msg))
    except (InputError, TypeError, ValueError) as exc:
        return str(exc)
    set_progress("")
    return probe_result(probe.to_dict(), manager=manager_label())


callback(
    Output(ids.JOBS_CHECK_RESULT, "children"),
    Input(ids.JOBS_CHECK_BUTTON, "n_clicks"),
    State(ids.JOBS_CHECK_HOLD, "data"),
    background=True,
    progress=[Output(ids.JOBS_CHECK_PROGRESS, "children")],
    running=[(Output(ids.JOBS_CHECK_BUTTON, "disabled"), True, False)],
    prevent_initial_call=True,
)(check_jobs)
