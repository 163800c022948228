"""Concept enrichment of DE results, for a block of features at once (docs/method.md §4 steps 4–6).

Per feature × term (terms of a :class:`~core.concepts.ConceptDB` restricted to the data's genes):

- **Binomial test** (PANTHER style): n = significant genes of the feature, hits = those in the
  term, p_term = |term| / N with N = all genes of the data; exact two-sided p as
  ``scipy.stats.binomtest(hits, n, p_term).pvalue``; expected = n·p_term, fold enrichment =
  hits / expected, direction "over"/"under" (hits above/below expected; "none" if equal).
  A feature with no significant gene gets p = 1 for every term. BH across terms → ``binom_q``.
- **Mann–Whitney U** on all genes ranked by fold change (ascending, rank 1 = smallest, average
  ranks for ties): U = R_term − n1(n1+1)/2 from the term's rank sum, normal approximation
  without continuity correction, tie-corrected variance (scipy's asymptotic method).
  Sign convention: ``mwu_z`` = (U − n1·n2/2)/σ is positive when the term's genes have higher fold
  changes than the other genes (up in high cells). ``mwu_p_up`` = scipy
  ``mannwhitneyu(term, rest, alternative="greater", use_continuity=False, method="asymptotic")``;
  ``mwu_p_two_sided`` the two-sided p. ``effect_size`` = 1 − AUC = 1 − U/(n1·n2), as the reference
  (small when the term is up-regulated). The reference's ``mw_pval`` = norm.cdf(−|z|) with
  z = (min(U_term, U_rest) − n1·n2/2)/σ (ordinal ranks, no tie correction): half the two-sided p
  whatever the direction, i.e. min(p_up, p_down), not a one-sided test for up-regulation; its
  "mw_pval < 0.01" corresponds to our ``mwu_p_two_sided < 0.02``. ``mwu_q`` = BH across terms of the
  p chosen by ``mwu_alternative`` (default two-sided), which is also the one thresholded.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress
from core.annotate.de import DEResult
from core.annotate.stats import bh, binom_two_sided_unique, mwu_from_rank_sums, rank_rows, term_sums

__all__ = ["enrich", "enrichment_stats", "COLUMNS", "term_column"]

COLUMNS = ["feature", "term_id", "term_name", "namespace", "source", "n_term_genes", "hits", "n_significant",
           "expected", "fold_enrichment", "direction", "binom_p", "binom_q", "mwu_u", "mwu_z", "mwu_p_up",
           "mwu_p_two_sided", "mwu_q", "effect_size", "de_rule"]


def enrichment_stats(de: DEResult, concepts, *, mwu_alternative: str = "two-sided",
                     progress: Progress = no_progress, should_stop: ShouldStop = never_stop) -> dict:
    """Every statistic for every feature × term: a dict of (F, T) arrays keyed by the statistic columns of
    :data:`COLUMNS` (``n_term_genes`` … ``effect_size``) plus ``mwu_p``, the p of ``mwu_alternative``;
    ``direction`` is coded 1 over, −1 under, 0 none."""
    if mwu_alternative not in ("two-sided", "greater"):
        raise InputError(f"mwu_alternative must be 'two-sided' or 'greater', got {mwu_alternative!r}")
    matrix = concepts.matrix.tocsr()
    n_genes = de.n_genes
    if matrix.shape[1] != n_genes:
        raise InputError(f"the concept database has {matrix.shape[1]} gene columns, the DE has {n_genes} genes",
                         fix="restrict it to the data's genes: prepare_concepts(dbs, gene_names)")
    sizes = np.diff(matrix.indptr).astype(np.float64)
    n_sig = de.n_significant.astype(np.float64)

    def check(step, msg):
        if should_stop():
            raise Cancelled()
        progress(step, 4, msg)

    check(0, "enrichment: hits and rank sums per term")
    ranks, ties = rank_rows(de.fold_change)
    hits, rank_sum = term_sums(matrix, de.significant, ranks)
    del ranks
    p_term = sizes / n_genes
    expected = n_sig[:, None] * p_term[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        fold = hits / expected
    direction = np.sign(hits - expected).astype(np.int8)  # 1 over, -1 under, 0 none
    check(1, "enrichment: binomial tests")
    binom_p = _binom_block(hits, n_sig, sizes, n_genes)
    check(2, "enrichment: Mann–Whitney U")
    u, z, p_up, p_two = mwu_from_rank_sums(rank_sum, sizes[None, :], n_genes, ties[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = 1.0 - u / (sizes * (n_genes - sizes))[None, :]
    mwu_p = p_two if mwu_alternative == "two-sided" else p_up
    check(3, "enrichment: FDR")
    out = {"n_term_genes": np.broadcast_to(sizes, hits.shape), "hits": hits,
           "n_significant": np.broadcast_to(n_sig[:, None], hits.shape), "expected": expected,
           "fold_enrichment": fold, "direction": direction, "binom_p": binom_p,
           "binom_q": bh(binom_p, axis=1) if hits.size else binom_p, "mwu_u": u, "mwu_z": z,
           "mwu_p_up": p_up, "mwu_p_two_sided": p_two, "mwu_q": bh(mwu_p, axis=1) if hits.size else mwu_p,
           "effect_size": effect, "mwu_p": mwu_p}
    progress(4, 4, "enrichment: done")
    return out


def enrich(
    de: DEResult,
    concepts,
    *,
    binom_p_max: float = 0.01,
    mwu_p_max: float = 0.01,
    keep: str = "either",
    mwu_alternative: str = "two-sided",
    progress: Progress = no_progress,
    should_stop: ShouldStop = never_stop,
) -> pd.DataFrame:
    """Enriched feature–term pairs of a DE block as a tidy DataFrame (columns :data:`COLUMNS`).

    ``concepts``: a ConceptDB restricted to the DE's genes (``prepare_concepts``). A pair is
    kept when ``binom_p < binom_p_max`` or (``keep="both"``: and) the MWU p (``mwu_alternative``)
    ``< mwu_p_max``; ``keep="all"`` keeps every pair. Rows are ordered by feature, then binom_p.
    """
    if keep not in ("either", "both", "all"):
        raise InputError(f"keep must be 'either', 'both' or 'all', got {keep!r}")
    s = enrichment_stats(de, concepts, mwu_alternative=mwu_alternative, progress=progress,
                         should_stop=should_stop)
    pass_b = s["binom_p"] < binom_p_max
    pass_m = s["mwu_p"] < mwu_p_max
    mask = {"either": pass_b | pass_m, "both": pass_b & pass_m, "all": np.ones_like(pass_b)}[keep]
    fi, ti = np.nonzero(mask)
    table = {"feature": de.feature[fi]}
    for col, src in (("term_id", "id"), ("term_name", "name"), ("namespace", "namespace"), ("source", "source")):
        table[col] = term_column(concepts.terms, src, ti)
    for col in COLUMNS[5:-1]:
        table[col] = s[col][fi, ti]
    for col in ("hits", "n_term_genes", "n_significant"):
        table[col] = table[col].astype(np.int64)
    table["direction"] = pd.Categorical.from_codes(np.array([1, 2, 0], np.int8)[table["direction"] + 1],
                                                   categories=["over", "under", "none"])
    table["de_rule"] = pd.Categorical(de.rule[fi], categories=["strict", "fallback"])
    df = pd.DataFrame(table, columns=COLUMNS)
    return df.sort_values(["feature", "binom_p"], kind="stable").reset_index(drop=True)


def term_column(terms: pd.DataFrame, col: str, rows: np.ndarray):
    """Column ``col`` of the term table at ``rows`` as a Categorical over all the database's values
    (identical categories in every block, so blocks concatenate without turning into objects)."""
    if col not in terms:
        return pd.Categorical(np.full(rows.size, "", object))
    values = terms[col].astype(str).to_numpy()
    cats, codes = np.unique(values, return_inverse=True)
    return pd.Categorical.from_codes(codes[rows], categories=cats)


def _binom_block(hits, n_sig, sizes, n_genes):
    """Two-sided binomial p (F, T): each distinct (hits, n, term size) of a feature computed once."""
    out = np.ones(hits.shape)
    rows = np.flatnonzero(n_sig > 0)
    if rows.size == 0 or hits.shape[1] == 0:
        return out
    k = np.ascontiguousarray(hits[rows]).astype(np.int64)
    sz = sizes.astype(np.int64)
    uk, us, uf, inv = _dedupe(k, sz, int(sz.max()) + 1, int(k.max()) + 1)
    pu = binom_two_sided_unique(uk.astype(np.float64), n_sig[rows][uf], us / n_genes)
    out[rows] = pu[inv]
    return out


@njit(cache=True)
def _dedupe(k, sizes, n_size, n_k):
    """Distinct (k, size) pairs within each row: their k, size, row and each pair's index (F, T)."""
    f_n, t_n = k.shape
    slot = np.full(n_size * n_k, -1, np.int64)
    inv = np.empty((f_n, t_n), np.int64)
    uk = np.empty(f_n * t_n, np.int64)
    us = np.empty(f_n * t_n, np.int64)
    uf = np.empty(f_n * t_n, np.int64)
    m = 0
    for f in range(f_n):
        start = m
        for t in range(t_n):
            code = sizes[t] * n_k + k[f, t]
            if slot[code] < start:
                slot[code] = m
                uk[m] = k[f, t]
                us[m] = sizes[t]
                uf[m] = f
                m += 1
            inv[f, t] = slot[code]
    return uk[:m], us[:m], uf[:m], inv
