"""Start background-job processes from a fork server, not by forking the threaded app.

Dash's DiskcacheManager starts every job with ``fork()`` from the app process, which serves
requests in threads. A fork copies the memory of every thread but keeps only the calling one:
a lock that another thread held at that moment stays locked forever in the child. With
several sessions at once this happens — e.g. another request thread inside SQLite (the
job cache: the child then hangs in ``sqlite3Malloc`` when it opens its cache connection),
reading an ``.h5ad`` (h5py's global lock) or importing a module — and the job hangs without
a word while its process looks alive: an endless spinner, the result lost.

:class:`ForkServerJobs` starts each job from a *fork server* instead: one single-threaded
helper process, started once, that has already imported the app's modules and forks a job
process on request (``multiprocess``' ``forkserver`` start method; the job function and its
arguments travel pickled with dill). A job starts as fast as with a plain fork, and no lock of
a request thread can leak into it. Where the start method is not available (Windows), jobs
are started as before. The fork server is started once per process with that process's
environment and modules: set ``FEATURELENS_*`` variables before the first job.

Job processes run at a lower CPU priority (:data:`JOB_NICENESS`) than the server, so a page stays
responsive while a job computes on the same cores (e.g. the UMAP job a first Explorer opening
starts, whose numba compile would otherwise hold up the page's own drawing).
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Iterable

__all__ = ["ForkServerJobs", "job_context", "preload_modules", "run_niced", "START_METHOD", "JOB_NICENESS"]

START_METHOD = "forkserver"
JOB_NICENESS = 5
_ctx_lock = threading.Lock()
_ctx: Any = None


def preload_modules(names: Iterable[str] | None = None) -> list[str]:
    """What the fork server imports before forking: the app's own modules the server has loaded
    (``app``, ``callbacks.*``, ``components.*``, ``core.*``), so a job starts with them imported."""
    names = list(sys.modules) if names is None else list(names)
    ours = ("app", "callbacks", "components", "core")
    return sorted(n for n in names if n.partition(".")[0] in ours and n != "__main__")


def job_context(*, modules: Iterable[str] | None = None):
    """The ``multiprocess`` context that starts job processes (created once per process).

    ``modules``: what the fork server imports first (default: :func:`preload_modules`).
    Returns the default (fork) context where ``forkserver`` does not exist.
    """
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            import multiprocess

            if START_METHOD not in multiprocess.get_all_start_methods():  # pragma: no cover - Windows
                _ctx = multiprocess.get_context()
            else:
                ctx = multiprocess.get_context(START_METHOD)
                ctx.set_forkserver_preload(preload_modules(modules))
                _ctx = ctx
        return _ctx


def run_niced(job_fn, *args) -> None:
    """Run ``job_fn(*args)`` in this (job) process at :data:`JOB_NICENESS` below its priority."""
    if hasattr(os, "nice"):
        try:
            os.nice(JOB_NICENESS)
        except OSError:  # pragma: no cover - not allowed here: run at the same priority
            pass
    job_fn(*args)


class ForkServerJobs:
    """Mixin for ``dash.DiskcacheManager``: each job process comes from the fork server.

    Same contract as the manager's own ``call_job_fn`` (returns the job's process id, which
    ``job_running`` / ``terminate_job`` use); the job is a child of the fork server, which
    reaps it when it ends.
    """

    def call_job_fn(self, key, job_fn, args, context):
        ctx = job_context()
        process = ctx.Process(target=run_niced, args=(job_fn, key, self._make_progress_key(key), args, context),
                              daemon=False)
        process.start()
        return process.pid

    # The fork server reaps a finished job at once, so its process can vanish between two looks
    # of the manager (``pid_exists`` then ``Process(pid)``); Dash would answer that poll with an
    # error 500 after having read and deleted the result: the job's result would be lost.
    def job_running(self, job):
        import psutil

        try:
            return super().job_running(job)
        except psutil.NoSuchProcess:
            return False

    def terminate_job(self, job):
        import psutil

        try:
            super().terminate_job(job)
        except psutil.NoSuchProcess:
            pass  # it has ended by itself meanwhile

    @staticmethod
    def warm_up(*, wait: bool = False) -> threading.Thread | None:
        """Start the fork server now, in a thread (it imports the app's modules first), so that
        the first job does not wait for it. Call it once every callback module is imported."""
        ctx = job_context()
        if ctx.get_start_method() != START_METHOD:  # pragma: no cover - no fork server here
            return None
        thread = threading.Thread(target=_start_no_op_job, args=(ctx,), name="featurelens-forkserver", daemon=True)
        thread.start()
        if wait:
            thread.join()
        return thread


def _start_no_op_job(ctx) -> None:
    """Fork one job that does nothing: returns once the fork server has imported its modules."""
    process = ctx.Process(target=int)
    process.start()
    process.join()
