"""The concept map: features placed by the concepts they are annotated with (REFERENCE.md §5).

Binary features × terms matrix of significant pairs → UMAP (paper: 10 neighbours, min_dist 1.0,
spread 10, seed 0). Each feature is coloured by its most common level-1 GO ancestor.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import InputError

__all__ = ["ConceptMapConfig", "feature_term_matrix", "level1_categories", "concept_map"]


@dataclass(frozen=True)
class ConceptMapConfig:
    n_neighbors: int = 10
    min_dist: float = 1.0
    spread: float = 10.0
    metric: str = "euclidean"
    seed: int = 0

    def __post_init__(self):
        if self.n_neighbors < 2:
            raise InputError("n_neighbors must be at least 2")
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
    """Most common level-1 ancestor name over each feature's terms (ties: alphabetical)."""
    out = {}
    for feat, term_ids in annotations.groupby("feature")["term_id"]:
        counts = Counter(a for t in term_ids for a in level1.get(str(t), ()))
        if counts:
            best = max(counts.values())
            out[feat] = min(names.get(a, a) for a, c in counts.items() if c == best)
        else:
            out[feat] = "other"
    return pd.Series(out, name="category")


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


def concept_map(annotations: pd.DataFrame, *, level1: dict[str, tuple] | None = None,
                names: dict[str, str] | None = None, config: ConceptMapConfig = ConceptMapConfig()) -> pd.DataFrame:
    """``concept_map.parquet`` rows: feature, x, y, category (level-1 name), n_terms."""
    if annotations.empty:
        raise InputError("no annotated features to map", fix="run `featurelens annotate` (or relax its thresholds)")
    m, feats, _ = feature_term_matrix(annotations)
    xy = _embed(m, config)
    out = pd.DataFrame({"feature": feats, "x": xy[:, 0].astype(np.float32), "y": xy[:, 1].astype(np.float32),
                        "n_terms": np.diff(m.indptr)})
    if level1 is not None:
        cats = level1_categories(annotations, level1, names or {})
        out["category"] = cats.reindex(feats).to_numpy()
    else:
        out["category"] = "other"
    return out
