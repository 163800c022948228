"""External embeddings: pick an ``.obsm`` key, or attach one from a file to an AnnData's cells by name.

Files: ``.npy`` (no names: give ``cell_names`` or rows must be in the AnnData's order), ``.csv``
(cell names in the first column), ``.pt`` (a tensor, or ``{"embedding": tensor, "cell_names":
[...]}``; loaded with ``weights_only=True``). Rows are aligned to ``adata.obs_names``; any
missing or extra cell is an InputError naming one example.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from core.base.errors import InputError
from core.data.load import align_embedding, check_embedding, read_embedding_file, ValidationReport

__all__ = ["list_embeddings", "get_embedding", "attach_embedding", "read_embedding"]


def list_embeddings(adata) -> list[str]:
    """``.obsm`` keys that hold a numeric 2-D matrix with one row per cell."""
    keys = []
    for key in adata.obsm.keys():
        arr = adata.obsm[key]
        shape = getattr(arr, "shape", ())
        dtype = getattr(arr, "dtype", None)
        if len(shape) == 2 and shape[0] == adata.n_obs and shape[1] > 0 and dtype is not None \
                and np.issubdtype(dtype, np.number):
            keys.append(str(key))
    return keys


def get_embedding(adata, key: str) -> np.ndarray:
    """The embedding ``adata.obsm[key]`` as float32, validated (2-D, one row per cell, finite)."""

    if key not in adata.obsm:
        keys = list_embeddings(adata)
        raise InputError(f"embedding key {key!r} not found in .obsm",
                         fix=(f"choose one of: {', '.join(keys)}" if keys else
                              "this file has no embeddings; fit the built-in model with `featurelens fit-model`"))
    arr = adata.obsm[key]
    if hasattr(arr, "toarray"):
        arr = arr.toarray()
    report = ValidationReport()
    out = check_embedding(np.asarray(arr), key=key, n_cells=adata.n_obs, report=report)
    report.raise_if_errors()
    return out


def read_embedding(path: str | os.PathLike, *, cell_names: Sequence[str] | str | os.PathLike | None = None
                   ) -> tuple[np.ndarray, pd.Index | None]:
    """Read an embedding file; ``cell_names``: names for a file without them (a list, or a text file, one per line)."""

    path = Path(path)
    arr, names = read_embedding_file(path)
    if cell_names is not None:
        if isinstance(cell_names, (str, os.PathLike)):
            names_path = Path(cell_names)
            if not names_path.is_file():
                raise InputError(f"cell-name file {names_path} does not exist")
            given = pd.Index([ln.strip() for ln in names_path.read_text().splitlines() if ln.strip()])
        else:
            given = pd.Index([str(n) for n in cell_names])
        if names is not None and not given.equals(names):
            raise InputError(f"{path.name} names its cells itself; cell_names given as well disagree with them",
                             fix="drop the separate cell names")
        names = given
    arr = np.asarray(arr)
    if names is not None and arr.ndim >= 1 and len(names) != arr.shape[0]:
        raise InputError(f"{len(names)} cell names for {arr.shape[0]} rows in {path.name}",
                         fix="give exactly one name per row")
    return arr, names


def attach_embedding(adata, path: str | os.PathLike, *, key: str,
                     cell_names: Sequence[str] | str | os.PathLike | None = None,
                     overwrite: bool = False) -> np.ndarray:
    """Read the embedding at ``path``, align its rows to ``adata``'s cells and store it in ``adata.obsm[key]``.

    Without cell names (a plain .npy) the rows must already be in ``adata``'s order and count.
    Returns the aligned float32 array. Refuses to replace an existing key unless ``overwrite``.
    """

    if not key or not isinstance(key, str):
        raise InputError("the embedding needs a non-empty .obsm key name", fix="e.g. key='X_scvi'")
    if key in adata.obsm and not overwrite:
        raise InputError(f".obsm[{key!r}] already exists", fix="choose another key or pass overwrite=True")
    path = Path(path)
    arr, names = read_embedding(path, cell_names=cell_names)
    if arr.ndim != 2:
        raise InputError(f"{path.name} holds shape {arr.shape}; an embedding is 2-D (cells × dimensions)")
    cells = pd.Index(adata.obs_names.astype(str))
    if names is not None:
        arr = align_embedding(arr, pd.Index(names.astype(str)), cells, emb_name=path.name, obs_name="the AnnData")
    elif arr.shape[0] != len(cells):
        raise InputError(
            f"{path.name} has {arr.shape[0]} rows but the AnnData has {len(cells)} cells, and the file names no cells",
            fix="save the embedding with cell names (CSV with names in the first column, or a .pt dict with "
                "'cell_names'), or pass cell_names=",
        )
    report = ValidationReport()
    out = check_embedding(arr, key=path.name, n_cells=len(cells), report=report)
    report.raise_if_errors()
    adata.obsm[key] = out
    return out
