"""The annotation statistics engine against scipy.stats, on small synthetic data with planted signal."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from core.annotate import (COLUMNS, batched_de, binom_two_sided, bh, enrich, enrichment_stats, mwu_from_rank_sums,
                           rank_rows, select_groups, significant_genes, welch_from_moments)
from core.concepts import ConceptDB
from core.base.errors import InputError
from core.base.progress import Cancelled

RTOL = 1e-9


def _activations(rng, n_cells=1500, n_feat=12, *, dead=(), everywhere=(), two_cells=()):
    a = rng.exponential(1.0, (n_cells, n_feat)).astype(np.float32)
    a[rng.random((n_cells, n_feat)) > rng.uniform(0.03, 0.4, n_feat)] = 0
    a[:, 1] = np.round(a[:, 1] * 2) / 2  # ties among the active values
    for j in dead:
        a[:, j] = 0
    for j in everywhere:
        a[:, j] = rng.uniform(0.5, 1.0, n_cells)
    for j in two_cells:
        a[:, j] = 0
        a[[3, 7], j] = 1.0
    return a


def _expression(rng, n_cells, n_genes, *, counts=False):
    if counts:
        return rng.poisson(rng.gamma(0.6, 2.0, n_genes), (n_cells, n_genes)).astype(np.float32)
    x = (rng.gamma(2.0, 1.0, (n_cells, n_genes)) * rng.lognormal(2.0, 1.0, n_genes)).astype(np.float32)
    x[:, 0] = 3.5  # constant everywhere: untestable
    x[:, 1] = 0.0
    x[:, 4:6] = 2e4 + rng.normal(0, 1.0, (n_cells, 2))  # large mean, tiny variance: E[x²] − E[x]² would fail
    return x


def _welch_scipy(x, groups, i):
    """scipy's Welch test on float64 copies of the group data; untestable → t NaN, p 1."""
    h = np.asarray(x[groups.high_cells(i)], np.float64)
    lo = np.asarray(x[groups.low_cells(i)], np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's "precision loss" on constant genes
        r = stats.ttest_ind(h, lo, equal_var=False)
    se = np.sqrt(h.var(0, ddof=1) / len(h) + lo.var(0, ddof=1) / len(lo))
    ok = se > 0
    t = np.where(ok, r.statistic, np.nan)
    p = np.where(ok, r.pvalue, 1.0)
    return h, lo, t, p


def _assert_rel(a, b, rtol=RTOL):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    m = ~np.isnan(a)
    np.testing.assert_allclose(a[m], b[m], rtol=rtol, atol=0)


# ------------------------------------------------------------------ groups
def test_high_cells_match_numpy_percentile_exactly(rng):
    a = _activations(rng, dead=[2], two_cells=[3])
    for pct in (99.0, 90.0, 50.0):
        g = select_groups(sp.csr_matrix(a), seed=0, percentile=pct)
        for j in range(a.shape[1]):
            thr = np.percentile(a[:, j], pct)
            assert g.threshold[j] == thr
            np.testing.assert_array_equal(g.high_cells(j), np.flatnonzero(a[:, j] > thr))


def test_low_cells_are_a_seeded_uniform_sample_of_zero_cells(rng):
    a = _activations(rng, n_cells=4000)
    g = select_groups(a, seed=7, n_low=500)
    for j in range(a.shape[1]):
        low = g.low_cells(j)
        zeros = np.flatnonzero(a[:, j] == 0)
        assert low.size == min(500, zeros.size) and np.unique(low).size == low.size
        assert np.all(a[low, j] == 0)
        assert not np.array_equal(low, zeros[:500])  # not the first cells in index order
    # unbiased: low cells spread over the whole index range, not its start
    assert 0.4 < np.mean(np.concatenate([g.low_cells(j) for j in range(a.shape[1])]) < 2000) < 0.6
    same = select_groups(a, seed=7, n_low=500, features=[5, 1])
    np.testing.assert_array_equal(same.low_cells(0), g.low_cells(5))
    np.testing.assert_array_equal(same.high_cells(1), g.high_cells(1))
    other = select_groups(a, seed=8, n_low=500)
    assert not np.array_equal(other.low_cells(0), g.low_cells(0))


def test_features_with_too_few_cells_are_skipped_with_a_reason(rng):
    a = _activations(rng, dead=[0], everywhere=[1], two_cells=[2])
    g = select_groups(sp.csc_matrix(a), seed=0, min_cells=3)
    assert g.reason[0] == "never active (dead)"
    assert "zero activation" in g.reason[1]
    assert "percentile" in g.reason[2]
    assert g.testable.tolist() == [False, False, False] + [True] * (a.shape[1] - 3)
    assert [len(b) for b in g.blocks(4)] == [4, 4, 1]
    with pytest.raises(InputError, match="cannot be tested"):
        batched_de(np.ones((a.shape[0], 3), np.float32), g.subset([0, 3]))
    summary = g.summary()
    assert list(summary.columns) == ["feature", "threshold", "n_active", "n_high", "n_low", "reason"]


def test_group_export_and_selection_matrices_agree(rng):
    a = _activations(rng, dead=[4])
    g = select_groups(a, seed=1, n_low=300)
    frame = g.to_frame()
    assert list(frame.columns) == ["feature", "group", "cell_index"]
    assert 4 not in set(frame["feature"])
    for j in (0, 5):
        np.testing.assert_array_equal(frame.query("feature == @j and group == 'high'")["cell_index"], g.high_cells(j))
        np.testing.assert_array_equal(frame.query("feature == @j and group == 'low'")["cell_index"], g.low_cells(j))
    hi, lo = g.selection("high"), g.selection("low")
    assert hi.shape == lo.shape == (a.shape[1], a.shape[0])
    np.testing.assert_array_equal(np.asarray(hi.sum(1)).ravel(), g.n_high)
    np.testing.assert_array_equal(np.asarray(lo.sum(1)).ravel(), g.n_low)


def test_bad_activations_are_refused():
    with pytest.raises(InputError, match="≥ 0"):
        select_groups(-np.ones((10, 2)), seed=0)
    with pytest.raises(InputError, match="NaN"):
        select_groups(np.full((10, 2), np.nan), seed=0)


# ------------------------------------------------------------------ DE
@pytest.mark.parametrize("kind", ["dense", "memmap", "sparse"])
def test_de_matches_scipy_welch_and_bh(rng, tmp_path, kind):
    n_cells, n_genes = 1200, 90
    a = _activations(rng, n_cells=n_cells, n_feat=6)
    x = _expression(rng, n_cells, n_genes, counts=(kind == "sparse"))
    g = select_groups(a, seed=3, n_low=400)
    # a gene constant in the low group only, and one constant in both groups at different levels
    x[g.low_cells(0), 2] = 4.0
    x[g.low_cells(0), 3], x[g.high_cells(0), 3] = 1.0, 9.0
    if kind == "memmap":
        mm = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=x.shape)
        mm[:] = x
        expr = mm
    elif kind == "sparse":
        expr = sp.csr_matrix(x)
    else:
        expr = x
    de = batched_de(expr, g.subset(g.testable), gene_chunk=32, tile=16)
    for i, f in enumerate(de.feature):
        h, lo, t, p = _welch_scipy(x, g, g.position(f))
        np.testing.assert_allclose(de.mean_high[i], h.mean(0), rtol=1e-12)
        np.testing.assert_allclose(de.mean_low[i], lo.mean(0), rtol=1e-12, atol=1e-300)
        _assert_rel(de.t[i], t)
        _assert_rel(de.p[i], p)
        _assert_rel(de.q[i], stats.false_discovery_control(p))
        _assert_rel(de.fold_change[i], h.mean(0) / (lo.mean(0) + 1e-8), rtol=1e-12)
    if kind != "sparse":
        assert np.isnan(de.t[:, :2]).all() and (de.p[:, :2] == 1).all()  # zero variance: untestable
    i0 = de.position(0)
    assert np.isfinite(de.t[i0, 2])  # constant in one group only: tested, as scipy
    assert np.isnan(de.t[i0, 3]) and de.p[i0, 3] == 1.0  # both constant: untestable


def test_blocks_and_gene_chunks_give_the_same_result(rng):
    a = _activations(rng, n_cells=1000, n_feat=10)
    x = _expression(rng, 1000, 70)
    g = select_groups(a, seed=0, n_low=300)
    one = batched_de(x, g, gene_chunk=1000, tile=256)
    parts = [batched_de(x, b, gene_chunk=9, tile=8) for b in g.blocks(3)]
    for name in ("mean_high", "mean_low", "fold_change", "t", "p", "q"):
        whole = getattr(one, name)
        split = np.vstack([getattr(d, name) for d in parts])
        np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-300, equal_nan=True)
    np.testing.assert_array_equal(np.vstack([d.significant for d in parts]), one.significant)


def test_significance_rule_strict_then_fallback():
    q = np.array([[1e-7, 1e-7, 0.01], [1e-3, 0.04, 0.2]])
    fc = np.array([[3.0, 1.1, 5.0], [4.0, 0.9, 1.0]])
    sig, rule = significant_genes(q, fc)
    assert sig.tolist() == [[True, False, False], [True, True, False]]
    assert rule.tolist() == ["strict", "fallback"]


def test_de_table_progress_and_cancel(rng):
    a = _activations(rng, n_cells=800, n_feat=4)
    x = _expression(rng, 800, 40)
    g = select_groups(a, seed=0, n_low=200)
    calls = []
    de = batched_de(x, g, gene_chunk=16, progress=lambda d, t, m: calls.append((d, t)))
    assert calls[-1] == (40, 40) and [c[0] for c in calls] == sorted(c[0] for c in calls)
    table = de.table(2, genes=[f"G{i}" for i in range(40)])
    assert list(table.columns) == ["gene", "mean_high", "mean_low", "fold_change", "t", "p", "q", "significant"]
    assert table["gene"].iloc[5] == "G5" and table["p"].iloc[5] == de.p[de.position(2), 5]
    with pytest.raises(Cancelled):
        batched_de(x, g, should_stop=lambda: True)
    with pytest.raises(InputError, match="shape"):
        batched_de(x[:10], g)


# ------------------------------------------------------------------ primitives
def test_welch_from_moments_matches_scipy(rng):
    a, b = rng.normal(5, 2, (40, 7)), rng.normal(5.5, 0.5, (300, 7))
    t, df, p = welch_from_moments(40, a.mean(0), ((a - a.mean(0)) ** 2).sum(0), 300, b.mean(0),
                                  ((b - b.mean(0)) ** 2).sum(0))
    r = stats.ttest_ind(a, b, equal_var=False)
    _assert_rel(t, r.statistic)
    _assert_rel(p, r.pvalue)


def test_bh_matches_scipy_with_ties(rng):
    p = np.round(rng.random((5, 200)) ** 3, 3)
    p[0, :50] = 1.0
    q = bh(p, axis=1)
    for row, qrow in zip(p, q):
        _assert_rel(qrow, stats.false_discovery_control(row), rtol=1e-13)
    _assert_rel(bh(p.T, axis=0), q.T, rtol=0)


def test_binomial_two_sided_matches_scipy_binomtest(rng):
    cases = [(0, 1, 0.3), (1, 1, 0.3), (0, 10, 0.5), (10, 10, 0.5), (5, 10, 0.5), (3, 10, 0.5), (0, 500, 0.001),
             (500, 500, 0.001), (0, 50, 0.02), (1, 50, 0.02), (2, 50, 0.02), (12, 40, 0.3), (3, 9, 0.1),
             (7, 20, 0.35), (1, 3, 1 / 3), (2, 6, 0.5), (13431, 13431, 37 / 13431)]
    n = rng.integers(1, 3000, 400)
    k = (rng.random(400) * (n + 1)).astype(int)
    k[:60] = 0
    k[60:120] = n[60:120]
    p = rng.integers(10, 501, 400) / 13431
    p[200:260] = rng.random(60)
    cases += list(zip(k, n, p))
    k, n, p = map(np.array, zip(*cases))
    ours = binom_two_sided(k, n, p)
    ref = np.array([stats.binomtest(int(a), int(b), float(c)).pvalue for a, b, c in zip(k, n, p)])
    _assert_rel(ours, ref)


def test_rank_rows_matches_rankdata_with_ties(rng):
    x = np.round(rng.normal(size=(4, 300)), 1)
    x[1, :100] = 0.0
    ranks, ties = rank_rows(x)
    for row, r, tt in zip(x, ranks, ties):
        np.testing.assert_array_equal(r, stats.rankdata(row))
        _, counts = np.unique(row, return_counts=True)
        assert tt == (counts ** 3 - counts).sum()
    ranks, _ = rank_rows(np.array([[2.0, np.nan, 1.0, np.nan]]))
    assert ranks.tolist() == [[2.0, 3.5, 1.0, 3.5]]  # NaN last, tied


def test_mwu_matches_scipy_asymptotic_without_continuity(rng):
    values = np.round(rng.gamma(2, 1, 500), 1)  # many ties
    ranks, ties = rank_rows(values[None, :])
    for size in (1, 10, 37, 250, 499):
        for shift in (0.0, 0.7, -0.7):
            members = rng.choice(500, size, replace=False)
            v = values.copy()
            v[members] += shift
            ranks, ties = rank_rows(v[None, :])
            inset = np.zeros(500, bool)
            inset[members] = True
            u, z, p_up, p_two = mwu_from_rank_sums(ranks[0, inset].sum(), size, 500, ties[0])
            kw = dict(use_continuity=False, method="asymptotic")
            greater = stats.mannwhitneyu(v[inset], v[~inset], alternative="greater", **kw)
            two = stats.mannwhitneyu(v[inset], v[~inset], **kw)
            assert u == greater.statistic
            _assert_rel(p_up, greater.pvalue)
            _assert_rel(p_two, two.pvalue)
            assert (z > 0) == (p_up < 0.5)
    _, z, p_up, p_two = mwu_from_rank_sums(0.0, 0, 500, 0.0)
    assert (z, p_up, p_two) == (0.0, 1.0, 1.0)


# ------------------------------------------------------------------ enrichment
def _random_db(rng, genes, n_terms=25):
    sizes = rng.integers(5, 30, n_terms)
    rows = [np.isin(np.arange(len(genes)), rng.choice(len(genes), s, replace=False)) for s in sizes]
    terms = pd.DataFrame({"id": [f"T:{i}" for i in range(n_terms)], "name": [f"term {i}" for i in range(n_terms)],
                          "namespace": "BP", "source": "test", "level1": [()] * n_terms})
    return ConceptDB(sp.csr_matrix(np.array(rows)), terms, pd.Index(genes))


def test_enrichment_matches_scipy_per_pair(rng):
    a = _activations(rng, n_cells=1500, n_feat=5)
    x = _expression(rng, 1500, 120)
    x[:, 10] = x[:, 11]  # tied fold changes
    g = select_groups(a, seed=0, n_low=500)
    de = batched_de(x, g, q_strict=0.2, min_fold=1.05)
    db = _random_db(rng, [f"G{i}" for i in range(120)])
    s = enrichment_stats(de, db)
    m = db.matrix.toarray()
    for i in range(len(de)):
        sig, fc, n = de.significant[i], de.fold_change[i], int(de.significant[i].sum())
        binom_p = []
        for t in range(db.n_terms):
            inset = m[t]
            k = int((sig & inset).sum())
            assert s["hits"][i, t] == k
            pb = stats.binomtest(k, n, inset.sum() / 120).pvalue if n else 1.0
            binom_p.append(pb)
            _assert_rel(s["expected"][i, t], n * inset.sum() / 120)
            kw = dict(use_continuity=False, method="asymptotic")
            up = stats.mannwhitneyu(fc[inset], fc[~inset], alternative="greater", **kw)
            two = stats.mannwhitneyu(fc[inset], fc[~inset], **kw)
            _assert_rel(s["mwu_p_up"][i, t], up.pvalue)
            _assert_rel(s["mwu_p_two_sided"][i, t], two.pvalue)
            _assert_rel(s["effect_size"][i, t], 1 - up.statistic / (inset.sum() * (~inset).sum()))
        _assert_rel(s["binom_p"][i], binom_p)
        _assert_rel(s["binom_q"][i], stats.false_discovery_control(binom_p))
        _assert_rel(s["mwu_q"][i], stats.false_discovery_control(s["mwu_p_two_sided"][i]))
    table = enrich(de, db, keep="all")
    assert list(table.columns) == COLUMNS and len(table) == len(de) * db.n_terms
    expected_dir = np.where(table["hits"] > table["expected"], "over",
                            np.where(table["hits"] < table["expected"], "under", "none"))
    assert (table["direction"].astype(str) == expected_dir).all() and set(expected_dir) >= {"over", "under"}
    _assert_rel(table["fold_enrichment"], table["hits"] / table["expected"])
    kept = enrich(de, db, binom_p_max=0.05, mwu_p_max=0.05)
    assert ((kept["binom_p"] < 0.05) | (kept["mwu_p_two_sided"] < 0.05)).all()
    both = enrich(de, db, binom_p_max=0.05, mwu_p_max=0.05, keep="both")
    assert len(both) <= len(kept)
    with pytest.raises(InputError, match="restrict"):
        enrich(de, _random_db(rng, [f"G{i}" for i in range(50)]))


def test_planted_go_term_is_the_top_hit(rng):
    """Features driven by real GO BP gene sets recover them as their top binomial and MWU term."""
    from core.concepts import load_go
    from core.concepts.match import prepare_concepts

    bp = load_go(["BP"])
    genes = list(bp.genes[:3000])
    db = prepare_concepts([bp], genes, min_size=10, max_size=500)
    sizes = db.sizes
    m = db.matrix.tocsr()
    # planted terms: 20–60 genes, pairwise disjoint
    planted, used = [], set()
    for t in rng.permutation(np.flatnonzero((sizes >= 20) & (sizes <= 60))):
        gs = set(m[t].indices.tolist())
        if not gs & used:
            planted.append(int(t))
            used |= gs
        if len(planted) == 4:
            break
    n_cells = 3000
    x = (rng.gamma(3.0, 1.0, (n_cells, len(genes))) * rng.lognormal(1.0, 0.8, len(genes))).astype(np.float32)
    acts = np.zeros((n_cells, len(planted)), np.float32)
    for f, t in enumerate(planted):
        cells = rng.choice(n_cells, 90, replace=False)
        acts[cells, f] = rng.uniform(0.5, 2.0, cells.size)
        x[np.ix_(cells, m[t].indices)] *= 1.0 + 3.0 * acts[cells, f][:, None]  # program up with activation
    g = select_groups(acts, seed=0, n_low=1000)
    de = batched_de(x, g)
    table = enrich(de, db)
    ids = db.terms["id"].to_numpy()
    for f, t in enumerate(planted):
        rows = table[table["feature"] == f]
        top = rows.sort_values("binom_p").iloc[0]
        planted_row = rows[rows["term_id"] == ids[t]].iloc[0]
        assert planted_row["binom_p"] == top["binom_p"], (f, top["term_id"], ids[t])
        assert planted_row["direction"] == "over" and planted_row["binom_q"] < 1e-6
        assert planted_row["mwu_z"] > 0 and planted_row["mwu_p_up"] < 1e-6 and planted_row["effect_size"] < 0.2
        assert rows.sort_values("mwu_p_up").iloc[0]["mwu_p_up"] == planted_row["mwu_p_up"]
