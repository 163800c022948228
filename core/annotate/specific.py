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
Every ``redundant_with`` names a term that is kept in the end (chains are followed).
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
    ``dag``: a :class:`core.concepts.dag.GODag` (None: only the second pass).
    Returns ``(elim_p (C,), redundant_with (C,) list of term ids or "")``.
    """
    n_univ = int(universe.sum())
    n_sig = int((significant & universe).sum())
    c = np.asarray(candidates, np.int64)
    genes = [term_genes[t][universe[term_genes[t]]] for t in c]
    hit = [significant[g] for g in genes]
    size = np.array([g.size for g in genes])
    depth = np.array([dag.depth.get(term_ids[t], 0) if dag is not None else 0 for t in c])
    pos_of = {term_ids[t]: i for i, t in enumerate(c)}
    removed = [None] * c.size            # per candidate: bool over its genes, removed by descendants
    took: list = [None] * c.size         # per candidate: {descendant: hits it removed}
    mark = np.zeros(universe.size, bool)
    elim_p = np.ones(c.size)
    redundant = [""] * c.size

    def test(i, keep):
        hits = int(hit[i][keep].sum())
        return hits, (float(hypergeom_over(hits, n_univ, int(keep.sum()), n_sig)) if hits else 1.0)

    for i in np.lexsort((-depth, size)):
        keep = ~removed[i] if removed[i] is not None else np.ones(size[i], bool)
        hits, p = test(i, keep)
        elim_p[i] = p
        if hits >= min_hits and p <= cutoff:
            if dag is None:
                continue
            mark[genes[i]] = True
            for a in dag.ancestors(term_ids[c[i]]):
                j = pos_of.get(a)
                if j is None or j == i:
                    continue
                inside = mark[genes[j]]
                removed[j] = inside if removed[j] is None else removed[j] | inside
                took[j] = took[j] or {}
                took[j][i] = int((inside & hit[j]).sum())
            mark[genes[i]] = False
        elif took[i]:
            redundant[i] = max(took[i], key=lambda k: (took[i][k], -elim_p[k]))
    # second pass on the survivors, most significant first
    covered = np.zeros(universe.size, bool)
    kept: list = []
    for i in sorted((i for i in range(c.size) if redundant[i] == ""), key=lambda i: (elim_p[i], size[i])):
        hits, p = test(i, ~covered[genes[i]])
        if hits >= min_hits and p <= cutoff:
            kept.append(i)
            covered[genes[i]] = True
        else:
            elim_p[i] = max(elim_p[i], p)
            own = genes[i][hit[i]]
            mark[own] = True
            redundant[i] = max(kept, key=lambda k: (int(mark[genes[k]].sum()), -elim_p[k]))
            mark[own] = False
    # follow chains to a kept term (a pass-1 descendant may have been explained in pass 2)
    names = [""] * c.size
    for i in range(c.size):
        j, seen = redundant[i], 0
        while j != "" and redundant[j] != "" and seen <= c.size:
            j, seen = redundant[j], seen + 1
        names[i] = term_ids[c[j]] if j != "" else ""
    return elim_p, names
