"""The calibrated annotation method: exact against scipy/statsmodels, and calibrated on nulls."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from statsmodels.stats.multitest import multipletests

from core.annotate.calibrated_de import calibrated_de
from core.annotate.groups import select_groups
from core.annotate.moderated import (bh_masked, hypergeom_over, rank_sum_correlated, squeeze_variances,
                                     term_correlation, trend_basis)
from core.annotate.normalise import detected_matrix, library_sizes, log_normalise
from core.annotate.pipeline import AnnotationConfig, annotate, load_concepts
from core.annotate.reported import findable, reported
from core.concepts.db import ConceptDB


# ------------------------------------------------------------------ exact pieces
def test_hypergeom_and_bh_equal_scipy_statsmodels():
    rng = np.random.default_rng(0)
    N = rng.integers(200, 3000, 50)
    K = (N * rng.uniform(0.005, 0.2, 50)).astype(int) + 1
    n = (N * rng.uniform(0.005, 0.1, 50)).astype(int) + 1
    k = np.minimum(rng.integers(0, 8, 50), np.minimum(K, n))
    np.testing.assert_allclose(hypergeom_over(k, N, K, n),
                               np.where(k > 0, stats.hypergeom.sf(k - 1, N, K, n), 1.0), rtol=1e-9, atol=1e-12)
    p = rng.random((4, 300)) ** 3
    mask = rng.random((4, 300)) < 0.7
    q = bh_masked(p, mask)
    for i in range(4):
        np.testing.assert_allclose(q[i, mask[i]], multipletests(p[i, mask[i]], method="fdr_bh")[1], rtol=1e-12)
        assert (q[i, ~mask[i]] == 1).all()


def test_rank_sum_without_correlation_is_scipys_mann_whitney():
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    x[:30] += 0.4
    idx = np.arange(30)
    r = stats.rankdata(x)
    z, p_up, p_down = rank_sum_correlated(r[idx].sum(), 30, 400, 0.0)
    ref_up = stats.mannwhitneyu(x[idx], x[30:], alternative="greater", method="asymptotic", use_continuity=True)
    ref_dn = stats.mannwhitneyu(x[idx], x[30:], alternative="less", method="asymptotic", use_continuity=True)
    assert z > 0
    np.testing.assert_allclose([p_up, p_down], [ref_up.pvalue, ref_dn.pvalue], rtol=1e-10)
    # correlation widens the null: the same shift is less significant
    _, p_corr, _ = rank_sum_correlated(r[idx].sum(), 30, 400, 0.05)
    assert p_corr > 5 * p_up


def test_correlated_gene_sets_hold_their_size_only_with_the_correlation_term():
    """Null: t statistics of genes in a term share a common factor (ρ = 0.1). The uncorrected rank-sum
    test rejects far too often at 5 %; with ρ estimated from the data it holds its size."""
    rng = np.random.default_rng(2)
    n_genes, m, reps = 1000, 40, 400
    p_plain, p_corr = [], []
    cells = rng.normal(size=(300, n_genes))
    common = rng.normal(size=(300, 1))
    cells[:, :m] = np.sqrt(0.9) * cells[:, :m] + np.sqrt(0.1) * common
    rho = term_correlation(cells, sp.csr_matrix((np.ones(m), (np.zeros(m, int), np.arange(m))), shape=(1, n_genes)),
                           cells=np.arange(300))[0]
    assert 0.05 < rho < 0.15
    for _ in range(reps):
        t = rng.normal(size=n_genes)
        t[:m] = np.sqrt(0.9) * t[:m] + np.sqrt(0.1) * rng.normal()
        r = stats.rankdata(t)
        z0, a, b = rank_sum_correlated(r[:m].sum(), m, n_genes, 0.0)
        z1, c, d = rank_sum_correlated(r[:m].sum(), m, n_genes, rho)
        p_plain.append(2 * min(a, b))
        p_corr.append(2 * min(c, d))
    assert np.mean(np.array(p_plain) < 0.05) > 0.3
    assert np.mean(np.array(p_corr) < 0.05) < 0.09


def test_squeeze_variances_recovers_the_prior():
    """s² = s0² χ²_d / d with σ² drawn from a scaled inverse χ² with d0 = 8: limma's moment fit finds d0."""
    rng = np.random.default_rng(3)
    G, d, d0 = 20_000, 10, 8.0
    level = rng.uniform(0, 3, G)
    s0 = np.exp(-0.5 * level)                       # a trend in expression
    sigma2 = s0 * d0 / rng.chisquare(d0, G)
    s2 = sigma2 * rng.chisquare(d, G) / d
    post, d0_hat, s0_hat = squeeze_variances(s2[None], np.array([float(d)]), np.ones((1, G), bool), trend_basis(level))
    assert d0_hat[0] == pytest.approx(d0, rel=0.15)
    assert np.median(s0_hat[0] / s0) == pytest.approx(1.0, rel=0.1)
    assert np.all((post[0] - np.minimum(s2, s0_hat[0]) >= -1e-12) & (post[0] - np.maximum(s2, s0_hat[0]) <= 1e-12))


def test_log_normalise_matches_numpy_dense_and_sparse(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.poisson(rng.gamma(0.5, 2, (300, 80))).astype(np.float32)
    X[5] = 0
    lib = X.sum(1)
    scale = np.where(lib > 0, np.median(lib[lib > 0]) / np.where(lib > 0, lib, 1), 0)
    ref = np.log1p(X * scale[:, None])
    np.testing.assert_allclose(library_sizes(sp.csc_matrix(X)), lib)
    np.testing.assert_allclose(log_normalise(sp.csr_matrix(X)).toarray(), ref, rtol=1e-6)
    np.testing.assert_allclose(log_normalise(X), ref, rtol=1e-6)
    np.testing.assert_allclose(log_normalise(X, out=tmp_path / "n.npy"), ref, rtol=1e-6)
    assert (detected_matrix(sp.csr_matrix(X)).toarray() == (X > 0)).all()


# ------------------------------------------------------------------ DE
def _nb_counts(rng, n, G):
    lib = rng.lognormal(np.log(2000), 0.4, n)
    frac = rng.lognormal(0, 1.5, G)
    frac /= frac.sum()
    theta = rng.lognormal(np.log(3), 0.5, G)
    mu = lib[:, None] * frac[None]
    return rng.negative_binomial(theta, theta / (theta + mu)).astype(np.float32)


def _random_features(rng, n_cells, n_feat, lo=40, hi=800):
    acts = np.zeros((n_cells, n_feat))
    for j in range(n_feat):
        c = rng.choice(n_cells, rng.integers(lo, hi), replace=False)
        acts[c, j] = rng.random(c.size) + 0.01
    return sp.csc_matrix(acts)


def test_moderated_t_without_a_prior_is_welch_on_log_normalised_values():
    """With fewer than 20 testable genes no prior is fitted (d0 = 0): the test is scipy's Welch."""
    rng = np.random.default_rng(5)
    X = _nb_counts(rng, 2000, 12) + 1
    L = log_normalise(X)
    g = select_groups(_random_features(rng, 2000, 3), seed=1)
    de = calibrated_de(L, g, kind="predicted")
    assert (de.d0 == 0).all()
    for i in range(3):
        hi, lo = g.high_cells(i), g.low_cells(i)
        ref = stats.ttest_ind(L[hi].astype(np.float64), L[lo].astype(np.float64), equal_var=False)
        np.testing.assert_allclose(de.t[i], ref.statistic, rtol=1e-6)
        np.testing.assert_allclose(de.p[i], ref.pvalue, rtol=1e-5)
        np.testing.assert_allclose(de.mean_high[i], L[hi].mean(0), rtol=1e-6)


def test_all_zero_high_group_is_not_significant():
    """The reference failure: a rare gene, all zero in the high cells, with a tiny mean in the low cells.
    Welch's p is ~1e-10 there; the moderated test and the detection filter do not call it."""
    rng = np.random.default_rng(6)
    n, G = 3000, 200
    X = _nb_counts(rng, n, G)
    acts = np.zeros((n, 1))
    acts[:60, 0] = 1 + rng.random(60)
    rare = np.zeros(n, np.float32)
    rare[60:][rng.random(n - 60) < 0.04] = 1
    X[:, 0] = rare
    g = select_groups(sp.csc_matrix(acts), seed=2)
    hi, lo = g.high_cells(0), g.low_cells(0)
    assert stats.ttest_ind(X[hi, 0], X[lo, 0], equal_var=False).pvalue < 1e-6
    Xs = sp.csc_matrix(X)
    de = calibrated_de(log_normalise(Xs), g, detected=detected_matrix(Xs))
    assert not de.tested[0, 0] and de.p[0, 0] == 1
    de_nofilter = calibrated_de(log_normalise(Xs), g, detected=None, kind="observed")
    assert de_nofilter.p[0, 0] > 1e-4 and not de_nofilter.significant[0, 0]


@pytest.mark.slow
def test_random_groups_give_uniform_p_values_and_almost_no_genes():
    """Null: random cell sets on NB counts. Per-gene p-values are uniform (KS over independent draws,
    one gene per draw), the p < 0.01 tail holds its size, and ≤ 5 % of groups get any significant gene."""
    rng = np.random.default_rng(7)
    n, G = 3000, 1200
    Xs = sp.csc_matrix(_nb_counts(rng, n, G))
    L, D = log_normalise(Xs), detected_matrix(Xs)
    sample, tails, any_sig = [], [], []
    for rep in range(12):   # independent low samples: a fresh seed per draw
        g = select_groups(_random_features(rng, n, 25), seed=100 + rep)
        de = calibrated_de(L, g, detected=D)
        any_sig.append(de.n_significant > 0)
        tails.append(de.p[de.tested])
        for i in range(len(de)):
            cols = np.flatnonzero(de.tested[i])
            sample.append(de.p[i, rng.choice(cols)])
    assert stats.kstest(sample, "uniform").pvalue > 0.01
    tails = np.concatenate(tails)
    assert 0.006 < np.mean(tails < 0.01) < 0.014
    assert np.mean(np.concatenate(any_sig)) <= 0.05


# ------------------------------------------------------------------ enrichment and the pipeline
def _toy_db(genes, sets: dict) -> ConceptDB:
    ids = list(sets)
    col = {g: j for j, g in enumerate(genes)}
    r = [i for i, t in enumerate(ids) for _ in sets[t]]
    c = [col[g] for t in ids for g in sets[t]]
    m = sp.csr_matrix((np.ones(len(r), bool), (r, c)), shape=(len(ids), len(genes)))
    terms = pd.DataFrame({"id": ids, "name": [f"term {t}" for t in ids], "namespace": "BP", "source": "toy",
                          "level1": [()] * len(ids)})
    return ConceptDB(m, terms, pd.Index(genes), "toy")


def test_up_terms_are_reported_down_terms_are_labelled_not_reported():
    """Genes of term A rise in the feature's high cells, genes of term B fall: the feature's concept is A;
    B appears only as a down row (what the low cells do)."""
    rng = np.random.default_rng(8)
    n, G = 3000, 600
    genes = [f"g{i}" for i in range(G)]
    X = _nb_counts(rng, n, G)
    acts = np.zeros((n, 1))
    high = rng.choice(n, 120, replace=False)
    acts[high, 0] = 1 + rng.random(120)
    up, down = np.arange(0, 30), np.arange(30, 60)
    X[np.ix_(high, up)] = rng.poisson(4 * X[np.ix_(high, up)] + 3)
    X[np.ix_(high, down)] = 0
    X[:, down] += rng.poisson(2.0, (n, 30))
    X[np.ix_(high, down)] = 0
    sets = {"A": [genes[i] for i in up], "B": [genes[i] for i in down]}
    sets.update({f"R{k}": list(rng.choice(genes[60:], 25, replace=False)) for k in range(40)})
    res = annotate(sp.csr_matrix(acts), sp.csc_matrix(X), genes, concepts=_toy_db(genes, sets), seed=0,
                   config=AnnotationConfig(concepts=(), gmt=("toy",), n_null=20), kind="observed")
    ann = res.annotations
    rep = reported(ann)
    assert rep["term_id"].tolist() == ["A"]
    b = ann[ann["term_id"] == "B"]
    assert len(b) == 1 and b["de_direction"].iloc[0] == "down" and not b["reported"].iloc[0]
    row = rep.iloc[0]
    assert row["n_universe"] <= G and row["hits"] >= 25
    ref = stats.binomtest(int(row["hits"]), int(row["n_significant"]), row["n_term_genes"] / row["n_universe"])
    assert row["binom_p"] == pytest.approx(ref.pvalue, rel=1e-9)
    ref_h = stats.hypergeom.sf(row["hits"] - 1, row["n_universe"], row["n_term_genes"], row["n_significant"])
    assert row["hyper_p"] == pytest.approx(ref_h, rel=1e-9)
    assert res.null["null_features_tested"] == 20 and res.null["null_features_annotated"] <= 1


def test_ancestors_are_explained_by_their_most_specific_descendant():
    """Real GO: genes of 'erythrocyte differentiation' rise; its ancestors (e.g. 'myeloid cell
    differentiation') stay in the table as redundant_with it, and search still finds them."""
    from core.concepts.dag import go_dag

    rng = np.random.default_rng(9)
    cfg = AnnotationConfig(concepts=("go-bp",), n_null=0)
    from core.concepts import load_go

    bp = load_go(["BP"])
    planted = bp.genes_of("GO:0030218")
    pool = [g for g in bp.genes[:4000] if g not in set(planted)]
    genes = planted + pool[:1500]
    concepts = load_concepts(cfg, genes)
    n = 3000
    X = _nb_counts(rng, n, len(genes))
    high = rng.choice(n, 150, replace=False)
    acts = np.zeros((n, 1))
    acts[high, 0] = 1 + rng.random(150)
    idx = np.arange(len(planted))
    X[np.ix_(high, idx)] = rng.poisson(3 * X[np.ix_(high, idx)] + 2)
    res = annotate(sp.csr_matrix(acts), sp.csc_matrix(X), genes, concepts=concepts, seed=0, config=cfg)
    ann = res.annotations
    rep = reported(ann)
    assert rep["term_id"].iloc[0] == "GO:0030218" and len(rep) <= 5
    anc = go_dag().ancestors("GO:0030218")
    explained = ann[ann["term_id"].isin(anc) & (ann["redundant_with"] != "")]
    assert len(explained) > 0 and not explained["reported"].any()
    assert set(explained["term_id"]) <= set(findable(ann)["term_id"])


def test_de_of_one_features_cells_equals_the_batched_de():
    """The Explorer's card recomputes one feature's DE from its cells only: the same numbers."""
    from core.annotate.calibrated_de import de_of_cells

    rng = np.random.default_rng(10)
    Xs = sp.csc_matrix(_nb_counts(rng, 2500, 300))
    L, D = log_normalise(Xs), detected_matrix(Xs)
    g = select_groups(_random_features(rng, 2500, 4), seed=4)
    de = calibrated_de(L, g, detected=D)
    Ld, Dd = L.toarray(), D.toarray().astype(bool)
    ref = np.sort(g.order[:1000])
    level = Ld[ref].astype(np.float64).mean(0).astype(np.float32)
    for i in range(4):
        hi, lo = g.high_cells(i), g.low_cells(i)
        one = de_of_cells(Ld[hi], Ld[lo], level, detected_high=Dd[hi], detected_low=Dd[lo])
        np.testing.assert_allclose(one.p[0], de.p[i], rtol=1e-7, atol=1e-300)
        np.testing.assert_array_equal(one.up[0], de.up[i])
        np.testing.assert_array_equal(one.tested[0], de.tested[i])
        # the card's sparse path (the stored values, never densified) gives the same numbers
        sparse = de_of_cells(sp.csr_matrix(L[hi]), sp.csr_matrix(L[lo]), level, detected_high=True, detected_low=True)
        np.testing.assert_allclose(sparse.t[0], one.t[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sparse.p[0], de.p[i], rtol=1e-7, atol=1e-300)
        np.testing.assert_array_equal(sparse.up[0] | sparse.down[0], de.up[i] | de.down[i])
        np.testing.assert_array_equal(sparse.tested[0], de.tested[i])
        np.testing.assert_allclose(sparse.detect_high[0], de.detect_high[i], rtol=1e-12)


def test_sparse_card_de_of_random_cells_is_calibrated():
    """Null check of the card's sparse path: random high and low cells of the same data give uniform
    p-values (KS) and no significant gene beyond chance."""
    from scipy import stats

    from core.annotate.calibrated_de import de_of_cells

    rng = np.random.default_rng(12)
    Xs = sp.csr_matrix(_nb_counts(rng, 3000, 400))
    L = sp.csr_matrix(log_normalise(Xs))
    level = np.asarray(L[:1000].mean(axis=0)).ravel().astype(np.float32)
    ps, n_sig = [], 0
    for _ in range(5):
        cells = rng.permutation(3000)
        one = de_of_cells(L[cells[:300]], L[cells[300:1300]], level, detected_high=True, detected_low=True)
        ps.append(one.p[0][one.tested[0]])
        n_sig += int((one.up[0] | one.down[0]).sum())
    assert stats.kstest(np.concatenate(ps), "uniform").pvalue > 1e-3
    assert n_sig <= 2


def test_bulk_p_values_decide_the_same_genes_as_exact_ones():
    """The annotation's bulk path computes the t distribution's p only where it decides q < 0.05."""
    rng = np.random.default_rng(11)
    X = _nb_counts(rng, 2500, 400) + 1
    L = log_normalise(X)
    acts = np.zeros((2500, 6))
    for j in range(6):
        c = rng.choice(2500, 300, replace=False)
        acts[c, j] = rng.random(300) + 0.01
        L[c[:40], j * 30:(j + 1) * 30] += rng.uniform(0.05, 0.6)   # effects from marginal to strong
    g = select_groups(sp.csc_matrix(acts), seed=5)
    exact = calibrated_de(L, g, kind="predicted", min_effect=0.0, min_lfc=0.0)
    bulk = calibrated_de(L, g, kind="predicted", min_effect=0.0, min_lfc=0.0, exact_p=False)
    assert 0 < exact.significant.sum() < exact.tested.sum()
    np.testing.assert_array_equal(exact.q < 0.05, bulk.q < 0.05)
    np.testing.assert_array_equal(exact.up, bulk.up)
    near = (exact.p > 1e-3) & (exact.p < 0.05)
    np.testing.assert_allclose(bulk.p[near], exact.p[near], rtol=1e-10)
    assert (bulk.p <= exact.p + 1e-15).all()


def test_bh_with_a_cut_is_exact_below_it():
    rng = np.random.default_rng(12)
    p = rng.random((5, 400)) ** 4
    mask = rng.random((5, 400)) < 0.8
    full, cut = bh_masked(p, mask), bh_masked(p, mask, cut=0.05)
    low = full < 0.05
    np.testing.assert_allclose(cut[low], full[low], rtol=1e-12)
    assert (cut[~low] >= 0.05).all()
