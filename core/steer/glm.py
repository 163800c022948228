"""The paper's DE test for steering: a negative-binomial GLM per gene with pairing and condition terms.

For gene g, cell pair i (normal, steered) and condition c ∈ {0, 1}:

    y_ic ~ NB(mean μ_ic, variance μ + α μ²),   log μ_ic = a_i + β·c

with α = 1/θ_g the model's dispersion of the gene. The design (an intercept, one dummy per pair
but the first, the condition) is that of ``statsmodels`` ``GLM(y, X, family=NegativeBinomial(alpha))``;
``a_i`` re-parametrises the intercept + pair dummies, so β, its standard error and the Wald test
are the same numbers. Fitted by Fisher scoring (as statsmodels' IRLS) on all n + 1 parameters at
once, using the arrow-shaped information matrix: the pair block is diagonal, so each step costs
O(n) (Schur complement for β). One numba task per gene, parallel over genes.

fold change = exp(β), log2fc = β / ln 2; z = β / se(β), two-sided normal p. Pairs where both
values are 0 carry no information and are left out; a gene that is 0 in every cell of one
condition has no finite estimate (log2fc ±inf, p = 1).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from core.base.errors import InputError
from core.base.parallel import one_at_a_time

__all__ = ["nb_glm_paired"]


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True, boundscheck=False)
def _nb_paired(y0t, y1t, alpha, max_iter, tol):
    """Per gene (rows of ``y0t``, ``y1t``: normal and steered values): ``(β, se(β), iterations)``."""
    g_n = y0t.shape[0]
    beta = np.zeros(g_n)
    se = np.full(g_n, np.nan)
    iters = np.zeros(g_n, np.int64)
    for g in prange(g_n):
        beta[g], se[g], iters[g] = _fit_gene(y0t[g], y1t[g], alpha[g], max_iter, tol)
    return beta, se, iters


@njit(cache=True, boundscheck=False)
def _fit_gene(y0, y1, al, max_iter, tol):
    """Fisher scoring of ``log μ_ic = a_i + β·c`` for one gene with NB dispersion ``al``.
    ``y0``, ``y1``: (n,) normal and steered values. Returns ``(β, se(β), iterations)``."""
    n = y0.shape[0]
    use = np.zeros(n, np.bool_)   # pairs with a non-zero value
    s0 = 0.0
    s1 = 0.0
    same = True
    for i in range(n):
        if y0[i] != y1[i]:
            same = False
        if y0[i] + y1[i] > 0:
            use[i] = True
            s0 += y0[i]
            s1 += y1[i]
    if s0 <= 0.0 or s1 <= 0.0:   # all zero in one condition: no finite estimate
        return (np.nan if s0 <= 0.0 and s1 <= 0.0 else (np.inf if s0 <= 0.0 else -np.inf)), np.nan, 0
    b = 0.0 if same else math.log(s1 / s0)
    eb = math.exp(b)
    a = np.zeros(n)
    for i in range(n):
        if use[i]:
            a[i] = math.log((y0[i] + y1[i]) / (1.0 + eb))  # the Poisson MLE given b
    it = 0
    if not same:
        s = np.zeros(n)
        w1v = np.zeros(n)
        dv = np.zeros(n)
        for it in range(1, max_iter + 1):
            b, big = _scoring_step(y0, y1, use, a, b, al, s, w1v, dv)
            if big < tol:
                break
    eb = math.exp(b)
    schur = 0.0
    for i in range(n):
        if use[i]:
            m0 = math.exp(a[i])
            m1 = m0 * eb
            w0 = m0 / (1.0 + al * m0)
            w1 = m1 / (1.0 + al * m1)
            schur += w0 * w1 / (w0 + w1)
    return b, (1.0 / math.sqrt(schur) if schur > 0 else np.nan), it


@njit(cache=True, boundscheck=False)
def _scoring_step(y0, y1, use, a, b, al, s, w1v, dv):
    """One Fisher-scoring step on all parameters, each step clipped to ±2: β through the Schur
    complement of the diagonal pair block, then every ``a_i`` (updated in place; ``s``, ``w1v``,
    ``dv`` are (n,) scratch). Returns ``(new β, largest |step|)``."""
    eb = math.exp(b)
    sb = 0.0
    num = 0.0
    schur = 0.0
    for i in range(y0.shape[0]):
        if not use[i]:
            continue
        m0 = math.exp(a[i])
        m1 = m0 * eb
        q0 = 1.0 + al * m0
        q1 = 1.0 + al * m1
        r1 = (y1[i] - m1) / q1
        w0 = m0 / q0
        w1 = m1 / q1
        si = (y0[i] - m0) / q0 + r1
        di = w0 + w1
        s[i] = si
        w1v[i] = w1
        dv[i] = di
        sb += r1
        num += w1 * si / di
        schur += w0 * w1 / di
    db = _clip2((sb - num) / schur)
    big = abs(db)
    for i in range(y0.shape[0]):
        if use[i]:
            da = _clip2((s[i] - w1v[i] * db) / dv[i])
            a[i] += da
            if abs(da) > big:
                big = abs(da)
    return b + db, big


@njit(cache=True)
def _clip2(x):
    """``x`` clipped to [−2, 2] (NaN stays NaN)."""
    if x > 2.0:
        return 2.0
    if x < -2.0:
        return -2.0
    return x


def nb_glm_paired(normal: np.ndarray, steered: np.ndarray, *, theta: np.ndarray, max_iter: int = 100,
                  tol: float = 1e-10) -> dict:
    """NB GLM ``y ~ pair + condition`` per gene; ``normal``, ``steered``: (n_cells, n_genes) ≥ 0;
    ``theta``: (n_genes,) inverse dispersions (α = 1/θ; ``np.inf`` gives a Poisson GLM).

    Returns (n_genes,) float64 arrays: ``mean_normal``, ``mean_steered``, ``beta`` (natural log
    fold change), ``se``, ``log2fc`` = β/ln 2, ``stat`` (Wald z), ``pvalue`` (two-sided), and
    ``iterations`` (int). A single pair gives no standard error: stat NaN, p = 1.
    """
    from scipy.special import ndtr

    normal = np.asarray(normal)
    steered = np.asarray(steered)
    if normal.shape != steered.shape or normal.ndim != 2:
        raise InputError(f"normal {normal.shape} and steered {steered.shape} expression must have the same 2-D shape")
    n, g = normal.shape
    theta = np.asarray(theta, np.float64).reshape(-1)
    if theta.shape[0] != g:
        raise InputError(f"{theta.shape[0]} dispersions for {g} genes")
    if (theta <= 0).any() or np.isnan(theta).any():
        raise InputError("NB dispersions θ must be positive")
    if (normal < 0).any() or (steered < 0).any():
        raise InputError("the NB GLM needs non-negative expected expression")
    alpha = 1.0 / theta
    dtype = np.float32 if normal.dtype == np.float32 and steered.dtype == np.float32 else np.float64
    y0t = np.ascontiguousarray(normal.T, dtype=dtype)  # one gene per contiguous row
    y1t = np.ascontiguousarray(steered.T, dtype=dtype)
    beta, se, iters = _nb_paired(y0t, y1t, alpha, int(max_iter), float(tol))
    stat = np.full(g, np.nan)
    p = np.ones(g)
    ok = np.isfinite(beta) & np.isfinite(se) & (se > 0) & (n >= 2)
    stat[ok] = beta[ok] / se[ok]
    p[ok] = np.minimum(2.0 * ndtr(-np.abs(stat[ok])), 1.0)
    with np.errstate(invalid="ignore"):
        log2fc = beta / math.log(2.0)
    return {"mean_normal": y0t.mean(axis=1, dtype=np.float64), "mean_steered": y1t.mean(axis=1, dtype=np.float64),
            "beta": beta, "se": se,
            "log2fc": np.where(np.isnan(log2fc), 0.0, log2fc), "stat": stat, "pvalue": p, "iterations": iters}
