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
"""
from __future__ import annotations

import numpy as np

from .moderated import hypergeom_over

__all__ = ["eliminate"]


def eliminate(candidates: np.ndarray, *, term_genes: list, term_ids: list, universe: np.ndarray,
              significant: np.ndarray, cutoff: float, min_hits: int, dag=None) -> tuple[np.ndarray, list]:
    """One feature's elimination over ``candidates`` (term rows that passed, (C,) int).

    ``term_genes[t]``: gene columns of term row t (all data genes); ``term_ids[t]``: its id;
    ``universe``, ``significant``: (G,) bool; ``cutoff``: the p a term must stay at or below;
    ``dag``: a :class:`core.concepts.dag.GODag` (None: nothing is eliminated).
    Returns ``(elim_p (C,), redundant_with (C,) list of term ids or "")``.
    """
    n_univ = int(universe.sum())
    n_sig = int((significant & universe).sum())
    c = np.asarray(candidates, np.int64)
    genes = [term_genes[t][universe[term_genes[t]]] for t in c]
    size = np.array([g.size for g in genes])
    depth = np.array([dag.depth.get(term_ids[t], 0) if dag is not None else 0 for t in c])
    order = np.lexsort((-depth, size))
    pos_of = {term_ids[t]: i for i, t in enumerate(c)}
    removed: list = [None] * c.size             # per candidate: {descendant position: genes it removed}
    elim_p = np.ones(c.size)
    redundant = [""] * c.size
    for i in order:
        g = genes[i]
        took = removed[i]
        if took:
            drop = np.unique(np.concatenate(list(took.values())))
            g = g[~np.isin(g, drop)]
        hits = int(significant[g].sum())
        p = float(hypergeom_over(hits, n_univ, g.size, n_sig)) if hits else 1.0
        elim_p[i] = p
        if hits >= min_hits and p <= cutoff:
            if dag is None:
                continue
            own = genes[i]
            for a in dag.ancestors(term_ids[c[i]]):
                j = pos_of.get(a)
                if j is not None and j != i:
                    removed[j] = removed[j] or {}
                    removed[j][i] = own
        elif took:
            best = max(took, key=lambda k: (int(significant[took[k]].sum()), -elim_p[k]))
            redundant[i] = term_ids[c[best]]
    # second pass: a term must stay significant on the genes not covered by the more significant terms kept
    covered = np.zeros(universe.size, bool)
    kept: list = []
    for i in sorted((i for i in range(c.size) if not redundant[i]), key=lambda i: (elim_p[i], size[i])):
        g = genes[i][~covered[genes[i]]]
        hits = int(significant[g].sum())
        p = float(hypergeom_over(hits, n_univ, g.size, n_sig)) if hits else 1.0
        if hits >= min_hits and p <= cutoff:
            kept.append(i)
            covered[genes[i]] = True
        else:
            elim_p[i] = max(elim_p[i], p)
            own = genes[i][significant[genes[i]]]
            best = max(kept, key=lambda k: (np.isin(own, genes[k]).sum(), -elim_p[k]))
            redundant[i] = term_ids[c[best]]
    return elim_p, redundant
