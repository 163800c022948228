"""The Compare page without a browser: core.views.compare on planted annotation tables, the page's
defaults, its callbacks as plain functions, and the concept-count figure."""
from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pandas as pd
import pytest
from dash import no_update
from scipy import stats

import callbacks.compare as cb
from components import compare_page, figures, ids
from components.compare_page import HIDDEN, SHOWN
from core.views import compare
from core.store.analysis import Analysis
from core.annotate.compare import compare_annotations

# Planted: B's feature 10 + i carries exactly A's feature i's terms, except that A's feature 3 has
# one extra term (t9) and B has a feature 20 of its own (t7, t8). Term t0 is in every A feature.
A_TERMS = {0: ["t0", "t1", "t2"], 1: ["t0", "t3"], 2: ["t0", "t4", "t5"], 3: ["t0", "t6", "t9"]}
B_TERMS = {10: ["t0", "t1", "t2"], 11: ["t0", "t3"], 12: ["t0", "t4", "t5"], 13: ["t0", "t6"], 20: ["t7", "t8"]}


def annotations(terms: dict[int, list[str]], *, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(f, t) for f, ts in terms.items() for t in ts]
    return pd.DataFrame({"feature": [f for f, _ in rows], "term_id": [t for _, t in rows],
                         "term_name": [f"name of {t}" for _, t in rows], "namespace": "BP",
                         "binom_p": rng.uniform(1e-9, 1e-3, len(rows))})


def make_analysis(root, name: str, ann: pd.DataFrame | None, *, data: str | None = None) -> Analysis:
    a = Analysis.create(root / name, dataset={"path": "x.h5ad", "sha256": data or name})
    if ann is not None:
        with a.step("annotate", inputs={"n": len(ann)}) as w:
            w.write_parquet("annotations.parquet", ann)
    return a


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(tmp_path))
    compare.clear_cache()
    make_analysis(tmp_path, "alpha", annotations(A_TERMS, seed=0))
    make_analysis(tmp_path, "beta", annotations(B_TERMS, seed=1))
    make_analysis(tmp_path, "raw", None)  # trained, not annotated
    yield tmp_path
    compare.clear_cache()


# ----------------------------------------------------------------------------- core.views.compare
def test_planted_pairs_are_matched_with_their_shared_terms(folder):
    cmp = compare.compare_analyses("alpha", "beta")
    pairs = dict(zip(cmp.matches["feature_a"], cmp.matches["feature_b"]))
    assert pairs == {0: 10, 1: 11, 2: 12, 3: 13}
    m = cmp.matches.set_index("feature_a")
    assert m.loc[0, "jaccard"] == 1.0 and m.loc[3, "jaccard"] == pytest.approx(2 / 3)
    assert m.loc[3, "shared_terms"] == 2 and m.loc[3, "terms_a"] == 3 and m.loc[3, "terms_b"] == 2
    assert set(m.loc[3, "top_shared"].split(" | ")) == {"name of t0", "name of t6"}
    assert list(cmp.matches["jaccard"]) == sorted(cmp.matches["jaccard"], reverse=True)
    assert cmp.summary["features_a"] == 4 and cmp.summary["features_b"] == 5
    assert cmp.summary["similarity"] == pytest.approx((1 + 1 + 1 + 2 / 3) / 4)


def test_summary_equals_compare_annotations_and_scipy(folder):
    a, b = annotations(A_TERMS, seed=0), annotations(B_TERMS, seed=1)
    cmp = compare.compare_analyses("alpha", "beta")
    ref = compare_annotations(a, b).summary()
    for key, value in ref.items():
        assert cmp.summary[key] == pytest.approx(value, nan_ok=True), key
    t = cmp.terms.set_index("term_id")
    assert stats.spearmanr(t["features_a"], t["features_b"]).statistic == pytest.approx(ref["concept_count_spearman"])


def test_term_counts_and_where(folder):
    terms = compare.compare_analyses("alpha", "beta").terms.set_index("term_id")
    assert t_row(terms, "t0") == (4, 4, "both")
    assert t_row(terms, "t9") == (1, 0, "only A")
    assert t_row(terms, "t7") == (0, 1, "only B")
    assert sorted(terms.index) == [f"t{i}" for i in range(10)]
    assert terms.loc["t3", "term_name"] == "name of t3"


def t_row(terms, term):
    r = terms.loc[term]
    return int(r["features_a"]), int(r["features_b"]), r["where"]


def test_top_shared_terms_are_the_most_significant_in_both():
    a = pd.DataFrame({"feature": 0, "term_id": ["x", "y", "z"], "term_name": ["X", "Y", "Z"], "namespace": "BP",
                      "binom_p": [1e-2, 1e-8, 1e-5]})
    b = pd.DataFrame({"feature": 5, "term_id": ["x", "y", "z"], "term_name": ["X", "Y", "Z"], "namespace": "BP",
                      "binom_p": [1e-9, 1e-3, 1e-6]})
    matches = compare_annotations(a, b).matches
    out = compare.describe_matches(matches, a, b, top=2)
    # worse p of each term: x 1e-2, y 1e-3, z 1e-5 -> z, then y
    assert out.loc[0, "top_shared"] == "Z | Y"


def test_compare_uses_reported_rows_ranked_by_headline_p(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(tmp_path))
    compare.clear_cache()
    a, b = annotations(A_TERMS, seed=0), annotations(B_TERMS, seed=1)
    # not reported: A's t9 (feature 3) and a nominal-only term t8 on A's feature 0; B's t1
    a = pd.concat([a, pd.DataFrame({"feature": [0], "term_id": ["t8"], "term_name": ["name of t8"],
                                    "namespace": "BP", "binom_p": [1e-12]})], ignore_index=True)
    a["reported"] = ~(((a["feature"] == 3) & (a["term_id"] == "t9")) | (a["term_id"] == "t8"))
    b["reported"] = b["term_id"] != "t1"
    a["hyper_p"] = np.where(a["term_id"] == "t2", 1e-20, 1e-3)
    b["hyper_p"] = np.where(b["term_id"] == "t2", 1e-20, 1e-3)
    make_analysis(tmp_path, "alpha", a)
    make_analysis(tmp_path, "beta", b)
    res = compare.compare_analyses("alpha", "beta")
    m = res.matches.set_index("feature_a")
    assert m.loc[3, "feature_b"] == 13 and m.loc[3, "jaccard"] == 1.0        # t9 is not one of A's concepts
    assert m.loc[0, "terms_a"] == 3 and m.loc[0, "shared_terms"] == 2       # t0, t2 (t1 not reported in B)
    assert m.loc[0, "top_shared"].split(" | ")[0] == "name of t2"          # by hyper_p, not binom_p
    terms = res.terms.set_index("term_id")
    assert "t9" not in terms.index and terms.loc["t8", "where"] == "only B"  # t8: B's feature 20 only
    assert terms.loc["t1", "where"] == "only A"
    compare.clear_cache()


def test_cached_until_an_annotation_file_changes(folder):
    first = compare.compare_analyses("alpha", "beta")
    assert compare.compare_analyses("alpha", "beta") is first
    path = folder / "beta" / "annotations.parquet"
    b = annotations({**B_TERMS, 13: ["t0", "t6", "t9"]}, seed=1)
    b.to_parquet(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    again = compare.compare_analyses("alpha", "beta")
    assert again is not first
    assert again.matches.set_index("feature_a").loc[3, "jaccard"] == 1.0


@pytest.mark.parametrize("a, b, words", [
    ("alpha", "alpha", "the same"),
    ("alpha", "raw", "not annotated"),
    ("alpha", "missing", "no analysis named"),
    ("alpha", "../elsewhere", "outside the allowed folders"),
    ("", "beta", "choose two analyses"),
])
def test_bad_pairs_are_input_errors(folder, a, b, words):
    from core.base.errors import InputError

    with pytest.raises(InputError, match=words):
        compare.compare_analyses(a, b)


def test_comparable_analyses_lists_annotation_state(folder):
    assert compare.comparable_analyses() == [{"name": "alpha", "annotated": True, "dataset": "alpha"},
                                                {"name": "beta", "annotated": True, "dataset": "beta"},
                                                {"name": "raw", "annotated": False, "dataset": "raw"}]


# ----------------------------------------------------------------------------- layout defaults
def test_options_disable_unannotated_analyses(folder):
    opts = compare_page.analysis_options(compare.comparable_analyses())
    assert [o["disabled"] for o in opts] == [False, False, True]
    assert opts[2]["label"] == "raw (not annotated)"


@pytest.mark.parametrize("source, query, expected", [
    ("analysis:beta", {}, ("beta", "alpha")),            # the app's source first
    ("shipped:pbmc68k", {}, ("alpha", "beta")),          # a dataset: the first annotated analysis
    ("analysis:raw", {}, ("alpha", "beta")),             # not annotated: not a default
    (None, {"a": "beta", "b": "alpha"}, ("beta", "alpha")),  # the URL wins
    (None, {"a": "alpha", "b": "alpha"}, ("alpha", "beta")),  # never the same twice by default
    (None, {"a": "alpha", "b": "raw"}, ("alpha", "raw")),     # an explicit choice is kept (the page says why not)
    (None, {"a": "nope"}, ("alpha", "beta")),
])
def test_default_pair(folder, source, query, expected):
    assert compare.default_pair(compare.comparable_analyses(), source=source, query=query) == expected


def test_default_b_prefers_an_analysis_of_the_same_data(folder):
    make_analysis(folder, "gamma", annotations(B_TERMS, seed=2), data="beta")
    assert compare.default_pair(compare.comparable_analyses(), source="analysis:gamma",
                                     query={}) == ("gamma", "beta")
    assert compare.default_pair(compare.comparable_analyses(), source="analysis:alpha",
                                     query={}) == ("alpha", "beta")  # none of alpha's data: the first other


def test_layout_says_when_two_annotated_analyses_are_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(tmp_path))
    make_analysis(tmp_path, "only", annotations(A_TERMS, seed=0))
    page = compare_page.layout(compare.compare_page_data("analysis:only", query={}))
    text = json.dumps(page.to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert "Two annotated analyses are needed" in text and "holds 1 annotated analysis." in text


# ----------------------------------------------------------------------------- callbacks
def test_show_comparison_fills_every_view(folder):
    out = cb.show_comparison("alpha", "beta")
    alert, style, summary, matches, fig, both, only_a, only_b, lab_both, lab_a, lab_b = out
    assert alert is None and style == SHOWN
    assert [r["feature_b"] for r in matches] == [10, 11, 12, 13]
    assert matches[0]["explore"] == ("[A 0](/explorer?source=analysis%3Aalpha&feature=0) · "
                                     "[B 10](/explorer?source=analysis%3Abeta&feature=10)")
    assert {r["term_id"] for r in only_a} == {"t9"} and {r["term_id"] for r in only_b} == {"t7", "t8"}
    assert len(both) == 7
    assert (lab_both, lab_a, lab_b) == ("in both (7)", "only in A (1)", "only in B (2)")
    text = json.dumps(summary.to_plotly_json(), default=lambda o: o.to_plotly_json())
    assert "matched feature pairs" in text and "0.917" in text  # mean similarity (1+1+1+2/3)/4
    assert [t.name for t in fig.data if t.mode == "markers"] == ["in both (7)", "only in A (1)", "only in B (2)"]


@pytest.mark.parametrize("a, b", [("alpha", "raw"), ("alpha", "alpha"), ("alpha", None)])
def test_show_comparison_errors_in_place(folder, a, b):
    out = cb.show_comparison(a, b)
    assert out[1] == HIDDEN and all(o is no_update for o in out[2:])
    assert out[0].color in ("danger", "info")


def test_pair_written_to_url_keeps_source():
    assert cb.pair_query("?source=analysis%3Aalpha&a=x", "alpha", "beta") == "?source=analysis%3Aalpha&a=alpha&b=beta"
    assert cb.write_url("alpha", "beta", "?a=alpha&b=beta") is no_update


def test_exports_are_the_tables(folder):
    got = cb.export_matches(1, "alpha", "beta")
    df = pd.read_csv(io.StringIO(got["content"]))
    assert got["filename"] == "compare-alpha-vs-beta-matches.csv"
    assert list(df["feature_b"]) == [10, 11, 12, 13] and "top_shared" in df
    terms = pd.read_csv(io.StringIO(cb.export_terms(1, "alpha", "beta")["content"]))
    assert len(terms) == 10 and set(terms["where"]) == {"both", "only A", "only B"}


def test_ids_of_the_page_are_unique_and_present():
    found = [v for k, v in vars(ids).items() if k.startswith("COMPARE_")]
    assert len(found) >= 10 and all(v.startswith("compare-") for v in found)
    assert len(set(ids.all_ids())) == len(ids.all_ids())


def test_concept_count_figure_groups_and_jitter():
    terms = pd.DataFrame({"term_id": ["a", "b", "c"], "term_name": ["A", "B", "C"], "features_a": [3, 1, 0],
                          "features_b": [2, 0, 4], "where": ["both", "only A", "only B"]})
    fig = figures.concept_count_figure(terms, label_a="X", label_b="Y")
    names = [t.name for t in fig.data]
    assert names == ["same count", "in both (1)", "only in X (1)", "only in Y (1)"]
    x = fig.data[1].x
    xs = np.frombuffer(base64.b64decode(x["bdata"]), dtype="<f4") if isinstance(x, dict) else np.asarray(x)
    assert abs(xs[0] - 3) <= 0.3
    assert figures.concept_count_figure(terms.iloc[:0]).layout.annotations[0].text == "no terms to compare"


# ----------------------------------------------------------------------------- the page's data
def test_compare_page_data_lists_the_analyses_and_picks_the_pair(folder):
    d = compare.compare_page_data("analysis:beta", query={})
    assert d.analyses == tuple(compare.comparable_analyses()) and (d.a, d.b, d.n_usable) == ("beta", "alpha", 2)
    d = compare.compare_page_data(None, query={"a": "alpha", "b": "raw"})
    assert (d.a, d.b) == ("alpha", "raw")
    assert compare.compare_page_data("shipped:pbmc68k") == compare.compare_page_data("shipped:pbmc68k", query={})


@pytest.mark.parametrize("setup, expected", [
    ("missing", ((), None, None, 0)),  # no analyses folder yet: nothing to list, nothing raised
    ("empty", ((), None, None, 0)),
    ("one", (({"name": "only", "annotated": True, "dataset": "only"},), "only", None, 1)),
])
def test_compare_page_data_without_two_annotated_analyses(tmp_path, monkeypatch, setup, expected):
    root = tmp_path / "analyses"
    if setup != "missing":
        root.mkdir()
    if setup == "one":
        make_analysis(root, "only", annotations(A_TERMS, seed=0))
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(root))
    d = compare.compare_page_data("analysis:only", query={"b": "nope"})
    assert (d.analyses, d.a, d.b, d.n_usable) == expected
