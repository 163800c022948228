"""Where FeatureLens finds shipped data, user data and analyses; refuses paths outside them.

:func:`confine` resolves a name inside the configured folders (the app's picker uses it for
every source). :func:`user_path` is what loaders call on a path a user typed: with
``FEATURELENS_CONFINE=1`` (set by ``featurelens serve --host`` on a non-loopback address) it
must lie inside the data, shipped or analyses folders; otherwise any readable path is allowed,
as on the command line.
"""
from __future__ import annotations

import os
from pathlib import Path

from core.base.errors import InputError

__all__ = ["REPO_ROOT", "SHIPPED_DATA_DIR", "data_dir", "analyses_dir", "confine", "confined", "user_path",
           "check_path"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DATA_DIR = REPO_ROOT / "data"
MAX_NAME_BYTES = 255     # one path component (ext4, APFS, NTFS)
MAX_PATH_BYTES = 4096    # Linux PATH_MAX


def data_dir() -> Path:
    """The user's data folder (``FEATURELENS_DATA_DIR``, default ``./data``)."""
    return Path(os.environ.get("FEATURELENS_DATA_DIR", SHIPPED_DATA_DIR)).resolve()


def analyses_dir() -> Path:
    """Where the app lists and creates analyses (``FEATURELENS_ANALYSES_DIR``, default ``./analyses``)."""
    return Path(os.environ.get("FEATURELENS_ANALYSES_DIR", REPO_ROOT / "analyses")).resolve()


def _short(text: str, width: int = 80) -> str:
    return text if len(text) <= width else f"{text[:50]}…{text[-20:]}"


def check_path(path: str | os.PathLike) -> Path:
    """``Path(path)``, or an InputError for text no file system accepts (NUL byte, names too long)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    reason = None
    if not text:
        reason = "it is empty"
    elif "\x00" in text:
        reason = "it contains a NUL character"
    elif len(text.encode(errors="surrogateescape")) > MAX_PATH_BYTES:
        reason = f"it is longer than {MAX_PATH_BYTES} bytes"
    elif any(len(part.encode(errors="surrogateescape")) > MAX_NAME_BYTES for part in Path(text).parts):
        reason = f"a file or folder name in it is longer than {MAX_NAME_BYTES} bytes"
    if reason:
        raise InputError(f"invalid path {_short(text)!r}: {reason}", fix="choose an existing file by a normal name")
    return Path(text)


def confine(path: str | os.PathLike, *, roots: list[Path]) -> Path:
    """Resolve ``path`` (relative to the first root) and refuse it unless it lies inside a root.

    Symbolic links are followed first, so a link inside a root that points outside is refused.
    """
    p = check_path(path)
    try:
        resolved = (p if p.is_absolute() else roots[0] / p).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable folder
        raise InputError(f"invalid path {_short(str(path))!r}: {exc}") from None
    for root in roots:
        root = root.resolve()
        if resolved == root or root in resolved.parents:
            return resolved
    env = "FEATURELENS_ANALYSES_DIR" if roots[0].resolve() == analyses_dir() else "FEATURELENS_DATA_DIR"
    raise InputError(
        f"path {_short(str(path))!r} is outside the allowed folders",
        fix=f"put it in {roots[0]} (set {env} to use another folder)",
    )


def confined() -> bool:
    """True when user paths must stay inside the configured folders (``FEATURELENS_CONFINE=1``)."""
    return os.environ.get("FEATURELENS_CONFINE", "").strip().lower() in ("1", "true", "yes", "on")


def user_path(path: str | os.PathLike, *, kind: str = "data") -> Path:
    """A path a user gave (relative to the current folder), checked; confined when :func:`confined`.

    ``kind``: ``"data"`` (datasets, metadata, gene sets, decoders: the data, shipped and analyses
    folders, since analyses keep copies of their data) or ``"analysis"`` (the analyses folder).
    """
    p = check_path(path)
    if not confined():
        return p
    roots = [analyses_dir()] if kind == "analysis" else [data_dir(), SHIPPED_DATA_DIR, analyses_dir()]
    confine(p if p.is_absolute() else Path.cwd() / p, roots=roots)
    return p

