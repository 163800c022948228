"""Most specific terms: topGO's *elim* along the GO DAG (Alexa et al. 2006), per feature.

Significant terms are visited from the most specific (fewest genes, then deepest) to the most
general. A term that stays significant after removing the genes of its significant descendants
is kept, and its own genes are then removed from all its ancestors; a term that no longer
passes is marked ``redundant_with`` the descendant that took most of its hits. The sample (N
universe genes, n significant genes) is unchanged, as in topGO. Terms outside the GO DAG
(gene-set files) are never eliminated by the DAG.

A second pass removes overlap between siblings and cousins: the surviving terms, most significant
first, must each stay significant on the genes not in a term already kept (a greedy conditional
test); a term explained this way is ``redundant_with`` the kept term sharing most of its hits.
Both passes work within one ontology (GO BP, MF, CC, or one gene-set file), as topGO does: a
process and the molecular function of the same genes are both kept.
Every ``redundant_with`` names a term that is kept in the end (chains are followed).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from core.annotate.moderated import hypergeom_over_one

__all__ = ["Hierarchy", "hierarchy", "ontology_codes", "eliminate"]


class Hierarchy:
    """The DAG restricted to a database's term rows: ``ancestors[t]`` (rows, int array) and ``depth[t]``."""

    def __init__(self, ancestors: list, depth: np.ndarray):
        self.ancestors, self.depth = ancestors, depth


def hierarchy(term_ids: list, dag) -> Hierarchy:
    """Ancestor rows and depths of every term row of a database (no DAG: none)."""
    row = {t: i for i, t in enumerate(term_ids)}
    if dag is None:
        return Hierarchy([np.zeros(0, np.int64)] * len(term_ids), np.zeros(len(term_ids), np.int64))
    anc = [np.array(sorted(row[a] for a in dag.ancestors(t) if a in row), np.int64) for t in term_ids]
    return Hierarchy(anc, np.array([dag.depth.get(t, 0) for t in term_ids], np.int64))


def ontology_codes(terms) -> np.ndarray:
    """An int code per term row: its ontology (GO namespace, or the gene-set file it came from)."""
    cols = [terms[c].astype(str) for c in ("source", "namespace") if c in terms]
    if not cols:
        return np.zeros(len(terms), np.int64)
    key = cols[0] + "|" + cols[1] if len(cols) == 2 else cols[0]
    return np.unique(key.to_numpy(), return_inverse=True)[1].astype(np.int64).ravel()


def eliminate(candidates: np.ndarray, *, term_genes: list, term_ids: list, universe: np.ndarray,
              significant: np.ndarray, cutoff: float, min_hits: int, dag: Hierarchy | None = None,
              ontology: np.ndarray | None = None) -> tuple[np.ndarray, list]:
    """One feature's elimination over ``candidates`` (term rows that passed, (C,) int).

    ``term_genes[t]``: gene columns of term row t (all data genes); ``term_ids[t]``: its id;
    ``universe``, ``significant``: (G,) bool; ``cutoff``: the p a term must stay at or below;
    ``dag``: the database's :class:`Hierarchy` (None: only the second pass); ``ontology``: an int
    code per term row (the second pass runs within each; None: one ontology).
    Returns ``(elim_p (C,), redundant_with (C,) list of term ids or "")``.
    """
    c = np.asarray(candidates, np.int64)
    genes = [term_genes[t][universe[term_genes[t]]] for t in c]
    size = np.array([g.size for g in genes], np.int64)
    gene_ptr = np.zeros(c.size + 1, np.int64)
    gene_ptr[1:] = np.cumsum(size)
    gene_idx = np.concatenate(genes).astype(np.int64) if c.size else np.zeros(0, np.int64)
    hit = significant[gene_idx]
    pos = np.full(len(term_ids), -1, np.int64)
    pos[c] = np.arange(c.size)
    if dag is not None:
        ups = [pos[dag.ancestors[t]] for t in c]
        ups = [u[u >= 0] for u in ups]
        depth = dag.depth[c]
    else:
        ups = [np.zeros(0, np.int64)] * c.size
        depth = np.zeros(c.size, np.int64)
    anc_ptr = np.zeros(c.size + 1, np.int64)
    anc_ptr[1:] = np.cumsum([u.size for u in ups])
    anc_idx = np.concatenate(ups).astype(np.int64) if c.size else np.zeros(0, np.int64)
    n_univ, n_sig = float(universe.sum()), float((significant & universe).sum())
    order = np.lexsort((-depth, size)).astype(np.int64)
    elim_p, redundant = _elim_pass(order, gene_ptr, gene_idx, hit, anc_ptr, anc_idx, universe.size, n_univ,
                                   n_sig, float(cutoff), int(min_hits))
    alive = np.flatnonzero(redundant < 0)
    code = ontology[c] if ontology is not None else np.zeros(c.size, np.int64)
    for o in np.unique(code[alive]):
        group = alive[code[alive] == o]
        order2 = group[np.lexsort((size[group], elim_p[group]))].astype(np.int64)
        _conditional_pass(order2, gene_ptr, gene_idx, hit, universe.size, n_univ, n_sig, float(cutoff),
                          int(min_hits), elim_p, redundant)
    # follow chains to a kept term (a pass-1 descendant may have been explained in pass 2)
    names = [""] * c.size
    for i in range(c.size):
        j, seen = int(redundant[i]), 0
        while j >= 0 and redundant[j] >= 0 and seen <= c.size:
            j, seen = int(redundant[j]), seen + 1
        names[i] = term_ids[c[j]] if j >= 0 else ""
    return elim_p, names


@njit(cache=True)
def _elim_pass(order, gene_ptr, gene_idx, hit, anc_ptr, anc_idx, n_genes, n_univ, n_sig, cutoff, min_hits):
    """topGO elim over candidates in ``order`` (most specific first); genes as CSR (gene_ptr, gene_idx,
    hit), candidate ancestors as CSR (anc_ptr, anc_idx). Returns (elim_p, redundant position or −1)."""
    n = order.size
    removed = np.zeros(gene_idx.size, np.bool_)
    mark = np.zeros(n_genes, np.bool_)
    took = np.zeros(n, np.int64) - 1          # hits the best descendant removed (−1: none removed)
    best = np.full(n, -1, np.int64)
    elim_p = np.ones(n)
    redundant = np.full(n, -1, np.int64)
    for i in order:
        size = 0
        hits = 0
        for h in range(gene_ptr[i], gene_ptr[i + 1]):
            if not removed[h]:
                size += 1
                if hit[h]:
                    hits += 1
        p = hypergeom_over_one(float(hits), n_univ, float(size), n_sig) if hits > 0 else 1.0
        elim_p[i] = p
        if hits >= min_hits and p <= cutoff:
            if anc_ptr[i] == anc_ptr[i + 1]:
                continue
            for h in range(gene_ptr[i], gene_ptr[i + 1]):
                mark[gene_idx[h]] = True
            for a in range(anc_ptr[i], anc_ptr[i + 1]):
                j = anc_idx[a]
                cnt = 0
                for h in range(gene_ptr[j], gene_ptr[j + 1]):
                    if mark[gene_idx[h]]:
                        removed[h] = True
                        if hit[h]:
                            cnt += 1
                if cnt > took[j] or (cnt == took[j] and best[j] >= 0 and elim_p[i] < elim_p[best[j]]):
                    took[j] = cnt
                    best[j] = i
            for h in range(gene_ptr[i], gene_ptr[i + 1]):
                mark[gene_idx[h]] = False
        elif took[i] >= 0:
            redundant[i] = best[i]
    return elim_p, redundant


@njit(cache=True)
def _conditional_pass(order, gene_ptr, gene_idx, hit, n_genes, n_univ, n_sig, cutoff, min_hits, elim_p, redundant):
    """Survivors, most significant first, must stay significant on genes no kept term covers (in place)."""
    owner = np.full(n_genes, -1, np.int64)
    count = np.zeros(elim_p.size, np.int64)
    for i in order:
        size = 0
        hits = 0
        for h in range(gene_ptr[i], gene_ptr[i + 1]):
            if owner[gene_idx[h]] < 0:
                size += 1
                if hit[h]:
                    hits += 1
        p = hypergeom_over_one(float(hits), n_univ, float(size), n_sig) if hits > 0 else 1.0
        if hits >= min_hits and p <= cutoff:
            for h in range(gene_ptr[i], gene_ptr[i + 1]):
                if owner[gene_idx[h]] < 0:
                    owner[gene_idx[h]] = i
            continue
        elim_p[i] = max(elim_p[i], p)
        top, top_n, first = -1, 0, -1
        for h in range(gene_ptr[i], gene_ptr[i + 1]):
            o = owner[gene_idx[h]]
            if o < 0:
                continue
            if first < 0:
                first = o
            if hit[h]:
                count[o] += 1
                if count[o] > top_n:
                    top, top_n = o, count[o]
        for h in range(gene_ptr[i], gene_ptr[i + 1]):
            o = owner[gene_idx[h]]
            if o >= 0:
                count[o] = 0
        redundant[i] = top if top >= 0 else first
