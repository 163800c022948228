"""core.views.explorer: the Explorer's data (latent PCA, colour payload, card, search, reverse lookup)."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from core.views import explorer
from core.base.errors import InputError
from core.annotate.search import ConceptIndex, characteristic_features
from explore_data import small_analysis_path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return explorer.explorer_data(small_analysis_path(tmp_path_factory))


# ----------------------------------------------------------------------------- latent
def test_pca_2d_matches_sklearn_and_fixes_signs(rng):
    from sklearn.decomposition import PCA

    x = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 3.0
    coords, ratio = explorer.pca_2d(x)
    ref = PCA(n_components=2, svd_solver="full").fit(x)
    np.testing.assert_allclose(np.abs(coords), np.abs(ref.transform(x)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-9)
    assert coords.dtype == np.float32 and coords.shape == (200, 2)
    # sign convention: each axis's largest loading is positive, so negated data gives the mirror image
    xc = x - x.mean(0)
    loadings = np.linalg.lstsq(xc, coords.astype(float), rcond=None)[0]  # (6, 2)
    assert np.all(loadings[np.argmax(np.abs(loadings), axis=0), [0, 1]] > 0)
    mirrored, _ = explorer.pca_2d(-x)
    np.testing.assert_allclose(mirrored, -coords, rtol=1e-4, atol=1e-4)


def test_pca_2d_refuses_bad_embeddings():
    with pytest.raises(InputError, match="NaN"):
        explorer.pca_2d(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(InputError, match="≥ 2 cells"):
        explorer.pca_2d(np.zeros((1, 3)))


def test_latent_step_is_stored_once_and_matches_the_embedding(data):
    from core.data.load import load_dataset

    lat = data.latent()
    a = data.analysis
    assert a.has(explorer.LATENT_FILE) and a.has(explorer.CELLS_FILE)
    mtime = os.stat(a.file(explorer.LATENT_FILE)).st_mtime_ns
    explorer.ensure_latent(a)  # cached: not rewritten
    assert os.stat(a.file(explorer.LATENT_FILE)).st_mtime_ns == mtime
    ds = load_dataset(a.config["dataset"]["path"], embedding="X_pca", cell_type="bulk_labels")
    coords, ratio = explorer.pca_2d(ds.embedding)
    np.testing.assert_array_equal(lat.coords, coords)
    np.testing.assert_allclose(lat.explained, ratio)
    assert list(lat.labels) == list(ds.obs["bulk_labels"].astype(str))
    assert list(lat.cell_names) == list(ds.obs.index)


def test_explorer_data_is_cached_until_a_file_changes(data, tmp_path_factory):
    path = small_analysis_path(tmp_path_factory)
    assert explorer.explorer_data(path) is data
    f = data.analysis.file("features.parquet")
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    try:
        fresh = explorer.explorer_data(path)
        assert fresh is not data and fresh.n_features == data.n_features
    finally:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_explorer_data_refuses_an_untrained_analysis(tmp_path):
    from core.store.analysis import Analysis

    Analysis.create(tmp_path / "a", dataset={"path": "x"})
    with pytest.raises(InputError, match="no trained SAE"):
        explorer.explorer_data(tmp_path / "a")


# ----------------------------------------------------------------------------- one feature
def test_feature_cells_sorted_high_last_and_sums(data):
    dense = data.acts.toarray()
    for f in (0, 5, 17):
        cells, values = explorer.feature_cells(data.acts, f)
        assert set(cells) == set(np.flatnonzero(dense[:, f] > 0))
        np.testing.assert_array_equal(values, dense[cells, f])
        assert np.all(np.diff(values) >= 0)
    cells, values = explorer.feature_cells(data.acts, [3, 5, 9])
    total = dense[:, [3, 5, 9]].sum(1)
    assert set(cells) == set(np.flatnonzero(total > 0))
    np.testing.assert_allclose(values, total[cells], rtol=1e-6)
    assert np.all(np.diff(values) >= 0)


def test_cell_type_profile_agrees_with_characterisation_and_scipy(data):
    lat = data.latent()
    dense = data.acts.toarray().astype(np.float64)
    for f in range(data.n_features):
        cells, values = explorer.feature_cells(data.acts, f)
        prof = explorer.cell_type_profile(cells, values, lat.codes, lat.types)
        expected = set(filter(None, str(data.features.loc[f, "significant_types"]).split("|")))
        assert set(prof.loc[prof["significant"], "cell_type"]) == expected, f
        if f < 3:
            for t, row in prof.set_index("cell_type").iterrows():
                col = dense[lat.labels == t, f]
                assert row["n"] == col.size
                np.testing.assert_allclose(row["mean"], col.mean(), rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose(row["se"], stats.sem(col), rtol=1e-6, atol=1e-12)
                np.testing.assert_allclose(row["frac_active"], (col > 0).mean())
                np.testing.assert_allclose(data.features.loc[f, f"mean[{t}]"], col.mean(), rtol=1e-5, atol=1e-7)


def test_activation_histogram():
    v = np.array([0.5, 1.0, 1.0, 2.0, 4.0])
    h = explorer.activation_histogram(v, n_cells=10, bins=4)
    counts, edges = np.histogram(v, bins=4)
    np.testing.assert_array_equal(h["counts"], counts)
    np.testing.assert_array_equal(h["edges"], edges)
    assert (h["n_zero"], h["n_active"]) == (5, 5)
    assert explorer.activation_histogram(np.zeros(0), n_cells=3)["counts"].size == 0


def test_feature_summary_and_terms(data):
    s = explorer.feature_summary(data, 5)
    assert s["feature"] == 5 and s["n_cells"] == data.acts.indptr[6] - data.acts.indptr[5]
    assert s["frequency"] == pytest.approx(s["n_cells"] / 700)
    assert s["locality"] == data.features.loc[5, "locality"]
    from core.annotate.reported import headline_p, reported

    terms = explorer.feature_terms(data.annotations, 5)
    assert len(terms) == s["n_terms"] == (reported(data.annotations)["feature"] == 5).sum()
    assert headline_p(terms).is_monotonic_increasing and "feature" not in terms
    assert list(terms.columns[:3]) == ["term_id", "term_name", "namespace"] and (terms["status"] == "reported").all()
    every = explorer.feature_terms(data.annotations, 5, show_all=True)
    assert len(every) == (data.annotations["feature"] == 5).sum()
    with pytest.raises(InputError, match="does not exist"):
        explorer.feature_summary(data, 10_000)
    with pytest.raises(InputError, match="not a feature number"):
        explorer.feature_summary(data, "x")


def _calibrated_rows():
    """One feature's rows of the new contract: 2 reported, 1 explained ancestor, 1 down, 1 nominal only."""
    return pd.DataFrame({
        "feature": [4, 4, 4, 4, 4, 9], "term_id": ["GO:b", "GO:a", "GO:anc", "GO:down", "GO:nom", "GO:a"],
        "term_name": ["beta", "alpha", "ancestor", "down term", "nominal", "alpha"], "namespace": "BP",
        "hyper_p": [1e-5, 1e-8, 1e-9, 1e-12, 1e-3, 1e-2], "hyper_q": [1e-3, 1e-6, 1e-7, 1e-10, 0.2, 0.1],
        "binom_p": [1e-9, 1e-3, 1e-9, 1e-9, 1e-9, 1e-9], "reported": [True, True, False, False, False, True],
        "redundant_with": ["", "", "GO:a", "", "", ""], "de_direction": ["up", "up", "up", "down", "up", "up"]})


def test_feature_terms_reported_by_headline_p_and_all_nominal_with_status():
    ann = _calibrated_rows()
    terms = explorer.feature_terms(ann, 4)
    assert terms["term_id"].tolist() == ["GO:a", "GO:b"]            # by hyper_p, not binom_p
    assert (terms["status"] == "reported").all() and "feature" not in terms
    every = explorer.feature_terms(ann, 4, show_all=True)
    assert every["term_id"].tolist() == ["GO:a", "GO:b", "GO:down", "GO:anc", "GO:nom"]  # reported first
    status = dict(zip(every["term_id"], every["status"]))
    assert status["GO:anc"] == "explained by alpha" and status["GO:down"] == "down in high cells"
    assert status["GO:nom"] == "nominal only"
    both = ann.assign(de_direction="down", redundant_with=["", "", "GO:a", "", "", ""])
    assert explorer.term_status(both).tolist()[1:3] == ["reported; down in high cells",
                                                       "down in high cells; explained by alpha"]
    assert {"de_direction", "redundant_with", "hyper_p", "reported"} <= set(every.columns)
    # old tables: every row is reported, best binomial p first
    old = ann.drop(columns=["hyper_p", "hyper_q", "reported", "redundant_with", "de_direction"])
    t = explorer.feature_terms(old, 4)
    assert len(t) == 5 and t["binom_p"].is_monotonic_increasing and (t["status"] == "reported").all()
    assert explorer.feature_terms(None, 4).empty and explorer.feature_terms(ann, 7).empty


def test_feature_de_table_equals_annotation_de(data):
    """The card's table (computed from the feature's cells only) equals the batched calibrated DE of
    `featurelens de`, and its means are those of log1p(counts × median library size / library size)."""
    from core.annotate.single import feature_de

    f = 7
    s = explorer.annotation_settings(data.analysis)
    assert s["method"] == "calibrated"
    table = explorer.feature_de_table(data, f)
    ref, cells = feature_de(data.analysis, f, expression=s["expression"], percentile=s["percentile"],
                            n_low=s["n_low"])
    ref = ref.set_index("gene").loc[table["gene"]]
    for col, rcol in (("mean_high", "mean_high"), ("mean_low", "mean_low"), ("log2_fold_change", "lfc"),
                      ("t", "t"), ("p", "p"), ("q", "q")):
        # the batched engine sums shifted values (mean exact to ~1e-16 absolute); here means are direct
        np.testing.assert_allclose(table[col].to_numpy(), ref[rcol].to_numpy(), rtol=1e-7, atol=1e-12,
                                   equal_nan=True, err_msg=col)
    np.testing.assert_array_equal(table["significant"].to_numpy(), ref["significant"].to_numpy())
    X = data.expression().matrix
    X = (X.toarray() if sp.issparse(X) else np.asarray(X)).astype(np.float64)
    lib = X.sum(1)
    L = np.log1p(X * (np.median(lib[lib > 0]) / np.where(lib > 0, lib, 1))[:, None])
    hi = cells.loc[cells["group"] == "high", "cell_index"].to_numpy()
    genes = list(data.expression().gene_names)
    cols = [genes.index(g) for g in table["gene"]]
    np.testing.assert_allclose(table["mean_high"].to_numpy(), L[hi][:, cols].mean(0), rtol=1e-5, atol=1e-6)
    assert table["t"].dropna().is_monotonic_decreasing
    assert data.de_table(f) is data.de_table(f)  # remembered
    # annotation made the by-cell copy the card reads; without it (older analyses) the same table
    assert data.count_rows() is not None and data.count_rows().format == "csr"
    saved, data._count_rows = data._count_rows, (None,)
    try:
        pd.testing.assert_frame_equal(explorer.feature_de_table(data, f), table, check_exact=False, rtol=1e-9)
    finally:
        data._count_rows = saved


def test_paper_method_de_table_is_scipys_welch(data):
    from core.annotate.single import feature_de

    f = 7
    s = {**explorer.annotation_settings(data.analysis), "method": "paper"}
    from core.annotate.groups import select_groups

    groups = select_groups(data.acts, seed=data.analysis.seed, features=[f], percentile=s["percentile"],
                           n_low=s["n_low"], min_cells=s["min_cells"])
    hi, lo = groups.high_cells(0), groups.low_cells(0)
    genes = np.asarray(data.expression().gene_names, dtype=str)
    table = explorer.paper_table(data.expression().matrix, hi, lo, s, genes)
    ref, _ = feature_de(data.analysis, f, method="paper", expression=s["expression"], percentile=s["percentile"],
                        n_low=s["n_low"])
    for col in ("mean_high", "mean_low", "fold_change", "t", "p", "q"):
        np.testing.assert_allclose(table[col].to_numpy(), ref[col].to_numpy(), rtol=1e-8, atol=1e-12,
                                   equal_nan=True, err_msg=col)
    X = data.expression().matrix
    X = (X.toarray() if sp.issparse(X) else np.asarray(X)).astype(np.float64)
    for j in np.argsort(ref["p"].to_numpy())[:5]:
        res = stats.ttest_ind(X[hi, j], X[lo, j], equal_var=False)
        np.testing.assert_allclose([table["t"][j], table["p"][j]], [res.statistic, res.pvalue], rtol=1e-9)


# ----------------------------------------------------------------------------- gene index
def test_top_genes_are_the_significant_up_genes_by_t(data):
    top = explorer.build_top_genes(data.analysis, n_top=20)
    assert data.analysis.has(explorer.TOP_GENES_FILE)
    for f in (5, 7):
        de = explorer.feature_de_table(data, f)
        up = de[de["significant"] & (de["t"] > 0)].sort_values("t", ascending=False)
        mine = top[top["feature"] == f].sort_values("rank")
        assert mine["gene"].tolist() == up["gene"].head(20).tolist()
        np.testing.assert_allclose(mine["t"].to_numpy(), up["t"].head(20).to_numpy(), rtol=1e-7)
    mtime = os.stat(data.analysis.file(explorer.TOP_GENES_FILE)).st_mtime_ns
    explorer.build_top_genes(data.analysis, n_top=20)  # cached
    assert os.stat(data.analysis.file(explorer.TOP_GENES_FILE)).st_mtime_ns == mtime


def test_gene_index_search_and_suggest():
    top = pd.DataFrame({"feature": [1, 2, 3, 3, 4], "rank": [2, 1, 1, 2, 1], "gene": ["CD79A", "CD79A", "LYZ",
                                                                                     "cd79a", "CD79B"],
                        "fold_change": [3.0, 5, 2, 2, 9], "t": [4.0, 9, 3, 5, 7], "q": [1e-5] * 5})
    gi = explorer.GeneIndex(top)
    res = gi.search("cd79a")
    assert res["feature"].tolist() == [2, 3, 1]  # rank 1 first, then rank 2 by t
    assert gi.search("nope").empty and gi.search("").empty
    assert gi.suggest("cd7") == ["CD79A", "CD79B", "cd79a"] and gi.suggest("") == []


# ----------------------------------------------------------------------------- search
def test_parse_feature_ids():
    assert explorer.parse_feature_ids("12", n_features=100) == [12]
    assert explorer.parse_feature_ids("3, 7 #9; 10-12", n_features=100) == [3, 7, 9, 10, 11, 12]
    assert explorer.parse_feature_ids("5-3, 4", n_features=100) == [3, 4, 5]
    for bad, msg in (("abc", "not a feature number"), ("100", "does not exist"), ("-1", "not a feature"),
                     ("0-5000", "too long")):
        with pytest.raises(InputError, match=msg):
            explorer.parse_feature_ids(bad, n_features=100)


def _random_annotations(rng, n_features=300, per=12):
    names = np.array(["B cell activation", "T cell receptor signaling", "erythrocyte differentiation",
                      "antigen processing", "immune response", "heme biosynthesis", "cell cycle",
                      "oxygen transport", "regulation of T cell activation", "interferon response"])
    t = rng.integers(0, names.size, n_features * per)
    ann = pd.DataFrame({"feature": np.repeat(np.arange(n_features), per), "term_id": [f"GO:{i:07d}" for i in t],
                        "term_name": names[t], "binom_p": rng.choice([1e-3, 1e-4, 1e-5, 1e-6], t.size),
                        "mwu_p_up": rng.random(t.size)})
    return ann.drop_duplicates(["feature", "term_id"], ignore_index=True)


@pytest.mark.parametrize("query", ["t cell", "ERYTHRO", "GO:0000003", "immune", "cell", "zzz"])
def test_concept_search_ranks_exactly_as_concept_index(rng, query):
    ann = _random_annotations(rng)
    idx = ConceptIndex(ann)
    fast = explorer.ConceptSearch(idx, ann)
    for limit in (5, 50, 1000):
        pd.testing.assert_frame_equal(fast.search(query, limit=limit), idx.search(query, limit=limit),
                                      check_dtype=False)
    np.testing.assert_array_equal(fast.hits(query, limit=1000), idx.search(query, limit=1000)["feature"])
    assert fast.suggest(query) == idx.suggest(query, limit=12)


def test_search_features_three_modes(data):
    res = explorer.search_features(data, "antigen processing")
    ref = ConceptIndex(data.annotations).search("antigen processing", limit=50)
    assert res["feature"].tolist() == ref["feature"].tolist() and len(res) > 3
    assert res["match"].str.contains("antigen processing").all()
    from core.annotate.reported import reported

    on_map = res["feature"].isin(reported(data.annotations)["feature"])
    assert set(res.loc[on_map, "category"]) <= set(data.concept_map["category"])
    assert set(res.loc[~on_map, "category"]) <= {"not annotated"}  # found through an explained ancestor only
    hits = explorer.search_hits(data, "antigen processing")
    assert set(res["feature"]) <= set(hits) and hits[: len(res)].tolist() == res["feature"].tolist()
    explorer.build_top_genes(data.analysis)
    gres = explorer.search_features(data, "cd79a", mode="gene")
    top = data.analysis.read_parquet(explorer.TOP_GENES_FILE)
    assert set(gres["feature"]) == set(top.loc[top["gene"] == "CD79A", "feature"])
    assert "CD79A" in explorer.suggestions(data, "CD79", mode="gene")
    fres = explorer.search_features(data, "3, 5", mode="feature")
    assert fres["feature"].tolist() == [3, 5] and fres["p"].isna().all()
    active = np.diff(data.acts.indptr)                     # cells each feature is active in (CSC columns)
    for r in (res, gres, fres):
        assert r["cells"].tolist() == active[r["feature"]].tolist()
    assert fres["match"].tolist() == [f"feature {f}: active in {active[f]:,} cells" for f in (3, 5)]
    assert explorer.search_features(data, "  ").empty
    with pytest.raises(InputError, match="does not exist"):
        explorer.search_features(data, "999", mode="feature")
    with pytest.raises(InputError, match="unknown search mode"):
        explorer.search_features(data, "x", mode="nope")


# ----------------------------------------------------------------------------- reverse lookup
def test_reverse_lookup_of_one_cell_type_finds_its_local_features(data):
    lat = data.latent()
    t = data.features.loc[data.features["locality"] == "local", "top_cell_type"].value_counts().index[0]
    cells = np.flatnonzero(lat.labels == t)
    feats, terms = explorer.reverse_lookup(data, cells, top=10)
    ref = characteristic_features(data.acts, cells, top=10)
    assert feats["feature"].tolist() == ref["feature"].tolist()
    np.testing.assert_allclose(feats["z"], ref["z"])
    top = feats.iloc[0]
    assert top["significant"] and t in str(data.features.loc[top["feature"], "significant_types"]).split("|")
    # concepts: counted over the significant features' terms
    from core.annotate.reported import headline_p, reported

    sig = feats.loc[feats["significant"], "feature"]
    rep = reported(data.annotations)
    ann = rep[rep["feature"].isin(sig)]
    assert set(terms["term_id"]) <= set(ann["term_id"].astype(str))   # reported terms only
    for _, row in terms.iterrows():
        on = ann[ann["term_id"] == row["term_id"]]
        assert row["n_features"] == on["feature"].nunique()
        assert row["best_p"] == headline_p(on).min()
    assert terms["n_features"].is_monotonic_decreasing
    with pytest.raises(InputError, match="select at least"):
        explorer.reverse_lookup(data, [1])


# ----------------------------------------------------------------------------- card checks, heatmap (issue 16)
def test_down_terms_are_the_fdr_passing_down_rows_best_first():
    ann = _calibrated_rows()
    extra = pd.DataFrame({"feature": [4, 4], "term_id": ["GO:d2", "GO:d3"], "term_name": ["down two", "down miss"],
                          "namespace": "BP", "hyper_p": [1e-4, 0.01], "hyper_q": [1e-3, 0.3], "binom_p": 1e-9,
                          "reported": False, "redundant_with": "", "de_direction": "down"})
    down = explorer.feature_down_terms(pd.concat([ann, extra], ignore_index=True), 4, q_max=0.05)
    assert down["term_id"].tolist() == ["GO:down", "GO:d2"]       # GO:d3 misses the FDR; up rows never listed
    assert (down["status"] == "down in high cells").all() and "feature" not in down
    assert explorer.feature_down_terms(ann, 9).empty
    assert explorer.feature_down_terms(ann.drop(columns="de_direction"), 4) is None   # paper method: pooled
    assert explorer.feature_down_terms(None, 4) is None


class _Conf:
    """The two things :func:`explorer.feature_confounders` reads from an ExplorerData."""

    def __init__(self, table, n_features):
        self.confounders = None if table is None else table.set_index("feature")
        self.n_features = n_features

    check_feature = explorer.ExplorerData.check_feature


def test_feature_confounders_rows_of_the_analysis(data):
    table = pd.read_parquet(data.analysis.file(explorer.CONFOUNDERS_FILE))
    conf = explorer.feature_confounders(data, 5)
    got = {r["variable"]: r["value"] for r in conf["rows"]}
    want = {v: float(table.loc[table["feature"] == 5, f"{v}_r"].iloc[0])
            for v in ("library_size", "detected_genes", "pct_mito")}
    assert got == pytest.approx(want) and "batch" not in got       # PBMC has no batch column
    assert conf["tracks"] == explorer.feature_summary(data, 5)["tracks"] == ""
    assert "|r| ≥ 0.5" in conf["rule"] and "within cell types" in conf["rule"]
    assert explorer.feature_confounders(_Conf(None, 10), 3) is None   # older analysis: no file


def test_feature_confounders_flag_a_planted_library_size_feature(rng):
    """Feature 1 follows log library size within cell types: it is flagged, feature 0 (noise) is not."""
    from core.annotate.confounders import confounder_table

    n = 3000
    types = rng.choice(["a", "b", "c"], size=n)
    lib = rng.lognormal(8, 0.5, size=n)
    acts = np.c_[rng.exponential(size=n), np.log1p(lib) + rng.normal(0, 0.2, size=n), rng.exponential(size=n)]
    batch = rng.choice(["x", "y"], size=n)
    acts[:, 2] += 3 * (batch == "y")                                    # feature 2 follows the batch
    table = confounder_table(acts, {"library_size": lib, "batch": batch}, cell_types=types)
    stub = _Conf(table, 3)
    plain, tech, batched = (explorer.feature_confounders(stub, f) for f in range(3))
    assert plain["tracks"] == "" and not any(r["flag"] for r in plain["rows"])
    assert tech["tracks"] == "library_size" and tech["tracks_label"] == "library size"
    lib_row = next(r for r in tech["rows"] if r["variable"] == "library_size")
    assert lib_row["flag"] and lib_row["value"] > 0.9 and lib_row["statistic"] == "r"
    assert batched["tracks"] == "batch" and next(r for r in batched["rows"] if r["variable"] == "batch")["flag"]
    assert [r["variable"] for r in tech["rows"]] == ["library_size", "batch"]


def test_group_means_equal_a_direct_numpy_computation(rng, data):
    x = sp.random(400, 30, density=0.1, random_state=1, format="csc", dtype=np.float32)
    codes = rng.integers(0, 5, size=400)
    codes[codes == 3] = 0                                              # an empty group
    dense = x.toarray()
    want = np.stack([dense[codes == g].mean(axis=0) if (codes == g).any() else np.zeros(30) for g in range(5)])
    np.testing.assert_allclose(explorer.group_means(x, codes, 5), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explorer.group_means(dense, codes, 5), want, rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match="codes for"):
        explorer.group_means(x, codes[:10], 5)
    tm = data.type_means()
    lat = data.latent()
    acts = data.acts.toarray()
    ref = np.stack([acts[lat.codes == i].mean(axis=0) for i in range(len(lat.types))])
    np.testing.assert_allclose(tm.means, ref, rtol=1e-5, atol=1e-7)
    assert tm.types == lat.types and tm.counts.sum() == data.n_cells
    assert data.type_means() is tm                                      # once per analysis
    t = lat.types[0]                                                    # the annotation's own per-type means
    np.testing.assert_allclose(tm.means[0], data.features[f"mean[{t}]"].to_numpy(), rtol=1e-4, atol=1e-6)


def test_heatmap_data_groups_the_strongest_features_by_top_type(data):
    heat = explorer.heatmap_data(data, max_features=40)
    tm = data.type_means()
    live = np.flatnonzero(np.diff(data.acts.indptr) > 0)
    peak = tm.means.max(axis=0)
    assert heat.n_live == live.size and heat.n_shown == 40
    assert set(heat.features) == set(live[np.argsort(-peak[live], kind="stable")[:40]])
    np.testing.assert_array_equal(heat.means, tm.means[:, heat.features])
    assert heat.top_type.tolist() == data.features.loc[heat.features, "top_cell_type"].tolist()
    rank = [tm.types.index(t) for t in heat.top_type]
    assert rank == sorted(rank)                                          # grouped, in the types' order
    assert set(heat.locality) <= {"local", "regional", "global", "dead", "unknown"}
    assert explorer.heatmap_data(data, max_features=10_000).n_shown == live.size


def test_cell_type_features_lists_a_types_features_strongest_first(data):
    t = str(data.features["top_cell_type"].value_counts().index[0])
    res = explorer.cell_type_features(data, t)
    i = data.type_means().types.index(t)
    feats = res["feature"].to_numpy()
    assert len(res) > 0 and (data.features.loc[feats, "top_cell_type"] == t).all()
    live = np.diff(data.acts.indptr) > 0
    assert len(res) == min(50, int(((data.features["top_cell_type"] == t).to_numpy() & live).sum()))
    assert np.all(np.diff(data.type_means().means[i, feats]) <= 0)
    assert res["match"].iloc[0].startswith(f"top cell type {t} (") and list(res.columns) == ["feature", "match",
                                                                                           "p", "category"]
    with pytest.raises(InputError, match="not a cell type"):
        explorer.cell_type_features(data, "no such type")
