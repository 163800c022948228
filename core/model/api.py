"""Fit the built-in model on an AnnData or an .h5ad file: what ``featurelens fit-model`` and the app call.

``fit_anndata`` works in memory (embedding into ``adata.obsm[key]``, parameters into
``adata.uns[key + '_model']``). ``fit_h5ad`` checks every output path first, fits, saves the
model folder beside the data and rewrites the .h5ad atomically (temporary file + rename), so a
failure at any point leaves the original files as they were.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.base.errors import InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress
from core.model.config import ModelConfig
from core.model.fit import FittedModel, fit_expression_model
from core.base.io import atomic_path
from core.model.store import default_model_dir, save_model

__all__ = ["fit_anndata", "fit_h5ad", "FitReport", "write_h5ad_atomic", "counts_of"]

DEFAULT_KEY = "X_featurelens"


@dataclass
class FitReport:
    fitted: FittedModel
    model_dir: Path
    h5ad: Path
    key: str
    warnings: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> dict:
        return self.fitted.metrics

    def lines(self) -> list[str]:
        m = self.metrics
        lik = self.fitted.config.likelihood
        out = [f"cells × genes: {m['n_cells']:,} × {m['n_genes']:,} (train {m['n_train']:,}, "
               f"validation {m['n_validation']:,}, test {m['n_test']:,})",
               f"epochs: {m['epochs_run']} (best {m['best_epoch']}, budget {m['max_epochs']}"
               + (", stopped early" if m["stopped_early"] else "") + f"); fit time {m['fit_seconds']:.1f} s"]
        ll, base = m.get(f"heldout_{lik}_loglik_per_cell"), m.get(f"baseline_{lik}_loglik_per_cell")
        if ll is not None:
            out.append(f"held-out {lik.upper()} log-likelihood per cell: {ll:.2f} "
                       f"(per-gene-mean baseline {base:.2f}; better by {ll - base:.2f})")
        if "baseline_poisson_loglik_per_cell" in m:
            out.append(f"  Poisson per-gene-mean baseline: {m['baseline_poisson_loglik_per_cell']:.2f}")
        r = m.get("reconstruction_pearson_log1p", m.get("reconstruction_pearson"))
        rb = m.get("baseline_pearson_log1p", m.get("baseline_pearson"))
        scale = " (log1p)" if "reconstruction_pearson_log1p" in m else ""
        out.append(f"held-out reconstruction Pearson r{scale}: {r:.3f} (baseline {rb:.3f})")
        out.append(f"embedding: .obsm[{self.key!r}] ({self.fitted.config.latent} dimensions) in {self.h5ad}")
        out.append(f"model: {self.model_dir}")
        return out + [f"warning: {w}" for w in self.warnings]


def counts_of(adata, counts_layer: str | None = None):
    """(matrix, description): ``.layers[counts_layer]``, else ``.layers['counts']`` if present, else ``.X``."""
    if counts_layer is not None:
        if counts_layer not in adata.layers:
            raise InputError(f"layer {counts_layer!r} not found",
                             fix=f"available layers: {', '.join(adata.layers.keys()) or 'none (use .X)'}")
        return adata.layers[counts_layer], f".layers[{counts_layer!r}]"
    if "counts" in adata.layers:
        return adata.layers["counts"], ".layers['counts']"
    if adata.X is None:
        raise InputError("the AnnData has no .X", fix="put the counts in .X or name a layer with --counts-layer")
    return adata.X, ".X"


def fit_anndata(
    adata,
    *,
    config: ModelConfig | None = None,
    counts_layer: str | None = None,
    batch_key: str | None = None,
    key: str = DEFAULT_KEY,
    threads: int | None = None,
    progress: Progress = no_progress,
    should_stop: ShouldStop = never_stop,
) -> FittedModel:
    """Fit the model on ``adata``'s counts; store the embedding in ``adata.obsm[key]``.

    Only gene-expression columns are modelled when ``.var`` marks feature types (multiome
    files); the other modality stays in the AnnData untouched.
    """
    from core.model.multiomics import expression_columns

    config = config or ModelConfig()
    X, what = counts_of(adata, counts_layer)
    cols = expression_columns(adata)
    genes = adata.var_names[cols]
    if not cols.all():
        X = X[:, np.flatnonzero(cols)]
        what += f" (the {int(cols.sum())} gene-expression columns)"
    if batch_key is not None and batch_key not in adata.obs.columns:
        raise InputError(f"batch column {batch_key!r} not found in .obs",
                         fix=f"choose one of: {', '.join(map(str, adata.obs.columns[:20])) or '(no columns)'}")
    batch = None
    if batch_key is not None:
        col = adata.obs[batch_key]
        if col.isna().any():
            raise InputError(f"batch column {batch_key!r} has {int(col.isna().sum())} missing values",
                             fix="label those cells or choose another column")
        batch = col.astype(str).to_numpy()
    if not adata.var_names.is_unique:
        raise InputError("duplicated gene names", fix="call adata.var_names_make_unique() and save again")
    fitted = fit_expression_model(X, config=config, gene_names=genes, batch=batch, batch_key=batch_key,
                                  threads=threads, data_name=what, progress=progress, should_stop=should_stop)
    adata.obsm[key] = fitted.embedding
    adata.uns[f"{key}_model"] = _uns_summary(fitted, counts=what)
    return fitted


def _uns_summary(fitted: FittedModel, **extra) -> dict:
    scalars = {k: v for k, v in fitted.metrics.items() if isinstance(v, (int, float, str, bool)) and v is not None}
    return {"config": {k: v for k, v in fitted.config.to_dict().items() if v is not None and k != "extra"},
            "metrics": scalars, "covariate": fitted.covariate["key"] if fitted.covariate else "none", **extra}


def write_h5ad_atomic(adata, path: str | os.PathLike) -> Path:
    """Write ``adata`` to ``path`` via a temporary file in the same folder and a rename."""

    path = Path(path)
    with atomic_path(path) as tmp:
        h5 = tmp.with_suffix(".h5ad")
        try:
            adata.write_h5ad(h5)
            os.replace(h5, tmp)
        finally:
            if h5.exists():
                h5.unlink()
    return path


def fit_h5ad(
    path: str | os.PathLike,
    *,
    config: ModelConfig | None = None,
    key: str = DEFAULT_KEY,
    out: str | os.PathLike | None = None,
    output_h5ad: str | os.PathLike | None = None,
    counts_layer: str | None = None,
    batch_key: str | None = None,
    overwrite: bool = False,
    threads: int | None = None,
    progress: Progress = no_progress,
    should_stop: ShouldStop = never_stop,
) -> FitReport:
    """Fit the model on the .h5ad at ``path``; save it to ``out`` (default ``<stem>.featurelens-model/``)
    and the embedding to ``.obsm[key]`` of ``output_h5ad`` (default: ``path`` itself)."""
    from core.data.load import file_sha256, read_anndata

    path = Path(path)
    if path.suffix.lower() != ".h5ad":
        raise InputError(f"{path.name} is not an .h5ad file", fix="fit-model needs an AnnData .h5ad with counts")
    if not key or "/" in key:
        raise InputError(f"invalid .obsm key {key!r}", fix="e.g. --key X_featurelens")
    model_dir = Path(out) if out is not None else default_model_dir(path)
    target = Path(output_h5ad) if output_h5ad is not None else path
    if model_dir.exists() and not overwrite:
        raise InputError(f"{model_dir} already exists", fix="pass --overwrite to replace it, or choose --out")
    if target != path and target.exists() and not overwrite:
        raise InputError(f"{target} already exists", fix="pass --overwrite to replace it, or choose --output-h5ad")
    if target.suffix.lower() != ".h5ad":
        raise InputError(f"{target.name} must end in .h5ad")
    adata = read_anndata(path)
    if key in adata.obsm and not overwrite:
        raise InputError(f".obsm[{key!r}] already exists in {path.name}",
                         fix="pass --overwrite to replace it, or choose another --key")
    config = config or ModelConfig()
    fitted = fit_anndata(adata, config=config, counts_layer=counts_layer, batch_key=batch_key, key=key,
                         threads=threads, progress=progress, should_stop=should_stop)
    source = {"data": str(path.resolve()), "sha256": file_sha256(path), "counts": adata.uns[f"{key}_model"]["counts"],
              "batch_key": batch_key, "obsm_key": key}
    save_model(fitted, model_dir, overwrite=overwrite, source=source)
    adata.uns[f"{key}_model"]["model_dir"] = str(model_dir.resolve())
    write_h5ad_atomic(adata, target)
    return FitReport(fitted=fitted, model_dir=model_dir, h5ad=target, key=key)
