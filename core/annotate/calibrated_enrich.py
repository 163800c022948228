"""Calibrated enrichment of a block of features (the default method; docs/method.md).

Per feature, per direction (``up``: genes higher in the high cells; ``down``: lower) and term:

- **universe** = the feature's tested genes that belong to at least one term of the database
  (``n_universe``); term sizes ``n_term_genes`` are counted inside it;
- **over-representation**: hypergeometric upper tail ``hyper_p`` =
  ``scipy.stats.hypergeom.sf(hits − 1, n_universe, n_term_genes, n_significant)``, BH across the
  terms → ``hyper_q``; ``binom_p`` = ``scipy.stats.binomtest(hits, n_significant,
  n_term_genes / n_universe)`` (two-sided, for comparison with the paper method);
- **rank test** on the moderated t of the universe genes: Wilcoxon rank sum of the term's genes
  against the rest with the variance for the term's mean inter-gene correlation (``correlation``,
  estimated once over cells; limma's ``rankSumTestWithCorrelation``): ``rank_z`` (> 0: the term's
  genes are higher in the high cells), one-sided ``rank_p`` in the row's direction, BH → ``rank_q``;
- **reported**: up-regulated, ``hyper_q`` < ``q_max`` with ≥ ``min_hits`` hits, and still
  significant after topGO elim along the GO DAG (:mod:`core.annotate.specific`); eliminated
  ancestors carry ``redundant_with``. Down rows are never reported (they describe the low cells).

Rows kept in the table: passing rows, and nominal ones (``hyper_p`` or ``rank_p`` < ``nominal_p``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.base.progress import Cancelled, ShouldStop, never_stop
from core.annotate.calibrated_de import CalibratedDE
from core.annotate.moderated import bh_masked, hypergeom_over, rank_sum_correlated
from core.annotate.specific import Hierarchy, eliminate, hierarchy, ontology_codes
from core.annotate.enrich import term_column
from core.annotate.stats import binom_two_sided, rank_rows, term_sums

__all__ = ["enrich_calibrated", "CALIBRATED_COLUMNS"]

CALIBRATED_COLUMNS = ["feature", "term_id", "term_name", "namespace", "source", "de_direction", "n_universe",
                      "n_term_genes", "hits", "n_significant", "expected", "fold_enrichment", "direction",
                      "hyper_p", "hyper_q", "elim_p", "binom_p", "rank_z", "rank_p", "rank_q", "correlation",
                      "reported", "redundant_with", "de_rule"]


def enrich_calibrated(de: CalibratedDE, concepts, *, correlation: np.ndarray, dag=None, q_max: float = 0.05,
                      min_hits: int = 2, nominal_p: float = 0.01,
                      should_stop: ShouldStop = never_stop) -> pd.DataFrame:
    """Calibrated enrichment rows (columns :data:`CALIBRATED_COLUMNS`) of a calibrated DE block.

    ``concepts``: a ConceptDB restricted to the DE's genes; ``correlation``: (T,) mean inter-gene
    correlation per term (:func:`core.annotate.moderated.term_correlation`); ``dag``: the GO DAG, or
    its :func:`core.annotate.specific.hierarchy` over the database (None: no DAG elimination).
    """
    block, p_up, p_down = _ranked_block(de, concepts, correlation=correlation, dag=dag)
    parts = []
    for direction, sig, rank_p in (("up", de.up, p_up), ("down", de.down, p_down)):
        if should_stop():
            raise Cancelled()
        parts.append(_direction_rows(block, direction, sig, rank_p, q_max=q_max, min_hits=min_hits,
                                     nominal_p=nominal_p))
    df = pd.concat(parts, ignore_index=True)
    for col in ("de_direction", "direction", "redundant_with", "de_rule"):
        df[col] = df[col].astype(str)
    df["reported"] = df["reported"].astype(bool)
    return df.sort_values(["feature", "de_direction", "hyper_p", "rank_p"], ascending=[True, False, True, True],
                          kind="stable").reset_index(drop=True)


@dataclass
class _Block:
    """What both directions share: the DE block, its terms (``matrix``: terms × genes CSR), each
    feature's universe (features × genes) and term sizes in it, and the rank test's ``z``."""

    de: CalibratedDE
    terms: pd.DataFrame
    matrix: sp.csr_matrix
    universe: np.ndarray
    n_univ: np.ndarray
    size: np.ndarray
    rho: np.ndarray
    z: np.ndarray
    term_genes: list
    term_ids: list
    dag: Hierarchy | None
    ontology: np.ndarray


def _ranked_block(de: CalibratedDE, concepts, *, correlation: np.ndarray, dag) -> tuple[_Block, np.ndarray, np.ndarray]:
    """``(the shared block, one-sided rank p up, rank p down)`` (features × terms)."""
    matrix = concepts.matrix.tocsr()
    n_genes = de.p.shape[1]
    annotated = np.diff(matrix.tocsc().indptr) > 0
    universe = de.tested & annotated[None, :]
    n_univ = universe.sum(axis=1).astype(np.float64)
    size = term_sums(matrix, universe)           # term sizes inside each feature's universe
    rho = np.clip(np.asarray(correlation, np.float64), 0.0, 1.0)
    key = np.where(universe, de.t, np.nan)
    ranks, ties = rank_rows(key)
    n_nan = n_genes - n_univ
    ties = ties - (n_nan ** 3 - n_nan)
    rank_sum = term_sums(matrix, np.where(universe, ranks, 0.0))
    del ranks, key
    z, p_up, p_down = rank_sum_correlated(rank_sum, size, n_univ[:, None], rho[None, :], tie_term=ties[:, None])
    ptr, idx = matrix.indptr, matrix.indices
    term_genes = [idx[ptr[t]:ptr[t + 1]] for t in range(matrix.shape[0])]
    term_ids = concepts.terms["id"].astype(str).tolist()
    if dag is not None and not isinstance(dag, Hierarchy):
        dag = hierarchy(term_ids, dag)
    block = _Block(de=de, terms=concepts.terms, matrix=matrix, universe=universe, n_univ=n_univ, size=size, rho=rho,
                   z=z, term_genes=term_genes, term_ids=term_ids, dag=dag, ontology=ontology_codes(concepts.terms))
    return block, p_up, p_down


def _direction_rows(b: _Block, direction: str, sig: np.ndarray, rank_p: np.ndarray, *, q_max: float,
                    min_hits: int, nominal_p: float) -> pd.DataFrame:
    """The kept rows of one direction (``sig``: features × genes significant that way)."""
    testable = b.size > 0
    s = sig & b.universe
    n = s.sum(axis=1).astype(np.float64)
    hits = term_sums(b.matrix, s)
    hyper_p = np.ones(hits.shape)
    m = hits > 0
    if m.any():
        fi = np.nonzero(m)[0]
        hyper_p[m] = hypergeom_over(hits[m], b.n_univ[fi], b.size[m], n[fi])
    hyper_q = bh_masked(hyper_p, testable)
    rank_q = bh_masked(rank_p, testable)
    passes = (hyper_q < q_max) & (hits >= min_hits)
    keep = passes | ((hyper_p < nominal_p) & m) | ((rank_p < nominal_p) & testable)
    fi, ti = np.nonzero(keep)
    if direction == "up":  # down rows are never reported
        elim_p, redundant = _eliminated(b, fi, ti, passes, hyper_p, s, min_hits=min_hits)
    else:
        elim_p, redundant = np.full(fi.size, np.nan), np.full(fi.size, "", dtype=object)
    nf = n[fi]
    k = hits[fi, ti]
    kk = b.size[fi, ti]
    nu = b.n_univ[fi]
    binom_p = np.ones(fi.size)
    ok = nf > 0
    if ok.any():
        binom_p[ok] = binom_two_sided(k[ok], nf[ok], kk[ok] / nu[ok])
    expected = nf * kk / np.maximum(nu, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fold = k / expected
    terms = b.terms
    table = {"feature": b.de.feature[fi], "term_id": term_column(terms, "id", ti),
             "term_name": term_column(terms, "name", ti), "namespace": term_column(terms, "namespace", ti),
             "source": term_column(terms, "source", ti), "de_direction": direction, "n_universe": nu.astype(np.int64),
             "n_term_genes": kk.astype(np.int64), "hits": k.astype(np.int64), "n_significant": nf.astype(np.int64),
             "expected": expected, "fold_enrichment": fold,
             "direction": np.where(k > expected, "over", np.where(k < expected, "under", "none")),
             "hyper_p": hyper_p[fi, ti], "hyper_q": hyper_q[fi, ti], "elim_p": elim_p, "binom_p": binom_p,
             "rank_z": b.z[fi, ti], "rank_p": rank_p[fi, ti], "rank_q": rank_q[fi, ti], "correlation": b.rho[ti],
             "reported": (passes[fi, ti] & (redundant == "") & (direction == "up")),
             "redundant_with": redundant, "de_rule": b.de.rule[fi] if fi.size else np.zeros(0, object)}
    return pd.DataFrame(table, columns=CALIBRATED_COLUMNS)


def _eliminated(b: _Block, fi: np.ndarray, ti: np.ndarray, passes: np.ndarray, hyper_p: np.ndarray,
                s: np.ndarray, *, min_hits: int) -> tuple[np.ndarray, np.ndarray]:
    """topGO elim along the DAG of each feature's passing rows: ``(elim_p, redundant_with)`` per kept row."""
    elim_p = np.full(fi.size, np.nan)
    redundant = np.full(fi.size, "", dtype=object)
    bounds = np.searchsorted(fi, np.arange(b.de.p.shape[0] + 1))  # fi is sorted: feature f owns [bounds[f], bounds[f+1])
    for f in np.unique(fi[passes[fi, ti]]):
        rows = bounds[f] + np.flatnonzero(passes[f, ti[bounds[f]:bounds[f + 1]]])
        cutoff = float(hyper_p[f, ti[rows]].max())
        ep, red = eliminate(ti[rows], term_genes=b.term_genes, term_ids=b.term_ids, universe=b.universe[f],
                            significant=s[f], cutoff=cutoff, min_hits=min_hits, dag=b.dag, ontology=b.ontology)
        elim_p[rows] = ep
        redundant[rows] = red
    return elim_p, redundant
