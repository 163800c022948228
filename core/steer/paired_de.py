"""Paired differential expression of steered vs normal cells, every gene at once.

Each steered cell is paired with itself unsteered. Default test (``paired-log``): per gene, the
paired t-test of d = log2(steered + c) − log2(normal + c) over cells (c = the pseudocount, in
expected counts), i.e. ``scipy.stats.ttest_rel`` on the log values; ``log2fc`` = mean d. The
alternative ``nb-glm`` is in :mod:`core.steer.glm`. Then Benjamini–Hochberg across genes and the
significance rule q < alpha and |log2fc| ≥ min_abs_log2fc.

Computed in one pass over the two (cells × genes) matrices by a numba kernel parallel over gene
tiles: d as log1p((S − N)/(N + c))/ln 2 (exactly 0 where a cell did not change), shifted sums
for the variance, float64 accumulation.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit, prange

from core.annotate.stats import bh
from core.base.errors import InputError

__all__ = ["paired_log_test", "de_table", "DE_COLUMNS"]

DE_COLUMNS = ["gene", "mean_normal", "mean_steered", "log2fc", "stat", "pvalue", "qvalue", "significant",
              "direction"]


@njit(parallel=True, cache=True, boundscheck=False)
def _paired_log_moments(normal, steered, pc, tile):
    """Per gene: Σ N, Σ S, mean d and Σ (d − mean)² over cells, d = log2((S + c)/(N + c)), float64."""
    n, g = normal.shape
    sum_n = np.zeros(g)
    sum_s = np.zeros(g)
    mean = np.zeros(g)
    ss = np.zeros(g)
    inv_ln2 = 1.0 / math.log(2.0)
    n_tiles = (g + tile - 1) // tile
    for t in prange(n_tiles):
        g0 = t * tile
        g1 = min(g, g0 + tile)
        w = g1 - g0
        shift = np.empty(w)
        s1 = np.zeros(w)
        s2 = np.zeros(w)
        sn = np.zeros(w)
        st = np.zeros(w)
        for j in range(w):  # shift by the first cell's d: sums of (d − shift) keep the variance exact
            a = np.float64(normal[0, g0 + j])
            b = np.float64(steered[0, g0 + j])
            shift[j] = math.log1p((b - a) / (a + pc)) * inv_ln2
        for i in range(n):
            for j in range(w):
                a = np.float64(normal[i, g0 + j])
                b = np.float64(steered[i, g0 + j])
                d = math.log1p((b - a) / (a + pc)) * inv_ln2 - shift[j]
                s1[j] += d
                s2[j] += d * d
                sn[j] += a
                st[j] += b
        for j in range(w):
            m = s1[j] / n
            sum_n[g0 + j] = sn[j]
            sum_s[g0 + j] = st[j]
            mean[g0 + j] = m + shift[j]
            v = s2[j] - s1[j] * m
            ss[g0 + j] = v if v > 0 else 0.0
    return sum_n, sum_s, mean, ss


def paired_log_test(normal: np.ndarray, steered: np.ndarray, *, pseudocount: float = 0.1, tile: int = 64) -> dict:
    """Paired t-test per gene on log2(x + pseudocount). ``normal``, ``steered``: (n_cells, n_genes).

    Returns a dict of (n_genes,) float64 arrays: ``mean_normal``, ``mean_steered``, ``log2fc``
    (mean paired log2 ratio), ``stat`` (t), ``pvalue`` (two-sided, as ``ttest_rel``). Genes with
    zero variance of d: t = 0, p = 1 when d ≡ 0; t = ±inf, p = 0 when d is a non-zero constant
    (scipy's values); a single cell: t = NaN, p = 1.
    """
    from scipy.special import stdtr

    if normal.shape != steered.shape or normal.ndim != 2:
        raise InputError(f"normal {normal.shape} and steered {steered.shape} expression must have the same 2-D shape")
    n = normal.shape[0]
    if n == 0:
        raise InputError("no cells to test")
    sum_n, sum_s, mean, ss = _paired_log_moments(np.ascontiguousarray(normal), np.ascontiguousarray(steered),
                                                 float(pseudocount), int(tile))
    stat = np.full(mean.shape, np.nan)
    p = np.ones(mean.shape)
    if n >= 2:
        se = np.sqrt(ss / (n - 1) / n)
        ok = se > 0
        stat[ok] = mean[ok] / se[ok]
        p[ok] = np.minimum(2.0 * stdtr(n - 1, -np.abs(stat[ok])), 1.0)
        const = ~ok
        stat[const & (mean == 0)] = 0.0
        nz = const & (mean != 0)
        stat[nz] = np.sign(mean[nz]) * np.inf
        p[nz] = 0.0
    return {"mean_normal": sum_n / n, "mean_steered": sum_s / n, "log2fc": mean, "stat": stat, "pvalue": p}


def de_table(genes, stats: dict, *, alpha: float, min_abs_log2fc: float) -> pd.DataFrame:
    """The DE table (columns :data:`DE_COLUMNS`) in gene order: BH q-values across genes,
    significant = q < alpha and |log2fc| ≥ min_abs_log2fc, direction up / down / none."""
    p = np.asarray(stats["pvalue"], np.float64)
    if np.isnan(p).any():
        raise InputError("the DE test returned NaN p-values")
    q = bh(p) if p.size else p.copy()
    lfc = np.asarray(stats["log2fc"], np.float64)
    sig = (q < alpha) & (np.abs(lfc) >= min_abs_log2fc) & np.isfinite(lfc)
    direction = np.where(sig & (lfc > 0), 1, np.where(sig & (lfc < 0), 2, 0)).astype(np.int8)
    return pd.DataFrame({
        "gene": pd.Index([str(g) for g in genes]),
        "mean_normal": stats["mean_normal"], "mean_steered": stats["mean_steered"], "log2fc": lfc,
        "stat": stats["stat"], "pvalue": p, "qvalue": q, "significant": sig,
        "direction": pd.Categorical.from_codes(direction, categories=["none", "up", "down"]),
    }, columns=DE_COLUMNS)
