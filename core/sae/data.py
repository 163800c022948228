"""Turn what a caller hands the SAE engine into a validated float32 matrix (cells × dims)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from ..errors import InputError

__all__ = ["as_matrix", "resolve_device"]


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
