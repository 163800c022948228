"""Numba's parallel kernels called from several threads of one process.

The app serves requests in threads, and several of them may run statistics at once (feature
cards, DE of a selection, steering). Numba's ``workqueue`` threading layer — the one that
survives ``fork``, which the background jobs need (see app.py) — aborts the whole process
when two threads enter parallel regions at the same time ("Concurrent access has been
detected"). :func:`one_at_a_time` wraps a ``@njit(parallel=True)`` kernel so that one thread per
process runs such a kernel at a time (each kernel still uses every core). The lock is made
anew in a forked child: a job forked while another thread held it would otherwise wait forever.
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Callable, TypeVar

__all__ = ["one_at_a_time", "kernel_lock"]

F = TypeVar("F", bound=Callable)
_lock = threading.RLock()


def _new_lock_in_child() -> None:
    global _lock
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def kernel_lock() -> threading.RLock:
    """The process-wide kernel lock (a fresh one in a forked child): hold it to keep kernels out."""
    return _lock


def one_at_a_time(kernel: F) -> F:
    """``kernel`` (a numba parallel dispatcher), run under the process-wide kernel lock.

    Call it from Python only (not from other jitted code); ``.kernel`` is the dispatcher itself.
    """
    @functools.wraps(kernel, updated=())
    def run(*args, **kwargs):
        with _lock:
            return kernel(*args, **kwargs)

    run.kernel = kernel
    return run  # type: ignore[return-value]
