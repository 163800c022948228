"""FeatureLens web app: ``python app.py`` or ``featurelens serve`` (http://127.0.0.1:8050).

Background callbacks run in one of two managers:

- default: Dash's ``DiskcacheManager`` (each job a subprocess of the app; nothing to start);
- ``FEATURELENS_BROKER_URL=redis://…`` set: Dash's ``CeleryManager`` on :data:`celery_app`; jobs
  are queued in Redis and run by ``featurelens worker`` processes, which import this module
  and register the same callbacks (:func:`create_app`), so any number of app processes can
  share one pool of workers.

Both managers are wrapped so that a job whose process or worker died (killed, out of memory,
machine lost) ends its callback and opens the app-wide alert (``ids.JOBS_ALERT``) instead of
leaving a spinner forever, and so that identical jobs running at once do not share one
result slot (see :class:`ReliableJobs`).
"""
from __future__ import annotations

import os

# Before numba/umap can be imported anywhere: the default threading layer can die silently
# inside forked background jobs.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

import hashlib  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import dash  # noqa: E402
import dash_bootstrap_components as dbc  # noqa: E402, F401  (registers the components)
from dash import dcc, html  # noqa: E402

from components import ids, jobs_status, shell  # noqa: E402
from core.runtime import jobs  # noqa: E402
from core.runtime.fork_server import ForkServerJobs  # noqa: E402
from core.store.catalog import list_sources  # noqa: E402
from core.base.paths import REPO_ROOT  # noqa: E402

MAX_UPLOAD_BYTES = int(os.environ.get("FEATURELENS_MAX_UPLOAD_MB", "500")) * 1024 * 1024

#: The Celery app of the background jobs when ``FEATURELENS_BROKER_URL`` is set (else None);
#: ``featurelens worker`` runs a worker for it.
celery_app = jobs.make_celery(jobs.broker_url()) if jobs.broker_url() else None


# ----------------------------------------------------------------------------- reliable jobs
class ReliableJobs:
    """Mixin for a Dash background manager: unique job keys, and a job that died is reported.

    1. Dash keys a job's result by a hash of the callback's source and arguments. Two identical
       jobs running at once (two users or tabs, or two app processes sharing one Redis) then
       share one result slot: the first poll reads and deletes it and the other job never
       finishes. Without result caching (``cache_by`` unset, as here) each job gets its own key.
    2. Dash polls a job until its result appears; if the job's process or worker dies first,
       Dash sees "not running, no result", treats it like a cancelled job and ends the callback
       with no update and no message (Diskcache), or — with Celery when the whole worker is
       gone — keeps polling a task that stays ``STARTED`` forever. Here :meth:`lost_reason`
       recognises those cases; the poll then ends the callback and a side update opens the
       app-wide alert (``ids.JOBS_ALERT``) with the reason. Cancelled jobs are not reported.
    """

    def build_cache_key(self, fn, args, cache_args_to_ignore, triggered):
        key = super().build_cache_key(fn, args, cache_args_to_ignore, triggered)
        if self.cache_by is None:
            key = hashlib.sha256(f"{key}:{uuid.uuid4().hex}".encode()).hexdigest()
        return key

    def lost_reason(self, job) -> str | None:  # pragma: no cover - overridden
        """Why ``job`` can no longer finish (its process or worker died), or None."""
        raise NotImplementedError

    def _state(self, name: str) -> dict:
        if not hasattr(self, "_job_state"):
            self._job_state = {"lost_by_key": {}, "dead": {}}
        return self._job_state[name]

    def dead_reason(self, job) -> str | None:
        """:meth:`lost_reason`, remembered once given: a dead job stays dead."""
        dead = self._state("dead")
        if job not in dead:
            reason = self.lost_reason(job)
            if not reason:
                return None
            dead[job] = reason
        return dead[job]

    def get_result(self, key, job):
        result = super().get_result(key, job)
        if result is self.UNDEFINED and job is not None and not self.job_running(job):
            result = super().get_result(key, job)  # it may have finished between the two looks
            if result is self.UNDEFINED and (reason := self.dead_reason(job)):
                self._state("lost_by_key")[key] = reason
        return result

    def get_updated_props(self, key):
        props = super().get_updated_props(key)
        reason = self._state("lost_by_key").pop(key, None)
        if reason:
            props = {**props, ids.JOBS_ALERT: {"children": reason, "is_open": True}}
        return props


LOST_ADVICE = "Results written before it stopped are kept; start it again."


class LocalJobManager(ForkServerJobs, ReliableJobs, dash.DiskcacheManager):
    """Diskcache jobs (started from a fork server, see core.runtime.fork_server) that say so when their process dies."""

    def _mark(self, job) -> str:
        return f"featurelens-terminated-{job}"

    def terminate_job(self, job):
        if job is not None:
            self.handle.set(self._mark(job), True, expire=24 * 3600)
        super().terminate_job(job)

    def lost_reason(self, job) -> str | None:
        if super().job_running(job) or self.handle.get(self._mark(job)):
            return None
        return (f"A background job stopped without finishing: its process ({job}) ended unexpectedly "
                f"(killed, or out of memory). {LOST_ADVICE}")


class WorkerJobManager(ReliableJobs, dash.CeleryManager):
    """Celery jobs that say so when their worker dies or when no worker is connected."""

    RUNNING = ("PENDING", "RECEIVED", "STARTED", "RETRY", "PROGRESS")
    PING_TTL_S = 3.0          # reuse a worker-liveness answer this long
    NO_WORKER_GRACE_S = 10.0  # a queued job with no worker connected this long is given up

    def __init__(self, celery, *, where: str, **kwargs):
        super().__init__(celery, **kwargs)
        self.where = where
        self._alive: dict[str, tuple[float, bool]] = {}
        self._no_worker_since: dict[str, float] = {}

    def _ping(self, hostname: str | None) -> bool:
        """Whether the worker ``hostname`` (or any worker, for None) answers a ping; cached briefly."""
        name = hostname or "*"
        now = time.monotonic()
        cached = self._alive.get(name)
        if cached and now - cached[0] < self.PING_TTL_S:
            return cached[1]
        try:
            kwargs = {"destination": [hostname]} if hostname else {}
            alive = bool(self.handle.control.ping(timeout=1.0, limit=1, **kwargs))
        except Exception:  # noqa: BLE001 - broker trouble: do not declare jobs lost
            alive = True
        self._alive[name] = (time.monotonic(), alive)
        return alive

    def lost_reason(self, job) -> str | None:
        meta = self.handle.backend.get_task_meta(job)  # one snapshot: status and result/info agree
        status, result = meta.get("status"), meta.get("result")
        if status == "FAILURE":
            return (f"A background job stopped without finishing: its worker process died "
                    f"({type(result).__name__}: {result}). {LOST_ADVICE}")
        if status == "STARTED":
            info = result if isinstance(result, dict) else {}
            host = info.get("hostname")
            if host and not self._ping(host):
                return (f"A background job stopped without finishing: its worker {host} (process "
                        f"{info.get('pid')}) no longer answers (stopped, killed or out of memory). "
                        f"Start `featurelens worker` again if none is running. {LOST_ADVICE}")
            return None
        if status == "PENDING":
            if self._ping(None):
                self._no_worker_since.pop(job, None)
                return None
            since = self._no_worker_since.setdefault(job, time.monotonic())
            if time.monotonic() - since < self.NO_WORKER_GRACE_S:
                return None
            self._no_worker_since.pop(job, None)
            self.handle.control.revoke(job)  # a worker started later must not run it unseen
            return (f"No background worker is connected to {self.where}, so the job could not start. "
                    "Start one with `featurelens worker` (same FEATURELENS_BROKER_URL), then run it again.")
        return None  # SUCCESS (result read), REVOKED (cancelled)

    def job_running(self, job):
        if not job or self.get_task(job).status not in self.RUNNING:
            return False
        return self.dead_reason(job) is None


def background_manager():
    """The background-callback manager: Celery on Redis if ``FEATURELENS_BROKER_URL`` is set, else Diskcache.

    Raises :class:`core.base.errors.InputError` when the URL is set but Redis does not answer.
    """
    global celery_app
    url = jobs.broker_url()
    if url:
        jobs.check_broker(url)
        if celery_app is None or celery_app.conf.broker_url != url:
            celery_app = jobs.make_celery(url)
        return WorkerJobManager(celery_app, where=f"Redis at {jobs.redact_url(url)}")
    import diskcache

    cache_dir = Path(os.environ.get("FEATURELENS_CACHE_DIR", REPO_ROOT / ".cache" / "jobs"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    return LocalJobManager(diskcache.Cache(str(cache_dir)))


def jobs_where(manager) -> str:
    if isinstance(manager, WorkerJobManager):
        return f"{manager.where}, run by featurelens workers"
    return "in subprocesses of this app (set FEATURELENS_BROKER_URL to use Redis workers)"


def create_app(*, default_analysis: str | None = None) -> dash.Dash:
    """Build the Dash app. ``default_analysis``: a folder name in the analyses folder to preselect."""
    from callbacks import register_all

    manager = background_manager()
    app = dash.Dash(
        __name__,
        title="FeatureLens",
        assets_folder=str(REPO_ROOT / "assets"),
        background_callback_manager=manager,
        suppress_callback_exceptions=True,
    )
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    options = list_sources()
    default = None
    if default_analysis:
        name = Path(default_analysis).name
        default = next((o["value"] for o in options if o["value"] == f"analysis:{name}"), None)
    if default is None and options:
        default = options[0]["value"]
    where = jobs_where(manager)

    def layout() -> html.Div:
        # A function, so every page load lists the analyses and files created since the server started.
        return html.Div([
            jobs_status.lost_job_alert(),
            shell.root_layout(options=list_sources(), default_source=default),
            # cells lassoed in the Explorer and carried to the Steering page (≤ 5,000 indices; this tab only)
            dcc.Store(id=ids.STORE_CELLS, storage_type="session"),
            jobs_status.jobs_footer(where=where),
        ])

    app.layout = layout
    register_all()
    if isinstance(manager, ForkServerJobs):
        manager.warm_up()  # the fork server imports the callback modules loaded by now
    return app


if __name__ == "__main__":
    from core.cli.serve import run_server  # waitress, as `featurelens serve`

    run_server(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8050")))
