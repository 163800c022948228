"""Load and validate a dataset: an AnnData (.h5ad) or an embedding file (.npy/.csv/.pt).

``load_dataset`` returns a :class:`Dataset` or raises :class:`~core.base.errors.InputError` naming
the fix. ``validate`` gives the full report (errors and warnings) for the UI and the CLI.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base.errors import InputError
from core.data.genes import GeneIdReport, detect_gene_ids
from core.base.paths import check_path, user_path

__all__ = ["Dataset", "Issue", "ValidationReport", "load_dataset", "validate", "read_anndata", "file_sha256",
           "check_file", "read_embedding_file", "check_embedding", "align_embedding", "classify_counts"]

EMBEDDING_SUFFIXES = (".npy", ".csv", ".pt")
CELL_TYPE_CANDIDATES = (
    "cell_type", "celltype", "cell_types", "CellType", "cell_type_fine", "l2_cell_type",
    "bulk_labels", "labels", "leiden", "louvain", "cluster",
)


@dataclass(frozen=True)
class Issue:
    level: str  # "error" | "warning" | "info"
    subject: str
    message: str
    fix: str | None = None

    def __str__(self) -> str:
        return self.message + (f" Fix: {self.fix}" if self.fix else "")


@dataclass
class ValidationReport:
    issues: list[Issue] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, level: str, subject: str, message: str, fix: str | None = None) -> None:
        self.issues.append(Issue(level, subject, message, fix))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_errors(self) -> None:
        if self.errors:
            first, rest = self.errors[0], self.errors[1:]
            msg = first.message + "".join(f"\n  also: {e}" for e in rest)
            raise InputError(msg, fix=first.fix)

    def lines(self) -> list[str]:
        out = [f"{k}: {v}" for k, v in self.facts.items()]
        out += [f"{i.level.upper()}: {i}" for i in self.issues]
        return out


@dataclass
class Dataset:
    """Cells with metadata, optionally counts (``adata``) and an embedding.

    ``embedding``: float32 (n_cells, d) or None. ``obs``: DataFrame indexed by cell name.
    ``cell_type``: the name of the categorical cell-type column in ``obs``, or None.
    """

    obs: pd.DataFrame
    embedding: np.ndarray | None = None
    embedding_key: str | None = None
    cell_type: str | None = None
    adata: Any = None
    counts_kind: str | None = None  # "counts" | "normalised" | None (no expression)
    gene_ids: GeneIdReport | None = None
    source: dict = field(default_factory=dict)
    report: ValidationReport = field(default_factory=ValidationReport)

    @property
    def n_cells(self) -> int:
        return len(self.obs)

    @property
    def cell_names(self) -> pd.Index:
        return self.obs.index

    @property
    def cell_types(self) -> pd.Categorical | None:
        return None if self.cell_type is None else self.obs[self.cell_type].values


# --------------------------------------------------------------------------- reading

def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path) -> None:
    """Raise InputError unless ``path`` is a readable, non-empty file."""
    path = check_path(path)
    try:
        exists, is_file = path.exists(), path.is_file()
        size = path.stat().st_size if is_file else None
    except OSError as exc:  # e.g. permission denied on a parent folder
        raise InputError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not exists:
        raise InputError(f"{path} does not exist", fix="check the path (relative paths start in the current folder)")
    if not is_file:
        raise InputError(f"{path} is not a file")
    if size == 0:
        raise InputError(f"{path} is empty (0 bytes)", fix="re-export or re-download the file")


def read_anndata(path: str | os.PathLike, *, backed: bool = False):
    """Read an .h5ad, turning every way it can be broken into one clear InputError."""
    import anndata as ad

    path = Path(path)
    check_file(path)
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic != b"\x89HDF\r\n\x1a\n":
        raise InputError(
            f"{path.name} is not an HDF5/.h5ad file (its first bytes are {magic[:8]!r})",
            fix="save the data with `adata.write_h5ad(...)`; a CSV or loom renamed to .h5ad does not work",
        )
    try:
        return ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as exc:  # h5py/anndata raise many types for broken files
        raise InputError(
            f"{path.name} could not be read as AnnData: {type(exc).__name__}: {exc}",
            fix="the file may be truncated or corrupt; copy it again or re-save it with anndata",
        ) from None


def read_embedding_file(path: Path) -> tuple[np.ndarray, pd.Index | None]:
    """An embedding from a .npy (no cell names) or .csv (cell names in the first column) file:
    ``(array (n_cells, d), names or None)``."""
    check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"{path.name} is not a valid .npy array: {exc}", fix="save it with numpy.save") from None
        return arr, None
    if suffix == ".csv":
        try:
            df = pd.read_csv(path, index_col=0)
        except Exception as exc:
            raise InputError(f"{path.name} could not be parsed as CSV: {exc}") from None
        try:
            arr = df.to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(
                f"{path.name} has non-numeric columns",
                fix="the CSV must have cell names in the first column and numbers in the others",
            ) from None
        return arr, df.index.astype(str)
    if suffix == ".pt":
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(
                f"{path.name} could not be loaded as a tensor file: {type(exc).__name__}",
                fix="save a plain tensor with torch.save(tensor, path); pickled objects are refused for safety",
            ) from None
        if isinstance(obj, dict) and "embedding" in obj:
            names = obj.get("cell_names")
            obj = obj["embedding"]
            names = pd.Index([str(n) for n in names]) if names is not None else None
        else:
            names = None
        if not isinstance(obj, torch.Tensor):
            raise InputError(f"{path.name} holds a {type(obj).__name__}, not a tensor", fix="torch.save(tensor, path)")
        return obj.detach().float().numpy(), names
    raise InputError(
        f"unsupported file type {suffix!r}",
        fix="use an AnnData .h5ad, or an embedding as .npy, .csv or .pt (with --obs metadata.csv)",
    )


# --------------------------------------------------------------------------- validation

def check_embedding(arr: np.ndarray, *, key: str, n_cells: int, report: ValidationReport) -> np.ndarray | None:
    """``arr`` as a float32 (n_cells, d) embedding, or None with the errors added to ``report``."""
    arr = np.asarray(arr)
    if arr.ndim != 2:
        report.add("error", "embedding", f"embedding {key!r} has shape {arr.shape}; it must be 2-D (cells × dimensions)")
        return None
    if arr.shape[0] != n_cells:
        report.add("error", "embedding", f"embedding {key!r} has {arr.shape[0]} rows but there are {n_cells} cells",
                   fix="the embedding needs exactly one row per cell, in the same order or with cell names")
        return None
    if arr.shape[1] == 0:
        report.add("error", "embedding", f"embedding {key!r} has 0 dimensions", fix="choose another embedding key")
        return None
    if not np.issubdtype(arr.dtype, np.number):
        report.add("error", "embedding", f"embedding {key!r} is not numeric (dtype {arr.dtype})")
        return None
    arr = arr.astype(np.float32, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        report.add("error", "embedding",
                   f"embedding {key!r} contains {int(bad.sum())} NaN/Inf values in {rows.size} cells "
                   f"(first: row {rows[0]})",
                   fix="drop or re-embed those cells; the SAE cannot train on NaN/Inf")
        return None
    report.facts["embedding"] = f"{key} ({arr.shape[1]} dimensions)"
    return arr


def classify_counts(X, report: ValidationReport, *, what: str) -> str | None:
    """Classify an expression matrix as raw counts or normalised; negative values are errors."""
    import scipy.sparse as sp

    if X is None or X.shape[1] == 0:
        report.add("warning", "counts", "no expression matrix (0 genes); annotation will need a decoder")
        return None
    mins, integer_like, finite = [], True, True
    if sp.issparse(X):
        chunks = [X.data]
    else:
        step = max(1, 2_000_000 // max(1, X.shape[1]))
        chunks = (np.asarray(X[i:i + step]) for i in range(0, X.shape[0], step))
    for chunk in chunks:
        chunk = np.asarray(chunk)
        if chunk.size == 0:
            continue
        if not np.isfinite(chunk).all():
            finite = False
            break
        mins.append(chunk.min())
        if integer_like and not np.array_equal(chunk, np.round(chunk)):
            integer_like = False
    if not finite:
        report.add("error", "counts", f"{what} contains NaN or Inf values",
                   fix="replace them (e.g. with 0) or put raw counts in .layers['counts']")
        return None
    lo = float(min(mins)) if mins else 0.0
    if lo < 0:
        report.add("error", "counts",
                   f"{what} has negative values (min {lo:.3g}); it looks scaled or centred, not counts",
                   fix="put raw counts in .X or .layers['counts'] (and choose it with --counts-layer)")
        return None
    if integer_like:
        report.facts["expression"] = f"{what}: raw counts (non-negative integers)"
        return "counts"
    report.add("warning", "counts",
               f"{what} holds non-integer values: treated as normalised expression, not raw counts",
               fix="if you have raw counts, put them in .layers['counts']")
    report.facts["expression"] = f"{what}: normalised (non-integer)"
    return "normalised"


def _check_cell_type(obs: pd.DataFrame, column: str | None, report: ValidationReport, *, explicit: bool) -> str | None:
    if column is None:
        column = next((c for c in CELL_TYPE_CANDIDATES if c in obs.columns), None)
        if column is None:
            report.add("warning", "cell_type", "no cell-type column found; local/global characterisation needs one",
                       fix=f"name it with --cell-type (columns: {', '.join(map(str, obs.columns[:12])) or 'none'})")
            return None
    elif column not in obs.columns:
        report.add("error", "cell_type", f"cell-type column {column!r} not found in .obs",
                   fix=f"choose one of: {', '.join(map(str, obs.columns[:20])) or '(no columns)'}")
        return None
    col = obs[column]
    if col.isna().any():
        n = int(col.isna().sum())
        report.add("error", "cell_type", f"cell-type column {column!r} has {n} missing values",
                   fix="label those cells (e.g. 'unknown') or remove them")
        return None
    if pd.api.types.is_float_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
        report.add("error", "cell_type", f"cell-type column {column!r} holds continuous numbers, not labels",
                   fix="choose a column of cell-type names")
        return None
    if not isinstance(col.dtype, pd.CategoricalDtype):
        obs[column] = col.astype(str).astype("category")
        report.add("info", "cell_type", f"cell-type column {column!r} converted to categorical")
    obs[column] = obs[column].cat.remove_unused_categories()
    n_types = len(obs[column].cat.categories)
    if n_types < 2:  # an error only when asked for this column; auto-detected, it is a warning
        report.add("error" if explicit else "warning", "cell_type",
                   f"cell-type column {column!r} has a single category; local vs global features cannot be told apart",
                   fix="choose a column with several cell types" + (", or leave out --cell-type" if explicit else ""))
        if explicit:
            return None
    if n_types > 0.5 * len(obs) and len(obs) > 20:
        report.add("error", "cell_type", f"cell-type column {column!r} has {n_types} categories for {len(obs)} cells; "
                   "it looks like an identifier, not a label", fix="choose a column of cell-type names")
        return None
    report.facts["cell types"] = f"{column} ({n_types} types)"
    if not explicit:
        report.facts["cell types"] += " (auto-detected)"
    return column


def validate(
    adata,
    *,
    embedding: str | None = None,
    cell_type: str | None = None,
    counts_layer: str | None = None,
) -> tuple[ValidationReport, dict]:
    """Check an AnnData; return the report and the resolved pieces (embedding array, column, ...)."""
    report = ValidationReport()
    resolved: dict[str, Any] = {}
    n_cells, n_genes = adata.shape
    report.facts["cells"] = n_cells
    report.facts["genes"] = n_genes
    if n_cells == 0:
        report.add("error", "cells", "the dataset has 0 cells", fix="check the filtering that produced the file")
        return report, resolved
    if not adata.obs_names.is_unique:
        n = int(adata.obs_names.duplicated().sum())
        report.add("error", "cells", f"{n} duplicated cell names", fix="call adata.obs_names_make_unique() and save again")
    if n_genes and not adata.var_names.is_unique:
        n = int(adata.var_names.duplicated().sum())
        report.add("error", "genes", f"{n} duplicated gene names", fix="call adata.var_names_make_unique() and save again")

    if counts_layer is not None and counts_layer not in adata.layers:
        report.add("error", "counts", f"layer {counts_layer!r} not found",
                   fix=f"available layers: {', '.join(adata.layers.keys()) or 'none (use .X)'}")
        X, what = None, None
    elif counts_layer is None and "counts" in adata.layers:
        counts_layer = "counts"
    if counts_layer is not None and counts_layer in adata.layers:
        X, what = adata.layers[counts_layer], f".layers[{counts_layer!r}]"
    elif counts_layer is None:
        X, what = adata.X, ".X"
    resolved["counts_layer"] = counts_layer
    if n_genes:
        resolved["counts_kind"] = classify_counts(X, report, what=what) if what else None
        gene_report = detect_gene_ids(adata.var_names)
        resolved["gene_ids"] = gene_report
        report.facts["gene identifiers"] = gene_report.describe()
        if gene_report.kind == "unknown":
            report.add("warning", "genes", gene_report.describe(),
                       fix="use gene symbols, Ensembl or Entrez IDs as var_names for concept annotation")
    else:
        resolved["counts_kind"] = None

    if embedding is not None:
        if embedding not in adata.obsm:
            keys = list(adata.obsm.keys())
            report.add("error", "embedding", f"embedding key {embedding!r} not found in .obsm",
                       fix=(f"choose one of: {', '.join(keys)}" if keys else
                            "this file has no embeddings; fit the built-in model with `featurelens fit-model`"))
        else:
            resolved["embedding"] = check_embedding(np.asarray(adata.obsm[embedding]), key=embedding,
                                                     n_cells=n_cells, report=report)
    obs = adata.obs.copy()
    resolved["cell_type"] = _check_cell_type(obs, cell_type, report, explicit=cell_type is not None)
    resolved["obs"] = obs
    return report, resolved


# --------------------------------------------------------------------------- entry point

def load_dataset(
    path: str | os.PathLike,
    *,
    embedding: str | None = None,
    cell_type: str | None = None,
    counts_layer: str | None = None,
    obs: str | os.PathLike | None = None,
) -> Dataset:
    """Load ``path`` (.h5ad, or an embedding .npy/.csv/.pt with optional ``obs`` metadata CSV).

    For an .h5ad, ``embedding`` is an ``.obsm`` key (None: do not load one). For an embedding
    file, the file itself is the embedding; cells are aligned to ``obs`` by name when both
    carry names. Raises InputError on any error in the validation report. With
    ``FEATURELENS_CONFINE=1`` both paths must lie inside the configured folders.
    """
    path = user_path(path)
    obs = None if obs is None else user_path(obs)
    suffix = path.suffix.lower()
    if suffix == ".h5ad":
        adata = read_anndata(path)
        report, res = validate(adata, embedding=embedding, cell_type=cell_type, counts_layer=counts_layer)
        report.raise_if_errors()
        source = {"path": str(path.resolve()), "sha256": file_sha256(path), "format": "h5ad",
                  "embedding": embedding, "cell_type": res["cell_type"], "counts_layer": res["counts_layer"],
                  "n_cells": int(adata.n_obs), "n_genes": int(adata.n_vars)}
        return Dataset(obs=res["obs"], embedding=res.get("embedding"), embedding_key=embedding,
                       cell_type=res["cell_type"], adata=adata, counts_kind=res["counts_kind"],
                       gene_ids=res.get("gene_ids"), source=source, report=report)
    if suffix in EMBEDDING_SUFFIXES:
        return _load_embedding_dataset(path, cell_type=cell_type, obs=obs)
    raise InputError(
        f"unsupported file type {suffix or '(none)'!r} for {path.name}",
        fix="use an AnnData .h5ad, or an embedding as .npy, .csv or .pt (with --obs metadata.csv)",
    )


def _load_embedding_dataset(path: Path, *, cell_type: str | None, obs: str | os.PathLike | None) -> Dataset:
    arr, names = read_embedding_file(path)
    report = ValidationReport()
    if obs is not None:
        obs_path = Path(obs)
        check_file(obs_path)
        try:
            meta = pd.read_csv(obs_path, index_col=0)
        except Exception as exc:
            raise InputError(f"{obs_path.name} could not be parsed as CSV: {exc}") from None
        meta.index = meta.index.astype(str)
        if names is not None:
            arr = align_embedding(arr, names, meta.index, emb_name=path.name, obs_name=obs_path.name)
    else:
        n = arr.shape[0] if arr.ndim >= 1 else 0
        meta = pd.DataFrame(index=names if names is not None else pd.Index([f"cell_{i}" for i in range(n)]))
    if not meta.index.is_unique:
        report.add("error", "cells", f"{int(meta.index.duplicated().sum())} duplicated cell names in the metadata")
    report.facts["cells"] = len(meta)
    emb = check_embedding(arr, key=path.name, n_cells=len(meta), report=report)
    ct = _check_cell_type(meta, cell_type, report, explicit=cell_type is not None)
    report.raise_if_errors()
    source = {"path": str(path.resolve()), "sha256": file_sha256(path), "format": path.suffix.lower().lstrip("."),
              "embedding": path.name, "cell_type": ct, "n_cells": len(meta), "n_genes": 0,
              "obs": str(Path(obs).resolve()) if obs is not None else None}
    return Dataset(obs=meta, embedding=emb, embedding_key=path.name, cell_type=ct, source=source, report=report)


def align_embedding(arr: np.ndarray, names: pd.Index, cells: pd.Index, *, emb_name: str, obs_name: str) -> np.ndarray:
    """Reorder embedding rows (named ``names``) to the metadata's cell order."""
    if not names.is_unique:
        raise InputError(f"{emb_name} has duplicated cell names")
    missing = cells.difference(names)
    if len(missing):
        raise InputError(
            f"{len(missing)} of {len(cells)} cells in {obs_name} have no row in {emb_name} (e.g. {missing[0]!r})",
            fix="the embedding and the metadata must name the same cells",
        )
    extra = names.difference(cells)
    if len(extra):
        raise InputError(
            f"{len(extra)} cells in {emb_name} are not in {obs_name} (e.g. {extra[0]!r})",
            fix="the embedding and the metadata must name the same cells",
        )
    return arr[names.get_indexer(cells)]
