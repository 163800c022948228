"""Which cells to steer: a selection spec -> cell indices.

Specs: ``"all"``; ``"cell_type=A,B"`` (the analysis's cell-type column; a value that is itself a
whole label containing commas is taken as one label); ``"COLUMN=v1,v2"`` for any other ``.obs``
column; ``"cells=name1,name2"`` (cell names); or a sequence: integer indices, a boolean mask, or
cell names.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.data.load import CELL_TYPE_CANDIDATES
from core.base.errors import InputError

__all__ = ["select_cells", "describe_selection", "SELECTION_HELP"]

SELECTION_HELP = '"all", "cell_type=A,B", "COLUMN=v1,v2" (any .obs column) or "cells=NAME1,NAME2"'


def _obs_of(source: Any) -> tuple[pd.DataFrame, str | None]:
    """(obs, cell-type column) of an obs DataFrame, a steering context or an analysis."""
    if isinstance(source, pd.DataFrame):
        col = next((c for c in CELL_TYPE_CANDIDATES if c in source.columns), None)
        return source, col
    if hasattr(source, "obs") and hasattr(source, "cell_type_column"):  # SteeringContext
        return source.obs, source.cell_type_column
    if hasattr(source, "config") and hasattr(source, "path"):  # Analysis: its data's obs, read without the matrix
        from core.data.load import read_anndata

        ds = source.config.get("dataset", {}) or {}
        if ds.get("format") != "h5ad" or not ds.get("path"):
            raise InputError("the analysis was made from an embedding file; select cells by index instead")
        adata = read_anndata(ds["path"], backed=True)
        try:
            obs = adata.obs.copy()
        finally:
            adata.file.close()
        obs.index = obs.index.astype(str)
        col = ds.get("cell_type")
        return obs, col if col in obs.columns else None
    raise InputError(f"cannot select cells from a {type(source).__name__}",
                     fix="pass an analysis, its steering context, or an obs DataFrame")


def select_cells(source: Any, spec: Any, *, cell_type_column: str | None = None) -> np.ndarray:
    """Indices (int64, in data order for text specs, as given for sequences) of the cells ``spec`` selects.

    ``source``: an :class:`~core.store.analysis.Analysis`, a steering context, or an ``obs`` DataFrame
    (index = cell names; ``cell_type_column`` or a detected column for ``cell_type=``).
    Raises InputError for an unknown cell type / column / cell name, an index out of range, or
    an empty selection.
    """
    obs, ct_col = _obs_of(source)
    ct_col = cell_type_column or ct_col
    n = len(obs)
    if isinstance(spec, str):
        idx = _from_text(obs, ct_col, spec.strip())
    elif spec is None:
        raise InputError("no cells selected", fix=f"give a selection: {SELECTION_HELP}")
    else:
        idx = _from_sequence(obs, spec)
    if idx.size == 0:
        raise InputError("the selection contains no cells", fix=f"choose other cells: {SELECTION_HELP}")
    if idx.min() < 0 or idx.max() >= n:
        bad = int(idx[(idx < 0) | (idx >= n)][0])
        raise InputError(f"cell index {bad} is out of range (the data has {n} cells, 0–{n - 1})")
    _, first = np.unique(idx, return_index=True)
    return idx[np.sort(first)].astype(np.int64)  # duplicates dropped, order kept


def _from_text(obs: pd.DataFrame, ct_col: str | None, spec: str) -> np.ndarray:
    if spec.lower() == "all":
        return np.arange(len(obs), dtype=np.int64)
    if "=" not in spec:
        raise InputError(f"cannot read the cell selection {spec!r}", fix=f"write it as {SELECTION_HELP}")
    key, _, value = spec.partition("=")
    key, value = key.strip(), value.strip()
    if not value:
        raise InputError(f"the cell selection {spec!r} names no values", fix=f"e.g. {key}=A,B")
    if key.lower() in ("cells", "cell", "names"):
        return _by_names(obs, [v.strip() for v in value.split(",") if v.strip()])
    if key.lower() in ("cell_type", "celltype", "type", "cell_types"):
        if ct_col is None:
            raise InputError("the analysis's data has no cell-type column, so cells cannot be chosen by type",
                             fix='select cells by name ("cells=...") or by another .obs column ("COLUMN=value")')
        column = ct_col
    elif key in obs.columns:
        column = key
    else:
        raise InputError(f"no .obs column {key!r} to select cells by",
                         fix=f"use cell_type=..., cells=..., or one of: {', '.join(map(str, obs.columns[:20]))}")
    labels = obs[column].astype(str).to_numpy()
    known = pd.unique(labels)
    wanted = [value] if value in set(known) else [v.strip() for v in value.split(",") if v.strip()]
    missing = [v for v in wanted if v not in set(known)]
    if missing:
        raise InputError(f"unknown {'cell type' if column == ct_col else column + ' value'} {missing[0]!r}",
                         fix=f"choose from: {', '.join(sorted(map(str, known))[:30])}")
    return np.flatnonzero(np.isin(labels, wanted)).astype(np.int64)


def _by_names(obs: pd.DataFrame, names) -> np.ndarray:
    names = [str(v) for v in names]
    index = pd.Index(obs.index.astype(str))
    pos = index.get_indexer(names) if index.is_unique else np.array([index.get_loc(v) if v in index else -1
                                                                     for v in names])
    if (pos < 0).any():
        missing = [v for v, p in zip(names, pos) if p < 0]
        raise InputError(f"{len(missing)} cell name(s) not found (e.g. {missing[0]!r})",
                         fix="use the cell names of the analysis's data (its .obs index)")
    return np.asarray(pos, dtype=np.int64)


def _from_sequence(obs: pd.DataFrame, spec) -> np.ndarray:
    arr = np.asarray(list(spec) if not isinstance(spec, np.ndarray) else spec)
    if arr.ndim != 1:
        raise InputError(f"a cell selection must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype == bool:
        if arr.size != len(obs):
            raise InputError(f"a boolean cell mask needs one value per cell ({len(obs)}), got {arr.size}")
        return np.flatnonzero(arr).astype(np.int64)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    if arr.dtype.kind in "US" or arr.dtype == object:
        return _by_names(obs, arr.tolist())
    raise InputError(f"cannot select cells with values of type {arr.dtype}",
                     fix="pass integer indices, a boolean mask or cell names")


def describe_selection(spec: Any, n: int) -> str:
    """A short text for the stored run: the spec itself, or "N cells (explicit list)"."""
    return spec.strip() if isinstance(spec, str) else f"{n} cells (explicit list)"
