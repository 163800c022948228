"""How many CPU threads torch may use.

Measured on a 2-core machine, SAE training (5,000 cells, 50 → 200…10,000 latents; 256 → 12,800):
with OpenMP's default busy-waiting, 2 threads were 1.1–2× faster than 1 on an idle machine but
2.2–4× slower when another process kept one core busy (up to 17× for the demo's SAE under heavy
load). With ``OMP_WAIT_POLICY=PASSIVE`` (set by ``import core`` before torch loads) 2 threads were
as fast as 1 under load and 1.1–2.2× faster when idle. So: all cores (up to 8) when waits are
passive; otherwise one thread on machines with ≤ 2 cores; always one for small layers, where a
second thread gains nothing. ``FEATURELENS_THREADS=N`` (or ``--threads N`` on the CLI) overrides.
The choice depends only on the machine, the environment and the layer size.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from core.base.errors import InputError

__all__ = ["ENV", "passive_waits", "machine_threads", "auto_threads", "torch_threads", "set_threads_override"]

ENV = "FEATURELENS_THREADS"
MAX_THREADS = 8


_pinned: list[int] = []  # set by torch_threads(): inner automatic choices keep it


def _override() -> int | None:
    if _pinned:
        return _pinned[-1]
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"{ENV} must be a whole number of threads, at least 1 (got {raw!r})",
                         fix=f"unset {ENV} for the automatic choice, or set e.g. {ENV}=2")
    return n


def passive_waits() -> bool:
    """True when idle OpenMP threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def machine_threads() -> int:
    """The override, else the cores up to 8 (1 on ≤ 2 cores when OpenMP threads spin)."""
    n = _override()
    if n is not None:
        return n
    cores = os.cpu_count() or 1
    if cores <= 2 and not passive_waits():
        return 1
    return min(cores, MAX_THREADS)


def auto_threads(*, weights: int, small: int) -> int:
    """Threads for a model whose largest layer has ``weights`` parameters: 1 below ``small``
    (unless overridden), else :func:`machine_threads`."""
    n = _override()
    if n is not None:
        return n
    return 1 if weights < small else machine_threads()


def set_threads_override(n: int | None) -> None:
    """The CLI's ``--threads N``: validated, then used by every later automatic choice."""
    if n is None:
        return
    if n < 1:
        raise InputError(f"--threads must be at least 1 (got {n})")
    os.environ[ENV] = str(int(n))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run the block with ``n`` torch threads (automatic choices inside it keep ``n``); the previous
    setting is restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    n = max(1, int(n))
    torch.set_num_threads(n)
    _pinned.append(n)
    try:
        yield torch.get_num_threads()
    finally:
        _pinned.pop()
        torch.set_num_threads(previous)
