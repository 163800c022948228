"""The concept map: features placed by the concepts they are annotated with (docs/method.md §5).

Binary features × terms matrix of the reported pairs (:func:`core.annotate.reported.reported`)
→ UMAP (paper: 10 neighbours, min_dist 1.0, spread 10, seed 0). Each feature is coloured by a
GO category chosen for the data (:func:`go_categories`): the categories start at the children of
the namespace root, very general terms ("cellular process", "biological regulation", …) are split
into their children at once, and the largest category is split again until none holds more than
``max_category_share`` of the features or there are ``max_categories`` of them.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.annotate.reported import reported
from core.concepts.dag import GODag, go_dag
from core.base.errors import InputError

__all__ = ["ConceptMapConfig", "GENERIC_TERMS", "feature_term_matrix", "go_categories", "level1_categories",
           "concept_map"]

# GO terms too general to tell features apart: split into their children before categories are chosen
GENERIC_TERMS = frozenset({
    "GO:0065007",  # biological regulation
    "GO:0050789",  # regulation of biological process
    "GO:0050794",  # regulation of cellular process
    "GO:0048518",  # positive regulation of biological process
    "GO:0048519",  # negative regulation of biological process
    "GO:0048522",  # positive regulation of cellular process
    "GO:0048523",  # negative regulation of cellular process
    "GO:0009987",  # cellular process
    "GO:0008152",  # metabolic process
    "GO:0044237",  # cellular metabolic process
    "GO:0044238",  # primary metabolic process
    "GO:0071704",  # organic substance metabolic process
    "GO:0006807",  # nitrogen compound metabolic process
    "GO:0043170",  # macromolecule metabolic process
    "GO:0044260",  # cellular macromolecule metabolic process
    "GO:0019222",  # regulation of metabolic process
    "GO:0031323",  # regulation of cellular metabolic process
    "GO:0060255",  # regulation of macromolecule metabolic process
    "GO:0080090",  # regulation of primary metabolic process
    "GO:0051171",  # regulation of nitrogen compound metabolic process
    "GO:0065008",  # regulation of biological quality
    "GO:0050896",  # response to stimulus
    "GO:0051716",  # cellular response to stimulus
    "GO:0005488",  # binding (MF)
    "GO:0005515",  # protein binding (MF)
    "GO:0003824",  # catalytic activity (MF)
    "GO:0110165",  # cellular anatomical entity (CC)
    "GO:0005622",  # intracellular anatomical structure (CC)
})


@dataclass(frozen=True)
class ConceptMapConfig:
    n_neighbors: int = 10
    min_dist: float = 1.0
    spread: float = 10.0
    metric: str = "euclidean"
    seed: int = 0
    max_category_share: float = 0.4   # split categories holding more of the features than this
    max_categories: int = 25           # … until there are this many

    def __post_init__(self):
        if self.n_neighbors < 2:
            raise InputError("n_neighbors must be at least 2")
        if not 0 < self.max_category_share <= 1:
            raise InputError(f"max_category_share must lie in (0, 1], got {self.max_category_share}")
        if self.max_categories < 2:
            raise InputError(f"max_categories must be at least 2, got {self.max_categories}")
        if not 0 <= self.min_dist <= self.spread:
            raise InputError(f"min_dist ({self.min_dist}) must lie between 0 and spread ({self.spread})")

    def to_dict(self) -> dict:
        return asdict(self)


def feature_term_matrix(annotations: pd.DataFrame) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Binary (n_features, n_terms) matrix of annotated pairs, with the feature ids and term ids."""
    feats, f_codes = np.unique(annotations["feature"].to_numpy(), return_inverse=True)
    terms, t_codes = np.unique(annotations["term_id"].astype(str).to_numpy(), return_inverse=True)
    m = sp.csr_matrix((np.ones(len(annotations), np.float32), (f_codes, t_codes)), shape=(feats.size, terms.size))
    m.data[:] = 1.0
    return m, feats, terms


def level1_categories(annotations: pd.DataFrame, level1: dict[str, tuple], names: dict[str, str]) -> pd.Series:
    """Most common level-1 ancestor name over each feature's terms (ties: alphabetical). The colouring of
    maps written before :func:`go_categories`; kept for notebooks."""
    out = {}
    for feat, term_ids in annotations.groupby("feature")["term_id"]:
        counts = Counter(a for t in term_ids for a in level1.get(str(t), ()))
        if counts:
            best = max(counts.values())
            out[feat] = min(names.get(a, a) for a, c in counts.items() if c == best)
        else:
            out[feat] = "other"
    return pd.Series(out, name="category")


class _Cover:
    """How many of each feature's GO terms lie under (or are) each GO term: ``counts`` CSC
    (n_features, n_terms) over the terms that cover at least one feature (``col`` id → column)."""

    def __init__(self, feature_codes: np.ndarray, terms: np.ndarray, n_features: int, dag: GODag):
        uniq, t_codes = np.unique(np.asarray(terms, dtype=str), return_inverse=True)
        up = [sorted(dag.ancestors(t) | {t}) for t in uniq.tolist()]
        self.ids, a_codes = np.unique(np.asarray([a for u in up for a in u], dtype=str), return_inverse=True)
        lens = np.array([len(u) for u in up], np.int64)
        term_up = sp.csr_matrix((np.ones(a_codes.size), (np.repeat(np.arange(uniq.size), lens), a_codes)),
                                shape=(uniq.size, self.ids.size))
        has = sp.csr_matrix((np.ones(len(t_codes)), (feature_codes, t_codes)), shape=(n_features, uniq.size))
        self.counts = sp.csc_matrix(has @ term_up)               # (n_features, n_terms) cover counts
        self.col = {t: j for j, t in enumerate(self.ids.tolist())}
        self.support = np.diff(self.counts.indptr)              # features under each term

    def best(self, candidates: list, *, order) -> tuple[np.ndarray, np.ndarray]:
        """Per feature, the candidate covering most of its terms (ties: first in ``order(id)``):
        ``(index into candidates or -1, its cover count)``."""
        if not candidates:
            n = self.counts.shape[0]
            return np.full(n, -1), np.zeros(n)
        cand = sorted(range(len(candidates)), key=lambda i: order(candidates[i]))
        m = self.counts[:, [self.col[candidates[i]] for i in cand]].toarray()
        j = np.argmax(m, axis=1)
        top = m[np.arange(m.shape[0]), j]
        return np.where(top > 0, np.asarray(cand)[j], -1), top


def go_categories(annotations: pd.DataFrame, *, dag: GODag, max_share: float = 0.4, max_categories: int = 25,
                  generic=GENERIC_TERMS) -> pd.Series:
    """A category (a GO term name) for each feature of ``annotations`` (rows feature, term_id,
    term_name: the pairs to categorise, e.g. the reported ones), chosen for this data.

    A feature's terms are its BP terms (its MF/CC terms when it has no BP term). Candidate
    categories start at the children of the namespace roots (GO:0008150, …), with ``generic`` terms replaced by
    their children; each feature joins the candidate that is an ancestor-or-self of most of its
    terms (ties: the candidate over more features, then the smaller id). While a category holds
    more than ``max_share`` of all features and there are fewer than ``max_categories``, the
    largest is replaced by its children. A split term stays as the category of the features whose
    terms are that term itself. Past ``max_categories``, the smallest categories' features move to
    the best remaining one, else "other". Features without GO terms take their term carried by
    the most features (ties: by name), "other" past ``max_categories``. Returns a Series indexed
    by feature, name "category"; deterministic.
    """
    feats = np.unique(annotations["feature"].to_numpy())
    n = feats.size
    if n == 0:
        return pd.Series([], index=feats, name="category", dtype=object)
    fcode, terms = _categorised_pairs(annotations, feats, dag)
    go_feature = np.zeros(n, bool)
    go_feature[fcode] = True
    candidates = _Candidates(_Cover(fcode, terms, n, dag), dag, go_feature, generic=generic)
    cats = candidates.refine(max_share=max_share, max_categories=max_categories)

    labels = np.array([dag.names.get(c, c) if isinstance(c, str) else "other" for c in cats], dtype=object)
    if (~go_feature).any():
        names = _most_frequent_terms(annotations, feats, ~go_feature)
        taken = set(labels[go_feature]) - {"other"}
        counts = pd.Series(names).value_counts()
        new = [x for x in sorted(counts.index, key=lambda x: (-counts[x], x)) if x not in taken]
        keep = taken | set(new[:max(max_categories - len(taken) - 1, 0)])
        labels[~go_feature] = [x if x in keep else "other" for x in names]
    return pd.Series(labels, index=feats, name="category")


def _categorised_pairs(annotations: pd.DataFrame, feats: np.ndarray, dag: GODag) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (feature code into ``feats``, GO term id) pairs that choose categories: each
    feature's BP terms, or its MF/CC terms when it has no BP term; non-GO terms are left out."""
    tid = annotations["term_id"].astype(str).to_numpy()
    ns = pd.Series(tid).map(dag.namespace).to_numpy(object)
    fcode = np.searchsorted(feats, annotations["feature"].to_numpy())
    is_go = pd.notna(ns)
    has_bp = np.zeros(feats.size, bool)
    has_bp[fcode[is_go & (ns == "BP")]] = True
    use = is_go & ((ns == "BP") | ~has_bp[fcode])
    pairs = pd.DataFrame({"f": fcode[use], "t": tid[use]}).drop_duplicates()
    return pairs["f"].to_numpy(), pairs["t"].to_numpy()


class _Candidates:
    """The candidate categories of :func:`go_categories`: ``active`` terms (the categories on
    offer) and ``done`` terms (split ones: categories of last resort), over a :class:`_Cover`."""

    def __init__(self, cover: _Cover, dag: GODag, go_feature: np.ndarray, *, generic):
        self.cover, self.dag, self.go_feature = cover, dag, go_feature
        self.known = cover.col
        roots = sorted(t for t in self.known if not dag.parents(t))   # the namespace roots (GO:0008150, …)
        self.done: set = set(roots)
        self.active: set = set()
        for r in roots:
            self.active.update(self._open_children(r))
        while self.active & set(generic):
            for g in sorted(self.active & set(generic)):
                self.split(g)

    def _open_children(self, term: str) -> list:
        return [c for c in self.dag.children(term) if c in self.known and c not in self.done]

    def split(self, term: str) -> None:
        """Replace ``term`` by its children; it stays a category of last resort."""
        self.active.discard(term)
        self.done.add(term)
        self.active.update(self._open_children(term))

    def _by_support(self, t):
        return (-int(self.cover.support[self.known[t]]), t)

    def _by_depth(self, t):
        return (-self.dag.depth.get(t, 0), t)

    def assign(self, allowed=None) -> np.ndarray:
        """Per feature, the active candidate (of ``allowed``) covering most of its terms, else the
        deepest split one; None when none covers it."""
        act = sorted(self.active if allowed is None else self.active & allowed)
        res = sorted(self.done if allowed is None else self.done & allowed)
        out = np.full(self.go_feature.size, None, dtype=object)
        i, _ = self.cover.best(act, order=self._by_support)
        if act:
            out[i >= 0] = np.asarray(act, dtype=object)[i[i >= 0]]
        rest = (i < 0) & self.go_feature
        if rest.any():
            k, _ = self.cover.best(res, order=self._by_depth)
            hit = rest & (k >= 0)
            if hit.any():
                out[hit] = np.asarray(res, dtype=object)[k[hit]]
        return out

    def refine(self, *, max_share: float, max_categories: int) -> np.ndarray:
        """Split the largest category while it holds more than ``max_share`` of the features and
        there are fewer than ``max_categories``; past ``max_categories``, the smallest categories'
        features move to the best remaining one, else "other". Per feature: a term id, "other" or None."""
        n = self.go_feature.size
        stuck: set = set()
        for _ in range(len(self.known) + 1):
            cats = self.assign()
            counts = pd.Series(cats[self.go_feature]).value_counts()
            if len(counts) >= max_categories:
                break
            big = sorted((t for t, c in counts.items() if c > max_share * n and t in self.active and t not in stuck),
                         key=lambda t: (-counts[t], t))
            if not big:
                break
            if self._open_children(big[0]):
                self.split(big[0])
            else:
                stuck.add(big[0])
        if len(counts) > max_categories:
            ranked = sorted(counts.index, key=lambda t: (-counts[t], t))
            kept = self.assign(allowed=set(ranked[:max_categories - 1]))
            cats = np.where(self.go_feature & pd.isna(kept), "other", kept)
        return cats


def _most_frequent_terms(annotations: pd.DataFrame, feats: np.ndarray, which: np.ndarray) -> np.ndarray:
    """For the features ``feats[which]``: the name of their term carried by the most features
    of ``annotations`` (ties: alphabetical)."""
    names = annotations["term_name"].astype(str)
    freq = annotations.assign(_n=names).groupby("_n")["feature"].nunique()
    rows = annotations.assign(_n=names, _c=names.map(freq))
    rows = rows[rows["feature"].isin(feats[which])].sort_values(["feature", "_c", "_n"], ascending=[True, False, True],
                                                                kind="stable")
    best = rows.drop_duplicates("feature").set_index("feature")["_n"]
    return best.reindex(feats[which]).fillna("other").to_numpy(object)


def _embed(m: sp.csr_matrix, cfg: ConceptMapConfig) -> np.ndarray:
    n = m.shape[0]
    if n < 4 or m.shape[1] < 2:  # UMAP needs a neighbourhood; place tiny maps by SVD
        dense = m.toarray()
        dense = dense - dense.mean(0)
        u, s, _ = np.linalg.svd(dense, full_matrices=False) if dense.size else (np.zeros((n, 0)), [], None)
        xy = np.zeros((n, 2))
        k = min(2, u.shape[1])
        xy[:, :k] = u[:, :k] * np.asarray(s[:k])
        return xy
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    import umap

    reducer = umap.UMAP(n_neighbors=min(cfg.n_neighbors, n - 1), min_dist=cfg.min_dist, spread=cfg.spread,
                        metric=cfg.metric, random_state=cfg.seed, n_components=2)
    data = m.toarray() if cfg.metric not in ("euclidean", "cosine", "jaccard") else m
    return reducer.fit_transform(data)


def concept_map(annotations: pd.DataFrame, *, dag: GODag | None = None,
                config: ConceptMapConfig = ConceptMapConfig(), level1: dict | None = None,
                names: dict | None = None) -> pd.DataFrame:
    """``concept_map.parquet`` rows: feature, x, y, n_terms, category, from the reported rows of
    ``annotations``. ``category``: :func:`go_categories` over ``dag`` (default: the shipped GO,
    :func:`core.concepts.dag.go_dag`). ``level1``/``names``: ignored (older callers)."""
    rows = reported(annotations)
    if rows.empty:
        raise InputError("no annotated features to map", fix="run `featurelens annotate` (or relax its thresholds)")
    m, feats, _ = feature_term_matrix(rows)
    xy = _embed(m, config)
    out = pd.DataFrame({"feature": feats, "x": xy[:, 0].astype(np.float32), "y": xy[:, 1].astype(np.float32),
                        "n_terms": np.diff(m.indptr)})
    cats = go_categories(rows, dag=dag if dag is not None else go_dag(), max_share=config.max_category_share,
                         max_categories=config.max_categories)
    out["category"] = cats.reindex(feats).fillna("other").to_numpy(object)
    return out
