"""The GO DAG of the shipped release (is_a and part_of edges, as used for propagation).

    dag = go_dag()
    dag.parents("GO:0030218")        # direct parents
    dag.ancestors("GO:0030218")      # every ancestor (not the term itself)
    dag.depth["GO:0030218"]          # longest path from its namespace root
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path


from core.concepts.go import GO_FILE, read_go_arrays

__all__ = ["GODag", "go_dag", "ROOTS"]

ROOTS = {"BP": "GO:0008150", "MF": "GO:0003674", "CC": "GO:0005575"}


@dataclass(frozen=True)
class GODag:
    """Parent lists of every GO term id (is_a + part_of), names and namespaces."""

    parent_map: dict            # id -> tuple of parent ids
    names: dict                 # id -> name
    namespace: dict             # id -> "BP" | "MF" | "CC"
    _anc: dict = field(default_factory=dict, repr=False, compare=False)

    def parents(self, term: str) -> tuple:
        return self.parent_map.get(term, ())

    def ancestors(self, term: str) -> frozenset:
        """All ancestors of ``term`` (excluding itself); unknown ids have none."""
        hit = self._anc.get(term)
        if hit is not None:
            return hit
        out: set = set()
        stack = list(self.parents(term))
        while stack:
            p = stack.pop()
            if p not in out:
                out.add(p)
                stack.extend(self.parents(p))
        res = frozenset(out)
        self._anc[term] = res
        return res

    @functools.cached_property
    def children_map(self) -> dict:
        kids: dict = {}
        for c, ps in self.parent_map.items():
            for p in ps:
                kids.setdefault(p, []).append(c)
        return {p: tuple(sorted(c)) for p, c in kids.items()}

    def children(self, term: str) -> tuple:
        return self.children_map.get(term, ())

    @functools.cached_property
    def depth(self) -> dict:
        """Longest path from the namespace root (roots: 0)."""
        memo: dict = {}

        def d(t):
            if t in memo:
                return memo[t]
            stack = [t]
            while stack:
                x = stack[-1]
                todo = [p for p in self.parents(x) if p not in memo]
                if todo:
                    stack.extend(todo)
                    continue
                stack.pop()
                memo[x] = 1 + max((memo[p] for p in self.parents(x)), default=-1)
            return memo[t]

        for t in self.names:
            d(t)
        return memo


@functools.lru_cache(maxsize=1)
def go_dag(path: Path = GO_FILE) -> GODag:
    a = read_go_arrays(Path(path))
    ids = a["term_id"].tolist()
    parents: dict = {}
    for c, p in zip(a["edge_child"].tolist(), a["edge_parent"].tolist()):
        parents.setdefault(ids[c], []).append(ids[p])
    return GODag({k: tuple(v) for k, v in parents.items()}, dict(zip(ids, a["term_name"].tolist())),
                 dict(zip(ids, a["term_namespace"].tolist())))
