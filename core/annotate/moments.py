"""Group moments of expression for many features at once: one pass over the cells per gene chunk.

For each chunk of genes, the sums Σ(x − c) and Σ(x − c)² over every feature's high cells come
from a parallel sparse-selection × dense-chunk kernel (float64 accumulation), with c a per-gene
shift (the mean of up to 1,000 random cells); low-cell sums are prefix sums along the shared
random cell order (:mod:`core.annotate.groups`) minus the few active cells inside the prefix.
Both DE methods (:mod:`core.annotate.de`, :mod:`core.annotate.calibrated_de`) read these sums.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop
from core.annotate.groups import Groups, take_csr
from core.annotate.stats import group_sums, prefix_sums

__all__ = ["Chunk", "chunk_sums", "check_inputs"]


def check_inputs(expression, groups: Groups) -> None:
    if expression.ndim != 2 or expression.shape[0] != groups.n_cells:
        raise InputError(f"expression has shape {expression.shape}, groups are over {groups.n_cells} cells",
                         fix="pass the cells × genes matrix of the same cells as the activations")
    bad = ~groups.testable
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"feature {groups.feature[i]} cannot be tested: {groups.reason[i]}",
                         fix="use groups.blocks(), which yields only testable features")


@dataclass
class Chunk:
    """Shifted sums of one gene chunk [g0, g1): high rows and skip rows (s1, s2), low prefixes (p1, p2)."""

    g0: int
    g1: int
    shift: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    p1: np.ndarray
    p2: np.ndarray
    stop_pos: np.ndarray
    skip_row: np.ndarray


def chunk_sums(expression, groups: Groups, *, gene_chunk: int, tile: int, progress: Progress,
                should_stop: ShouldStop):
    """Yield the group sums of every gene chunk (module docstring: one pass over the cells per chunk)."""
    n_cells, n_genes = expression.shape
    n_feat = len(groups)
    is_sparse = sp.issparse(expression)
    if is_sparse:
        x_all = expression if expression.format == "csc" else sp.csc_matrix(expression)
    else:
        x_all = np.asarray(expression)

    # one cells → rows index: rows 0..F-1 = high groups, F.. = active cells inside low prefixes
    skip_n = np.diff(groups.skip_indptr)
    has_skip = np.flatnonzero(skip_n > 0)
    _, skip_cells = take_csr(groups.skip_indptr, groups.skip_indices, has_skip)
    rows = np.concatenate([np.repeat(np.arange(n_feat), groups.n_high),
                           n_feat + np.repeat(np.arange(has_skip.size), skip_n[has_skip])])
    cells = np.concatenate([groups.high_indices, skip_cells]).astype(np.int64)
    n_rows = n_feat + has_skip.size
    sel = sp.csc_matrix((np.ones(rows.size, np.int8), (rows, cells)), shape=(n_rows, n_cells))
    sel.sort_indices()
    cell_ptr, row_idx = sel.indptr.astype(np.int64), sel.indices.astype(np.int64)
    stops, stop_pos = np.unique(groups.low_stop, return_inverse=True)
    stop_pos = stop_pos.astype(np.int64).ravel()
    ref_cells = np.sort(groups.order[:min(n_cells, 1000)])
    skip_row = np.full(n_feat, -1, np.int64)
    skip_row[has_skip] = n_feat + np.arange(has_skip.size)
    step = max(1, int(gene_chunk))
    for g0 in range(0, n_genes, step):
        if should_stop():
            raise Cancelled()
        g1 = min(n_genes, g0 + step)
        xc = x_all[:, g0:g1].toarray() if is_sparse else x_all[:, g0:g1]
        if not np.issubdtype(xc.dtype, np.floating):
            xc = xc.astype(np.float64)
        # shift: mean of up to 1,000 random cells, rounded to the data's dtype (x − shift is exact)
        shift = np.asarray(xc[ref_cells], np.float64).mean(axis=0).astype(xc.dtype).astype(np.float64)
        s1, s2 = group_sums(xc, shift, cell_ptr, row_idx, n_rows, tile=tile)
        p1, p2 = prefix_sums(xc, shift, groups.order, stops, tile=tile)
        yield Chunk(g0, g1, shift, s1, s2, p1, p2, stop_pos, skip_row)
        progress(g1, n_genes, f"DE of {n_feat} features: {g1}/{n_genes} genes")
