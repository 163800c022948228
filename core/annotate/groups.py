"""High and low cell groups of SAE features (docs/method.md §4 step 1).

High cells of a feature: activation above its ``percentile``-th percentile over all cells
(``np.percentile``, linear interpolation, zeros included). Low cells: up to ``n_low`` cells with
activation exactly 0, a uniform sample without replacement drawn from ``seed``.

How the low sample is drawn: one random order of all cells is drawn from the seed; a
feature's low cells are its first ``n_low`` zero-activation cells in that order. For every
feature that is a uniform random sample of its zero cells (the reference takes the first
1,000 in index order instead, which is biased); the same seed gives the same sample whatever
subset of features is asked for; and because features share the order, low-group sums are a
prefix sum minus a few active cells (see :func:`core.annotate.de.batched_de`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numba import njit

from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress

__all__ = ["Groups", "select_groups", "take_csr"]


@dataclass(frozen=True)
class Groups:
    """High/low cells of F features over ``n_cells`` cells. Arrays are (F,) unless noted.

    ``feature``: column of the activation matrix. ``threshold``: the activation percentile
    (high = activation > threshold). ``n_active``: cells with activation > 0. ``reason``: why
    the feature cannot be tested ("" if it can). High cells: CSR rows ``high_indptr`` (F + 1,),
    ``high_indices`` (ascending cell indices). Low cells: ``order[:low_stop[i]]`` (``order``:
    the shared random order of all cells, (n_cells,)) minus the active cells listed in
    ``skip_indptr``/``skip_indices``.
    """

    feature: np.ndarray
    threshold: np.ndarray
    n_active: np.ndarray
    n_high: np.ndarray
    n_low: np.ndarray
    reason: np.ndarray
    high_indptr: np.ndarray
    high_indices: np.ndarray
    order: np.ndarray
    low_stop: np.ndarray
    skip_indptr: np.ndarray
    skip_indices: np.ndarray
    n_cells: int
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.feature.size)

    @property
    def testable(self) -> np.ndarray:
        """Bool (F,): enough high and low cells to test."""
        return self.reason == ""

    def position(self, feature: int) -> int:
        """Row of ``feature`` (a column of the activation matrix) in this structure."""
        hit = np.flatnonzero(self.feature == feature)
        if hit.size == 0:
            raise InputError(f"feature {feature} is not in these groups",
                             fix="select groups for it: select_groups(A, features=[...])")
        return int(hit[0])

    def high_cells(self, i: int) -> np.ndarray:
        """Cell indices (ascending) of the high group of row ``i``."""
        return self.high_indices[self.high_indptr[i]:self.high_indptr[i + 1]]

    def low_cells(self, i: int) -> np.ndarray:
        """Cell indices (ascending) of the low group of row ``i``."""
        cand = self.order[:self.low_stop[i]]
        skip = self.skip_indices[self.skip_indptr[i]:self.skip_indptr[i + 1]]
        if skip.size:
            cand = cand[~np.isin(cand, skip)]
        return np.sort(cand)

    def subset(self, rows) -> "Groups":
        """The groups of ``rows`` (positions or a bool mask), in that order."""
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        hp, hi = take_csr(self.high_indptr, self.high_indices, rows)
        sp_, si = take_csr(self.skip_indptr, self.skip_indices, rows)
        return Groups(self.feature[rows], self.threshold[rows], self.n_active[rows], self.n_high[rows],
                      self.n_low[rows], self.reason[rows], hp, hi, self.order, self.low_stop[rows], sp_, si,
                      self.n_cells, self.params)

    def blocks(self, size: int = 1000, *, testable_only: bool = True) -> Iterator["Groups"]:
        """Consecutive blocks of at most ``size`` features (only testable ones by default)."""
        rows = np.flatnonzero(self.testable) if testable_only else np.arange(len(self))
        for s in range(0, rows.size, max(1, int(size))):
            yield self.subset(rows[s:s + size])

    def selection(self, group: str = "high") -> sp.csr_matrix:
        """Selection matrix (F, n_cells), float64 ones: ``selection("high") @ X`` sums X over groups."""
        if group == "high":
            indptr, indices = self.high_indptr, self.high_indices
        elif group == "low":
            cells = [self.low_cells(i) for i in range(len(self))]
            indptr = np.concatenate([[0], np.cumsum([c.size for c in cells])]).astype(np.int64)
            indices = np.concatenate(cells).astype(np.int64) if cells else np.zeros(0, np.int64)
        else:
            raise ValueError("group must be 'high' or 'low'")
        return sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(len(self), self.n_cells))

    def summary(self) -> pd.DataFrame:
        """One row per feature: feature, threshold, n_active, n_high, n_low, reason."""
        return pd.DataFrame({"feature": self.feature, "threshold": self.threshold, "n_active": self.n_active,
                             "n_high": self.n_high, "n_low": self.n_low, "reason": self.reason})

    def to_frame(self) -> pd.DataFrame:
        """Tidy cell membership of the testable features: feature, group ("high"/"low"), cell_index."""
        parts = []
        for grp in ("high", "low"):
            sel = self.subset(self.testable).selection(grp)
            feats = self.feature[self.testable]
            parts.append(pd.DataFrame({"feature": np.repeat(feats, np.diff(sel.indptr)),
                                       "group": grp, "cell_index": sel.indices.astype(np.int64)}))
        out = pd.concat(parts, ignore_index=True)
        out["group"] = pd.Categorical(out["group"], categories=["high", "low"])
        return out.sort_values(["feature", "group", "cell_index"], kind="stable").reset_index(drop=True)


def take_csr(indptr, indices, rows):
    """Rows ``rows`` of the CSR structure (``indptr``, ``indices``): ``(new indptr, their indices)``."""
    counts = (indptr[rows + 1] - indptr[rows]).astype(np.int64)
    new_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if counts.sum() == 0:
        return new_ptr, np.zeros(0, indices.dtype)
    starts = np.repeat(indptr[rows] - new_ptr[:-1], counts)
    return new_ptr, indices[np.arange(new_ptr[-1]) + starts]


def select_groups(
    activations,
    *,
    seed,
    features=None,
    percentile: float = 99.0,
    n_low: int = 1000,
    min_cells: int = 3,
    progress: Progress = no_progress,
    should_stop: ShouldStop = never_stop,
) -> Groups:
    """High and low cell groups of every feature (column) of ``activations``.

    ``activations``: (n_cells, n_features), ≥ 0, scipy sparse (CSR/CSC) or dense. ``seed``: int
    (or ``np.random.Generator``) for the low-cell sample. ``features``: columns to use (default
    all). ``percentile``: high cells are above it (np.percentile, linear). ``n_low``: most low
    cells. ``min_cells``: features with fewer high or low cells are kept with a ``reason`` and
    not tested. Returns :class:`Groups` in the order of ``features``.
    """
    _check_group_options(percentile=percentile, n_low=n_low, min_cells=min_cells)
    a, features = _feature_columns(activations, features, progress=progress)
    data = _checked_values(a.data)
    if should_stop():
        raise Cancelled()
    n_cells = a.shape[0]
    ptr = a.indptr.astype(np.int64)
    threshold, n_pos = _thresholds(ptr, data, n_cells, percentile)
    progress(1, 3, "groups: high cells")
    if should_stop():
        raise Cancelled()

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    order = rng.permutation(n_cells).astype(np.int64)
    rank = np.empty(n_cells, np.int64)
    rank[order] = np.arange(n_cells)
    n_zero = n_cells - n_pos
    n_low_f = np.minimum(int(n_low), n_zero)
    # thresholds compare in the data's dtype, exactly as `values > np.percentile(values, q)`
    if features.size:
        high_ptr, high_idx, stop, skip_ptr, skip_rank = _select(ptr, a.indices.astype(np.int64), data,
                                                                threshold.astype(data.dtype), rank, n_low_f)
        skip_idx = order[skip_rank]
    else:
        high_ptr, skip_ptr = np.zeros(1, np.int64), np.zeros(1, np.int64)
        high_idx, skip_idx, stop = (np.zeros(0, np.int64) for _ in range(3))
    n_high = np.diff(high_ptr)
    reason = np.full(features.size, "", dtype=object)
    reason[n_low_f < min_cells] = f"fewer than {min_cells} cells with zero activation"
    reason[n_high < min_cells] = f"fewer than {min_cells} cells above the {percentile:g}th percentile"
    reason[n_pos == 0] = "never active (dead)"
    progress(3, 3, "groups: done")
    params = {"percentile": float(percentile), "n_low": int(n_low), "min_cells": int(min_cells),
              "seed": seed if isinstance(seed, (int, np.integer)) else None}
    return Groups(features, threshold, n_pos, n_high, n_low_f.astype(np.int64), reason, high_ptr, high_idx,
                  order, stop, skip_ptr, skip_idx, int(n_cells), params)


def _check_group_options(*, percentile: float, n_low: int, min_cells: int) -> None:
    if not 0 <= percentile < 100:
        raise InputError(f"percentile must be in [0, 100), got {percentile}", fix="use e.g. 99")
    if int(min_cells) < 2:
        raise InputError(f"min_cells must be at least 2 (a variance needs two cells), got {min_cells}")
    if int(n_low) < int(min_cells):
        raise InputError(f"n_low ({n_low}) is below min_cells ({min_cells})", fix="raise n_low, e.g. 1000")


def _feature_columns(activations, features, *, progress: Progress) -> tuple[sp.csc_matrix, np.ndarray]:
    """``(the columns `features` as CSC with sorted indices, the feature indices (int64))``."""
    a = activations if sp.issparse(activations) else sp.csc_matrix(np.asarray(activations))
    if a.ndim != 2:
        raise InputError("activations must be a 2-D cells × features matrix")
    n_feat = a.shape[1]
    if features is None:
        features = np.arange(n_feat)
    features = np.asarray(features, dtype=np.int64).ravel()
    if features.size and (features.min() < 0 or features.max() >= n_feat):
        raise InputError(f"feature index out of range 0..{n_feat - 1}")
    progress(0, 3, "groups: reading activations")
    a = sp.csc_matrix(a)[:, features] if features.size != n_feat or np.any(features != np.arange(n_feat)) \
        else sp.csc_matrix(a)
    a.sort_indices()
    return a, features


def _checked_values(data: np.ndarray) -> np.ndarray:
    """The stored activations, refused when not finite or negative; floats as they are, else float64."""
    if data.size and not np.all(np.isfinite(data)):
        raise InputError("activations contain NaN or infinite values", fix="check the SAE encoder output")
    if data.size and data.min() < 0:
        raise InputError("activations must be ≥ 0 (SAE latents after ReLU/TopK)",
                         fix="pass the SAE's non-negative feature activations")
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float64)
    return data


def _thresholds(ptr: np.ndarray, data: np.ndarray, n_cells: int, percentile: float) -> tuple[np.ndarray, np.ndarray]:
    """``(percentile threshold, cells > 0)`` per column, from the column's order statistics (zeros implicit)."""
    q = percentile / 100.0
    virtual = (n_cells - 1) * q
    lo = int(np.floor(virtual))
    hi = min(lo + 1, n_cells - 1)
    gamma = float(virtual - lo)
    a_lo, a_hi, n_pos = _order_stats(ptr, data, n_cells, lo, hi)
    a_lo = a_lo.astype(data.dtype)
    a_hi = a_hi.astype(data.dtype)
    return _lerp(a_lo, a_hi, gamma), n_pos



def _lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """numpy's quantile interpolation (``numpy.lib._function_base_impl._lerp``) in a's dtype."""
    diff = b - a
    out = a + diff * t
    if t >= 0.5:
        out = b - diff * (1 - t)
    return out


@njit(cache=True)
def _order_stats(ptr, data, n_cells, lo, hi):
    """Per column: the lo-th and hi-th smallest value over all cells (implicit zeros), n > 0."""
    n_col = ptr.size - 1
    a_lo = np.zeros(n_col)
    a_hi = np.zeros(n_col)
    n_pos = np.zeros(n_col, np.int64)
    for j in range(n_col):
        seg = data[ptr[j]:ptr[j + 1]]
        pos = np.sort(seg[seg > 0])
        n_pos[j] = pos.size
        n_zero = n_cells - pos.size
        if lo >= n_zero:
            a_lo[j] = pos[lo - n_zero]
        if hi >= n_zero:
            a_hi[j] = pos[hi - n_zero]
    return a_lo, a_hi, n_pos


@njit(cache=True)
def _select(ptr, rows, data, threshold, rank, n_low):
    """High cells (> threshold) per column, and the low-group prefix: stop and active ranks in it."""
    n_col = ptr.size - 1
    n_high = np.zeros(n_col, np.int64)
    for j in range(n_col):
        for h in range(ptr[j], ptr[j + 1]):
            if data[h] > threshold[j]:
                n_high[j] += 1
    high_ptr = np.zeros(n_col + 1, np.int64)
    high_ptr[1:] = np.cumsum(n_high)
    high_idx = np.empty(high_ptr[-1], np.int64)
    stop = np.zeros(n_col, np.int64)
    skip_lists = []
    n_skip = np.zeros(n_col, np.int64)
    for j in range(n_col):
        k = high_ptr[j]
        active_rank = []
        for h in range(ptr[j], ptr[j + 1]):
            if data[h] > threshold[j]:
                high_idx[k] = rows[h]
                k += 1
            if data[h] > 0:
                active_rank.append(rank[rows[h]])
        ar = np.sort(np.array(active_rank, np.int64)) if len(active_rank) else np.zeros(0, np.int64)
        m = n_low[j]
        i = 0
        while i < ar.size and ar[i] < m:
            m += 1
            i += 1
        stop[j] = m
        n_skip[j] = i
        skip_lists.append(ar[:i])
    skip_ptr = np.zeros(n_col + 1, np.int64)
    skip_ptr[1:] = np.cumsum(n_skip)
    skip_idx = np.empty(skip_ptr[-1], np.int64)
    for j in range(n_col):
        skip_idx[skip_ptr[j]:skip_ptr[j + 1]] = skip_lists[j]
    return high_ptr, high_idx, stop, skip_ptr, skip_idx
