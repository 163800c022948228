"""Save and load the built-in model: a folder with ``model.pt`` (state dict) and ``model.json``.

``model.json`` holds the config, the gene names (in the decoder's output order), the batch
covariate's categories, the held-out metrics and where the model came from. ``model.pt`` is
read with ``weights_only=True``: tensors only, never pickled code. The folder is written
under a temporary name and renamed into place, so a reader never sees half a model.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from pathlib import Path

from core.base import io
from core.base.errors import InputError
from core.model.config import ModelConfig
from core.model.fit import FittedModel
from core.model.vae import ExpressionModel

__all__ = ["save_model", "load_model", "default_model_dir", "is_model_dir", "MODEL_FORMAT", "MODEL_FORMAT_VERSION"]

MODEL_FORMAT = "featurelens-expression-model"
MODEL_FORMAT_VERSION = 1
WEIGHTS, META = "model.pt", "model.json"


def default_model_dir(data_path: str | os.PathLike) -> Path:
    """``<folder>/<data stem>.featurelens-model`` beside the data file."""
    p = Path(data_path)
    return p.with_name(f"{p.stem}.featurelens-model")


def is_model_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / META).is_file()


def save_model(fitted: FittedModel, path: str | os.PathLike, *, overwrite: bool = False,
               source: dict | None = None) -> Path:
    """Write ``fitted`` to the folder ``path`` atomically; refuse to replace one unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists", fix="choose another --out folder or pass --overwrite")
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} exists and is not a folder", fix="choose another --out folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": fitted.config.to_dict(),
        "n_genes": fitted.n_genes,
        "gene_names": list(fitted.gene_names),
        "covariate": fitted.covariate,
        "metrics": fitted.metrics,
        "history": fitted.history,
        "source": source or {},
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    backup = None
    try:
        io.write_torch_state(staging / WEIGHTS, {k: v.detach().cpu() for k, v in fitted.model.state_dict().items()})
        io.write_json(staging / META, meta)
        if path.exists():
            backup = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, backup)
        os.replace(staging, path)
    except BaseException:
        if backup is not None and not path.exists():
            os.replace(backup, path)
            backup = None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    return path


def load_model(path: str | os.PathLike) -> FittedModel:
    """Load a model folder written by :func:`save_model` (``embedding`` is None)."""

    path = Path(path)
    if not is_model_dir(path):
        raise InputError(f"{path} is not a FeatureLens model folder (no {META})",
                         fix="fit one with `featurelens fit-model DATA.h5ad`")
    try:
        meta = io.read_json(path / META)
    except ValueError as exc:
        raise InputError(f"{path / META} is not valid JSON ({exc})", fix="fit the model again") from None
    if meta.get("format") != MODEL_FORMAT:
        raise InputError(f"{path / META} is not a FeatureLens model description")
    if int(meta.get("format_version", 0)) > MODEL_FORMAT_VERSION:
        raise InputError(f"{path} was written by a newer FeatureLens", fix="upgrade FeatureLens")
    config = ModelConfig.from_dict(meta["config"])
    genes = [str(g) for g in meta["gene_names"]]
    covariate = meta.get("covariate")
    n_cov = len(covariate["categories"]) if covariate else 0
    model = ExpressionModel(len(genes), n_cov, config)
    if not (path / WEIGHTS).is_file():
        raise InputError(f"{path} has no {WEIGHTS}", fix="fit the model again")
    try:
        state = io.read_torch_state(path / WEIGHTS)
    except Exception as exc:
        raise InputError(f"{path / WEIGHTS} could not be read safely: {type(exc).__name__}",
                         fix="fit the model again; pickled objects are refused for safety") from None
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"{path / WEIGHTS} does not match {META}: {str(exc).splitlines()[0]}",
                         fix="the two files come from different fits; fit the model again") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return FittedModel(model=model, config=config, gene_names=genes, covariate=covariate,
                       metrics=meta.get("metrics", {}), history=meta.get("history", []))
