"""What the Explorer shows, computed from an analysis folder: loaded once, fast per click.

- **latent space**: a 2-D PCA of the cells' embedding (``latent_pca.npy``, float32 (n_cells, 2))
  with the cells' names and types (``cells.parquet``) and the explained variance
  (``latent.json``), computed once as the cached step ``latent``;
- **colour payload** of a feature (or the sum of several): its active cells only, sorted by
  activation so that high values draw last (on top);
- **feature card**: summary, activation histogram, cell-type profile, enriched terms and the
  exact DE table of the feature's high vs low cells (the annotation's groups and statistics);
- **search** by concept keyword (:class:`core.annotate.search.ConceptIndex`), by gene (the features
  whose top DE genes include it: ``top_genes.parquet``, step ``top_genes``) or by feature id;
- **reverse lookup**: the features and concepts characteristic of a set of cells.

:func:`explorer_data` caches one :class:`ExplorerData` per analysis folder (keyed by the
files' modification times), so a click only slices arrays that are already in memory.
"""
from __future__ import annotations

import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.store.analysis import Analysis
from core.store.catalog import resolve_source
from core.annotate.reported import findable, headline_p, is_reported, ordered, reported
from core.sae.characterise import Z_CRIT
from core.base.cache import LRUCache, file_stamp
from core.base.errors import FeatureLensError, InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress
from core.annotate.search import ConceptIndex, characteristic_features
from core.views.problem import PageProblem, error_text
from core.annotate.calibrated_de import calibrated_de, de_of_cells
from core.annotate.confounders import FLAG_ETA2, FLAG_R
from core.annotate.de import batched_de, FC_EPS, significant_genes
from core.annotate.expression import observed_rows, resolve_expression
from core.annotate.groups import select_groups
from core.annotate.normalise import log_normalise, prepare
from core.annotate.pipeline import AnnotationConfig
from core.annotate.stats import bh, welch_from_moments
from core.base import io
from core.data.load import load_dataset
from core.views import latent as latent_views

__all__ = [
    "LATENT_FILE", "CELLS_FILE", "TOP_GENES_FILE", "pca_2d", "ensure_latent", "ExplorerData", "explorer_data", "ConceptSearch",
    "feature_cells", "cell_type_profile", "activation_histogram", "feature_summary", "term_status", "feature_terms",
    "feature_de_table", "top_de_genes", "build_top_genes", "GeneIndex", "parse_feature_ids", "search_features",
    "search_hits", "suggestions", "latent_inputs", "paper_table", "latent_dataset", "latent_views_inputs",
    "ensure_latent_views", "stored_latent_views", "Latent", "latent_choices",
    "reverse_lookup", "annotation_settings", "SEARCH_MODES", "ExplorerPageData", "explorer_page_data",
    "initial_state", "CONFOUNDERS_FILE", "feature_confounders", "confounder_rule", "feature_down_terms",
    "group_means", "TypeMeans", "cell_type_means", "heatmap_data", "HeatmapData", "cell_type_features",
]

LATENT_FILE = "latent_pca.npy"
CELLS_FILE = "cells.parquet"
LATENT_INFO_FILE = "latent.json"
TOP_GENES_FILE = "top_genes.parquet"
CONFOUNDERS_FILE = "confounders.parquet"
SEARCH_MODES = ("concept", "gene", "feature")


# ----------------------------------------------------------------------------- the page
@dataclass(frozen=True)
class ExplorerPageData:
    """What the Explorer's layout shows: ``problem`` when ``source`` cannot be explored, else the
    selection (``state``: feature, features), search (``query``, ``mode``) and link ``warnings``."""
    source: str | None
    problem: PageProblem | None = None
    state: dict | None = None
    query: str = ""
    mode: str = "concept"
    warnings: tuple[str, ...] = ()
    latent: dict | None = None


def latent_choices(views: "latent_views.LatentViews | None") -> dict:
    """The latent panel's switch: ``options`` (label, value, disabled), the ``value`` shown first,
    a ``note`` (why), ``ready`` (the UMAP is stored) and the cell ``groups`` to colour by."""
    if views is None:
        return {"options": [{"label": "PCA", "value": "pca"},
                            {"label": "UMAP (computing…)", "value": "umap", "disabled": True}],
                "value": "pca", "note": "the UMAP is being computed in the background; PCA meanwhile",
                "ready": False, "groups": []}
    return {"options": [{"label": "PCA", "value": "pca"}, {"label": views.label, "value": "umap"}],
            "value": views.default, "note": latent_views.view_note(views.info), "ready": True,
            "groups": [str(c) for c in views.groups.columns]}


def initial_state(query: dict[str, str]) -> tuple[dict, list[str]]:
    """The selection a URL query asks for, and warnings about parts of it that are not usable."""
    warnings = []
    feature = None
    raw = query.get("feature")
    if raw not in (None, ""):
        try:
            feature = int(raw)
            if feature < 0:
                raise ValueError
        except ValueError:
            warnings.append(f"The link asks for feature {raw!r}, which is not a feature number; it is ignored.")
            feature = None
    return {"feature": feature, "features": [feature] if feature is not None else []}, warnings


def _source_problem(source: str | None) -> PageProblem | None:
    if not source:
        return PageProblem("No analysis chosen.", "Pick an analysis in the list above (entries named "
                           "“Analysis · …”), or build the demo with `featurelens demo --build-only`.", "info")
    try:
        kind, path = resolve_source(source)
        if kind != "analysis":
            return PageProblem("The Explorer shows analyses.", f"{source} is a dataset: train an SAE on it on the "
                               "Data & training page (or with `featurelens train`), then pick the analysis above.",
                               "info")
        a = Analysis.open(path)
    except FeatureLensError as exc:
        return PageProblem("This analysis cannot be opened.", error_text(exc), "danger")
    if not a.has("activations.npz"):
        return PageProblem("This analysis has no SAE yet.", "Train one on the Data & training page, or with "
                           "`featurelens train DATA --out ANALYSIS`.", "warning")
    return None


def explorer_page_data(source: str | None, *, query: dict[str, str] | None = None) -> ExplorerPageData:
    """The Explorer's page for ``source`` and the URL ``query`` (feature, q, mode); raises nothing."""
    query = query or {}
    problem = _source_problem(source)
    if problem:
        return ExplorerPageData(source=source, problem=problem)
    state, warnings = initial_state(query)
    mode = query.get("mode", "concept")
    if mode not in SEARCH_MODES:
        warnings.append(f"Unknown search mode {mode!r} in the link; searching GO terms.")
        mode = "concept"
    try:
        latent = latent_choices(stored_latent_views(Analysis.open(resolve_source(source)[1])))
    except FeatureLensError:
        latent = latent_choices(None)
    return ExplorerPageData(source=source, state=state, query=query.get("q", ""), mode=mode,
                            warnings=tuple(warnings), latent=latent)


# ----------------------------------------------------------------------------- latent space
def pca_2d(x: np.ndarray, *, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """PCA of ``x`` (n_cells, d): coordinates float32 (n_cells, n_components) and explained variance
    ratio (n_components,). Centred, exact SVD; each axis's sign is fixed (largest loading > 0)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"the embedding must be a (cells, dims) matrix with ≥ 2 cells, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("the embedding has NaN or infinite values", fix="fix or re-create the embedding")
    xc = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(n_components, vt.shape[0])
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
    comps = comps * np.where(signs == 0, 1, signs)[:, None]
    coords = np.zeros((x.shape[0], n_components), np.float32)
    coords[:, :k] = xc @ comps.T
    total = float((s ** 2).sum())
    ratio = np.zeros(n_components)
    ratio[:k] = (s[:k] ** 2) / total if total > 0 else 0.0
    return coords, ratio


def latent_inputs(analysis: Analysis) -> dict:
    """The inputs that key the cached latent view (step ``latent``) of ``analysis``."""
    ds = analysis.config.get("dataset", {})
    return {"dataset": ds.get("sha256"), "embedding": ds.get("embedding"), "cell_type": ds.get("cell_type"),
            "method": "pca", "n_components": 2}


def latent_dataset(analysis: Analysis):
    """The analysis's dataset, loaded with its embedding (and, for an .h5ad, its AnnData)."""
    ref = analysis.config.get("dataset", {})
    path = Path(ref.get("path", ""))
    if not path.is_file():
        raise InputError(f"the analysis's dataset {path} is missing, so the latent space cannot be drawn",
                         fix="restore the file at that path")
    is_h5ad = ref.get("format") == "h5ad"
    ds = load_dataset(path, embedding=ref.get("embedding") if is_h5ad else None, cell_type=ref.get("cell_type"),
                      counts_layer=ref.get("counts_layer") if is_h5ad else None, obs=ref.get("obs"))
    if ds.embedding is None:
        raise InputError(f"{path.name} has no embedding {ref.get('embedding')!r}",
                         fix="the analysis's dataset must hold the embedding its SAE was trained on")
    return ds


def ensure_latent(analysis: Analysis, *, progress: Progress = no_progress, dataset=None) -> None:
    """Compute the latent view (step ``latent``) unless it is cached: PCA of the analysis's embedding
    (``dataset``: :func:`latent_dataset`, loaded here when not given)."""
    inputs = latent_inputs(analysis)
    if analysis.cached("latent", inputs=inputs):
        return
    progress(0, 2, "loading the embedding")
    ds = dataset if dataset is not None else latent_dataset(analysis)
    progress(1, 2, "PCA of the embedding")
    coords, ratio = pca_2d(ds.embedding)
    types = ds.obs[ds.cell_type].astype(str).to_numpy() if ds.cell_type else np.full(ds.n_cells, "all cells")
    cells = pd.DataFrame({"cell": ds.cell_names.astype(str), "cell_type": pd.Categorical(types)})
    with analysis.step("latent", inputs=inputs) as w:
        np.save(w.path(LATENT_FILE), coords, allow_pickle=False)
        w.write_parquet(CELLS_FILE, cells)
        w.write_json(LATENT_INFO_FILE, {"method": "pca", "embedding": analysis.config.get("dataset", {}).get(
            "embedding"), "explained_variance_ratio": [float(r) for r in ratio]})
    progress(2, 2, "latent space ready")


def latent_views_inputs(analysis: Analysis) -> dict:
    """The inputs that key the cached step ``latent_views`` (the UMAP and the default view)."""
    return latent_views.views_inputs(latent_inputs(analysis), seed=analysis.seed)


def ensure_latent_views(analysis: Analysis, *, progress: Progress = no_progress) -> latent_views.LatentViews:
    """The step ``latent_views`` (:mod:`core.views.latent`), computed once: the UMAP (the data's own, or
    one of the embedding), the cell groups, and the default view. Slow for a computed UMAP: run it
    in a background job (the Explorer does) or from the CLI."""
    inputs = latent_views_inputs(analysis)
    done = latent_views.read_views(analysis, inputs=inputs)
    if done is not None:
        return done
    ds = latent_dataset(analysis)
    ensure_latent(analysis, dataset=ds)
    pca = np.load(analysis.file(LATENT_FILE), allow_pickle=False)
    if pca.shape[0] != ds.n_cells:
        raise InputError(f"the latent view has {pca.shape[0]} cells, the dataset {ds.n_cells}",
                         fix="re-train the SAE on this dataset")
    coords, info, groups = latent_views.compute_views(ds, pca, seed=analysis.seed, progress=progress)
    latent_views.write_views(analysis, inputs=inputs, umap=coords, info=info, groups=groups)
    return latent_views.read_views(analysis, inputs=inputs)


def stored_latent_views(analysis: Analysis) -> latent_views.LatentViews | None:
    """The step ``latent_views`` as stored now (re-reading the analysis's record), None before it ran."""
    fresh = Analysis.open(analysis.path)
    return latent_views.read_views(fresh, inputs=latent_views_inputs(fresh))


@dataclass
class Latent:
    coords: np.ndarray          # float32 (n_cells, 2)
    cell_names: np.ndarray      # (n_cells,) str
    codes: np.ndarray           # int (n_cells,) index into ``types``
    types: list[str]
    explained: list[float]

    axes: tuple[str, str] = ("PC1", "PC2")
    view: str = "pca"

    @property
    def labels(self) -> np.ndarray:
        """Cell type of every cell, object (n_cells,)."""
        return np.asarray(self.types, dtype=object)[self.codes]

    def as_umap(self, views: "latent_views.LatentViews") -> "Latent":
        """The same cells placed by the stored UMAP (``views.umap``, (n_cells, 2))."""
        if views.umap.shape != self.coords.shape:
            raise InputError(f"the stored UMAP has shape {views.umap.shape}, the latent view {self.coords.shape}",
                             fix="delete latent_umap.npy from the analysis folder to compute it again")
        return Latent(views.umap.astype(np.float32), self.cell_names, self.codes, self.types, [],
                      ("UMAP1", "UMAP2"), "umap")


# ----------------------------------------------------------------------------- the cached data
class ExplorerData:
    """Everything the Explorer reads for one analysis, in memory. Build with :func:`explorer_data`.

    ``acts``: CSC float32 (n_cells, n_features); ``features``: features.parquet indexed by feature;
    ``concept_map``: one row per mapped feature with x, y, category, n_terms, frequency, locality,
    top_cell_type, top_terms (None before annotation); ``annotations``: annotations.parquet, every
    nominal row, ordered by feature then :func:`~core.annotate.reported.headline_p` (None before
    annotation); ``reported``: its reported rows (a feature's concepts); ``index``: a
    :class:`ConceptIndex` over the findable rows.
    """

    def __init__(self, analysis: Analysis):
        self.analysis = analysis
        self._lock = threading.RLock()
        acts = analysis.read_npz_sparse("activations.npz")
        self.acts = sp.csc_matrix(acts, dtype=np.float32)
        self.acts.sort_indices()
        self.n_cells, self.n_features = self.acts.shape
        feats = analysis.read_parquet("features.parquet")
        self.features = feats.set_index("feature") if "feature" in feats else feats
        self.annotations = analysis.read_parquet("annotations.parquet") if analysis.has("annotations.parquet") else None
        if self.annotations is not None:
            self.annotations = ordered(self.annotations).reset_index(drop=True)
        self.reported = reported(self.annotations) if self.annotations is not None else None
        self.index = ConceptIndex(self.annotations) if self.annotations is not None else None
        self.concepts = ConceptSearch(self.index, self.annotations) if self.index is not None else None
        self.concept_map = self._map_table() if analysis.has("concept_map.parquet") else None
        conf = analysis.read_parquet(CONFOUNDERS_FILE) if analysis.has(CONFOUNDERS_FILE) else None
        self.confounders = conf.set_index("feature") if conf is not None and "feature" in conf else conf
        self._type_means: TypeMeans | None = None
        self._latent: Latent | None = None
        self._views: latent_views.LatentViews | None = None
        self._acts_csr: sp.csr_matrix | None = None
        self._expression = None
        self._count_rows = None
        self._gene_index: GeneIndex | None = None
        self._de: OrderedDict[int, pd.DataFrame] = OrderedDict()

    def _map_table(self) -> pd.DataFrame:
        cmap = self.analysis.read_parquet("concept_map.parquet").copy()
        f = self.features.reindex(cmap["feature"])
        cmap["frequency"] = f["frequency"].to_numpy() if "frequency" in f else np.nan
        cmap["locality"] = f["locality"].fillna("unknown").to_numpy() if "locality" in f else "unknown"
        cmap["top_cell_type"] = f["top_cell_type"].fillna("").to_numpy() if "top_cell_type" in f else ""
        ann = self.reported
        if ann is not None and len(ann):
            top = ann.groupby("feature", sort=False)["term_name"].agg(lambda t: "; ".join(t.iloc[:2]))
            cmap["top_terms"] = top.reindex(cmap["feature"]).fillna("").to_numpy()
        else:
            cmap["top_terms"] = ""
        return cmap.reset_index(drop=True)

    # -- lazily loaded parts
    @property
    def acts_csr(self) -> sp.csr_matrix:
        with self._lock:
            if self._acts_csr is None:
                self._acts_csr = self.acts.tocsr()
            return self._acts_csr

    def latent(self, *, progress: Progress = no_progress) -> Latent:
        """The latent view; computed (and stored in the analysis) the first time."""
        with self._lock:
            if self._latent is None:
                ensure_latent(self.analysis, progress=progress)
                a = self.analysis
                coords = np.load(a.file(LATENT_FILE), allow_pickle=False)
                cells = a.read_parquet(CELLS_FILE)
                if coords.shape[0] != self.n_cells or len(cells) != self.n_cells:
                    raise InputError(f"the latent view has {coords.shape[0]} cells, the activations {self.n_cells}",
                                     fix="re-train the SAE on this dataset")
                cat = pd.Categorical(cells["cell_type"].astype(str))
                info = a.read_json(LATENT_INFO_FILE) if a.has(LATENT_INFO_FILE) else {}
                self._latent = Latent(coords.astype(np.float32), cells["cell"].astype(str).to_numpy(),
                                      cat.codes.astype(np.int64), [str(t) for t in cat.categories],
                                      list(info.get("explained_variance_ratio", [])))
            return self._latent

    def views(self) -> "latent_views.LatentViews | None":
        """The stored step ``latent_views`` (UMAP, cell groups, default view); None until it has run."""
        with self._lock:
            if self._views is None:
                self._views = stored_latent_views(self.analysis)
            return self._views

    def latent_view(self, view: str | None) -> Latent:
        """:meth:`latent` as ``view`` places the cells: ``"umap"`` once the UMAP is stored, else the PCA."""
        lat = self.latent()
        views = self.views() if view == "umap" else None
        return lat.as_umap(views) if views is not None else lat

    def expression(self):
        """The annotation's expression source (:func:`core.annotate.expression.resolve_expression`), once."""
        with self._lock:
            if self._expression is None:
                from core.annotate.expression import resolve_expression

                self._expression = resolve_expression(self.analysis,
                                                      mode=annotation_settings(self.analysis)["expression"])
            return self._expression

    def count_rows(self):
        """The observed counts as CSR for reading a few cells (made at annotation), None without it
        or when the annotation's expression is not the observed counts."""
        with self._lock:
            if self._count_rows is None:
                expr = self.expression()
                self._count_rows = (observed_rows(self.analysis, make=False) if expr.kind == "observed" else None,)
            return self._count_rows[0]

    def gene_index(self) -> "GeneIndex | None":
        """Gene search over ``top_genes.parquet``; None until :func:`build_top_genes` has run."""
        with self._lock:
            if self._gene_index is None and self.analysis.has(TOP_GENES_FILE):
                self._gene_index = GeneIndex(self.analysis.read_parquet(TOP_GENES_FILE))
            return self._gene_index

    def de_table(self, feature: int) -> pd.DataFrame:
        """:func:`feature_de_table` of ``feature``, remembered for the last 16 features asked."""
        f = self.check_feature(feature)
        with self._lock:
            if f in self._de:
                self._de.move_to_end(f)
                return self._de[f]
        table = feature_de_table(self, f)
        with self._lock:
            self._de[f] = table
            while len(self._de) > 16:
                self._de.popitem(last=False)
        return table

    def categories(self, features) -> np.ndarray:
        """GO category of each feature ("not annotated" off the concept map)."""
        feats = np.asarray(features, dtype=np.int64)
        if self.concept_map is None:
            return np.full(feats.size, "not annotated", dtype=object)
        if not hasattr(self, "_category"):
            self._category = self.concept_map.set_index("feature")["category"].astype(str)
        return self._category.reindex(feats).fillna("not annotated").to_numpy(object)

    def stability_info(self) -> dict:
        """``metrics.json``'s seed-stability summary (:func:`core.sae.stability.stability_summary`),
        ``{}`` for a one-seed run."""
        with self._lock:
            if not hasattr(self, "_stability"):
                m = self.analysis.read_json("metrics.json") if self.analysis.has("metrics.json") else {}
                self._stability = (m.get("robustness") or {}).get("stability") or {}
            return self._stability

    def type_means(self) -> "TypeMeans":
        """:func:`cell_type_means` of the activations over the latent view's cell types, once."""
        with self._lock:
            if self._type_means is None:
                lat = self.latent()
                self._type_means = cell_type_means(self.acts, lat.codes, lat.types)
            return self._type_means

    def check_feature(self, feature) -> int:
        try:
            f = int(feature)
        except (TypeError, ValueError):
            raise InputError(f"{feature!r} is not a feature number") from None
        if not 0 <= f < self.n_features:
            raise InputError(f"feature {f} does not exist (this SAE has features 0–{self.n_features - 1})")
        return f


_EXPLORERS = LRUCache(size=4)
_KEY_FILES = ("activations.npz", "features.parquet", "annotations.parquet", "concept_map.parquet", CONFOUNDERS_FILE)


def explorer_data(path) -> ExplorerData:
    """The :class:`ExplorerData` of the analysis at ``path``, cached until one of its files changes."""
    analysis = Analysis.open(path)
    if not analysis.has("activations.npz") or not analysis.has("features.parquet"):
        raise InputError(f"{analysis.path.name} has no trained SAE yet",
                         fix="train one on the Data & training page or with `featurelens train`")
    stamp = file_stamp(*(analysis.path / n for n in _KEY_FILES))
    return _EXPLORERS.get_or_make(str(Path(path).resolve()), lambda: ExplorerData(analysis), version=stamp)


# ----------------------------------------------------------------------------- concept search
class ConceptSearch:
    """Keyword search over an annotation table, ranked exactly as :meth:`core.annotate.search.ConceptIndex.search`
    (best p of the matching terms, then more matching terms first; findable rows only), but with a
    term → rows index so that a query costs time in proportion to the rows of the matching terms,
    not to the whole table (a few ms for 10,000 features × 95 terms). The last 64 queries are
    remembered."""

    def __init__(self, index: ConceptIndex, annotations: pd.DataFrame):
        self.index = index
        annotations = findable(annotations)
        n_terms = len(index.terms)
        self.term = pd.Index(index.terms["term_id"]).get_indexer(annotations["term_id"].astype(str))
        self.feature = annotations["feature"].to_numpy(np.int64)
        self.p = index.rank_p(annotations)
        self.rows_by_term = np.argsort(self.term, kind="stable")
        self.term_count = np.bincount(self.term, minlength=n_terms)
        self.indptr = np.concatenate([[0], np.cumsum(self.term_count)])
        self.names = index.terms["term_name"].astype(str).to_numpy()
        self._queries = LRUCache(size=64)

    def _matches(self, query: str) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
        """(matching terms, ranking: feature → n_matching_terms, best_p; matched rows sorted by p)."""
        key = (query or "").strip().lower()
        return self._queries.get_or_make(key, lambda: self._match(key))

    def _match(self, key: str) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
        terms = self.index.matching_terms(key)
        counts = self.term_count[terms]
        starts = np.repeat(self.indptr[terms] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        rows = np.sort(self.rows_by_term[np.arange(int(counts.sum())) + starts])
        rows = rows[np.argsort(self.p[rows], kind="stable")]
        df = pd.DataFrame({"feature": self.feature[rows], "p": self.p[rows], "term": self.term[rows]})
        g = df.groupby("feature", sort=False)
        rank = pd.DataFrame({"n_matching_terms": g.size(), "best_p": g["p"].first()})
        rank = rank.sort_values(["best_p", "n_matching_terms"], ascending=[True, False])
        return terms, rank, df

    def hits(self, query: str, *, limit: int = 500) -> np.ndarray:
        """Every matching feature (up to ``limit``), best first."""
        if not (query or "").strip():
            return np.zeros(0, np.int64)
        return self._matches(query)[1].index.to_numpy(np.int64)[:limit]

    def search(self, query: str, *, limit: int = 50) -> pd.DataFrame:
        """As :meth:`core.annotate.search.ConceptIndex.search`: feature, n_matching_terms, best_p, top_terms."""
        cols = ["feature", "n_matching_terms", "best_p", "top_terms"]
        if not (query or "").strip():
            return pd.DataFrame(columns=cols)
        _, rank, df = self._matches(query)
        out = rank.head(limit).copy()
        if out.empty:
            return pd.DataFrame(columns=cols)
        first = df[df["feature"].isin(out.index)].groupby("feature", sort=False).head(3)
        names: dict[int, list[str]] = {}
        for f, t in zip(first["feature"].to_numpy(), first["term"].to_numpy()):
            names.setdefault(int(f), []).append(self.names[t])
        out["top_terms"] = ["; ".join(names[int(f)]) for f in out.index]
        return out.rename_axis("feature").reset_index()[cols]

    def suggest(self, query: str, *, limit: int = 12) -> list[str]:
        """Term names containing ``query``, most annotated first (as ``ConceptIndex.suggest``)."""
        if not (query or "").strip():
            return []
        terms = self._matches(query)[0]
        order = terms[np.argsort(-self.term_count[terms], kind="stable")][:limit]
        return self.names[order].tolist()


# ----------------------------------------------------------------------------- one feature
def feature_cells(acts: sp.csc_matrix, features) -> tuple[np.ndarray, np.ndarray]:
    """Active cells of a feature, or of the sum of several: ``(cells int64, values float32)``,
    sorted by value ascending (draw in this order and the highest cells end up on top)."""
    feats = np.atleast_1d(np.asarray(features, dtype=np.int64))
    if feats.size == 1:
        f = int(feats[0])
        lo, hi = acts.indptr[f], acts.indptr[f + 1]
        cells, values = acts.indices[lo:hi].astype(np.int64), acts.data[lo:hi]
    else:
        col = acts[:, feats].sum(axis=1).A1.astype(np.float32)
        cells = np.flatnonzero(col > 0)
        values = col[cells]
    keep = values > 0
    cells, values = cells[keep], values[keep]
    order = np.argsort(values, kind="stable")
    return cells[order], np.asarray(values[order], np.float32)


def cell_type_profile(cells: np.ndarray, values: np.ndarray, codes: np.ndarray, types: list[str]) -> pd.DataFrame:
    """Per cell type: n, mean activation (zeros included), SE, fraction active, mean of the other
    cells and whether the type is significantly higher (the locality rule, z > 1.96).

    ``cells``/``values``: the feature's active cells; ``codes`` (n_cells,): cell-type codes."""
    k = len(types)
    n = np.bincount(codes, minlength=k).astype(np.float64)
    c = codes[cells]
    v = values.astype(np.float64)
    s1 = np.bincount(c, weights=v, minlength=k)
    s2 = np.bincount(c, weights=v * v, minlength=k)
    n_act = np.bincount(c, minlength=k)

    def mean_se(s1, s2, n):
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1 / n
            var = np.where(n > 1, np.maximum(s2 - s1 * mean, 0.0) / (n - 1), np.nan)
            return mean, np.sqrt(var / n)

    mean, se = mean_se(s1, s2, n)
    mean_r, se_r = mean_se(s1.sum() - s1, s2.sum() - s2, n.sum() - n)
    with np.errstate(invalid="ignore"):
        sig = (mean - mean_r) > Z_CRIT * (se + se_r)
    return pd.DataFrame({"cell_type": types, "n": n.astype(int), "mean": mean, "se": se,
                         "frac_active": n_act / np.maximum(n, 1), "mean_rest": mean_r, "significant": sig})


def activation_histogram(values: np.ndarray, *, n_cells: int, bins: int = 40) -> dict:
    """Histogram of a feature's non-zero activations: ``edges`` (bins + 1,), ``counts`` (bins,),
    ``n_zero`` (cells where it is off) and ``n_active``."""
    values = np.asarray(values, np.float64)
    if values.size:
        counts, edges = np.histogram(values, bins=bins)
    else:
        counts, edges = np.zeros(0, np.int64), np.zeros(1)
    return {"edges": edges, "counts": counts, "n_zero": int(n_cells - values.size), "n_active": int(values.size)}


def feature_summary(data: ExplorerData, feature: int) -> dict:
    """Headline facts of one feature (JSON-able): frequency, cells, locality, top cell type, …, and
    its ``stability`` across seeds (``stability_seeds`` other seeds; ``stability_measured`` False
    for a one-seed run; ``stability_chance``: what random directions would score)."""
    f = data.check_feature(feature)
    row = data.features.loc[f] if f in data.features.index else pd.Series(dtype=object)

    def get(name, default=None):
        v = row.get(name, default)
        return default if v is None or (isinstance(v, float) and np.isnan(v)) else v

    n_active = int(data.acts.indptr[f + 1] - data.acts.indptr[f])
    sig = str(get("significant_types", "") or "")
    stability = get("stability")
    out = {"feature": f, "n_cells": n_active, "frequency": n_active / max(data.n_cells, 1),
           "max_activation": float(get("max_activation", 0.0) or 0.0),
           "mean_active": float(get("mean_active", 0.0) or 0.0),
           "locality": str(get("locality", "unknown")), "top_cell_type": str(get("top_cell_type", "") or ""),
           "significant_types": [t for t in sig.split("|") if t], "redundant": bool(get("redundant", False)),
           "category": None, "n_terms": 0,
           # across seeds (core.sae.stability); None when not measured (one seed) or for a dead feature
           "stability_measured": "stability" in data.features,
           "stability": None if stability is None else float(stability),
           "stability_min": None if get("stability_min") is None else float(get("stability_min")),
           "stability_seeds": int(get("stability_seeds", 0) or 0),
           "stability_chance": data.stability_info().get("chance_median"),
           "stability_warn_below": data.stability_info().get("unstable_below")}
    if data.concept_map is not None:
        hit = data.concept_map.loc[data.concept_map["feature"] == f]
        if len(hit):
            out["category"] = str(hit["category"].iloc[0])
    if data.reported is not None:
        out["n_terms"] = int((data.reported["feature"].to_numpy() == f).sum())
    conf = data.confounders
    out["tracks"] = str(conf["tracks"].get(f, "") or "") if conf is not None and "tracks" in conf else ""
    out["tracks_label"] = CONFOUNDER_LABELS.get(out["tracks"], out["tracks"])
    return out


TERM_COLUMNS = ["term_id", "term_name", "namespace", "status", "de_direction", "n_term_genes", "hits", "n_significant",
                "expected", "fold_enrichment", "direction", "hyper_p", "hyper_q", "binom_p", "binom_q", "mwu_z",
                "mwu_p_up", "mwu_p_two_sided", "mwu_q", "effect_size", "redundant_with", "reported"]


def term_status(rows: pd.DataFrame) -> pd.Series:
    """What each annotation row is, for people (str per row): "reported" or "nominal only", with
    "down in high cells" when its genes are down in the feature's high cells (it describes the
    low cells) and "explained by NAME" when it is a GO ancestor of the reported term NAME
    (``redundant_with``), e.g. "down in high cells; explained by NAME"."""
    n = len(rows)
    rep = is_reported(rows).to_numpy()
    down = rows["de_direction"].astype(str).to_numpy() == "down" if "de_direction" in rows else np.zeros(n, bool)
    by = rows["redundant_with"].fillna("").astype(str).to_numpy() if "redundant_with" in rows else np.full(n, "")
    names = dict(zip(rows["term_id"].astype(str), rows["term_name"].astype(str)))
    out = []
    for r, d, b in zip(rep, down, by):
        parts = ["reported"] if r else []
        if d:
            parts.append("down in high cells")
        if b and not r:
            parts.append("explained by " + names.get(b, b))
        out.append("; ".join(parts) or "nominal only")
    return pd.Series(out, index=rows.index, dtype=object)


def feature_terms(annotations: pd.DataFrame | None, feature: int, *, show_all: bool = False) -> pd.DataFrame:
    """The terms of one feature with all their statistics and a ``status`` (:func:`term_status`).

    Default: its reported terms (its concepts), best :func:`~core.annotate.reported.headline_p`
    first. ``show_all``: every nominal row of the feature, the reported ones first."""
    if annotations is None or annotations.empty:
        return pd.DataFrame(columns=TERM_COLUMNS)
    rows = annotations.loc[annotations["feature"].to_numpy() == int(feature)]
    rows = rows.assign(status=term_status(rows).to_numpy(), _rep=~is_reported(rows).to_numpy(),
                       _p=headline_p(rows).to_numpy())
    rows = rows.sort_values(["_rep", "_p"], kind="stable") if show_all else rows[~rows["_rep"]].sort_values(
        "_p", kind="stable")
    rows = rows.drop(columns=["_rep", "_p"])
    cols = [c for c in TERM_COLUMNS if c in rows] + [c for c in rows if c not in TERM_COLUMNS and c != "feature"]
    return rows[cols].reset_index(drop=True)


def annotation_settings(analysis: Analysis) -> dict:
    """The group and DE settings the analysis was annotated with (defaults before annotation).
    ``method``: "paper" for analyses annotated before the calibrated method existed."""

    cfg = analysis.config.get("steps", {}).get("annotate", {}).get("inputs", {}).get("config")
    d = AnnotationConfig()
    keys = ("expression", "percentile", "n_low", "min_cells", "q_strict", "min_fold", "q_fallback", "fdr",
            "min_detect", "min_lfc", "min_effect")
    out = {k: (cfg or {}).get(k, getattr(d, k)) for k in keys}
    out["method"] = (cfg or {}).get("method", "paper" if cfg is not None else d.method)
    return out


def cell_scale_of(data: "ExplorerData") -> np.ndarray:
    """The calibrated method's per-cell normalisation factors (n_cells,) of the analysis, once."""
    with data._lock:
        if getattr(data, "_cell_scale", None) is None:
            from core.annotate.normalise import cell_scale

            data._cell_scale = cell_scale(data.expression().matrix)
        return data._cell_scale


def feature_de_table(data: ExplorerData, feature: int) -> pd.DataFrame:
    """One feature's DE table, exactly as the annotation computed it (same high/low cells, method,
    test and significance rule): gene, mean_high, mean_low, fold_change, log2_fold_change, t, p, q,
    significant (calibrated method also: direction, tested, detect_high, detect_low); sorted by t
    (most up-regulated first). Only the feature's high and low cells (and, for the calibrated method,
    its 1,000 reference cells) are read from the expression matrix."""

    f = data.check_feature(feature)
    s = annotation_settings(data.analysis)
    groups = select_groups(data.acts, seed=data.analysis.seed, features=[f], percentile=s["percentile"],
                           n_low=s["n_low"], min_cells=s["min_cells"])
    if not groups.testable[0]:
        raise InputError(f"feature {f} has no DE table: {groups.reason[0]}")
    high, low = groups.high_cells(0), groups.low_cells(0)
    expr = data.expression()
    genes = np.asarray(expr.gene_names, dtype=str)
    if s["method"] == "calibrated":
        out = _calibrated_table(data, groups, high, low, s, genes)
    else:
        out = paper_table(expr.matrix, high, low, s, genes)
    return out.sort_values("t", ascending=False, na_position="last", kind="stable", ignore_index=True)


def _rows(matrix, rows: np.ndarray) -> np.ndarray:
    sub = matrix[rows]
    return sub.toarray() if sp.issparse(sub) else np.asarray(sub)


def paper_table(matrix, high, low, s: dict, genes) -> pd.DataFrame:
    """Welch's t on raw values (as ``scipy.stats.ttest_ind(equal_var=False)``), the paper's rule."""

    sub = _rows(matrix, np.concatenate([high, low])).astype(np.float64)
    a, b = sub[:high.size], sub[high.size:]
    m1, m2 = a.mean(axis=0), b.mean(axis=0)
    t, _, p = welch_from_moments(high.size, m1, ((a - m1) ** 2).sum(axis=0), low.size, m2,
                                 ((b - m2) ** 2).sum(axis=0))
    q = bh(p[None, :], axis=1)[0]
    fc = m1 / (m2 + FC_EPS)
    sig, _ = significant_genes(q[None, :], fc[None, :], q_strict=s["q_strict"], min_fold=s["min_fold"],
                               q_fallback=s["q_fallback"])
    with np.errstate(divide="ignore", invalid="ignore"):
        lfc = np.log2((m1 + FC_EPS) / (m2 + FC_EPS))
    return pd.DataFrame({"gene": genes, "mean_high": m1, "mean_low": m2, "fold_change": fc, "log2_fold_change": lfc,
                         "t": t, "p": p, "q": q, "significant": sig[0]})


def reference_level(data: ExplorerData, order: np.ndarray) -> np.ndarray:
    """The calibrated DE's trend covariate, float32 (n_genes,): the mean log-normalised expression of
    the first 1,000 cells of the seed's shared random ``order`` (n_cells,). The same cells for every
    feature, so read and normalised once per analysis, not on every card."""
    with data._lock:
        if getattr(data, "_ref_level", None) is None:
            ref = np.sort(order[:min(order.size, 1000)])
            norm = log_normalise(_rows(data.expression().matrix, ref), scale=cell_scale_of(data)[ref])
            data._ref_level = norm.astype(np.float64).mean(axis=0).astype(np.float32)
        return data._ref_level


def _calibrated_table(data: ExplorerData, groups, high, low, s: dict, genes) -> pd.DataFrame:
    """The calibrated DE of one feature (:func:`core.annotate.calibrated_de.de_of_cells`)."""

    expr = data.expression()
    scale = cell_scale_of(data)
    level = reference_level(data, groups.order)
    kind, opts = expr.kind, dict(min_detect=s["min_detect"], q_max=s["fdr"], min_lfc=s["min_lfc"],
                                 min_effect=s["min_effect"])
    if sp.issparse(expr.matrix):  # sparse all the way: the moments come from the stored values
        rows = data.count_rows()  # the CSR copy annotation made, else the CSC (reads every stored value)
        both = sp.csr_matrix((rows if rows is not None else expr.matrix)[np.concatenate([high, low])])
        norm_h = log_normalise(both[:high.size], scale=scale[high])
        norm_l = log_normalise(both[high.size:], scale=scale[low])
        det = True if kind == "observed" else None  # detected = the stored positive values
        de = de_of_cells(norm_h, norm_l, level, kind=kind, feature=int(groups.feature[0]), detected_high=det,
                         detected_low=det, **opts)
    else:
        rows = np.concatenate([high, low])
        raw = _rows(expr.matrix, rows)
        norm = log_normalise(raw, scale=scale[rows])
        det = raw > 0 if kind == "observed" else None
        de = de_of_cells(norm[:high.size], norm[high.size:], level, kind=kind, feature=int(groups.feature[0]),
                         detected_high=None if det is None else det[:high.size],
                         detected_low=None if det is None else det[high.size:], **opts)
    table = de.table(int(groups.feature[0]), genes=genes)
    table.insert(3, "fold_change", np.exp2(table["lfc"]))
    table = table.rename(columns={"lfc": "log2_fold_change"})
    table["significant"] = table["direction"] != ""
    return table


# ----------------------------------------------------------------------------- gene search
def top_de_genes(de, genes, *, n_top: int = 20) -> pd.DataFrame:
    """The top up-regulated significant genes of every feature of a DE block (paper
    :class:`core.annotate.de.DEResult`: significant with fold change > 1; calibrated
    :class:`core.annotate.calibrated_de.CalibratedDE`: its up genes), ranked by t. Columns feature,
    rank (1 = top), gene, fold_change, t, q."""
    genes = np.asarray(genes, dtype=str)
    parts = []
    calibrated = hasattr(de, "up")
    fold = np.exp2(de.lfc) if calibrated else getattr(de, "fold_change", None)
    for i, f in enumerate(de.feature.tolist()):
        up = de.up[i] if calibrated else de.significant[i] & (de.fold_change[i] > 1)
        ok = np.flatnonzero(up & np.isfinite(de.t[i]))
        if ok.size == 0:
            continue
        top = ok[np.argsort(-de.t[i, ok], kind="stable")[:n_top]]
        parts.append(pd.DataFrame({"feature": f, "rank": np.arange(1, top.size + 1), "gene": genes[top],
                                   "fold_change": fold[i, top], "t": de.t[i, top], "q": de.q[i, top]}))
    if not parts:
        return pd.DataFrame({"feature": pd.Series(dtype=np.int64), "rank": pd.Series(dtype=np.int64),
                             "gene": pd.Series(dtype=str), "fold_change": pd.Series(dtype=float),
                             "t": pd.Series(dtype=float), "q": pd.Series(dtype=float)})
    return pd.concat(parts, ignore_index=True)


def build_top_genes(analysis: Analysis, *, n_top: int = 20, block_size: int = 256, progress: Progress = no_progress,
                    should_stop: ShouldStop = never_stop) -> pd.DataFrame:
    """Top DE genes of every testable feature (step ``top_genes``, ``top_genes.parquet``), with
    the annotation's groups, expression and rule. Cached; re-running with the same inputs reads it."""

    s = annotation_settings(analysis)
    acts_file = analysis.file("activations.npz")
    if not acts_file.is_file():
        raise InputError(f"{analysis.path.name} has no SAE activations yet", fix="run `featurelens train` first")
    expr = resolve_expression(analysis, mode=s["expression"])
    inputs = {"activations": io.content_hash(acts_file), "expression": expr.key, "seed": analysis.seed,
              "settings": s, "n_top": int(n_top)}
    if analysis.cached("top_genes", inputs=inputs):
        return analysis.read_parquet(TOP_GENES_FILE)
    acts = analysis.read_npz_sparse("activations.npz")
    groups = select_groups(acts, seed=analysis.seed, percentile=s["percentile"], n_low=s["n_low"],
                           min_cells=s["min_cells"], should_stop=should_stop)
    n_test = int(groups.testable.sum())
    parts, done = [], 0
    if s["method"] == "calibrated":
        kind = expr.kind
        with tempfile.TemporaryDirectory(dir=analysis.path, prefix=".top-genes-") as work:
            norm, detected = prepare(expr.matrix, kind=kind, out=Path(work) / "log_normalised.npy")
            for block in groups.blocks(block_size):
                if should_stop():
                    raise Cancelled("building the gene index was cancelled")
                de = calibrated_de(norm, block, kind=kind, detected=detected, min_detect=s["min_detect"],
                                   q_max=s["fdr"], min_lfc=s["min_lfc"], min_effect=s["min_effect"], exact_p=False,
                                   should_stop=should_stop)
                parts.append(top_de_genes(de, expr.gene_names, n_top=n_top))
                done += len(block)
                progress(done, max(n_test, 1), f"top DE genes of {done}/{n_test} features")
            del norm
    for block in groups.blocks(block_size) if s["method"] != "calibrated" else ():
        if should_stop():
            raise Cancelled("building the gene index was cancelled")
        de = batched_de(expr.matrix, block, q_strict=s["q_strict"], min_fold=s["min_fold"],
                        q_fallback=s["q_fallback"], should_stop=should_stop)
        parts.append(top_de_genes(de, expr.gene_names, n_top=n_top))
        done += len(block)
        progress(done, max(n_test, 1), f"top DE genes of {done}/{n_test} features")
    table = pd.concat(parts, ignore_index=True) if parts else top_de_genes(_EmptyDE(), [], n_top=n_top)
    with analysis.step("top_genes", inputs=inputs) as w:
        w.write_parquet(TOP_GENES_FILE, table)
    return table


class _EmptyDE:
    feature = np.zeros(0, np.int64)


class GeneIndex:
    """Search features by gene: those whose top DE genes include it (``top_genes.parquet`` rows)."""

    def __init__(self, top_genes: pd.DataFrame):
        table = top_genes.reset_index(drop=True)
        upper = table["gene"].astype(str).str.upper()
        table = table.iloc[np.lexsort((-table["t"].to_numpy(float), table["rank"].to_numpy()))]
        self.table = table.reset_index(drop=True)
        keys = upper.to_numpy()[table.index.to_numpy()]
        self._rows = pd.Series(np.arange(len(table))).groupby(keys).indices if len(table) else {}
        self.genes = np.unique(table["gene"].astype(str).to_numpy())
        self._genes_upper = np.char.upper(self.genes.astype(str)) if self.genes.size else self.genes

    def suggest(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Genes starting with ``prefix`` (case-insensitive), alphabetically."""
        p = (prefix or "").strip().upper()
        if not p or self.genes.size == 0:
            return []
        return self.genes[np.char.startswith(self._genes_upper, p)][:limit].tolist()

    def search(self, gene: str, *, limit: int = 200) -> pd.DataFrame:
        """Features with ``gene`` among their top DE genes, best rank (then highest t) first.
        Columns: feature, rank, gene, fold_change, t, q."""
        rows = self._rows.get((gene or "").strip().upper(), np.zeros(0, np.int64))
        return self.table.iloc[rows[:limit]].reset_index(drop=True)


# ----------------------------------------------------------------------------- search
def parse_feature_ids(text: str, *, n_features: int) -> list[int]:
    """``"12"``, ``"3, 7"``, ``"10-15"`` → feature numbers (in order, unique). Bad input: InputError."""
    out: list[int] = []
    for part in re.split(r"[,\s;]+", (text or "").strip()):
        if not part:
            continue
        m = re.fullmatch(r"#?(\d+)(?:\s*[-–]\s*(\d+))?", part)
        if not m:
            raise InputError(f"{part!r} is not a feature number", fix="type e.g. 12, or 3, 7, or 10-15")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if b < a:
            a, b = b, a
        if b - a > 1000:
            raise InputError(f"the range {part} is too long (at most 1,000 features)")
        for f in range(a, b + 1):
            if not 0 <= f < n_features:
                raise InputError(f"feature {f} does not exist (this SAE has features 0–{n_features - 1})")
            if f not in out:
                out.append(f)
    return out


def search_features(data: ExplorerData, query: str, *, mode: str = "concept", limit: int = 50) -> pd.DataFrame:
    """Ranked features matching ``query``: mode ``concept`` (GO keyword or id, ranked by the best p
    of the matching terms), ``gene`` (features with the gene among their top DE genes, by its rank)
    or ``feature`` (numbers, as typed). Columns: feature, match (what matched), p (best p or q;
    NaN for ids), cells (how many cells the feature is active in: a feature of a handful of cells
    can carry the best p), category. Bad feature ids raise InputError; so does a gene search
    before the gene index exists."""
    if mode not in SEARCH_MODES:
        raise InputError(f"unknown search mode {mode!r}", fix=f"use one of {', '.join(SEARCH_MODES)}")
    cols = ["feature", "match", "p", "cells", "category"]
    q = (query or "").strip()
    if not q:
        return pd.DataFrame(columns=cols)
    active = np.diff(data.acts.indptr)  # cells each feature is active in (CSC columns)
    if mode == "concept":
        if data.index is None:
            raise InputError("this analysis has no annotation yet, so there is nothing to search",
                             fix="annotate it (Data & training page, or `featurelens annotate`)")
        res = data.concepts.search(q, limit=limit)
        out = pd.DataFrame({"feature": res["feature"].astype(np.int64),
                            "match": [f"{n} term{'s' if n != 1 else ''}: {t}" for n, t in
                                      zip(res["n_matching_terms"], res["top_terms"])],
                            "p": res["best_p"].astype(float)})
    elif mode == "gene":
        res = _gene_index(data).search(q, limit=limit)
        out = pd.DataFrame({"feature": res["feature"].astype(np.int64),
                            "match": [f"{g}: rank {r}, fold change {fc:.3g}" for g, r, fc in
                                      zip(res["gene"], res["rank"], res["fold_change"])],
                            "p": res["q"].astype(float)})
    else:
        feats = parse_feature_ids(q, n_features=data.n_features)[:limit]
        out = pd.DataFrame({"feature": np.asarray(feats, np.int64),
                            "match": [f"feature {f}: active in {active[f]:,} cells" for f in feats],
                            "p": np.nan})
    out["cells"] = active[out["feature"].to_numpy(np.int64)].astype(np.int64)
    out["category"] = data.categories(out["feature"])
    return out[cols].reset_index(drop=True)


def _gene_index(data: ExplorerData) -> "GeneIndex":
    gi = data.gene_index()
    if gi is None:
        raise InputError("the gene index of this analysis is not built yet",
                         fix="build it (one pass of DE over all features; it is saved in the analysis)")
    return gi


def search_hits(data: ExplorerData, query: str, *, mode: str = "concept", limit: int = 500) -> np.ndarray:
    """Every feature matching ``query`` (up to ``limit``), best first (as :func:`search_features`
    ranks them): for the rings on the concept map."""
    q = (query or "").strip()
    if not q:
        return np.zeros(0, np.int64)
    if mode == "concept":
        return data.concepts.hits(q, limit=limit) if data.concepts is not None else np.zeros(0, np.int64)
    if mode == "gene":
        return _gene_index(data).search(q, limit=limit)["feature"].to_numpy(np.int64)
    return np.asarray(parse_feature_ids(q, n_features=data.n_features)[:limit], np.int64)


def suggestions(data: ExplorerData, query: str, *, mode: str = "concept", limit: int = 12) -> list[str]:
    """Completions for the search box: term names containing ``query`` (most annotated first) or
    genes starting with it."""
    q = (query or "").strip()
    if not q:
        return []
    if mode == "concept" and data.concepts is not None:
        return data.concepts.suggest(q, limit=limit)
    if mode == "gene" and data.gene_index() is not None:
        return data.gene_index().suggest(q, limit=limit)
    return []


# ----------------------------------------------------------------------------- reverse lookup
def reverse_lookup(data: ExplorerData, cells, *, top: int = 15, top_terms: int = 15) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and concepts characteristic of ``cells`` (indices or a bool mask).

    Features: :func:`core.annotate.search.characteristic_features` (z of mean inside vs outside) with each
    feature's category and top terms. Concepts: the terms of the significant features among them,
    ranked by how many of those features carry the term (reported terms only), then by best headline p. Columns
    feature, z, mean_in, mean_out, significant, category, top_terms; and term_id, term_name,
    n_features, features, best_p."""
    feats = characteristic_features(data.acts_csr, cells, top=top)
    if data.concept_map is not None:
        cm = data.concept_map.set_index("feature")
        feats["category"] = cm["category"].reindex(feats["feature"]).fillna("not annotated").to_numpy()
        feats["top_terms"] = cm["top_terms"].reindex(feats["feature"]).fillna("").to_numpy()
    else:
        feats["category"], feats["top_terms"] = "not annotated", ""
    term_cols = ["term_id", "term_name", "n_features", "features", "best_p"]
    sig = feats.loc[feats["significant"], "feature"].to_numpy()
    ann = data.reported
    if ann is None or sig.size == 0:
        return feats, pd.DataFrame(columns=term_cols)
    rows = ann.loc[np.isin(ann["feature"].to_numpy(), sig)]
    if rows.empty:
        return feats, pd.DataFrame(columns=term_cols)
    rows = rows.assign(term_id=rows["term_id"].astype(str), _p=headline_p(rows).to_numpy())
    g = rows.groupby("term_id", sort=False)
    terms = pd.DataFrame({"term_name": g["term_name"].first(), "n_features": g["feature"].nunique(),
                          "features": g["feature"].agg(lambda s: ", ".join(map(str, sorted(set(s))))),
                          "best_p": g["_p"].min()})
    terms = terms.sort_values(["n_features", "best_p"], ascending=[False, True], kind="stable").head(top_terms)
    return feats, terms.rename_axis("term_id").reset_index()[term_cols]


# ----------------------------------------------------------------------------- technical variables
CONFOUNDER_VARIABLES = (("library_size", "library size", "library_size_r", "r"),
                        ("detected_genes", "detected genes", "detected_genes_r", "r"),
                        ("pct_mito", "% mito", "pct_mito_r", "r"),
                        ("batch", "batch", "batch_eta2", "η²"))
CONFOUNDER_LABELS = {name: label for name, label, _, _ in CONFOUNDER_VARIABLES}


def confounder_rule() -> str:
    """The flag rule of :mod:`core.annotate.confounders`, in one sentence (the card's tooltip)."""
    return (f"Measured within cell types (each cell type's mean removed from the activation and the covariate): "
            f"Pearson r with log library size, log detected genes and % mitochondrial counts; for the batch, "
            f"η² = the share of the within-type variance the batch explains. A feature tracks a variable when "
            f"|r| ≥ {FLAG_R} or η² ≥ {FLAG_ETA2}; random activations give |r| ≈ 1/√cells.")


def feature_confounders(data: ExplorerData, feature: int) -> dict | None:
    """One feature's row of ``confounders.parquet`` for the card, or None when the analysis has none
    (annotated before the check existed, or an embedding-only dataset). ``rows``: one dict per
    variable present (variable, label, statistic "r"/"η²", value, threshold, flag); ``tracks``: the
    variable the feature mostly tracks ("" when none) and ``tracks_label``; ``rule``: :func:`confounder_rule`."""
    f = data.check_feature(feature)
    conf = data.confounders
    if conf is None:
        return None
    row = conf.loc[f] if f in conf.index else pd.Series(dtype=object)
    rows = []
    for name, label, col, stat in CONFOUNDER_VARIABLES:
        if col not in conf:
            continue
        v = row.get(col)
        value = None if v is None or not np.isfinite(float(v)) else float(v)
        threshold = FLAG_R if stat == "r" else FLAG_ETA2
        flag = value is not None and (abs(value) if stat == "r" else value) >= threshold
        rows.append({"variable": name, "label": label, "statistic": stat, "value": value, "threshold": threshold,
                     "flag": bool(flag)})
    tracks = str(row.get("tracks", "") or "")
    return {"feature": f, "rows": rows, "tracks": tracks, "tracks_label": CONFOUNDER_LABELS.get(tracks, tracks),
            "rule": confounder_rule()}


def feature_down_terms(annotations: pd.DataFrame | None, feature: int, *, q_max: float = 0.05,
                       min_hits: int = 2) -> pd.DataFrame | None:
    """The terms enriched among the genes *down* in a feature's high cells (they describe its low
    cells): the calibrated method's ``de_direction == "down"`` rows with ``hyper_q < q_max`` and at
    least ``min_hits`` genes, best p first, columns as :func:`feature_terms`. None when the table has
    no directions (the paper's method pools up and down genes)."""
    if annotations is None or "de_direction" not in annotations or "hyper_q" not in annotations:
        return None
    rows = annotations.loc[(annotations["feature"].to_numpy() == int(feature))
                           & (annotations["de_direction"].astype(str).to_numpy() == "down")]
    hits = rows["hits"].to_numpy() if "hits" in rows else np.full(len(rows), min_hits)
    rows = rows.loc[(rows["hyper_q"].to_numpy(float) < q_max) & (hits >= min_hits)]
    rows = rows.assign(status=term_status(rows).to_numpy()).sort_values("hyper_p", kind="stable")
    cols = [c for c in TERM_COLUMNS if c in rows] + [c for c in rows if c not in TERM_COLUMNS and c != "feature"]
    return rows[cols].reset_index(drop=True)


# ----------------------------------------------------------------------------- cell type × feature heatmap
@dataclass(frozen=True)
class TypeMeans:
    """Mean activation per cell type: ``means`` float32 (n_types, n_features), zeros included;
    ``types`` (n_types,) and ``counts`` (n_types,) cells per type."""
    means: np.ndarray
    types: list[str]
    counts: np.ndarray


def group_means(acts, codes: np.ndarray, k: int) -> np.ndarray:
    """(k, features) mean of ``acts`` (cells × features, sparse or dense) over the cells of each
    group ``codes`` (n_cells,) ∈ [0, k): one sparse product (indicator rows @ acts), no densifying."""
    codes = np.asarray(codes, dtype=np.int64)
    n = codes.size
    if acts.shape[0] != n:
        raise InputError(f"{n} cell-type codes for {acts.shape[0]} cells")
    onehot = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(k, n))
    sums = onehot @ acts
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def cell_type_means(acts, codes: np.ndarray, types: list[str]) -> TypeMeans:
    """:class:`TypeMeans` of ``acts`` over the cell types ``types`` (``codes`` index into it)."""
    return TypeMeans(group_means(acts, codes, len(types)), list(types),
                     np.bincount(np.asarray(codes, np.int64), minlength=len(types)))


@dataclass(frozen=True)
class HeatmapData:
    """What the cell type × feature heatmap draws: ``means`` (n_types, n_shown) of the features shown
    (``features``, grouped by ``top_type`` in the order of ``types``, strongest first in each group),
    their ``locality``; ``n_live`` features could be shown, ``n_shown`` are (the strongest)."""
    means: np.ndarray
    types: list[str]
    features: np.ndarray
    top_type: np.ndarray
    locality: np.ndarray
    n_live: int
    n_shown: int


def _feature_column(data: ExplorerData, name: str, feats: np.ndarray, default) -> np.ndarray:
    col = data.features[name] if name in data.features else pd.Series(dtype=object)
    return col.reindex(feats).fillna(default).astype(str).to_numpy(object)


def heatmap_data(data: ExplorerData, *, max_features: int = 300) -> HeatmapData:
    """The live features (active in any cell), at most ``max_features`` of them (highest peak mean
    over cell types first), grouped by their top cell type (features.parquet ``top_cell_type``; the
    type of the peak mean when absent) in the latent view's type order."""
    tm = data.type_means()
    peak = tm.means.max(axis=0)
    live = np.flatnonzero(np.diff(data.acts.indptr) > 0)
    keep = live[np.argsort(-peak[live], kind="stable")[:max_features]]
    argmax = np.asarray(tm.types, dtype=object)[tm.means[:, keep].argmax(axis=0)] if keep.size else np.zeros(0, object)
    top = _feature_column(data, "top_cell_type", keep, "")
    top = np.where((top == "") | ~np.isin(top, tm.types), argmax, top)
    rank = {t: i for i, t in enumerate(tm.types)}
    order = np.lexsort((-peak[keep], np.array([rank[t] for t in top], dtype=np.int64)))
    keep, top = keep[order], top[order]
    return HeatmapData(means=tm.means[:, keep], types=tm.types, features=keep.astype(np.int64), top_type=top,
                       locality=_feature_column(data, "locality", keep, "unknown"), n_live=int(live.size),
                       n_shown=int(keep.size))


def cell_type_features(data: ExplorerData, cell_type: str, *, limit: int = 50) -> pd.DataFrame:
    """The features whose top cell type is ``cell_type``, highest mean activation in it first; rows
    as :func:`search_features` (feature, match, p NaN, category)."""
    tm = data.type_means()
    if cell_type not in tm.types:
        raise InputError(f"{cell_type!r} is not a cell type of this analysis",
                         fix="choose one of " + ", ".join(tm.types[:10]) + (" …" if len(tm.types) > 10 else ""))
    i = tm.types.index(cell_type)
    feats = np.flatnonzero(np.diff(data.acts.indptr) > 0)
    top = _feature_column(data, "top_cell_type", feats, "")
    missing = top == ""
    top[missing] = np.asarray(tm.types, dtype=object)[tm.means[:, feats[missing]].argmax(axis=0)]
    feats = feats[top == cell_type]
    feats = feats[np.argsort(-tm.means[i, feats], kind="stable")][:limit]
    loc = _feature_column(data, "locality", feats, "unknown")
    out = pd.DataFrame({"feature": feats.astype(np.int64),
                        "match": [f"top cell type {cell_type} ({lo}): mean {m:.3g}" for lo, m in
                                  zip(loc, tm.means[i, feats])],
                        "p": np.nan})
    out["category"] = data.categories(out["feature"])
    return out
