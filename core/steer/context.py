"""Everything a steering run needs from an analysis, loaded once and reused.

:class:`SteeringContext` holds the SAE, the expression model's decoder, every cell's embedding,
library size and covariates, the cells' names and types, the SAE activations of all cells
(for data-dependent targets), the cell-type centroids and the model's gene dispersions.
:func:`steering_context` builds it from an analysis folder and keeps the last few in memory,
keyed by what they were built from, so that the app's second run on the same analysis starts
at once. Notebooks can build one directly from arrays.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base.cache import LRUCache
from core.base.errors import InputError
from core.model.decoders import BuiltinDecoder, HOW_TO_ADD_DECODER, STEERING_NEEDS_DECODER
from core.model.scvi import SCVIDecoder
from core.model.predict import analysis_decoder, decoding_data, PREDICTED_FILE, predicted_inputs, PREDICTED_STEP

__all__ = ["SteeringContext", "steering_context", "cell_type_centroids", "clear_context_cache"]

_CONTEXTS = LRUCache(size=2)


@dataclass
class SteeringContext:
    """Inputs of steering. Shapes: ``embedding`` (n_cells, d) float32; ``library_size`` (n_cells,)
    or None; ``covariates`` (n_cells, c) or None; ``activations`` CSC (n_cells, hidden);
    ``dispersion`` (n_genes,) NB inverse dispersions θ (variance μ + μ²/θ) or None;
    ``predicted`` the analysis's cached predicted expression (memory-mapped) or None: the
    normal expression of steered cells is then read from it instead of decoded again."""

    sae: Any
    decoder: Any
    embedding: np.ndarray
    obs: pd.DataFrame
    gene_names: list[str]
    activations: Any
    library_size: np.ndarray | None = None
    covariates: np.ndarray | None = None
    cell_type_column: str | None = None
    dispersion: np.ndarray | None = None
    predicted: Any = None  # (n_cells, n_genes) decoder output × library of every cell, if cached
    seed: int = 0
    info: dict = field(default_factory=dict)
    _centroids: tuple | None = field(default=None, repr=False)

    def __post_init__(self):
        n = self.embedding.shape[0]
        if len(self.obs) != n or self.activations.shape[0] != n:
            raise InputError(f"{n} embedded cells, {len(self.obs)} in obs, {self.activations.shape[0]} with activations",
                             fix="the SAE activations must come from the analysis's own embedding")
        if self.activations.shape[1] != self.sae.hidden:
            raise InputError(f"activations have {self.activations.shape[1]} features, the SAE {self.sae.hidden}",
                             fix="re-run `featurelens train`; activations.npz and sae.pt are from different runs")
        if self.embedding.shape[1] != self.sae.d_in:
            raise InputError(f"the SAE expects {self.sae.d_in}-dimensional input; the embedding has "
                             f"{self.embedding.shape[1]} dimensions", fix="use the embedding the SAE was trained on")
        if self.dispersion is not None and len(self.dispersion) != len(self.gene_names):
            raise InputError(f"{len(self.dispersion)} dispersions for {len(self.gene_names)} genes")

    @property
    def n_cells(self) -> int:
        return int(self.embedding.shape[0])

    @property
    def cell_types(self) -> np.ndarray | None:
        if self.cell_type_column is None:
            return None
        return self.obs[self.cell_type_column].astype(str).to_numpy()

    def normal_expression(self, cells: np.ndarray) -> np.ndarray | None:
        """Rows ``cells`` of the cached predicted expression (float32 copy), or None if not cached."""
        if self.predicted is None:
            return None
        rows = self.predicted[np.asarray(cells)]  # fancy indexing copies the rows out of the memmap
        return np.asarray(rows, dtype=np.float32)

    def centroids(self) -> tuple[list[str], np.ndarray] | None:
        """Cell-type names and their mean embeddings (T, d) over all cells; None without types."""
        if self.cell_type_column is None:
            return None
        if self._centroids is None:
            self._centroids = cell_type_centroids(self.embedding, self.cell_types)
        return self._centroids


def cell_type_centroids(embedding: np.ndarray, cell_types) -> tuple[list[str], np.ndarray]:
    """(type names sorted, centroids (T, d) float64): the mean embedding of each type's cells."""
    labels = np.asarray(cell_types).astype(str)
    names, codes = np.unique(labels, return_inverse=True)
    sums = np.zeros((names.size, embedding.shape[1]))
    np.add.at(sums, codes, np.asarray(embedding, np.float64))
    return names.tolist(), sums / np.bincount(codes, minlength=names.size)[:, None]


def clear_context_cache() -> None:
    _CONTEXTS.clear()


def _cache_key(analysis) -> str:
    ds = analysis.config.get("dataset", {}) or {}
    path = Path(ds.get("path", ""))
    stat = path.stat() if path.is_file() else None
    return json.dumps({"analysis": str(Path(analysis.path).resolve()), "sae": analysis.config.get("steps", {}).get("sae"),
                       "dataset": ds, "settings": analysis.config.get("settings"),
                       "decoder": (analysis.config.get("steps", {}) or {}).get("decoder"),
                       "file": [stat.st_size, stat.st_mtime_ns] if stat else None,
                       "model": _model_stamp(analysis)}, sort_keys=True, default=str)


def _model_stamp(analysis):
    from core.model.store import default_model_dir

    ds = analysis.config.get("dataset", {}) or {}
    if not ds.get("path"):
        return None
    meta = default_model_dir(ds["path"]) / "model.json"
    return meta.stat().st_mtime_ns if meta.is_file() else None


def steering_context(analysis, *, use_cache: bool = True) -> SteeringContext:
    """The steering inputs of ``analysis`` (cached in memory by what they depend on).

    Raises InputError when the analysis has no trained SAE, when its model has no decoder
    (steering needs one; the message says how to supply it) or when the data changed.
    """
    key = _cache_key(analysis)
    if not use_cache:
        return _CONTEXTS.put(key, _build(analysis))
    return _CONTEXTS.get_or_make(key, lambda: _build(analysis))


def _build(analysis) -> SteeringContext:
    from core.sae import load_sae

    for name in ("sae.pt", "sae.json", "activations.npz"):
        if not analysis.has(name):
            raise InputError(f"{analysis.path} has no trained SAE yet ({name} is missing)",
                             fix="run `featurelens train` first")
    decoder = analysis_decoder(analysis)
    if decoder is None or not getattr(decoder, "available", True):
        raise InputError(STEERING_NEEDS_DECODER, fix=HOW_TO_ADD_DECODER)
    ds = analysis.config.get("dataset", {}) or {}
    if ds.get("format") != "h5ad":
        raise InputError("steering needs the analysis's .h5ad (counts for library sizes, cell names and types)",
                         fix="train the SAE from an .h5ad (`featurelens train DATA.h5ad ...`)")
    if not ds.get("embedding"):
        raise InputError("the analysis names no embedding, so there is nothing to steer")
    data = decoding_data(analysis, decoder)
    decoder, z, lib, covariates, genes, key = (data.decoder, data.latent, data.library_size, data.covariates,
                                               data.genes, data.embedding_key)
    sae = load_sae(analysis)
    acts = analysis.read_npz_sparse("activations.npz").tocsc()
    ct_col = ds.get("cell_type")
    obs = data.obs
    if ct_col is not None and ct_col not in obs.columns:
        ct_col = None
    obs.index = obs.index.astype(str)
    return SteeringContext(sae=sae, decoder=decoder, embedding=np.ascontiguousarray(z, np.float32), obs=obs,
                           gene_names=genes, activations=acts, library_size=lib, covariates=covariates,
                           cell_type_column=ct_col, dispersion=_dispersion(decoder),
                           predicted=_cached_prediction(analysis, decoder, z, lib, covariates), seed=analysis.seed,
                           info={"analysis": str(analysis.path), "embedding": key, "decoder": decoder.describe()})


def _cached_prediction(analysis, decoder, z, lib, covariates):
    """The analysis's predicted expression (``predicted_expression.npy``) if it was made by this decoder
    from this embedding, library sizes and covariates; else None."""

    inputs = predicted_inputs(decoder, z, lib, covariates)
    if not analysis.cached(PREDICTED_STEP, inputs=inputs):
        return None
    m = np.load(analysis.file(PREDICTED_FILE), mmap_mode="r")
    return m if m.shape == (z.shape[0], decoder.n_genes) and m.dtype == np.float32 else None


def _dispersion(decoder) -> np.ndarray | None:
    """The NB model's per-gene θ in the data's gene order (the built-in model's, or an scvi-tools
    model's exp(px_r)); None for other decoders."""

    if isinstance(decoder, SCVIDecoder):
        return decoder.dispersion()
    if not isinstance(decoder, BuiltinDecoder) or decoder.fitted.config.likelihood != "nb":
        return None
    theta = np.exp(decoder.fitted.model.log_gene_param.detach().cpu().numpy().astype(np.float64))
    theta = np.clip(theta, 1e-4, 1e6)  # as the model's likelihood
    return theta if decoder._order is None else theta[decoder._order]
