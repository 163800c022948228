"""Background jobs behind :mod:`components.job_panel`: register, report progress, turn errors into alerts.

``register_job(job, fn, outputs=[...], states=[...])`` registers a Dash background callback
(``background=True`` with ``running=``, ``progress=`` and ``cancel=``) started by the panel's
button. ``fn(progress, *state_values)`` is a plain function: ``progress`` is a
:class:`JobProgress` (core's ``progress(done, total, message)`` signature); it returns
``(alert, *output_values)``. See :mod:`components.job_panel` for a full example.

A job whose process dies (killed, out of memory) cannot answer: the app's job manager ends
its callback and opens the app-wide alert (``ids.JOBS_ALERT``, see ``app.ReliableJobs``);
:func:`register_job` also repeats that message in the panel of the job that died, next to
its (again usable) start button.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from dash import Input, Output, State, callback, clientside_callback, no_update
from dash.exceptions import PreventUpdate

from components import ids
from components.job_panel import IDLE_STYLE, RUNNING_STYLE, JobIds, job_alert
from core.base.errors import FeatureLensError
from core.base.progress import Cancelled

__all__ = ["JobProgress", "run_job", "register_job", "success_alert", "error_alert", "cancelled_alert",
           "POLL_MS"]

log = logging.getLogger("featurelens.jobs")
POLL_MS = 500  # how often the browser asks for progress


def success_alert(message: str, *, title: str = "Done.") -> Any:
    return job_alert(message, color="success", title=title)


def error_alert(message: str, fix: str | None = None) -> Any:
    return job_alert(message, fix=fix, color="danger", title="Error:")


def cancelled_alert() -> Any:
    return job_alert("The job was cancelled. Nothing it was writing was kept; earlier results are unchanged.",
                     color="info", title="Cancelled.")


class JobProgress:
    """Adapts Dash's ``set_progress`` to ``progress(done, total, message)``, at most every ``min_interval`` s.

    Sends ``(percent, "NN %", message, *extras)``: ``extras`` are the values of the page's own
    live outputs (e.g. a live chart). A job sets ``progress.live = lambda: (figure,)`` to build
    them only when a message is actually sent (figures are costly), or assigns
    ``progress.extras``; :meth:`push` sends at once.
    """

    def __init__(self, set_progress: Callable[[tuple], None] | None, *, extras: Sequence = (),
                 min_interval: float = 0.3, clock: Callable[[], float] = time.monotonic):
        self._set = set_progress
        self.extras = tuple(extras)
        self.live: Callable[[], tuple] | None = None
        self._min = min_interval
        self._clock = clock
        self._last = -float("inf")
        self.percent = 0.0
        self.message = ""
        self.sent = 0

    def __call__(self, done: float, total: float, message: str = "") -> None:
        self.percent = max(0.0, min(100.0, 100.0 * done / total)) if total else 0.0
        self.message = message
        if self._clock() - self._last >= self._min or (total and done >= total):
            self.push()

    def push(self) -> None:
        self._last = self._clock()
        if self._set is None:
            return
        self.sent += 1
        if self.live is not None:
            self.extras = tuple(self.live())
        self._set((round(self.percent, 1), f"{self.percent:.0f} %", self.message, *self.extras))


def run_job(fn: Callable[..., Sequence], progress: JobProgress, values: Sequence, *, n_outputs: int) -> tuple:
    """``fn(progress, *values)`` → ``(alert, *outputs)``; on any error ``(error alert, no_update × n_outputs)``."""
    try:
        out = tuple(fn(progress, *values))
    except FeatureLensError as exc:
        return (error_alert(exc.message, exc.fix), *[no_update] * n_outputs)
    except Cancelled:
        return (cancelled_alert(), *[no_update] * n_outputs)
    except Exception as exc:  # noqa: BLE001 - an unexpected failure must become an alert, not a blank page
        log.exception("background job %s failed", getattr(fn, "__name__", fn))
        return (error_alert(f"unexpected {type(exc).__name__}: {exc}",
                            "nothing was changed; the details are in the server log. Please report this."),
                *[no_update] * n_outputs)
    if len(out) != n_outputs + 1:
        raise ValueError(f"{fn.__name__} returned {len(out)} values for {n_outputs + 1} outputs")
    return out


def register_job(job: JobIds, fn: Callable[..., Sequence], *, outputs: Sequence[Output] = (), states: Sequence = (),
                 live_outputs: Sequence[tuple[Output, Any]] = (), running: Sequence[tuple[Output, Any, Any]] = (),
                 interval_ms: int = POLL_MS) -> None:
    """Register ``fn`` as the background callback of ``job``'s start button.

    ``outputs``: where ``fn``'s values after the alert go; ``states``: its inputs (read when the
    button is pressed). ``live_outputs``: ``(Output, value when idle)`` pairs updated while the job
    runs from ``progress.extras`` (put them inside the panel's progress box: they are reset to
    the idle value when the job ends). ``running``: ``(Output, value while running, value after)`` for other components to
    disable meanwhile.
    """
    n = len(outputs)

    def background(set_progress, n_clicks, *values):
        if not n_clicks:
            raise PreventUpdate
        progress = JobProgress(set_progress, extras=[idle for _, idle in live_outputs])
        progress(0, 1, "starting…")
        return run_job(fn, progress, values, n_outputs=n)

    background.__name__ = f"job_{job.prefix.replace('-', '_')}"
    callback(
        Output(job.alert, "children"), *outputs,
        Input(job.start, "n_clicks"), *states,
        background=True,
        running=[(Output(job.start, "disabled"), True, False),
                 (Output(job.cancel, "disabled"), False, True),
                 (Output(job.status, "children"), "Running…", ""),
                 (Output(job.progress_box, "style"), RUNNING_STYLE, IDLE_STYLE),
                 *running],
        progress=[Output(job.bar, "value"), Output(job.bar, "label"), Output(job.message, "children"),
                  *[o for o, _ in live_outputs]],
        progress_default=[0, "", "", *[idle for _, idle in live_outputs]],
        cancel=[Input(job.cancel, "n_clicks")],
        interval=interval_ms,
        prevent_initial_call=True,
    )(background)
    # Say so in place when the user cancels (the job process is killed; it cannot answer itself).
    callback(Output(job.alert, "children", allow_duplicate=True), Input(job.cancel, "n_clicks"),
             prevent_initial_call=True)(_on_cancel)
    # Say so in place when the job's process died: the manager's side update opens the app-wide
    # alert, then the panel's running state ends (Dash applies them in that order).
    clientside_callback(LOST_IN_PANEL_JS, Output(job.alert, "children", allow_duplicate=True),
                        Input(ids.JOBS_ALERT, "children"), Input(job.status, "children"),
                        State(ids.JOBS_ALERT, "is_open"), prevent_initial_call=True)


#: Clientside: remember a freshly opened lost-job message; the panel whose running state ends
#: within 3 s of it (the job that died; other panels' jobs are still running) shows it too.
LOST_IN_PANEL_JS = f"""
function(lost, status, isOpen) {{
    const nc = window.dash_clientside.no_update;
    const trig = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
    const now = Date.now();
    const seen = window.__featurelensLostJob = window.__featurelensLostJob || {{msg: null, at: 0, used: true}};
    if (trig.includes('{ids.JOBS_ALERT}.children') && isOpen && lost
            && (seen.msg !== lost || (seen.used && now - seen.at > 3000))) {{
        Object.assign(seen, {{msg: lost, at: now, used: false}});
    }}
    const ended = trig.some(p => p.endsWith('.children') && !p.startsWith('{ids.JOBS_ALERT}.')) && !status;
    if (!ended || seen.used || !seen.msg || now - seen.at > 3000) {{ return nc; }}
    seen.used = true;
    return {{type: 'Alert', namespace: 'dash_bootstrap_components',
             props: {{color: 'danger', className: 'mb-0 py-2', children: [
                 {{type: 'Strong', namespace: 'dash_html_components', props: {{children: 'Error: '}}}},
                 {{type: 'Span', namespace: 'dash_html_components', props: {{children: String(seen.msg)}}}}]}}}};
}}
"""


def _on_cancel(n_clicks):
    if not n_clicks:
        raise PreventUpdate
    return cancelled_alert()
