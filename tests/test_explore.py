"""Concept map, keyword search, reverse lookup and comparison."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from scipy.optimize import linear_sum_assignment

from core.compare import compare_annotations
from core.concept_map import ConceptMapConfig, concept_map, level1_categories
from core.errors import InputError
from core.search import ConceptIndex, characteristic_features

TERMS = {"GO:1": "oxygen transport", "GO:2": "erythrocyte differentiation", "GO:3": "B cell activation",
         "GO:4": "heme biosynthetic process", "GO:5": "antigen processing and presentation", "GO:6": "cell cycle"}
LEVEL1 = {"GO:1": ("L:loc",), "GO:2": ("L:dev", "L:cell"), "GO:3": ("L:immune",), "GO:4": ("L:met",),
          "GO:5": ("L:immune",), "GO:6": ("L:cell",)}
NAMES = {"L:loc": "localization", "L:dev": "developmental process", "L:cell": "cellular process",
         "L:immune": "immune system process", "L:met": "metabolic process"}


def _ann(pairs):
    return pd.DataFrame({"feature": [f for f, _, _ in pairs], "term_id": [t for _, t, _ in pairs],
                         "term_name": [TERMS[t] for _, t, _ in pairs], "binom_p": [p for _, _, p in pairs],
                         "mwu_p_up": [1.0] * len(pairs)})


ANN = _ann([(0, "GO:1", 1e-9), (0, "GO:2", 1e-3), (0, "GO:4", 1e-4), (1, "GO:2", 1e-12), (2, "GO:3", 1e-5),
            (2, "GO:5", 1e-6), (3, "GO:6", 1e-3), (4, "GO:3", 1e-2), (5, "GO:1", 1e-3)])


def test_search_ranks_by_best_p():
    idx = ConceptIndex(ANN)
    res = idx.search("ERYTHRO")
    assert res["feature"].tolist() == [1, 0]
    assert res["best_p"].tolist() == [1e-12, 1e-3]
    res = idx.search("transport")
    assert res["feature"].tolist() == [0, 5] and res.loc[0, "top_terms"] == "oxygen transport"
    assert idx.search("GO:3")["feature"].tolist() == [2, 4]
    assert idx.search("nothing like this").empty and idx.search("").empty
    assert idx.suggest("b cell") == ["B cell activation"]


def test_search_speed_on_10k_features():
    rng = np.random.default_rng(0)
    n_terms = 3000
    names = {f"GO:{i:07d}": f"term {i} {'erythrocyte' if i % 97 == 0 else 'process'}" for i in range(n_terms)}
    feats = np.repeat(np.arange(10_000), 95)
    tids = rng.choice(list(names), feats.size)
    ann = pd.DataFrame({"feature": feats, "term_id": tids, "term_name": [names[t] for t in tids],
                        "binom_p": rng.random(feats.size)})
    idx = ConceptIndex(ann)
    idx.search("erythrocyte")
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        res = idx.search("erythrocyte")
        times.append(time.perf_counter() - t0)
    assert len(res) == 50
    # brute-force check of the ranking
    hit = ann[ann["term_name"].str.contains("erythrocyte")]
    best = hit.groupby("feature")["binom_p"].min().sort_values()
    assert res["feature"].tolist() == best.index[:50].tolist()
    assert np.median(times) < 1.0  # generous: the benchmark, not this test, checks the 50 ms target


def test_level1_categories_most_common():
    cats = level1_categories(ANN, LEVEL1, NAMES)
    assert cats[0] == "cellular process" or cats[0] in {"localization", "developmental process", "metabolic process"}
    assert cats[2] == "immune system process"
    assert cats[1] == "cellular process"  # tie between developmental and cellular: alphabetical


def test_concept_map_umap_deterministic():
    rng = np.random.default_rng(1)
    rows = [(f, f"GO:{1 + (f % 3) * 2 + rng.integers(0, 2)}", 1e-3) for f in range(40)]
    rows += [(f, "GO:6", 1e-3) for f in range(0, 40, 4)]
    ann = _ann(rows)
    cfg = ConceptMapConfig(n_neighbors=5, seed=0)
    a = concept_map(ann, level1=LEVEL1, names=NAMES, config=cfg)
    b = concept_map(ann, level1=LEVEL1, names=NAMES, config=cfg)
    assert list(a.columns) == ["feature", "x", "y", "n_terms", "category"]
    assert len(a) == 40 and np.isfinite(a[["x", "y"]].to_numpy()).all()
    np.testing.assert_array_equal(a[["x", "y"]].to_numpy(), b[["x", "y"]].to_numpy())
    # features with identical term sets sit closer together than features with disjoint ones
    same = a.set_index("feature").loc[[1, 7], ["x", "y"]].to_numpy()  # both GO:4 or GO:3
    d_same = np.linalg.norm(same[0] - same[1])
    d_all = np.median(np.linalg.norm(a[["x", "y"]].to_numpy()[:, None] - a[["x", "y"]].to_numpy()[None], axis=-1))
    assert d_same <= d_all


def test_concept_map_tiny_and_empty():
    small = concept_map(ANN[ANN["feature"] < 2], level1=LEVEL1, names=NAMES)
    assert len(small) == 2
    with pytest.raises(InputError, match="no annotated features"):
        concept_map(ANN.iloc[:0])
    with pytest.raises(InputError):
        ConceptMapConfig(min_dist=20, spread=10)


def test_characteristic_features_planted():
    rng = np.random.default_rng(2)
    A = rng.gamma(1, 1, (300, 20)) * (rng.random((300, 20)) < 0.3)
    sel = np.zeros(300, bool)
    sel[:40] = True
    A[:40, 7] += 5
    res = characteristic_features(sp.csr_matrix(A), sel, top=5)
    assert res.loc[0, "feature"] == 7 and res.loc[0, "significant"]
    x, y = A[sel, 7], A[~sel, 7]
    z = (x.mean() - y.mean()) / (x.std(ddof=1) / np.sqrt(40) + y.std(ddof=1) / np.sqrt(260))
    assert res.loc[0, "z"] == pytest.approx(z, rel=1e-9)
    res2 = characteristic_features(A, np.flatnonzero(sel), top=5)
    pd.testing.assert_frame_equal(res, res2)
    with pytest.raises(InputError, match="select at least"):
        characteristic_features(A, [3])


def test_compare_matches_bruteforce():
    a = ANN
    b = _ann([(10, "GO:1", 1e-3), (10, "GO:4", 1e-3), (11, "GO:2", 1e-3), (12, "GO:3", 1e-3), (12, "GO:5", 1e-3),
              (13, "GO:6", 1e-3), (13, "GO:2", 1e-3)])
    cmp = compare_annotations(a, b)
    sets_a = a.groupby("feature")["term_id"].apply(set)
    sets_b = b.groupby("feature")["term_id"].apply(set)
    J = np.array([[len(x & y) / len(x | y) for y in sets_b] for x in sets_a])
    r, c = linear_sum_assignment(-J)
    assert cmp.similarity == pytest.approx(J[r, c].mean())
    perfect = cmp.matches[cmp.matches["jaccard"] == 1.0]
    assert set(zip(perfect["feature_a"], perfect["feature_b"])) == {(1, 11), (2, 12)}
    assert cmp.shared_terms == 6 and cmp.terms_a == 6
    terms = sorted(set(a["term_id"]) | set(b["term_id"]))
    ca = a["term_id"].value_counts().reindex(terms, fill_value=0)
    cb = b["term_id"].value_counts().reindex(terms, fill_value=0)
    assert cmp.spearman == pytest.approx(stats.spearmanr(ca, cb).statistic)
