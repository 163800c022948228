"""Vectorised statistics with the same numbers as ``scipy.stats``, for many tests at once.

- :func:`bh` — Benjamini–Hochberg along an axis (= statsmodels ``fdr_bh``,
  ``scipy.stats.false_discovery_control``).
- :func:`welch_from_moments` — Welch t, Welch–Satterthwaite df and two-sided p from group
  sizes, means and sums of squared deviations (= ``ttest_ind(equal_var=False)``).
- :func:`binom_two_sided` — exact two-sided binomial p (= ``binomtest(k, n, p).pvalue``).
- :func:`rank_rows` — average ranks per row and the tie term Σ(t³ − t) (= ``rankdata``).
- :func:`mwu_from_rank_sums` — Mann–Whitney U normal approximation without continuity
  correction, tie-corrected (= ``mannwhitneyu(method="asymptotic", use_continuity=False)``).

The numba kernels (parallel over rows or gene tiles) do the per-element work: group sums of
expression (:func:`group_sums`, :func:`prefix_sums`), term sums (:func:`term_sums`), the Welch
moments of a gene chunk, BH and average ranks given a row-wise argsort. Row-wise sorts use
numpy's SIMD argsort on two threads (:func:`argsort_rows`).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from core.base.parallel import one_at_a_time

__all__ = ["bh", "welch_from_moments", "binom_two_sided", "rank_rows", "mwu_from_rank_sums",
           "group_sums", "prefix_sums", "term_sums", "t_two_sided", "argsort_rows", "binom_two_sided_unique",
           "welch_chunk", "moments_chunk"]



# ---------------------------------------------------------------- multiple testing
def bh(p: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values along ``axis`` (each row its own family).

    Same numbers as ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]``
    (ties and order do not matter; the result is clipped to 1). NaN p-values are not allowed.
    """
    p = np.asarray(p, dtype=np.float64)
    moved = np.moveaxis(p, axis, -1)
    flat = np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]))
    if flat.shape[1] == 0 or flat.shape[0] == 0:
        return p.copy()
    if np.isnan(flat).any():
        raise ValueError("bh: p-values contain NaN")
    q = _bh_from_order(flat, argsort_rows(flat))
    return np.moveaxis(q.reshape(moved.shape), -1, axis)


def argsort_rows(x: np.ndarray, *, threads: int = 2) -> np.ndarray:
    """``np.argsort(x, axis=1)`` of a 2-D array, rows split over threads (numpy sorts without the GIL)."""
    x = np.asarray(x)
    if threads <= 1 or x.shape[0] < 2 * threads or x.size < 200_000:
        return np.argsort(x, axis=1)
    from concurrent.futures import ThreadPoolExecutor

    out = np.empty(x.shape, np.intp)
    edges = np.linspace(0, x.shape[0], threads + 1).astype(int)

    def work(i):
        out[edges[i]:edges[i + 1]] = np.argsort(x[edges[i]:edges[i + 1]], axis=1)

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(work, range(threads)))
    return out


# ---------------------------------------------------------------- Welch t-test
def welch_from_moments(n1, mean1, ss1, n2, mean2, ss2, *, diff=None):
    """Welch's unequal-variance t-test from group moments, broadcasting over any shape.

    ``n``: group sizes (≥ 2); ``mean``; ``ss``: sum of squared deviations from the group mean
    (variance = ss / (n − 1)); ``diff``: mean1 − mean2 if known more precisely.
    Returns ``(t, df, p)`` (float64), p two-sided = 2·stdtr(df, −|t|) as scipy.
    A test with zero standard error (both groups constant) or non-finite input is untestable:
    t = NaN, df = NaN, p = 1 (scipy would give NaN or ±inf there).
    """
    from scipy.special import stdtr

    n1 = np.asarray(n1, np.float64)
    n2 = np.asarray(n2, np.float64)
    vn1 = np.maximum(ss1, 0.0) / (n1 - 1) / n1
    vn2 = np.maximum(ss2, 0.0) / (n2 - 1) / n2
    se2 = vn1 + vn2
    if diff is None:
        diff = np.asarray(mean1, np.float64) - mean2
    ok = (se2 > 0) & np.isfinite(se2) & np.isfinite(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(ok, diff / np.sqrt(se2), np.nan)
        df = np.where(ok, se2 ** 2 / (vn1 ** 2 / (n1 - 1) + vn2 ** 2 / (n2 - 1)), np.nan)
    p = np.ones(np.broadcast(t, df).shape)
    p[ok] = np.minimum(2.0 * stdtr(df[ok], -np.abs(t[ok])), 1.0)
    return t, df, p


# ---------------------------------------------------------------- binomial test
def _pmf(x, n, p):
    from scipy.special._ufuncs import _binom_pmf
    return _binom_pmf(x, n, p)


def _cdf(x, n, p):
    """binom.cdf with rv_discrete's edges: 0 below 0, 1 at or above n."""
    from scipy.special._ufuncs import _binom_cdf
    x = np.floor(x)
    out = np.where(x >= n, 1.0, 0.0)
    m = (x >= 0) & (x < n)
    out[m] = _binom_cdf(x[m], n[m], p[m])
    return out


def _sf(x, n, p):
    """binom.sf with rv_discrete's edges: 1 below 0, 0 at or above n."""
    from scipy.special._ufuncs import _binom_sf
    x = np.floor(x)
    out = np.where(x < 0, 1.0, 0.0)
    m = (x >= 0) & (x < n)
    out[m] = _binom_sf(x[m], n[m], p[m])
    return out


def _bsearch(sign, d, lo, hi, n, p):
    """scipy's ``_binary_search_for_binom_tst`` on ``a(x) = sign·pmf(x)``, vectorised."""
    lo, hi = lo.copy(), hi.copy()
    res = np.zeros_like(lo)
    done = np.zeros(lo.shape, bool)
    active = lo < hi
    while active.any():
        i = np.flatnonzero(active)
        mid = lo[i] + np.floor((hi[i] - lo[i]) / 2)
        mv = sign * _pmf(mid, n[i], p[i])
        less, more = mv < d[i], mv > d[i]
        lo[i[less]] = mid[less] + 1
        hi[i[more]] = mid[more] - 1
        eq = ~less & ~more
        res[i[eq]] = mid[eq]
        done[i[eq]] = True
        active = (lo < hi) & ~done
    i = np.flatnonzero(~done)
    a_lo = sign * _pmf(lo[i], n[i], p[i])
    res[i] = np.where(a_lo <= d[i], lo[i], lo[i] - 1)
    return res


def binom_two_sided(k, n, p) -> np.ndarray:
    """Exact two-sided binomial p-values, the same as ``scipy.stats.binomtest(k, n, p).pvalue``.

    ``k`` (successes), ``n`` (trials, ≥ 1) and ``p`` (0 ≤ p ≤ 1) broadcast together. The p-value
    sums the probabilities of all outcomes no more likely than ``k`` (relative tolerance
    1 + 1e-7), found by scipy's binary search on the far side of the mode, vectorised.
    Repeated (k, n, p) triples are computed once.
    """
    k, n, p = np.broadcast_arrays(np.asarray(k, np.float64), np.asarray(n, np.float64),
                                  np.asarray(p, np.float64))
    shape = k.shape
    trip = np.stack([k.ravel(), n.ravel(), p.ravel()])
    if trip.shape[1] == 0:
        return np.ones(shape)
    uniq, inv = np.unique(trip, axis=1, return_inverse=True)
    return binom_two_sided_unique(*uniq)[inv.ravel()].reshape(shape)


def binom_two_sided_unique(k, n, p):
    """:func:`binom_two_sided` for 1-D float arrays ``k``, ``n``, ``p`` without repeated triples."""
    if np.any((k < 0) | (k > n) | (n < 1) | (k != np.floor(k)) | (n != np.floor(n))):
        raise ValueError("binom_two_sided: need integers 0 ≤ k ≤ n and n ≥ 1")
    if np.any(~((p >= 0) & (p <= 1))):
        raise ValueError("binom_two_sided: need 0 ≤ p ≤ 1")
    out = np.ones(k.shape)
    d = _pmf(k, n, p)
    rerr = 1 + 1e-7
    pn = p * n
    low = k < pn
    if low.any():
        kk, nn, pp, dd = k[low], n[low], p[low], d[low]
        ix = _bsearch(-1.0, -dd * rerr, np.ceil(pp * nn), nn.copy(), nn, pp)
        y = nn - ix + (dd * rerr == _pmf(ix, nn, pp))
        out[low] = _cdf(kk, nn, pp) + _sf(nn - y, nn, pp)
    high = k > pn
    if high.any():
        kk, nn, pp, dd = k[high], n[high], p[high], d[high]
        ix = _bsearch(1.0, dd * rerr, np.zeros_like(kk), np.floor(pp * nn), nn, pp)
        y = ix + 1
        out[high] = _cdf(y - 1, nn, pp) + _sf(kk - 1, nn, pp)
    return np.minimum(out, 1.0)


# ---------------------------------------------------------------- Mann–Whitney U
def rank_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1 = smallest) of each row of ``x`` (F, G) and the tie term Σ(t³ − t) (F,).

    Same ranks as ``scipy.stats.rankdata(row, method="average")``; NaNs rank last, tied together.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError("rank_rows needs a 2-D array")
    return _rank_from_order(x, argsort_rows(x))


def mwu_from_rank_sums(rank_sum, n1, n_total, tie_term):
    """Mann–Whitney U of a set (n1 items, rank sum ``rank_sum``) against the other items.

    Normal approximation without continuity correction, variance tie-corrected as scipy.
    Returns ``(u, z, p_greater, p_two_sided)``: u = U of the set = rank_sum − n1(n1+1)/2;
    z = (u − n1·n2/2)/σ, positive when the set ranks high; ``p_greater`` =
    ``mannwhitneyu(set, rest, alternative="greater")``, ``p_two_sided`` its two-sided p.
    An empty set, an empty rest or all-tied ranks give z = 0, p = 1.
    """
    from scipy.special import ndtr

    n1 = np.asarray(n1, np.float64)
    n = np.asarray(n_total, np.float64)
    n2 = n - n1
    u = rank_sum - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
        z = (u - mu) / s
    ok = np.isfinite(z) & (s > 0)
    z = np.where(ok, z, 0.0)
    p_up = np.where(ok, ndtr(-z), 1.0)
    p_two = np.where(ok, np.minimum(2 * ndtr(-np.abs(z)), 1.0), 1.0)
    return u, z, p_up, p_two


# ---------------------------------------------------------------- numba kernels
@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True)
def _bh_from_order(p, order):
    f, m = p.shape
    q = np.empty_like(p)
    for i in prange(f):
        run = 1.0
        for j in range(m - 1, -1, -1):
            o = order[i, j]
            v = p[i, o] / ((j + 1.0) / m)
            if v < run:
                run = v
            q[i, o] = run
    return q


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True)
def _rank_from_order(x, order):
    f, m = x.shape
    ranks = np.empty((f, m))
    ties = np.zeros(f)
    for i in prange(f):
        j = 0
        tie = 0.0
        while j < m:
            a = x[i, order[i, j]]
            k = j + 1
            while k < m:
                b = x[i, order[i, k]]
                if b == a or (np.isnan(a) and np.isnan(b)):
                    k += 1
                else:
                    break
            r = (j + 1 + k) / 2.0  # the average of ranks j+1 .. k
            for h in range(j, k):
                ranks[i, order[i, h]] = r
            t = k - j
            tie += t * t * t - t
            j = k
        ties[i] = tie
    return ranks, ties


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True)
def welch_chunk(s1, s2, p1, p2, stop_pos, skip_row, n1, n2, shift, g0, fc_eps, mean_high, mean_low, fold, t_out,
                 df_out):
    """Welch moments → means, fold change, t and df for one gene chunk of F features (in place).

    High sums: rows 0..F-1 of s1/s2; low sums: prefix sums p1/p2 at ``stop_pos`` minus row
    ``skip_row[f]`` of s1/s2 (if ≥ 0). Untestable genes get t = df = NaN.
    """
    n_feat = n1.size
    w = shift.size
    eps = np.finfo(np.float64).eps
    for f in prange(n_feat):
        a = n1[f]
        b = n2[f]
        ia, ib = 1.0 / a, 1.0 / b
        va, vb = 1.0 / ((a - 1) * a), 1.0 / ((b - 1) * b)
        da, db = 1.0 / (a - 1), 1.0 / (b - 1)
        tol_a, tol_b = 2 * a * eps, 2 * b * eps
        sr = skip_row[f]
        k = stop_pos[f]
        for j in range(w):
            h1 = s1[f, j]
            h2 = s2[f, j]
            l1 = p1[k, j]
            l2 = p2[k, j]
            if sr >= 0:
                l1 -= s1[sr, j]
                l2 -= s2[sr, j]
            mh = h1 * ia
            ml = l1 * ib
            ss1 = h2 - h1 * mh
            if ss1 <= tol_a * h2:
                ss1 = 0.0
            ss2 = l2 - l1 * ml
            if ss2 <= tol_b * l2:
                ss2 = 0.0
            vn1 = ss1 * va
            vn2 = ss2 * vb
            se2 = vn1 + vn2
            d = mh - ml
            hi = mh + shift[j]
            lo = ml + shift[j]
            mean_high[f, g0 + j] = hi
            mean_low[f, g0 + j] = lo
            fold[f, g0 + j] = hi / (lo + fc_eps)
            if se2 > 0 and se2 < np.inf and d - d == 0:
                t_out[f, g0 + j] = d / np.sqrt(se2)
                df_out[f, g0 + j] = se2 * se2 / (vn1 * vn1 * da + vn2 * vn2 * db)
            else:
                t_out[f, g0 + j] = np.nan
                df_out[f, g0 + j] = np.nan


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True)
def moments_chunk(s1, s2, p1, p2, stop_pos, skip_row, n1, n2, shift, g0, mean_high, mean_low, ss_high, ss_low):
    """Group means and sums of squared deviations of one gene chunk of F features (in place), from the
    same shifted sums as :func:`welch_chunk` (sums of squares at float rounding level become 0)."""
    n_feat = n1.size
    w = shift.size
    eps = np.finfo(np.float64).eps
    for f in prange(n_feat):
        a = n1[f]
        b = n2[f]
        tol_a, tol_b = 2 * a * eps, 2 * b * eps
        sr = skip_row[f]
        k = stop_pos[f]
        for j in range(w):
            h1 = s1[f, j]
            h2 = s2[f, j]
            l1 = p1[k, j]
            l2 = p2[k, j]
            if sr >= 0:
                l1 -= s1[sr, j]
                l2 -= s2[sr, j]
            mh = h1 / a
            ml = l1 / b
            q1 = h2 - h1 * mh
            if q1 <= tol_a * h2:
                q1 = 0.0
            q2 = l2 - l1 * ml
            if q2 <= tol_b * l2:
                q2 = 0.0
            mean_high[f, g0 + j] = mh + shift[j]
            mean_low[f, g0 + j] = ml + shift[j]
            ss_high[f, g0 + j] = q1
            ss_low[f, g0 + j] = q2


def t_two_sided(t: np.ndarray, df: np.ndarray, *, threads: int = 2) -> np.ndarray:
    """2·stdtr(df, −|t|) clipped to 1 (df = ∞: the normal), and 1 where t or df is NaN; rows split over threads."""
    from scipy.special import stdtr

    out = np.empty(t.shape)

    def work(sl):
        tt, dd = t[sl], df[sl]
        ok = np.isfinite(tt) & ~np.isnan(dd)  # df = ∞ is the normal limit
        r = np.ones(tt.shape)
        r[ok] = np.minimum(2.0 * stdtr(dd[ok], -np.abs(tt[ok])), 1.0)
        out[sl] = r

    if threads <= 1 or t.shape[0] < 2 * threads:
        work(slice(None))
        return out
    from concurrent.futures import ThreadPoolExecutor

    edges = np.linspace(0, t.shape[0], threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(work, [slice(edges[i], edges[i + 1]) for i in range(threads)]))
    return out


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True, boundscheck=False)
def _group_sums(x, shift, cell_ptr, row_idx, n_rows, tile):
    """Σ(x − shift) and Σ(x − shift)² over the cells of each row, as (n_tiles, n_rows, 2·tile)."""
    n_cells, g = x.shape
    n_tiles = (g + tile - 1) // tile
    out = np.zeros((n_tiles, n_rows, 2 * tile))
    for ti in prange(n_tiles):
        j0 = ti * tile
        w = min(g, j0 + tile) - j0
        acc = out[ti]
        buf = np.zeros(2 * tile)
        for c in range(n_cells):
            a = cell_ptr[c]
            b = cell_ptr[c + 1]
            if a == b:
                continue
            for j in range(w):
                v = np.float64(x[c, j0 + j]) - shift[j0 + j]
                buf[j] = v
                buf[tile + j] = v * v
            for h in range(a, b):
                r = acc[row_idx[h]]
                for j in range(2 * tile):
                    r[j] += buf[j]
    return out


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True, boundscheck=False)
def _prefix_sums(x, shift, order, stops, tile):
    """Σ and Σ² of (x − shift) over the cells order[:s] for each s in ``stops`` (ascending)."""
    n_cells, g = x.shape
    n_stops = stops.size
    s1 = np.zeros((n_stops, g))
    s2 = np.zeros((n_stops, g))
    n_tiles = (g + tile - 1) // tile
    for ti in prange(n_tiles):
        j0 = ti * tile
        w = min(g, j0 + tile) - j0
        a1 = np.zeros(w)
        a2 = np.zeros(w)
        pos = 0
        for k in range(n_stops):
            while pos < stops[k]:
                c = order[pos]
                for j in range(w):
                    v = np.float64(x[c, j0 + j]) - shift[j0 + j]
                    a1[j] += v
                    a2[j] += v * v
                pos += 1
            for j in range(w):
                s1[k, j0 + j] = a1[j]
                s2[k, j0 + j] = a2[j]
    return s1, s2


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True, boundscheck=False)
def _term_sums(indptr, indices, values):
    """For each row f of ``values`` (F, G) and term t: Σ values[f, genes of t] → (F, T)."""
    f_n = values.shape[0]
    t_n = indptr.size - 1
    out = np.zeros((f_n, t_n))
    for f in prange(f_n):
        row = values[f]
        for t in range(t_n):
            s = 0.0
            for h in range(indptr[t], indptr[t + 1]):
                s += row[indices[h]]
            out[f, t] = s
    return out


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True, boundscheck=False)
def _term_sums2(indptr, indices, a, b):
    """:func:`_term_sums` of two (F, G) arrays in one pass."""
    f_n = a.shape[0]
    t_n = indptr.size - 1
    out_a = np.zeros((f_n, t_n))
    out_b = np.zeros((f_n, t_n))
    for f in prange(f_n):
        ra = a[f]
        rb = b[f]
        for t in range(t_n):
            sa = 0.0
            sb = 0.0
            for h in range(indptr[t], indptr[t + 1]):
                g = indices[h]
                sa += ra[g]
                sb += rb[g]
            out_a[f, t] = sa
            out_b[f, t] = sb
    return out_a, out_b


def group_sums(x, shift, cell_ptr, row_idx, n_rows: int, *, tile: int = 256):
    """Shifted group sums S1, S2 (n_rows, G) float64 of dense ``x`` (cells, G).

    ``cell_ptr`` (cells + 1,), ``row_idx``: for cell c, the rows whose group holds c are
    ``row_idx[cell_ptr[c]:cell_ptr[c + 1]]`` (the CSC layout of a rows × cells selection).
    """
    g = x.shape[1]
    tile = int(max(8, min(tile, g)))
    out = _group_sums(x, np.asarray(shift, np.float64), cell_ptr, row_idx, n_rows, tile)
    n_tiles = out.shape[0]
    s1 = out[:, :, :tile].transpose(1, 0, 2).reshape(n_rows, n_tiles * tile)[:, :g]
    s2 = out[:, :, tile:].transpose(1, 0, 2).reshape(n_rows, n_tiles * tile)[:, :g]
    return s1, s2


def prefix_sums(x, shift, order, stops, *, tile: int = 256):
    """Shifted sums S1, S2 (len(stops), G) over the first ``s`` cells of ``order`` for each stop s."""
    stops = np.asarray(stops, np.int64)
    if stops.size and np.any(np.diff(stops) < 0):
        raise ValueError("stops must be ascending")
    tile = int(max(8, min(tile, x.shape[1])))
    return _prefix_sums(x, np.asarray(shift, np.float64), np.asarray(order, np.int64), stops, tile)


def term_sums(matrix, *values: np.ndarray):
    """Each (F, G) array in ``values`` summed over each term's genes of the CSR ``matrix`` (T, G) → (F, T)
    (one array, or a tuple for two arrays, summed in one pass)."""
    vals = []
    for v in values:
        v = np.ascontiguousarray(v)
        vals.append(v.view(np.int8) if v.dtype == bool else v)
    ptr, idx = matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64)
    if len(vals) == 1:
        return _term_sums(ptr, idx, vals[0])
    if len(vals) == 2:
        return _term_sums2(ptr, idx, vals[0], vals[1])
    raise ValueError("term_sums takes one or two arrays")
