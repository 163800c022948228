"""Background jobs beyond one process: the Redis broker, the Celery app, and a job-health probe.

The app runs heavy work as Dash background callbacks. By default they run in subprocesses of
the app (Diskcache, nothing to start). When ``FEATURELENS_BROKER_URL`` holds a Redis URL, they
are queued in Redis and run by ``featurelens worker`` processes, on this machine or others that
share the analyses folder; several app processes can share one pool of workers.

This module knows nothing about Dash: ``app.py`` wraps the Celery app made here in Dash's
``CeleryManager``.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from core.base.errors import InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress

__all__ = [
    "BROKER_ENV", "broker_url", "redact_url", "check_broker", "make_celery", "JobProbe", "probe_job",
    "MAX_PROBE_HOLD_S",
]

BROKER_ENV = "FEATURELENS_BROKER_URL"
SCHEMES = ("redis", "rediss", "unix")
MAX_PROBE_HOLD_S = 600.0


def broker_url(environ: dict | None = None) -> str | None:
    """The Redis URL in ``FEATURELENS_BROKER_URL``, or None when background jobs stay local."""
    value = (environ if environ is not None else os.environ).get(BROKER_ENV, "").strip()
    return value or None


def redact_url(url: str) -> str:
    """``redis://:secret@host:6379/0`` -> ``redis://***@host:6379/0`` (for messages and the UI)."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def check_broker(url: str, *, timeout: float = 2.0) -> None:
    """Refuse a malformed URL or a Redis that does not answer PING within ``timeout`` seconds."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise InputError(f"{BROKER_ENV}={redact_url(url)!r} is not a Redis URL",
                         fix="use e.g. redis://127.0.0.1:6379/0, or unset it to run jobs inside the app")
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - a dependency
        raise InputError("the `redis` package is missing", fix="pip install 'celery[redis]' redis") from exc
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        client.ping()
        client.close()
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        raise InputError(
            f"cannot reach Redis at {redact_url(url)} ({BROKER_ENV}): {exc}",
            fix="start it (`redis-server`, Debian package redis-server; `make redis` installs it), "
                f"correct the URL, or unset {BROKER_ENV} to run jobs inside the app",
        ) from exc


def make_celery(url: str, *, name: str = "featurelens"):
    """A Celery app whose broker and result store are the Redis at ``url``.

    Settings chosen for long, few jobs: one job prefetched per worker process (so a free
    process never waits behind a busy one), ``STARTED`` recorded (so the app can tell a job
    that is running from one that is queued, and notice when its worker died), results kept
    one day.
    """
    from celery import Celery

    app = Celery(name, broker=url, backend=url)
    app.conf.update(
        task_track_started=True,
        worker_prefetch_multiplier=1,
        task_acks_late=False,
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    return app


@dataclass(frozen=True)
class JobProbe:
    """Who ran a probe job and how long it took (see :func:`probe_job`)."""

    hostname: str
    pid: int
    started: float      # time.time() when the job body began
    held_s: float
    cancelled: bool

    def to_dict(self) -> dict:
        return {"hostname": self.hostname, "pid": self.pid, "started": self.started, "held_s": self.held_s,
                "cancelled": self.cancelled}


def probe_job(*, hold_s: float = 0.0, progress: Progress = no_progress, should_stop: ShouldStop = never_stop,
              step_s: float = 0.1) -> JobProbe:
    """The body of the app's "check background jobs" job: report the process that ran it.

    ``hold_s`` keeps the job busy that long (in ``step_s`` steps, reporting progress and
    honouring ``should_stop``), to watch a job's progress, cancel it, or stop its worker.
    """
    if not 0 <= hold_s <= MAX_PROBE_HOLD_S:
        raise InputError(f"hold_s must be between 0 and {MAX_PROBE_HOLD_S:g} s (got {hold_s})")
    t0 = time.time()
    cancelled = False
    while (held := time.time() - t0) < hold_s:
        if should_stop():
            cancelled = True
            break
        progress(held, hold_s, f"holding {held:.1f} / {hold_s:g} s")
        time.sleep(min(step_s, hold_s - held))
    held = time.time() - t0
    progress(hold_s, hold_s, "done")
    return JobProbe(hostname=socket.gethostname(), pid=os.getpid(), started=t0, held_s=held, cancelled=cancelled)
