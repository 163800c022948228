"""Concept enrichment of the genes a steering run moved up and down, with the annotation engine.

The two gene lists are two rows of one :class:`~core.annotate.de.DEResult`: row "up" has the
significant up-regulated genes and ranks genes by log2fc; row "down" has the down-regulated ones
and ranks by −log2fc. Per term: the exact binomial test (over-representation among the row's
significant genes, as in annotation) and the Mann–Whitney U test of the term's genes towards the
changed end of the ranking (``mwu_p_up``, one-sided), BH across terms for both. A term is kept
when it is over-represented with binomial BH q below ``q_max``, or when its Mann–Whitney BH q is
below ``q_max`` AND its genes moved, on average, at least ``min_shift`` log2 units more than all
genes (``shift``; gene log fold changes move together under any change, so without that floor a
rank test finds hundreds of "shifted" terms in a run that changed no gene).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.base.cache import LRUCache
from core.base.errors import InputError
from core.annotate.de import DEResult
from core.annotate.enrich import enrichment_stats
from core.base import io
from core.concepts import load_go, read_gmt
from core.concepts.go import NAMESPACES
from core.concepts.match import prepare_concepts

__all__ = ["ENRICH_COLUMNS", "up_down_enrichment", "steering_concepts"]

ENRICH_COLUMNS = ["term_id", "term_name", "namespace", "source", "n_term_genes", "hits", "n_significant",
                  "expected", "fold_enrichment", "binom_p", "binom_q", "mwu_z", "mwu_p", "mwu_q", "shift", "genes"]

_CONCEPTS = LRUCache(size=4)


def steering_concepts(gene_names, *, databases=("go-bp",), gmt=(), propagate: bool = True, min_size: int = 10,
                      max_size: int = 500):
    """The concept databases restricted to ``gene_names`` and filtered by size (cached in memory);
    None when no database is chosen."""

    if not databases and not gmt:
        return None
    genes = [str(g) for g in gene_names]
    key = io.content_hash(genes, list(databases), [io.content_hash(Path(g)) for g in gmt], propagate, min_size,
                          max_size)

    def make():
        dbs = [load_go([NAMESPACES[d] for d in databases], propagate=propagate)] if databases else []
        dbs += [read_gmt(p) for p in gmt]
        return prepare_concepts(dbs, genes, min_size=min_size, max_size=max_size)

    return _CONCEPTS.get_or_make(key, make)


def up_down_enrichment(de: pd.DataFrame, concepts, *, q_max: float = 0.05,
                       min_shift: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(up, down) enrichment tables (columns :data:`ENRICH_COLUMNS`), sorted by binomial then MWU p.

    ``de``: the steering DE table (gene order = the concepts' gene columns); ``concepts``: from
    :func:`steering_concepts`, or None for empty tables. ``genes``: the term's significant genes
    of that direction, comma-separated.
    """

    if concepts is None:
        empty = pd.DataFrame(columns=ENRICH_COLUMNS)
        return empty, empty.copy()
    n_genes = len(de)
    if concepts.matrix.shape[1] != n_genes:
        raise InputError(f"the concepts cover {concepts.matrix.shape[1]} genes, the DE table {n_genes}")
    lfc = np.nan_to_num(de["log2fc"].to_numpy(np.float64), nan=0.0, posinf=1e300, neginf=-1e300)
    sig = de["significant"].to_numpy(bool)
    up, down = sig & (lfc > 0), sig & (lfc < 0)
    two = np.zeros((2, n_genes))
    res = DEResult(feature=np.array([0, 1]), n_high=np.zeros(2, np.int64), n_low=np.zeros(2, np.int64),
                   mean_high=two, mean_low=two, fold_change=np.vstack([lfc, -lfc]), t=two, p=two + 1.0,
                   q=two + 1.0, significant=np.vstack([up, down]),
                   rule=np.array(["strict", "strict"], dtype=object))
    s = enrichment_stats(res, concepts, mwu_alternative="greater")
    genes = np.asarray(de["gene"].astype(str))
    matrix = concepts.matrix.tocsr()
    finite = np.clip(lfc, -50.0, 50.0)  # ±inf (a gene from or to 0) counts as a large change, not as inf
    shift = np.asarray(matrix.astype(np.float64) @ finite).ravel() / np.maximum(s["n_term_genes"][0], 1) - finite.mean()
    terms = concepts.terms
    out = []
    for row, mask in enumerate((up, down)):
        moved = shift if row == 0 else -shift
        keep = (((s["binom_q"][row] < q_max) & (s["direction"][row] > 0)) | ((s["mwu_q"][row] < q_max)
                & (moved >= min_shift))) if q_max < 1 else np.ones(len(terms), bool)
        ti = np.flatnonzero(keep)
        hit_genes = []
        for t in ti:
            cols = matrix.indices[matrix.indptr[t]:matrix.indptr[t + 1]]
            hit_genes.append(",".join(genes[cols[mask[cols]]].tolist()))
        table = pd.DataFrame({
            "term_id": terms["id"].to_numpy()[ti].astype(str),
            "term_name": terms["name"].to_numpy()[ti].astype(str) if "name" in terms else "",
            "namespace": terms["namespace"].to_numpy()[ti].astype(str) if "namespace" in terms else "",
            "source": terms["source"].to_numpy()[ti].astype(str) if "source" in terms else "",
            "n_term_genes": s["n_term_genes"][row, ti].astype(np.int64),
            "hits": s["hits"][row, ti].astype(np.int64),
            "n_significant": s["n_significant"][row, ti].astype(np.int64),
            "expected": s["expected"][row, ti], "fold_enrichment": s["fold_enrichment"][row, ti],
            "binom_p": s["binom_p"][row, ti], "binom_q": s["binom_q"][row, ti],
            "mwu_z": s["mwu_z"][row, ti], "mwu_p": s["mwu_p_up"][row, ti], "mwu_q": s["mwu_q"][row, ti],
            "shift": moved[ti], "genes": hit_genes,
        }, columns=ENRICH_COLUMNS)
        out.append(table.sort_values(["binom_p", "mwu_p"], kind="stable").reset_index(drop=True))
    return out[0], out[1]
