"""What can be chosen for a source on the Data & training page: embeddings, cell-type columns,
decoders, whether the built-in model can be fitted, and a default analysis name.

Reads only metadata (AnnData in backed mode: ``.obs``, ``.obsm`` shapes, ``.uns``), so it stays
fast on large files. Everything returned is small JSON.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.store.analysis import Analysis
from core.store.catalog import resolve_source
from core.store.dataset import decoder_reference
from core.data.load import CELL_TYPE_CANDIDATES, read_anndata
from core.data.datasets import shipped
from core.base.errors import FeatureLensError, InputError
from core.base.paths import analyses_dir, confine, data_dir
from core.model.scvi import is_scvi_model_dir

__all__ = ["SourceOptions", "source_options", "decoder_choices", "resolve_decoder", "analysis_path",
           "default_analysis_name", "MODEL_KEY"]

MODEL_KEY = "X_featurelens"           # where the page's "fit the built-in model" writes the embedding
_ANALYSIS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_DECODER_SUFFIXES = (".ts", ".torchscript", ".jit")


@dataclass(frozen=True)
class SourceOptions:
    """The choices the page offers for one source (``shipped:…``, ``file:…``, ``analysis:…``)."""

    source: str
    kind: str = ""                     # shipped | file | analysis
    title: str = ""
    data_format: str = ""              # h5ad | npy | csv | pt
    n_cells: int | None = None
    n_genes: int | None = None
    embeddings: list = field(default_factory=list)        # [{"key", "dims"}]
    default_embedding: str | None = None
    cell_type_columns: list = field(default_factory=list)
    default_cell_type: str = "auto"    # a column, "auto" or "none"
    decoders: list = field(default_factory=list)          # [{"label", "value"}]
    default_decoder: str = "auto"
    can_fit: bool = False              # an .h5ad with counts: the built-in model can be fitted
    fitted_model: str | None = None    # a one-line description when this file holds the model's embedding
    analysis_name: str = ""            # default name of the analysis training writes
    locked: bool = False               # an analysis: its dataset, embedding, cell types and decoder are fixed
    error: str | None = None
    fix: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def analysis_path(name: str) -> Path:
    """The folder of analysis ``name`` inside the analyses folder; refuses odd names."""
    name = (name or "").strip()
    if not _ANALYSIS_NAME.match(name):
        raise InputError(f"{name!r} is not a usable analysis name",
                         fix="use letters, digits, '.', '_' or '-' (up to 80, starting with a letter or digit)")
    return confine(name, roots=[analyses_dir()])


def default_analysis_name(stem: str, embedding: str | None) -> str:
    """``<file stem>-<embedding key>``, reduced to the characters analysis names allow."""
    raw = f"{stem}-{embedding}" if embedding else stem
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._-")[:80]
    return name or "analysis"


def decoder_choices() -> list[dict]:
    """Decoders the page offers: automatic, none, built-in model folders, scvi-tools model folders
    (``model.save(dir)``: a folder with ``model.pt``) and TorchScript files in the data folder.

    TorchScript files are recognised by a ``.ts``/``.torchscript``/``.jit`` suffix or a ``.pt``
    name containing "decoder" (``.pt`` files are otherwise embeddings).
    """
    out = [{"label": "Automatic: the built-in model fitted on this file, if any", "value": "auto"},
           {"label": "None: annotate the observed counts", "value": "none"}]
    root = data_dir()
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.is_dir() and p.name.endswith(".featurelens-model") and (p / "model.json").is_file():
            out.append({"label": f"Built-in model · {rel}", "value": f"model:{rel}"})
        elif is_scvi_model_dir(p):
            out.append({"label": f"scvi-tools model · {rel}", "value": f"scvi:{rel}"})
        elif p.is_file() and (p.suffix.lower() in _DECODER_SUFFIXES
                              or (p.suffix.lower() == ".pt" and "decoder" in p.name.lower())):
            out.append({"label": f"TorchScript · {rel}", "value": f"torchscript:{rel}"})
    return out


def resolve_decoder(value: str | None) -> str | None:
    """The analysis's ``dataset['decoder']`` for a choice: None (automatic), "none", or an absolute path."""
    if value in (None, "", "auto"):
        return None
    if value == "none":
        return "none"
    kind, _, rel = value.partition(":")
    if kind not in ("model", "scvi", "torchscript") or not rel:
        raise InputError(f"unknown decoder choice {value!r}", fix="choose a decoder from the list")
    path = confine(rel, roots=[data_dir()])
    if not path.exists():
        raise InputError(f"the decoder {rel} is no longer in the data folder", fix="press ↻ and choose again")
    return str(path)


def _category_like(series) -> bool:
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object or pd.api.types.is_string_dtype(series):
        return True
    return pd.api.types.is_integer_dtype(series) and series.nunique() <= max(50, len(series) // 20)


def _h5ad_options(path: Path, *, preferred_embedding: str | None, preferred_cell_type: str | None) -> dict:
    adata = read_anndata(path, backed=True)
    try:
        obsm = {k: adata.obsm[k].shape for k in adata.obsm.keys()}
        embeddings = [{"key": k, "dims": int(s[1])} for k, s in obsm.items() if len(s) == 2 and s[1] > 0]
        obs = adata.obs
        columns = [str(c) for c in obs.columns if _category_like(obs[c])]
        detected = preferred_cell_type or next((c for c in CELL_TYPE_CANDIDATES if c in obs.columns), None)
        model = adata.uns.get(f"{MODEL_KEY}_model") if MODEL_KEY in obsm else None
        n_cells, n_genes = int(adata.n_obs), int(adata.n_vars)
    finally:
        if getattr(adata, "file", None) is not None:
            adata.file.close()
    keys = [e["key"] for e in embeddings]
    default = next((k for k in (MODEL_KEY, preferred_embedding) if k in keys), None)
    default = default or next((k for k in keys if "umap" not in k.lower() and "tsne" not in k.lower()),
                              keys[0] if keys else None)
    fitted = None
    if model is not None:
        metrics = dict(model.get("metrics", {}) or {})
        ll = metrics.get("heldout_nb_loglik_per_cell", metrics.get("heldout_gaussian_loglik_per_cell"))
        fitted = f"holds the built-in model's embedding {MODEL_KEY} ({obsm[MODEL_KEY][1]} dimensions" + (
            f"; held-out log-likelihood {float(ll):,.1f} per cell)" if ll is not None else ")")
    return {"embeddings": embeddings, "default_embedding": default, "cell_type_columns": columns,
            "default_cell_type": detected if detected in columns else "auto", "fitted_model": fitted,
            "n_cells": n_cells, "n_genes": n_genes, "can_fit": n_genes > 0}


def source_options(value: str | None) -> SourceOptions:
    """The page's choices for ``value``; errors come back in ``error``/``fix`` (never raised)."""
    if not value:
        return SourceOptions(source="", error="no dataset or analysis chosen",
                             fix="pick one in the list above, or upload an .h5ad file")
    try:
        kind, path = resolve_source(value)
        if kind == "analysis":
            return _analysis_options(value, path)
        spec = shipped(value.partition(":")[2]) if kind == "shipped" else None
        fmt = path.suffix.lower().lstrip(".")
        if not path.is_file():
            raise InputError(f"{path.name} is not in the data folder any more", fix="press ↻ to refresh the list")
        if fmt == "h5ad":
            opts = _h5ad_options(path, preferred_embedding=spec.embedding if spec else None,
                                 preferred_cell_type=spec.cell_type if spec else None)
        else:  # an embedding file: the file is the embedding; no counts, no cell types from the page
            opts = {"embeddings": [{"key": path.name, "dims": None}], "default_embedding": path.name,
                    "cell_type_columns": [], "default_cell_type": "none", "fitted_model": None,
                    "n_cells": None, "n_genes": 0, "can_fit": False}
        stem = spec.name if spec else path.stem
        return SourceOptions(source=value, kind=kind, title=path.name, data_format=fmt, decoders=decoder_choices(),
                             analysis_name=default_analysis_name(stem, opts["default_embedding"]), **opts)
    except FeatureLensError as exc:
        return SourceOptions(source=value, error=exc.message, fix=exc.fix)


def _analysis_options(value: str, path: Path) -> SourceOptions:
    a = Analysis.open(path)
    ds = a.config.get("dataset", {}) or {}
    emb = ds.get("embedding")
    ct = ds.get("cell_type")
    dec = decoder_reference(a)
    dims = None
    if a.has("sae.json"):
        dims = (a.read_json("sae.json") or {}).get("d_in")
    dec_label = ("Automatic: the built-in model fitted on the data, if any" if not dec else
                 "None: annotate the observed counts" if str(dec).lower() == "none" else f"{Path(dec).name}")
    return SourceOptions(
        source=value, kind="analysis", title=f"Analysis {path.name}", data_format=ds.get("format", ""),
        n_cells=ds.get("n_cells"), n_genes=ds.get("n_genes"),
        embeddings=[{"key": emb, "dims": dims}] if emb else [], default_embedding=emb,
        cell_type_columns=[ct] if ct else [], default_cell_type=ct or "none",
        decoders=[{"label": dec_label, "value": "analysis"}], default_decoder="analysis",
        can_fit=False, analysis_name=path.name, locked=True)
