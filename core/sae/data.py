"""Turn what a caller hands the SAE engine into a validated float32 matrix (cells × dims)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from core.base.errors import InputError

__all__ = ["as_matrix", "check_trainable", "constant_dimensions", "resolve_device"]

#: A dimension is constant when its range is at most this fraction of its largest |value|
#: (float32 rounding of a constant column stays far below it).
CONSTANT_RTOL = 1e-6


def as_matrix(data: Any, *, what: str = "SAE input") -> np.ndarray:
    """A C-contiguous float32 (n_cells, d) array from an array, tensor, DataFrame or an
    iterable of such chunks (concatenated along cells). Raises InputError for an empty,
    non-2-D or non-finite input, naming how many cells are affected."""
    arr = _to_numpy(data, what=what)
    if arr.ndim != 2:
        raise InputError(f"{what} must be a 2-D matrix (cells × dimensions); got shape {arr.shape}",
                         fix="pass the embedding as an array of shape (n_cells, n_dims)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{what} is empty (shape {arr.shape})", fix="check that the embedding has cells and dimensions")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{what} must be numeric (got dtype {arr.dtype})")
    with np.errstate(over="ignore"):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr)
    if not finite.all():
        bad_cells = int((~finite.all(axis=1)).sum())
        kinds = []
        if np.isnan(arr).any():
            kinds.append("NaN")
        if np.isinf(arr).any():
            kinds.append("infinite (or beyond float32 range)")
        raise InputError(
            f"{what} has {' and '.join(kinds)} values in {bad_cells} of {arr.shape[0]} cells",
            fix="remove or impute those cells before training (e.g. adata = adata[np.isfinite(emb).all(1)])",
        )
    return arr


def constant_dimensions(x: np.ndarray) -> np.ndarray:
    """Indices of the columns of ``x`` (n_cells, d) that do not vary across cells: range ≤
    :data:`CONSTANT_RTOL` × the column's largest |value| (an all-zero column is constant)."""
    x = np.asarray(x)
    if x.shape[0] == 0:
        return np.arange(x.shape[1])
    lo, hi = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
    scale = np.maximum(np.abs(lo), np.abs(hi))
    return np.flatnonzero(hi - lo <= CONSTANT_RTOL * scale)


def _ranges(idx) -> str:
    """``0, 2–9, 12``: sorted indices written as runs."""
    runs: list[list[int]] = []
    for i in map(int, idx):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in runs)


def check_trainable(data: Any, *, what: str = "SAE input") -> np.ndarray:
    """``as_matrix(data)``, refused (InputError) unless at least 2 of its dimensions vary
    across cells: a constant or zero-variance embedding (or one with a single varying
    dimension) trains into an SAE of dead latents with an undefined FVU."""
    x = as_matrix(data, what=what)
    const = constant_dimensions(x)
    d, n_var = x.shape[1], x.shape[1] - len(const)
    if n_var >= 2:
        return x
    if n_var == 0:
        head = (f"{what} is constant: none of its {d} dimensions varies across cells (all zero or zero-variance)"
                if d > 1 else f"{what} has a single dimension and it is constant")
    elif not const.size:
        head = f"{what} has only 1 dimension"
    else:
        head = (f"{what} has 1 non-constant dimension of {d} (dimension{'s' if len(const) > 1 else ''} "
                f"{_ranges(const)} {'are' if len(const) > 1 else 'is'} constant)")
    raise InputError(f"{head}: an SAE needs at least 2 dimensions that vary across cells",
                     fix="check that the .obsm key is the embedding (`featurelens validate DATA` lists the keys), "
                         "or fit the built-in model on the counts (`featurelens fit-model DATA`) and train on its "
                         "embedding")


def _to_numpy(data: Any, *, what: str) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().numpy()
    if hasattr(data, "to_numpy") and hasattr(data, "shape"):  # pandas
        return np.asarray(data.to_numpy())
    if hasattr(data, "toarray"):  # scipy sparse
        return np.asarray(data.toarray())
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise InputError(f"{what} must be an array, a tensor or an iterable of them (got {type(data).__name__})")
    chunks = [_to_numpy(chunk, what=what) for chunk in data]
    if not chunks:
        raise InputError(f"{what} is empty (the iterator yielded no chunks)")
    if any(c.ndim != 2 for c in chunks) or len({c.shape[1] for c in chunks}) != 1:
        raise InputError(f"{what} chunks must all be 2-D with the same number of columns "
                         f"(got shapes {[c.shape for c in chunks[:5]]})")
    return np.concatenate(chunks, axis=0)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"``: the GPU when CUDA is available, else the CPU. Raises InputError when the
    requested device is not available."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but no CUDA GPU is available",
                             fix="use --device cpu (or auto)")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} does not exist ({torch.cuda.device_count()} GPUs)",
                             fix="use --device cuda:0 or auto")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device 'mps' requested but Apple MPS is not available", fix="use --device cpu (or auto)")
    return torch.device(device)
