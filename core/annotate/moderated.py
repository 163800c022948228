"""Statistics of the calibrated method, vectorised over many features at once.

- :func:`squeeze_variances` — limma's empirical-Bayes variance shrinkage (``squeezeVar`` /
  ``fitFDist``, Smyth 2004) with a trend in average expression (limma-trend), per feature.
- :func:`bh_masked` — Benjamini–Hochberg per row over the tested entries only.
- :func:`rank_sum_correlated` — the Wilcoxon rank-sum test of a gene set against the other genes
  with the variance for an inter-gene correlation ρ (limma's ``rankSumTestWithCorrelation``,
  Wu & Smyth 2012): ρ = 0 gives scipy's ``mannwhitneyu`` with continuity correction.
- :func:`hypergeom_over` — one-sided over-representation p, ``scipy.stats.hypergeom.sf(k − 1, N, K, n)``.
- :func:`term_correlation` — mean pairwise Pearson correlation of each term's genes over cells.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from numba import njit, prange
from scipy import special

from core.base.parallel import one_at_a_time

__all__ = ["trigamma_inverse", "squeeze_variances", "bh_masked", "rank_sum_correlated", "hypergeom_over",
           "term_correlation", "trend_basis", "hypergeom_over_one"]


def trigamma_inverse(x: np.ndarray) -> np.ndarray:
    """y with trigamma(y) = x (x > 0), Newton's method as limma's ``trigammaInverse``."""
    x = np.asarray(x, np.float64)
    y = 0.5 + 1.0 / x
    big = x < 1e-6
    small = x > 1e7
    for _ in range(50):
        tri = special.polygamma(1, y)
        dif = tri * (1 - tri / x) / special.polygamma(2, y)
        y = y + dif
        if np.all(np.abs(-dif / y)[~(big | small)] < 1e-8):
            break
    y = np.where(big, 1.0 / np.sqrt(np.maximum(x, 1e-300)), y)
    return np.where(small, 1.0 / x, y)


def trend_basis(covariate: np.ndarray, *, n_knots: int = 4) -> np.ndarray:
    """(G, k) basis for the variance trend: 1, A, and truncated cubics at quantile knots of A
    (a cubic regression spline, as limma-trend's smooth fit of log-variance on average expression)."""
    a = np.asarray(covariate, np.float64)
    lo, hi = np.nanmin(a), np.nanmax(a)
    z = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    cols = [np.ones_like(z), z, z ** 2, z ** 3]
    for q in np.quantile(z, np.linspace(0, 1, n_knots + 2)[1:-1]):
        cols.append(np.maximum(z - q, 0.0) ** 3)
    return np.stack(cols, axis=1)


def squeeze_variances(s2: np.ndarray, df: np.ndarray, mask: np.ndarray, basis: np.ndarray):
    """Posterior variances (F, G), prior df d0 (F,) and prior variances s0² (F, G).

    ``s2``: (F, G) residual variances with ``df`` (F,) degrees of freedom each; ``mask`` (F, G)
    bool: the genes of each feature to fit the prior on (tested genes, s2 > 0); ``basis`` (G, k)
    from :func:`trend_basis`. As limma's ``fitFDist`` with a covariate: e = log s² − ψ(d/2) +
    log(d/2) is regressed on the basis (least squares over the masked genes), the excess of the
    residual variance over ψ′(d/2) gives d0 = 2·ψ′⁻¹(excess), and s0² = exp(trend + ψ(d0/2) − log(d0/2));
    no excess means d0 = ∞ (s̃² = s0²). Posterior s̃² = (d0·s0² + d·s²)/(d0 + d).
    """
    df = np.asarray(df, np.float64)
    w = mask.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(mask, np.log(np.where(mask, s2, 1.0)), 0.0) - (special.digamma(df / 2) - np.log(df / 2))[:, None]
    e = np.where(mask, e, 0.0)
    k = basis.shape[1]
    outer = (basis[:, :, None] * basis[:, None, :]).reshape(basis.shape[0], k * k)
    gram = (w @ outer).reshape(-1, k, k) + 1e-9 * np.eye(k)
    rhs = e @ basis
    coef = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
    trend = coef @ basis.T
    n = w.sum(axis=1)
    resid = np.where(mask, e - trend, 0.0)
    evar = (resid ** 2).sum(axis=1) / np.maximum(n - k, 1) - special.polygamma(1, df / 2)
    d0 = np.full(df.shape, np.inf)
    pos = evar > 0
    if pos.any():
        d0[pos] = 2 * trigamma_inverse(evar[pos])
    finite = np.isfinite(d0)
    corr = np.zeros(df.shape)
    corr[finite] = special.digamma(d0[finite] / 2) - np.log(d0[finite] / 2)
    s0 = np.exp(trend + corr[:, None])
    with np.errstate(invalid="ignore"):
        post = np.where(finite[:, None], (d0[:, None] * s0 + df[:, None] * s2) /
                        (np.where(finite, d0, 0.0)[:, None] + df[:, None]), s0)
    return post, d0, s0


def bh_masked(p: np.ndarray, mask: np.ndarray, *, cut: float = 1.0) -> np.ndarray:
    """BH q-values per row over the entries where ``mask`` is true (the row's family); 1 elsewhere.

    Same numbers as ``statsmodels``' ``fdr_bh`` on ``p[i, mask[i]]``. Entries with p ≥ ``cut`` are
    left out of the sort and get q = 1: with ``cut`` = 1 nothing changes (most over-representation
    p are 1: no hit); with ``cut`` = α every q < α is still exact (the left-out entries rank last
    and only contribute values ≥ α), the rest read 1.
    """
    p = np.ascontiguousarray(p, np.float64)
    mask = np.ascontiguousarray(mask, bool)
    if p.size == 0:
        return p.copy()
    if p.ndim != 2:
        raise ValueError("bh_masked needs 2-D arrays")
    return _bh_rows(p, mask, float(cut))


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True)
def _bh_rows(p, mask, cut):
    f_n, g_n = p.shape
    q = np.ones((f_n, g_n))
    for i in prange(f_n):
        m = 0
        k = 0
        for j in range(g_n):
            if mask[i, j]:
                m += 1
                if p[i, j] < cut:
                    k += 1
        idx = np.empty(k, np.int64)
        k = 0
        for j in range(g_n):
            if mask[i, j] and p[i, j] < cut:
                idx[k] = j
                k += 1
        vals = p[i, idx]
        order = np.argsort(vals)
        run = 1.0
        for r in range(k - 1, -1, -1):
            j = idx[order[r]]
            v = p[i, j] * m / (r + 1.0)
            if v < run:
                run = v
            q[i, j] = run
    return q


def rank_sum_correlated(rank_sum, n1, n_total, correlation, *, tie_term=0.0):
    """Wilcoxon rank-sum z of a set (n1 of n_total items, rank sum ``rank_sum``, rank 1 smallest)
    with inter-item correlation ρ, as limma's ``rankSumTestWithCorrelation``.

    Returns ``(z_up, p_up, p_down)``: z > 0 when the set ranks high; continuity-corrected one-sided
    normal p-values (limma uses df = ∞ by default). σ² = [asin(1)·n1n2 + asin(½)·n1n2(n2−1) +
    asin(ρ/2)·n1(n1−1)n2(n2−1) + asin((ρ+1)/2)·n1(n1−1)n2] / 2π, times (1 − Σ(t³−t)/(n³−n)) for ties.
    Empty sets or rests give z = 0, p = 1. Broadcasts.
    """
    n1 = np.asarray(n1, np.float64)
    n = np.asarray(n_total, np.float64)
    n2 = n - n1
    rho = np.clip(np.asarray(correlation, np.float64), -1.0, 1.0)
    u = rank_sum - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    s2 = (np.arcsin(1.0) * n1 * n2 + np.arcsin(0.5) * n1 * n2 * (n2 - 1)
          + np.arcsin(rho / 2) * n1 * (n1 - 1) * n2 * (n2 - 1) + np.arcsin((rho + 1) / 2) * n1 * (n1 - 1) * n2) / (2 * np.pi)
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = s2 * (1 - np.asarray(tie_term) / (n * (n + 1) * (n - 1)))
        s = np.sqrt(s2)
        z = (u - mu) / s
        p_up = special.ndtr(-(u - mu - 0.5) / s)
        p_down = special.ndtr((u - mu + 0.5) / s)
    ok = (n1 > 0) & (n2 > 0) & np.isfinite(z) & (s2 > 0)
    return np.where(ok, z, 0.0), np.where(ok, np.minimum(p_up, 1.0), 1.0), np.where(ok, np.minimum(p_down, 1.0), 1.0)


def hypergeom_over(k, big_n, big_k, n) -> np.ndarray:
    """P(X ≥ k) for X ~ Hypergeometric(N, K, n): ``scipy.stats.hypergeom.sf(k - 1, N, K, n)``; 1 where k ≤ 0.

    Summed from log-gamma probabilities in a numba kernel (scipy's takes ~8 µs a value): the upper
    tail term by term when k lies above the mode (it falls geometrically), else 1 − the lower tail
    (k terms). Broadcasts.
    """
    k, big_n, big_k, n = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (k, big_n, big_k, n)))
    shape = k.shape
    out = _hypergeom_sf(np.ascontiguousarray(k).ravel(), np.ascontiguousarray(big_n).ravel(),
                        np.ascontiguousarray(big_k).ravel(), np.ascontiguousarray(n).ravel())
    return out.reshape(shape)


@njit(cache=True)
def _log_pmf(x, big_n, big_k, n):
    return (math.lgamma(big_k + 1) - math.lgamma(x + 1) - math.lgamma(big_k - x + 1)
            + math.lgamma(big_n - big_k + 1) - math.lgamma(n - x + 1) - math.lgamma(big_n - big_k - n + x + 1)
            - math.lgamma(big_n + 1) + math.lgamma(n + 1) + math.lgamma(big_n - n + 1))


@njit(cache=True)
def hypergeom_over_one(kk, nn_, kt, nd):
    """:func:`hypergeom_over` of one (k, N, K, n), as a plain jitted function (~1 µs a call)."""
    if kk <= 0:
        return 1.0
    lo = max(0.0, nd + kt - nn_)
    hi = min(kt, nd)
    if kk > hi:
        return 0.0
    if kk <= lo:
        return 1.0
    mode = math.floor((nd + 1) * (kt + 1) / (nn_ + 2))
    if kk > mode:          # upper tail, terms fall from x = k on
        x = kk
        term = math.exp(_log_pmf(x, nn_, kt, nd))
        total = term
        while x < hi:
            term *= (kt - x) * (nd - x) / ((x + 1) * (nn_ - kt - nd + x + 1))
            x += 1
            total += term
            if term < 1e-17 * total:
                break
        return min(total, 1.0)
    x = kk - 1             # 1 − P(X ≤ k − 1), summed down from k − 1
    term = math.exp(_log_pmf(x, nn_, kt, nd))
    total = term
    while x > lo:
        term *= x * (nn_ - kt - nd + x) / ((kt - x + 1) * (nd - x + 1))
        x -= 1
        total += term
        if term < 1e-17 * total:
            break
    return max(0.0, min(1.0, 1.0 - total))


@njit(cache=True)
def _hypergeom_sf_serial(k, big_n, big_k, n):
    out = np.empty(k.size)
    for i in range(k.size):
        out[i] = hypergeom_over_one(k[i], big_n[i], big_k[i], n[i])
    return out


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True)
def _hypergeom_sf_parallel(k, big_n, big_k, n):
    out = np.empty(k.size)
    for i in prange(k.size):
        out[i] = hypergeom_over_one(k[i], big_n[i], big_k[i], n[i])
    return out


def _hypergeom_sf(k, big_n, big_k, n):
    """Small arrays serially (a parallel launch costs ~0.2 ms), large ones on all threads."""
    return (_hypergeom_sf_parallel if k.size >= 4096 else _hypergeom_sf_serial)(k, big_n, big_k, n)


def term_correlation(expression, matrix: sp.csr_matrix, *, cells: np.ndarray) -> np.ndarray:
    """Mean pairwise Pearson correlation (T,) of each term's genes over ``cells`` of ``expression``
    (cells × G, dense or sparse; the log-normalised values the DE tests). Genes constant over the
    sample count as uncorrelated. ρ̄_t = (‖Σ_{g∈t} z_g‖²/n − m)/(m(m − 1)) with z_g standardised."""
    x = expression[np.sort(cells)]
    x = x.toarray() if sp.issparse(x) else np.asarray(x, np.float64)
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    z = np.where(sd > 0, (x - mu) / np.where(sd > 0, sd, 1.0), 0.0)
    m = matrix.tocsr().astype(np.float64)
    sums = np.asarray((m @ z.T).T)                   # (n, T)
    size = np.diff(m.indptr).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = ((sums ** 2).sum(axis=0) / n - size) / (size * (size - 1))
    return np.where(size > 1, np.nan_to_num(rho), 0.0)
