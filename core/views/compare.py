"""Two analyses side by side, by name (the app's Compare page, and Python).

:func:`compare_analyses` runs :func:`core.annotate.compare.compare_annotations` on the reported annotation
rows (:func:`core.annotate.reported.reported`) of two analyses in the analyses folder and adds what
the page shows: the matched feature pairs with
their best shared terms, and one row per term with how many features of each analysis carry it
(shared, only in A, only in B). Results are kept in a small in-process cache keyed by the two
annotation files' paths, sizes and modification times, so re-asking (sorting, exporting, a second
tab) costs nothing and a re-annotated analysis is compared afresh.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.annotate.reported import headline_p, reported
from core.annotate.compare import compare_annotations
from core.base.cache import LRUCache, file_stamp
from core.base.errors import InputError
from core.store.analysis import Analysis
from core.base.io import read_json
from core.base.paths import analyses_dir, confine

__all__ = ["AnalysisComparison", "comparable_analyses", "compare_analyses", "term_counts", "describe_matches",
           "clear_cache", "default_pair", "ComparePageData", "compare_page_data"]

ANNOTATIONS = "annotations.parquet"
CACHE_SIZE = 8
_COMPARISONS = LRUCache(size=CACHE_SIZE)


@dataclass
class AnalysisComparison:
    """``matches``: feature_a, feature_b, jaccard, shared_terms, terms_a, terms_b, top_shared (one row per
    matched pair, most similar first); ``terms``: term_id, term_name, namespace, features_a,
    features_b, where ("both", "only A", "only B"); ``summary``: :meth:`core.annotate.compare.Comparison.summary`
    plus features_a / features_b (annotated features of each) and ``seconds`` (time to compute)."""

    a: str
    b: str
    matches: pd.DataFrame
    terms: pd.DataFrame
    summary: dict
    seconds: float


def comparable_analyses() -> list[dict]:
    """Every analysis in the analyses folder: ``[{"name", "annotated", "dataset"}]`` (annotated = can be
    compared; dataset = the content hash of its data, or its path, or None when unreadable)."""

    adir = analyses_dir()
    if not adir.is_dir():
        return []
    out = []
    for p in sorted(adir.iterdir()):
        if not (p / "analysis.json").is_file():
            continue
        try:
            ds = read_json(p / "analysis.json").get("dataset", {})
            dataset = ds.get("sha256") or ds.get("path")
        except (OSError, ValueError, AttributeError):
            dataset = None
        out.append({"name": p.name, "annotated": (p / ANNOTATIONS).is_file(), "dataset": dataset})
    return out


def default_pair(analyses: list[dict], *, source: str | None, query: dict[str, str]) -> tuple[str | None, str | None]:
    """``(A, B)`` among ``analyses`` (:func:`comparable_analyses`): the URL's ``a``/``b`` when they name
    analyses; else A = the app's source (if an annotated analysis) or the first annotated one, and
    B = another annotated analysis, preferably of the same data as A (two models or SAEs of the same cells)."""
    names = {r["name"] for r in analyses}
    usable = [r["name"] for r in analyses if r["annotated"]]
    a = query.get("a") if query.get("a") in names else None
    if a is None:
        kind, _, name = (source or "").partition(":")
        a = name if kind == "analysis" and name in usable else (usable[0] if usable else None)
    b = query.get("b") if query.get("b") in names and query.get("b") != a else None
    if b is None:
        data = {r["name"]: r.get("dataset") for r in analyses}
        others = [n for n in usable if n != a]
        b = next((n for n in others if data.get(a) and data.get(n) == data.get(a)), others[0] if others else None)
    return a, b


@dataclass(frozen=True)
class ComparePageData:
    """What the Compare page's layout shows: every analysis (as :func:`comparable_analyses`), the
    pair picked (``a``, ``b``: :func:`default_pair`) and how many are annotated (``n_usable``)."""
    analyses: tuple[dict, ...] = ()
    a: str | None = None
    b: str | None = None
    n_usable: int = 0


def compare_page_data(source: str | None, *, query: dict[str, str] | None = None) -> ComparePageData:
    """The Compare page for the app's ``source`` and the URL ``query`` (``a``, ``b``)."""
    analyses = tuple(comparable_analyses())
    a, b = default_pair(list(analyses), source=source, query=query or {})
    return ComparePageData(analyses=analyses, a=a, b=b, n_usable=sum(bool(r["annotated"]) for r in analyses))


def term_counts(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per term of either annotation table: how many features of each carry it."""
    def counts(ann: pd.DataFrame) -> pd.DataFrame:
        g = ann.assign(term_id=ann["term_id"].astype(str)).groupby("term_id", sort=False)
        return pd.DataFrame({"term_name": g["term_name"].first().astype(str), "namespace": g["namespace"].first(),
                             "features": g["feature"].nunique()})

    ca, cb = counts(a), counts(b)
    terms = ca[["term_name", "namespace"]].combine_first(cb[["term_name", "namespace"]])
    out = terms.assign(features_a=ca["features"].reindex(terms.index).fillna(0).astype(int),
                       features_b=cb["features"].reindex(terms.index).fillna(0).astype(int))
    out["where"] = np.select([(out["features_a"] > 0) & (out["features_b"] > 0), out["features_a"] > 0],
                             ["both", "only A"], "only B")
    out = out.rename_axis("term_id").reset_index()
    return out.sort_values(["features_a", "features_b", "term_id"], ascending=[False, False, True],
                           ignore_index=True)


def describe_matches(matches: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame, *, top: int = 3) -> pd.DataFrame:
    """``matches`` plus each feature's number of terms and the names of the ``top`` shared terms
    (those most significant in both: smallest of the two headline p-values' maximum,
    :func:`core.annotate.reported.headline_p`). ``a``, ``b``: the annotation tables (reported rows)."""
    pairs = matches.reset_index(drop=True).rename_axis("pair").reset_index()
    n_a = a.groupby("feature")["term_id"].nunique()
    n_b = b.groupby("feature")["term_id"].nunique()
    ta = pd.DataFrame({"feature": a["feature"].to_numpy(), "term_id": a["term_id"].astype(str).to_numpy(),
                       "term_name": a["term_name"].to_numpy(), "p": headline_p(a).to_numpy()})
    tb = pd.DataFrame({"feature": b["feature"].to_numpy(), "term_id": b["term_id"].astype(str).to_numpy(),
                       "p": headline_p(b).to_numpy()})
    left = pairs[["pair", "feature_a"]].merge(ta, left_on="feature_a", right_on="feature")[
        ["pair", "term_id", "term_name", "p"]]
    right = pairs[["pair", "feature_b"]].merge(tb, left_on="feature_b", right_on="feature")[
        ["pair", "term_id", "p"]]
    both = left.merge(right, on=["pair", "term_id"], suffixes=("_a", "_b"))
    both["worse_p"] = np.maximum(both["p_a"], both["p_b"])
    both = both.sort_values(["pair", "worse_p", "term_id"], kind="stable")
    names = both.groupby("pair", sort=False).head(top).groupby("pair")["term_name"].agg(" | ".join)
    out = matches.reset_index(drop=True).copy()
    out["terms_a"] = out["feature_a"].map(n_a).fillna(0).astype(int)
    out["terms_b"] = out["feature_b"].map(n_b).fillna(0).astype(int)
    out["top_shared"] = names.reindex(range(len(out))).fillna("").to_numpy()
    return out


def _annotation_file(name: str) -> Path:
    if not name:
        raise InputError("choose two analyses to compare", fix="pick analysis A and analysis B above")
    path = confine(name, roots=[analyses_dir()])
    if not (path / "analysis.json").is_file():
        raise InputError(f"there is no analysis named {name!r}", fix="pick one from the list (press ↻ to refresh it)")
    f = path / ANNOTATIONS
    if not f.is_file():
        raise InputError(f"analysis {name} is not annotated yet, so it has no concepts to compare",
                         fix="annotate it on the Data & training page (or `featurelens annotate`)")
    return f


def compare_analyses(a: str, b: str) -> AnalysisComparison:
    """Compare analyses ``a`` and ``b`` (folder names in the analyses folder); cached (see module doc)."""
    if a and a == b:
        raise InputError("analysis A and analysis B are the same", fix="choose two different analyses")
    fa, fb = _annotation_file(a), _annotation_file(b)
    return _COMPARISONS.get_or_make((str(fa), str(fb)), lambda: _compare(a, b, fa, fb), version=file_stamp(fa, fb))


def _compare(a: str, b: str, fa: Path, fb: Path) -> AnalysisComparison:
    t0 = time.perf_counter()
    ann_a = reported(Analysis.open(fa.parent).read_parquet(ANNOTATIONS))
    ann_b = reported(Analysis.open(fb.parent).read_parquet(ANNOTATIONS))
    cmp = compare_annotations(ann_a, ann_b)
    matches = describe_matches(cmp.matches, ann_a, ann_b)
    terms = term_counts(ann_a, ann_b)
    summary = {**cmp.summary(), "features_a": int(ann_a["feature"].nunique()),
               "features_b": int(ann_b["feature"].nunique())}
    return AnalysisComparison(a=a, b=b, matches=matches, terms=terms, summary=summary,
                              seconds=time.perf_counter() - t0)


def clear_cache() -> None:
    """Forget every cached comparison (e.g. after an analysis was re-annotated in place)."""
    _COMPARISONS.clear()
