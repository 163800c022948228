"""Per-cell normalisation for the calibrated method: x ↦ log1p(x · median library size / library size).

Library size = the cell's total over all genes (observed counts; for predicted expression, the
decoder's mean counts, whose total is the cell's library size). Scaling to the median keeps the
values on the data's own count scale (scanpy's ``normalize_total`` default), and log1p makes the
t-test's mean comparisons about fold changes rather than about a few large counts. Without it,
random cell sets whose library sizes differ by a few percent get thousands of "significant" genes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from core.base.errors import InputError
from core.base.parallel import one_at_a_time

__all__ = ["library_sizes", "cell_scale", "log_normalise", "detected_matrix", "prepare"]

_ROWS = 2048


def library_sizes(x) -> np.ndarray:
    """Row sums (n_cells,) float64 of a dense/memmap or sparse cells × genes matrix, in row chunks."""
    if sp.issparse(x):
        x = x.tocsc() if x.format not in ("csc", "csr") else x
        if x.format == "csc":
            return np.bincount(x.indices, weights=x.data.astype(np.float64), minlength=x.shape[0])
        return np.asarray(x.sum(axis=1), np.float64).ravel()
    out = np.empty(x.shape[0])
    for r in range(0, x.shape[0], _ROWS):
        out[r:r + _ROWS] = _row_sums(np.asarray(x[r:r + _ROWS]))
    return out


def cell_scale(x) -> np.ndarray:
    """Per-cell factor (n_cells,) float32: median library size / library size (0 for empty cells)."""
    lib = library_sizes(x)
    if not np.all(np.isfinite(lib)) or np.any(lib < 0):
        raise InputError("expression has negative or non-finite values", fix="annotate counts or predicted means")
    pos = lib > 0
    if not pos.any():
        raise InputError("every cell has zero total expression", fix="check the counts layer of the dataset")
    target = float(np.median(lib[pos]))
    return np.where(pos, target / np.where(pos, lib, 1.0), 0.0).astype(np.float32)


def log_normalise(x, *, out: Path | None = None, scale: np.ndarray | None = None):
    """log1p of library-size-normalised ``x`` (cells × genes) as float32 (float32 arithmetic).

    Sparse input → CSC with the same pattern; dense/memmap input → an ndarray, or a float32 ``.npy``
    memmap written at ``out`` (row chunks; for matrices larger than memory). ``scale``: the
    :func:`cell_scale` of the rows of ``x`` when ``x`` is a subset of a dataset's cells (the
    median is the whole dataset's); default: computed from ``x``.
    """
    scale = cell_scale(x) if scale is None else np.asarray(scale, np.float32)
    if scale.shape != (x.shape[0],):
        raise InputError(f"scale has shape {scale.shape}, expected ({x.shape[0]},)")
    if sp.issparse(x):
        c = x.tocsc() if x.format != "csc" else x
        data = np.empty(c.data.size, np.float32)
        _log1p_scaled_1d(np.asarray(c.data), scale[c.indices], data)
        return sp.csc_matrix((data, c.indices, c.indptr), shape=c.shape)
    if out is None:
        res = np.empty(x.shape, np.float32)
    else:
        res = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=x.shape)
    for r in range(0, x.shape[0], _ROWS):
        _log1p_scaled(np.asarray(x[r:r + _ROWS]), scale[r:r + _ROWS], res[r:r + _ROWS])
    if out is not None:
        res.flush()
        del res
        return np.load(out, mmap_mode="r")
    return res


def prepare(expression, *, kind: str, out: Path | None = None):
    """What the calibrated DE reads: ``(log-normalised expression, detected or None)``; detection
    (x > 0 of the counts) only for observed counts."""
    norm = log_normalise(expression, out=out if not sp.issparse(expression) else None)
    detected = None
    if kind == "observed":
        detected = detected_matrix(expression if sp.issparse(expression) else sp.csr_matrix(np.asarray(expression)))
    return norm, detected


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True)
def _row_sums(x):
    out = np.zeros(x.shape[0])
    for i in prange(x.shape[0]):
        acc = 0.0
        for j in range(x.shape[1]):
            acc += x[i, j]
        out[i] = acc
    return out


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True)
def _log1p_scaled(x, scale, out):
    for i in prange(x.shape[0]):
        s = scale[i]
        for j in range(x.shape[1]):
            out[i, j] = np.log1p(np.float32(x[i, j]) * s)  # float32 result: float32 arithmetic


@njit(cache=True)
def _log1p_scaled_1d(x, scale, out):
    for i in range(x.size):
        out[i] = np.log1p(np.float32(x[i]) * scale[i])


def detected_matrix(x) -> sp.csr_matrix | None:
    """Binary CSR (cells × genes, int8) of x > 0 for sparse counts; None for dense input (predicted)."""
    if not sp.issparse(x):
        return None
    c = sp.csr_matrix(x)
    b = sp.csr_matrix(((np.asarray(c.data) > 0).astype(np.int8), c.indices, c.indptr), shape=c.shape)
    b.eliminate_zeros()
    return b
