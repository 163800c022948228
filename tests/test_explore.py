"""Concept map, keyword search, reverse lookup and comparison."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from scipy.optimize import linear_sum_assignment

from core.annotate.compare import compare_annotations
from core.annotate.concept_map import ConceptMapConfig, concept_map, level1_categories
from core.base.errors import InputError
from core.annotate.search import ConceptIndex, characteristic_features

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


# ----------------------------------------------------------------------------- reported rows only
def _calibrated(rows):
    """Annotation rows (feature, term_id, hyper_p, reported, redundant_with, de_direction) of the new contract."""
    df = pd.DataFrame(rows, columns=["feature", "term_id", "hyper_p", "reported", "redundant_with", "de_direction"])
    return df.assign(term_name=df["term_id"].map(TERMS), binom_p=1e-2, namespace="BP")


CAL = _calibrated([(0, "GO:2", 1e-6, True, "", "up"), (0, "GO:6", 1e-8, False, "GO:2", "up"),  # GO:6 explained
                   (0, "GO:1", 1e-9, False, "", "down"), (1, "GO:1", 1e-4, True, "", "up"),
                   (2, "GO:3", 1e-3, False, "", "up"), (3, "GO:6", 1e-5, True, "", "up")])


def test_search_finds_reported_and_explained_rows_by_headline_p():
    idx = ConceptIndex(CAL)
    # GO:1 is reported for feature 1 only: feature 0's row describes its low cells
    assert idx.search("oxygen")["feature"].tolist() == [1]
    # the explained ancestor is found (feature 0, p 1e-8), ranked by hyper_p before feature 3 (1e-5)
    res = idx.search("cell cycle")
    assert res["feature"].tolist() == [0, 3] and res["best_p"].tolist() == [1e-8, 1e-5]
    assert idx.search("B cell").empty and idx.suggest("b cell") == []   # nominal only: not findable


def test_compare_counts_reported_rows_only():
    other = _calibrated([(7, "GO:2", 1e-6, True, "", "up"), (7, "GO:1", 1e-9, True, "", "up"),
                         (8, "GO:3", 1e-3, True, "", "up")])
    cmp = compare_annotations(CAL, other)
    assert cmp.terms_a == 3 and cmp.shared_terms == 2                 # GO:2, GO:1, GO:6; not GO:3 of feature 2
    m = cmp.matches.set_index("feature_a")
    assert 2 not in m.index and m.loc[0, "feature_b"] == 7 and m.loc[0, "shared_terms"] == 1


# ----------------------------------------------------------------------------- concept-map categories
def _toy_dag():
    """BP root → "cellular process" (generic) and "immune system process"; under it one general term
    G with 5 children c0..c4 (c0 has 3 children g0..g2); "X" a second root child."""
    from core.concepts.dag import GODag

    parents = {"GO:0009987": ("GO:0008150",), "GO:0002376": ("GO:0008150",), "GO:X": ("GO:0008150",),
               "GO:G": ("GO:0002376",)}
    names = {"GO:0008150": "biological_process", "GO:0009987": "cellular process",
             "GO:0002376": "immune system process", "GO:G": "leukocyte activation", "GO:X": "locomotion"}
    for i in range(5):
        parents[f"GO:c{i}"] = ("GO:G",)
        names[f"GO:c{i}"] = f"child {i}"
    for i in range(3):
        parents[f"GO:g{i}"] = ("GO:c0",)
        names[f"GO:g{i}"] = f"grandchild {i}"
    parents["GO:cp1"] = ("GO:0009987",)
    names["GO:cp1"] = "cell division"
    return GODag(parents, names, {t: "BP" for t in names})


def _rows(pairs, dag):
    return pd.DataFrame({"feature": [f for f, _ in pairs], "term_id": [t for _, t in pairs],
                         "term_name": [dag.names.get(t, t.lower()) for _, t in pairs], "binom_p": 1e-3})


def test_go_categories_split_a_shared_general_ancestor():
    from core.annotate.concept_map import go_categories

    dag = _toy_dag()
    # 60 features, all under "immune system process" → "leukocyte activation"; 30 of them under child 0
    pairs = [(f, f"GO:g{f % 3}") for f in range(30)] + [(f, f"GO:c{1 + f % 4}") for f in range(30, 60)]
    pairs += [(f, "GO:G") for f in range(0, 60, 5)]                      # the general term itself, too
    ann = _rows(pairs, dag)
    cats = go_categories(ann, dag=dag)
    share = cats.value_counts(normalize=True)
    assert share.max() <= 0.4 and len(share) > 2
    assert set(cats) <= set(dag.names.values())                          # labels are GO term names
    assert "grandchild 0" in set(cats) and "child 1" in set(cats)
    # deterministic, whatever the row order
    again = go_categories(ann.sample(frac=1.0, random_state=3), dag=dag)
    pd.testing.assert_series_equal(cats, again)
    # the old rule: one level-1 colour for all 60 features
    level1 = {t: ("GO:0002376",) for t in ann["term_id"]}
    assert level1_categories(ann, level1, dag.names).nunique() == 1
    # a cap on the number of categories: the smallest ones' features move up or become "other"
    capped = go_categories(ann, dag=dag, max_categories=3)
    assert capped.nunique() <= 3


def test_go_categories_generic_terms_and_fallbacks():
    from core.annotate.concept_map import go_categories

    dag = _toy_dag()
    ann = _rows([(0, "GO:cp1"), (1, "GO:0009987"), (2, "GO:X"), (3, "GMT:a"), (3, "GMT:b"), (4, "GMT:b"),
                 (5, "GO:c2"), (5, "GMT:a"), (6, "GMT:b")], dag)
    cats = go_categories(ann, dag=dag)
    # "cellular process" is split at once; a feature annotated with it alone keeps it
    assert cats[0] == "cell division" and cats[1] == "cellular process" and cats[2] == "locomotion"
    assert cats[3] == cats[4] == "gmt:b"          # GMT-only: the term carried by the most features
    assert cats[5] == "immune system process"     # GO terms win over GMT ones
    one = go_categories(ann[ann["feature"] == 3], dag=dag)
    assert one.tolist() == ["gmt:a"]              # tie: alphabetical
    assert go_categories(ann.iloc[:0], dag=dag).empty


def test_concept_map_uses_reported_rows_and_dag_categories():
    dag = _toy_dag()
    ann = _rows([(f, f"GO:c{f % 5}") for f in range(20)] + [(f, "GO:X") for f in range(20)], dag)
    ann["reported"] = ann["term_id"] != "GO:X"
    ann = pd.concat([ann, _rows([(99, "GO:X")], dag).assign(reported=False)], ignore_index=True)
    cmap = concept_map(ann, dag=dag, config=ConceptMapConfig(n_neighbors=5))
    assert list(cmap.columns) == ["feature", "x", "y", "n_terms", "category"]
    assert cmap["feature"].tolist() == list(range(20)) and (cmap["n_terms"] == 1).all()  # GO:X rows left out
    assert set(cmap["category"]) == {f"child {i}" for i in range(5)}
    with pytest.raises(InputError, match="no annotated features"):
        concept_map(ann.assign(reported=False), dag=dag)
    with pytest.raises(InputError, match="max_category_share"):
        ConceptMapConfig(max_category_share=0)


def test_generic_terms_are_in_the_shipped_go():
    from core.annotate.concept_map import GENERIC_TERMS, go_categories
    from core.concepts.dag import go_dag

    dag = go_dag()
    assert all(dag.names.get(t) for t in GENERIC_TERMS)
    assert dag.names["GO:0009987"] == "cellular process" and "GO:0009987" in GENERIC_TERMS
    # real terms: oxygen transport, B cell activation, erythrocyte differentiation, T cell activation
    ann = pd.DataFrame({"feature": [0, 1, 2, 3], "term_id": ["GO:0015671", "GO:0042113", "GO:0030218", "GO:0042110"],
                        "term_name": ["a", "b", "c", "d"]})
    cats = go_categories(ann, dag=dag)
    assert cats.value_counts(normalize=True).max() <= 0.5
    assert not set(cats) & {"cellular process", "biological regulation", "biological_process"}
