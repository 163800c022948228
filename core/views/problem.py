"""Why a page cannot show its source: the alert a page's data carries instead of raising."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PageProblem", "error_text"]


@dataclass(frozen=True)
class PageProblem:
    """An alert's bold ``title``, its ``text`` (what to do), and ``level``: ``info``, ``warning`` or
    ``danger`` (Bootstrap's alert colours)."""
    title: str
    text: str
    level: str


def error_text(exc) -> str:
    """A FeatureLensError's message, and its fix when it has one."""
    return exc.message + (f" Fix: {exc.fix}" if exc.fix else "")
