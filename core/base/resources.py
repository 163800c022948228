"""This process's peak memory, measured so that a parent's memory never counts."""
from __future__ import annotations

import resource

__all__ = ["peak_rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process since it started (MB, 2**20 bytes).

    On Linux this is ``VmHWM`` from ``/proc/self/status``, which starts afresh at ``exec``.
    ``getrusage().ru_maxrss`` does not: a child process carries its parent's resident size at
    the fork into it (measured: a child of a process holding 2 GiB reported ru_maxrss 2.0 GiB,
    VmHWM 10.6 MiB), so it is only the fallback where ``/proc`` is missing.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
