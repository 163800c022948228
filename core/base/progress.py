"""Progress and cancel callables shared by the CLI and the app.

Long-running core functions take ``progress(done, total, message)`` and ``should_stop()``.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

__all__ = ["Progress", "ShouldStop", "ProgressBar", "no_progress", "never_stop", "Cancelled"]

Progress = Callable[[float, float, str], None]
ShouldStop = Callable[[], bool]


class Cancelled(Exception):
    """Raised inside a core function when ``should_stop()`` returned True."""


def no_progress(done: float, total: float, message: str = "") -> None:  # noqa: ARG001
    return None


def never_stop() -> bool:
    return False


class ProgressBar:
    """A text progress bar for the terminal: ``bar(done, total, message)``; redraws at most 10×/s."""

    def __init__(self, label: str = "", *, stream: TextIO | None = None, width: int = 30):
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self._last = 0.0
        self._start = time.monotonic()

    def __call__(self, done: float, total: float, message: str = "") -> None:
        now = time.monotonic()
        final = total and done >= total
        if not final and now - self._last < 0.1:
            return
        self._last = now
        frac = min(1.0, done / total) if total else 0.0
        filled = int(round(frac * self.width))
        bar = "█" * filled + "·" * (self.width - filled)
        elapsed = now - self._start
        line = f"\r{self.label} {bar} {frac * 100:5.1f}%  {elapsed:6.1f}s  {message}"
        self.stream.write(line[:160].ljust(80))
        if final:
            self.stream.write("\n")
        self.stream.flush()
