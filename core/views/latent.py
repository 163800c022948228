"""The Explorer's second 2-D view of the cells (a UMAP), and which view it shows first.

- **UMAP**: the dataset's own ``.obsm['X_umap']`` when its AnnData has one ("UMAP (from the data)"),
  else a UMAP of the embedding (umap-learn, seeded with the analysis seed, ``n_neighbors`` 15). Above
  :data:`MAX_UMAP_FIT` cells the fit uses a seeded random subsample of that many cells and places
  the others with ``transform``. Numba runs behind :func:`core.base.parallel.kernel_lock`.
- **cell groups**: the dataset's categorical ``.obs`` clusterings (``leiden``, ``louvain``, …),
  offered as colourings next to the cell types.
- **default view**: the one whose 2-D neighbourhoods agree best with the cell types
  (:func:`knn_agreement`); without cell types, the UMAP.

Stored as the cached step ``latent_views`` (:data:`UMAP_FILE`, :data:`VIEWS_FILE`,
:data:`GROUPS_FILE`) by :func:`write_views`; :func:`core.views.explorer.ensure_latent_views` runs it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from core.base.errors import InputError
from core.base.parallel import kernel_lock
from core.base.progress import Progress, no_progress
from core.store.analysis import Analysis

__all__ = ["UMAP_FILE", "VIEWS_FILE", "GROUPS_FILE", "MAX_UMAP_FIT", "N_NEIGHBORS", "KNN_K", "GROUP_COLUMNS",
           "knn_agreement", "chance_agreement", "choose_default", "umap_2d", "obsm_umap", "cell_groups",
           "views_inputs", "compute_views", "write_views", "read_views", "LatentViews", "view_note"]

UMAP_FILE = "latent_umap.npy"
VIEWS_FILE = "latent_views.json"
GROUPS_FILE = "cell_groups.parquet"
MAX_UMAP_FIT = 60_000   # cells the UMAP is fitted on; the rest are placed by ``transform`` (whose first call
# compiles more numba kernels: ~2 min on the 2-core machine, so only above paper scale, 57,000 cells)
N_NEIGHBORS = 15
KNN_K = 15
MAX_SCORE_CELLS = 20_000  # cells the agreement is measured on (a seeded subsample above)
GROUP_COLUMNS = ("leiden", "louvain", "clusters", "cluster", "seurat_clusters", "phenograph")
OBSM_UMAP_KEYS = ("X_umap", "umap", "X_UMAP")


# ----------------------------------------------------------------------------- the score
def knn_agreement(coords: np.ndarray, labels, *, k: int = KNN_K, max_cells: int = MAX_SCORE_CELLS,
                  seed: int = 0) -> float:
    """Mean fraction of each cell's ``k`` nearest neighbours in ``coords`` (n_cells, 2) — Euclidean,
    the cell itself excluded — that carry its label (``labels`` (n_cells,)). 1: every neighbourhood
    is pure; :func:`chance_agreement` when positions say nothing about labels. Above ``max_cells``
    cells, measured on a seeded random subsample of them (neighbours searched among all cells)."""
    coords = np.asarray(coords, np.float64)
    labels = pd.Categorical(np.asarray(labels).astype(str)).codes
    n = coords.shape[0]
    if coords.ndim != 2 or labels.shape[0] != n:
        raise InputError(f"coordinates {coords.shape} and {labels.shape[0]} labels do not match")
    if n < 3:
        raise InputError(f"the agreement needs at least 3 cells, got {n}")
    if not np.isfinite(coords).all():
        raise InputError("the 2-D coordinates have NaN or infinite values", fix="recompute the view")
    k = min(k, n - 1)
    query = np.arange(n) if n <= max_cells else np.random.default_rng(seed).choice(n, max_cells, replace=False)
    _, nb = cKDTree(coords).query(coords[query], k=k + 1)
    same = labels[nb[:, 1:]] == labels[query][:, None]  # column 0 is the cell itself (or a duplicate point)
    return float(same.mean())


def chance_agreement(labels) -> float:
    """The :func:`knn_agreement` expected when labels are shuffled over the cells:
    Σ n_t (n_t − 1) / (n (n − 1)) over the label counts n_t."""
    counts = pd.Series(np.asarray(labels).astype(str)).value_counts().to_numpy(np.float64)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1))) if n > 1 else 1.0


def choose_default(scores: dict[str, float | None], *, has_umap: bool) -> str:
    """``"umap"`` or ``"pca"``: the view with the higher agreement (PCA on a tie); without scores
    (no cell types), the UMAP when there is one."""
    pca, umap = scores.get("pca"), scores.get("umap")
    if not has_umap:
        return "pca"
    if pca is None or umap is None:
        return "umap"
    return "umap" if umap > pca else "pca"


# ----------------------------------------------------------------------------- the UMAP
def umap_2d(x: np.ndarray, *, seed: int, n_neighbors: int = N_NEIGHBORS,
            max_fit: int = MAX_UMAP_FIT) -> tuple[np.ndarray, int]:
    """UMAP of ``x`` (n_cells, d): float32 (n_cells, 2) and the number of cells the fit used (all,
    or a seeded subsample of ``max_fit`` whose model then places the other cells)."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[0] < 4:
        raise InputError(f"a UMAP needs a (cells, dims) matrix with ≥ 4 cells, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("the embedding has NaN or infinite values", fix="fix or re-create the embedding")
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    import umap  # heavy (numba); only the background job needs it

    n = x.shape[0]
    fit = np.arange(n) if n <= max_fit else np.sort(np.random.default_rng(seed).choice(n, max_fit, replace=False))
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, fit.size - 1), n_components=2, random_state=seed,
                        n_jobs=1)  # seeded: umap runs one thread anyway
    out = np.empty((n, 2), np.float32)
    with kernel_lock():
        out[fit] = reducer.fit_transform(x[fit])
        if fit.size < n:
            rest = np.setdiff1d(np.arange(n), fit)
            out[rest] = reducer.transform(x[rest])
    return out, int(fit.size)


def obsm_umap(adata, *, n_cells: int) -> tuple[str, np.ndarray] | None:
    """``(key, float32 (n_cells, 2))`` of the AnnData's own UMAP (``.obsm['X_umap']``), or None."""
    if adata is None:
        return None
    for key in OBSM_UMAP_KEYS:
        if key in adata.obsm:
            arr = np.asarray(adata.obsm[key], dtype=np.float32)
            if arr.ndim == 2 and arr.shape[0] == n_cells and arr.shape[1] >= 2 and np.isfinite(arr[:, :2]).all():
                return key, np.ascontiguousarray(arr[:, :2])
    return None


def cell_groups(obs: pd.DataFrame, *, exclude: str | None = None, max_groups: int = 200) -> pd.DataFrame:
    """The clusterings of ``obs`` worth colouring by (columns named in :data:`GROUP_COLUMNS`, or any
    ``leiden_*``/``louvain_*``; 2–``max_groups`` values), as str columns, one row per cell."""
    out = {}
    for col in obs.columns:
        name = str(col)
        if name == exclude or not (name in GROUP_COLUMNS or name.startswith(("leiden", "louvain"))):
            continue
        values = obs[col].astype(str).to_numpy()
        if 2 <= pd.unique(values).size <= max_groups:
            out[name] = values
    return pd.DataFrame(out, index=pd.RangeIndex(len(obs)))


# ----------------------------------------------------------------------------- the step
def views_inputs(latent: dict, *, seed: int) -> dict:
    """The inputs that key the cached step ``latent_views``: the PCA's (``latent``) and the UMAP's."""
    return {**latent, "method": "views", "seed": int(seed), "n_neighbors": N_NEIGHBORS, "max_fit": MAX_UMAP_FIT,
            "score": f"knn{KNN_K}"}


def compute_views(dataset, pca: np.ndarray, *, seed: int, progress: Progress = no_progress):
    """``(umap (n_cells, 2), info, groups)`` for a loaded :class:`core.data.load.Dataset` and its PCA
    view ``pca`` (n_cells, 2). ``info``: JSON-able (source, label, seconds, scores, default)."""
    n = dataset.n_cells
    found = obsm_umap(dataset.adata, n_cells=n)
    t0 = time.perf_counter()
    if found is not None:
        key, coords, n_fit, source = found[0], found[1], 0, "data"
        label = "UMAP (from the data)"
    else:
        if dataset.embedding is None:
            raise InputError("the dataset has no embedding to place the cells by", fix="re-train the SAE on it")
        progress(0, 1, f"UMAP of {n:,} cells")
        coords, n_fit = umap_2d(dataset.embedding, seed=seed)
        key, source, label = None, "computed", "UMAP"
    seconds = time.perf_counter() - t0
    labels = dataset.obs[dataset.cell_type].astype(str).to_numpy() if dataset.cell_type else None
    scores = {"pca": None, "umap": None, "chance": None}
    if labels is not None and pd.unique(labels).size > 1:
        scores = {"pca": knn_agreement(pca, labels, seed=seed), "umap": knn_agreement(coords, labels, seed=seed),
                  "chance": chance_agreement(labels)}
    info = {"source": source, "obsm_key": key, "label": label, "seconds": round(seconds, 2), "n_fit": n_fit,
            "n_neighbors": N_NEIGHBORS, "seed": int(seed), "score": f"kNN (k={KNN_K}) cell-type agreement",
            "cell_type": dataset.cell_type, "scores": scores, "default": choose_default(scores, has_umap=True)}
    return coords, info, cell_groups(dataset.obs.reset_index(drop=True), exclude=dataset.cell_type)


def write_views(analysis: Analysis, *, inputs: dict, umap: np.ndarray, info: dict, groups: pd.DataFrame) -> None:
    """Commit the step ``latent_views`` (atomic, through the analysis step writer)."""
    with analysis.step("latent_views", inputs=inputs) as w:
        np.save(w.path(UMAP_FILE), np.asarray(umap, np.float32), allow_pickle=False)
        w.write_json(VIEWS_FILE, info)
        w.write_parquet(GROUPS_FILE, groups)


@dataclass(frozen=True)
class LatentViews:
    """The stored step ``latent_views``: ``umap`` float32 (n_cells, 2), ``info`` (see
    :func:`compute_views`), ``groups`` (n_cells rows, one str column per clustering)."""
    umap: np.ndarray
    info: dict
    groups: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def default(self) -> str:
        return str(self.info.get("default", "pca"))

    @property
    def label(self) -> str:
        return str(self.info.get("label", "UMAP"))


def read_views(analysis: Analysis, *, inputs: dict) -> LatentViews | None:
    """The stored views when the step ran with ``inputs``; None otherwise (not yet, or stale)."""
    if not analysis.cached("latent_views", inputs=inputs):
        return None
    groups = analysis.read_parquet(GROUPS_FILE)
    return LatentViews(np.load(analysis.file(UMAP_FILE), allow_pickle=False), analysis.read_json(VIEWS_FILE),
                       groups.reset_index(drop=True))


def view_note(info: dict) -> str:
    """One line saying which view is shown first and why."""
    s = info.get("scores") or {}
    label = info.get("label", "UMAP")
    chosen = label if info.get("default") == "umap" else "PCA"
    if s.get("pca") is None or s.get("umap") is None:
        return f"{chosen} shown first: no cell types to compare the views by."
    ours, other = (s["umap"], s["pca"]) if info.get("default") == "umap" else (s["pca"], s["umap"])
    return (f"{chosen} chosen: kNN cell-type agreement {ours:.2f} vs {'PCA' if chosen != 'PCA' else label} "
            f"{other:.2f} (chance {s.get('chance', 0):.2f})")
