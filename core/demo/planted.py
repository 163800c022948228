"""Planted-concept score: does annotation recover the GO programs planted in a simulated dataset?

For every planted program k (a real GO term, ground truth of :mod:`core.demo.data`):

1. **best-matching feature**: the live SAE feature whose activation has the highest Pearson
   correlation, over all cells, with the program's activity X″_k (the ground-truth variable
   that drives the program's genes);
2. **its enriched terms**: the feature's reported rows of ``annotations.parquet``
   (:func:`core.annotate.reported.reported`: up-regulated genes, FDR 5 %, most specific terms),
   ranked by :func:`~core.annotate.reported.headline_p`, ties by Mann–Whitney p. Tables without
   the ``reported`` column (written before it, kept pairs: binomial p < 0.01 or Mann–Whitney
   p < 0.01) keep the rows whose genes are *up* in the feature's high cells (Mann–Whitney z > 0;
   the binomial test counts significant genes of either direction, so a term of genes that are
   *down* in the high cells can have a small binomial p too), ranked by binomial p, ties by
   Mann–Whitney p;
3. **found**: the program's own GO term is among the first ``top`` (default 10) of them.

The score is the fraction of programs found. Because annotation uses propagated GO, a parent
or child with (nearly) the same genes competes with the planted term; ``found_relative``
also accepts a term whose gene set, restricted to the data's genes, has Jaccard similarity ≥
``relative_jaccard`` (default 0.9) with the planted term's, and ``fraction_with_relatives``
reports that looser score beside the strict one. The strict ``fraction`` is the headline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.annotate.reported import headline_p, reported
from core.base.errors import InputError
from core.base import io
from core.concepts import load_go
from core.concepts.match import match_genes
from core.demo.data import ground_truth
from core.store.analysis import Analysis
from core.store.dataset import load_analysis_dataset

__all__ = ["PlantedScore", "best_matching_features", "enriched_terms", "score_planted", "planted_concept_score",
           "planted_score_step", "PLANTED_FILE"]

PLANTED_FILE = "planted_score.json"


@dataclass(frozen=True)
class PlantedScore:
    """Per-program table and the fraction of planted programs found (strict and with relatives)."""

    table: pd.DataFrame
    fraction: float
    fraction_with_relatives: float
    top: int

    @property
    def n_programs(self) -> int:
        return len(self.table)

    @property
    def n_found(self) -> int:
        return int(self.table["found"].sum())

    def to_dict(self) -> dict:
        return {"score": self.fraction, "score_with_relatives": self.fraction_with_relatives, "top": self.top,
                "n_programs": self.n_programs, "n_found": self.n_found,
                "programs": self.table.replace({np.nan: None}).to_dict(orient="records")}

    def lines(self) -> list[str]:
        out = [f"planted-concept score: {self.n_found}/{self.n_programs} = {self.fraction:.2f} "
               f"(with near-identical relatives: {self.fraction_with_relatives:.2f}; top {self.top} terms)"]
        for r in self.table.itertuples():
            mark = "✓" if r.found else ("≈" if r.found_relative else "✗")
            rank = "—" if pd.isna(r.rank) else f"#{int(r.rank)}"
            out.append(f"  {mark} {r.term_name} ({r.term_id}, {r.scope}): feature {r.best_feature} "
                       f"(r = {r.correlation:.2f}), term rank {rank}")
        return out


def best_matching_features(activations, activity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each column of ``activity`` (cells × K), the live feature of ``activations`` (cells × F)
    with the highest Pearson correlation: ``(features (K,), correlations (K,))``."""
    A = sp.csr_matrix(activations, dtype=np.float64)
    Y = np.asarray(activity, dtype=np.float64)
    if A.shape[0] != Y.shape[0]:
        raise InputError(f"activations have {A.shape[0]} cells, the ground truth {Y.shape[0]}",
                         fix="score an analysis of the dataset that holds the ground truth")
    n = A.shape[0]
    mean_a = np.asarray(A.mean(axis=0)).ravel()
    var_a = np.asarray(A.multiply(A).mean(axis=0)).ravel() - mean_a ** 2
    mean_y, sd_y = Y.mean(axis=0), Y.std(axis=0)
    cov = np.asarray(A.T @ Y) / n - mean_a[:, None] * mean_y[None, :]          # (F, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / (np.sqrt(np.maximum(var_a, 0))[:, None] * sd_y[None, :])
    r[~np.isfinite(r)] = -np.inf
    r[var_a <= 0] = -np.inf
    if not np.isfinite(r).any():
        raise InputError("no live feature varies across cells", fix="train the SAE longer or with a smaller L1")
    best = np.argmax(r, axis=0)
    return best, r[best, np.arange(r.shape[1])]


def enriched_terms(annotations: pd.DataFrame, feature: int) -> pd.DataFrame:
    """The feature's reported terms, best first (headline p, then Mann–Whitney p). Tables without
    a ``reported`` column: its terms whose genes are up in its high cells (Mann–Whitney z > 0), by
    binomial p, then Mann–Whitney p."""
    rows = annotations[annotations["feature"] == feature]
    if "reported" not in rows:
        return rows[rows["mwu_z"] > 0].sort_values(["binom_p", "mwu_p_two_sided"], kind="stable", ignore_index=True)
    rows = reported(rows)
    rows = rows.assign(_p=headline_p(rows).to_numpy())
    keys = ["_p", "mwu_p_two_sided"] if "mwu_p_two_sided" in rows else ["_p"]
    return rows.sort_values(keys, kind="stable", ignore_index=True).drop(columns="_p")


def _gene_sets(term_ids, gene_names) -> dict[str, frozenset]:
    """Gene sets (restricted to the data's genes) of ``term_ids`` from the shipped, propagated GO."""

    db = load_go(("BP", "MF", "CC"))
    cols, _ = match_genes(db, gene_names)
    data_of = {c: i for i, c in enumerate(cols.tolist()) if c >= 0}
    row_of = {t: i for i, t in enumerate(db.terms["id"].tolist())}
    out = {}
    for t in set(term_ids):
        if t in row_of:
            out[t] = frozenset(data_of[c] for c in db.matrix[row_of[t]].indices.tolist() if c in data_of)
    return out


def score_planted(activations, annotations: pd.DataFrame, truth, *, top: int = 10,
                  relative_jaccard: float = 0.9) -> PlantedScore:
    """Planted-concept score from an analysis's tables and a :class:`~core.demo.data.GroundTruth`."""
    if top < 1:
        raise InputError(f"top must be ≥ 1 (got {top})")
    best, corr = best_matching_features(activations, truth.activity)
    tops = [enriched_terms(annotations, int(f)) for f in best]
    wanted = truth.programs["term_id"].tolist()
    sets = _gene_sets(wanted + [t for df in tops for t in df["term_id"].head(top)], truth.gene_names)
    rows = []
    for k, prog in truth.programs.iterrows():
        terms = tops[k]
        ids = terms["term_id"].tolist()
        rank = ids.index(prog["term_id"]) + 1 if prog["term_id"] in ids else np.nan
        own = sets.get(prog["term_id"], frozenset())
        relative, relative_name = None, None
        for t, name in zip(ids[:top], terms["term_name"].head(top)):
            s = sets.get(t, frozenset())
            if own and s and len(own & s) / len(own | s) >= relative_jaccard:
                relative, relative_name = t, name
                break
        found = bool(not np.isnan(rank) and rank <= top)
        rows.append({"program": prog["key"], "term_id": prog["term_id"], "term_name": prog["term_name"],
                     "scope": prog["scope"], "cell_types": prog["cell_types"], "best_feature": int(best[k]),
                     "correlation": float(corr[k]), "n_enriched_terms": len(ids), "rank": rank,
                     "found": found, "found_relative": found or relative is not None,
                     "relative_term": relative if not found else None, "relative_name": relative_name if not found
                     else None, "top_terms": " | ".join(terms["term_name"].head(3))})
    table = pd.DataFrame(rows)
    return PlantedScore(table=table, fraction=float(table["found"].mean()),
                        fraction_with_relatives=float(table["found_relative"].mean()), top=top)


def planted_concept_score(analysis, *, top: int = 10, relative_jaccard: float = 0.9) -> PlantedScore:
    """Planted-concept score of an annotated analysis (an :class:`~core.store.analysis.Analysis` or its
    folder) made from a dataset with ground truth (the simulated demo)."""

    if not isinstance(analysis, Analysis):
        analysis = Analysis.open(analysis)
    if not analysis.has("annotations.parquet"):
        raise InputError(f"{analysis.path} is not annotated yet", fix="run `featurelens annotate` first")
    truth = ground_truth(load_analysis_dataset(analysis))
    return score_planted(analysis.read_npz_sparse("activations.npz"), analysis.read_parquet("annotations.parquet"),
                         truth, top=top, relative_jaccard=relative_jaccard)


def planted_score_step(analysis, *, top: int = 10, relative_jaccard: float = 0.9) -> dict:
    """Score an annotated analysis of a dataset with ground truth and store the result as
    ``planted_score.json`` (step ``planted``, cached by the annotations and the dataset)."""

    inputs = {"annotations": io.content_hash(analysis.file("annotations.parquet")),
              "activations": io.content_hash(analysis.file("activations.npz")),
              "dataset": analysis.config.get("dataset", {}).get("sha256"), "top": top,
              "relative_jaccard": relative_jaccard}
    if analysis.cached("planted", inputs=inputs):
        return analysis.read_json(PLANTED_FILE)
    result = planted_concept_score(analysis, top=top, relative_jaccard=relative_jaccard).to_dict()
    with analysis.step("planted", inputs=inputs) as w:
        w.write_json(PLANTED_FILE, result)
    return result
