"""Where FeatureLens finds shipped data, user data and analyses; refuses paths outside them."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

__all__ = ["REPO_ROOT", "SHIPPED_DATA_DIR", "data_dir", "analyses_dir", "confine"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DATA_DIR = REPO_ROOT / "data"


def data_dir() -> Path:
    """The user's data folder (``FEATURELENS_DATA_DIR``, default ``./data``)."""
    return Path(os.environ.get("FEATURELENS_DATA_DIR", SHIPPED_DATA_DIR)).resolve()


def analyses_dir() -> Path:
    """Where the app lists and creates analyses (``FEATURELENS_ANALYSES_DIR``, default ``./analyses``)."""
    return Path(os.environ.get("FEATURELENS_ANALYSES_DIR", REPO_ROOT / "analyses")).resolve()


def confine(path: str | os.PathLike, *, roots: list[Path]) -> Path:
    """Resolve ``path`` (relative to the first root) and refuse it unless it lies inside a root."""
    p = Path(path)
    resolved = (p if p.is_absolute() else roots[0] / p).resolve()
    for root in roots:
        root = root.resolve()
        if resolved == root or root in resolved.parents:
            return resolved
    raise InputError(
        f"path {str(path)!r} is outside the allowed folders",
        fix=f"put the file in {roots[0]} (set FEATURELENS_DATA_DIR to use another folder)",
    )
