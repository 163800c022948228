"""Atomic file I/O: every write goes to a temporary name in the same folder, then renames.

A reader therefore sees either the old file or the new one, never half of either.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = [
    "atomic_path",
    "write_bytes",
    "write_json",
    "read_json",
    "write_parquet",
    "read_parquet",
    "write_npz_sparse",
    "read_npz_sparse",
    "write_torch_state",
    "read_torch_state",
    "content_hash",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    return write_bytes(path, text.encode())


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_parquet(path: str | os.PathLike, df) -> Path:
    return _atomic_write(path, lambda tmp: df.to_parquet(tmp, index=True))


def read_parquet(path: str | os.PathLike):
    import pandas as pd

    return pd.read_parquet(path)


def write_npz_sparse(path: str | os.PathLike, matrix) -> Path:
    """Save a scipy sparse matrix (cells × features) as ``.npz``."""
    import scipy.sparse as sp

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # file handle: numpy must not append ".npz"
            sp.save_npz(fh, sp.csr_matrix(matrix), compressed=True)

    return _atomic_write(path, _write)


def read_npz_sparse(path: str | os.PathLike):
    import scipy.sparse as sp

    return sp.load_npz(path).tocsr()


def write_torch_state(path: str | os.PathLike, state: dict) -> Path:
    import torch

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)

    return _atomic_write(path, _write)


def read_torch_state(path: str | os.PathLike) -> dict:
    """Load a state dict safely: tensors and plain containers only, never pickled code."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def content_hash(*parts: Any) -> str:
    """A stable SHA-256 hex digest of JSON-able parts, numpy arrays and files (``Path``)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            h.update(f"ndarray:{arr.dtype.str}:{arr.shape}".encode())
            h.update(arr.tobytes())
        elif isinstance(part, Path):
            h.update(b"file:")
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        else:
            h.update(json.dumps(part, sort_keys=True, default=_json_default).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
