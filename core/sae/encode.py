"""Batched inference: latents of every cell as a sparse matrix, reconstructions, and the
sums that reconstruction metrics need — all without holding a dense cells × hidden matrix."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch

from core.base.progress import Cancelled
from core.sae.data import as_matrix
from core.sae.models import SparseAutoencoder
from core.base.errors import InputError

__all__ = ["encode_activations", "reconstruct", "iter_encoded", "DEFAULT_BATCH"]

DEFAULT_BATCH = 4096


def _device_of(sae: SparseAutoencoder) -> torch.device:
    return sae.W_enc.device


def iter_encoded(sae: SparseAutoencoder, x: np.ndarray | torch.Tensor, *, batch_size: int = DEFAULT_BATCH,
                 normalized: bool = False) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(start, xn, z, xn_hat)`` per batch in inference mode: normalised input
    (b, d_in), latents (b, hidden) and normalised reconstruction (b, d_in) on the SAE's device.
    ``normalized=True``: ``x`` is already normalised."""
    device = _device_of(sae)
    was_training = sae.training
    sae.eval()
    try:
        with torch.inference_mode():
            for start in range(0, x.shape[0], batch_size):
                xb = torch.as_tensor(x[start:start + batch_size]).to(device, torch.float32)
                xn = xb if normalized else sae.normalize(xb)
                z = sae.activate(sae.pre_activation(xn))
                yield start, xn, z, sae.decode_normalized(z)
    finally:
        sae.train(was_training)


def encode_activations(
    sae: SparseAutoencoder,
    data: Any,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[float, float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> sp.csr_matrix:
    """SAE activations of all cells: scipy CSR float32 (n_cells, hidden), zeros not stored.

    Encodes ``batch_size`` cells at a time on the SAE's device. Raises
    :class:`~core.base.progress.Cancelled` when ``should_stop()`` returns True."""
    x = as_matrix(data)
    _check_width(sae, x)
    n = x.shape[0]
    indptr = [np.zeros(1, dtype=np.int64)]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    offset = 0
    last = 0.0
    for start, _, z, _ in iter_encoded(sae, x, batch_size=batch_size):
        if should_stop is not None and should_stop():
            raise Cancelled("encoding cancelled")
        rows, cols = torch.nonzero(z, as_tuple=True)
        counts = torch.bincount(rows, minlength=z.shape[0]).cpu().numpy()
        indptr.append(offset + np.cumsum(counts))
        offset += int(counts.sum())
        indices.append(cols.cpu().numpy().astype(np.int32, copy=False))
        values.append(z[rows, cols].cpu().numpy().astype(np.float32, copy=False))
        now = time.monotonic()
        if progress is not None and (now - last > 0.2 or start + z.shape[0] >= n):
            last = now
            progress(start + z.shape[0], n, "encoding cells")
    return sp.csr_matrix(
        (np.concatenate(values) if values else np.zeros(0, np.float32),
         np.concatenate(indices) if indices else np.zeros(0, np.int32),
         np.concatenate(indptr)),
        shape=(n, sae.hidden),
    )


def reconstruct(sae: SparseAutoencoder, data: Any, *, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """SAE reconstructions (n_cells, d_in) in raw input units, float32."""
    x = as_matrix(data)
    _check_width(sae, x)
    out = np.empty_like(x)
    for start, _, _, xn_hat in iter_encoded(sae, x, batch_size=batch_size):
        out[start:start + xn_hat.shape[0]] = sae.denormalize(xn_hat).cpu().numpy()
    return out


def _check_width(sae: SparseAutoencoder, x: np.ndarray) -> None:
    if x.shape[1] != sae.d_in:
        raise InputError(
            f"the SAE expects {sae.d_in}-dimensional input but the data has {x.shape[1]} dimensions",
            fix="use the same embedding (.obsm key) the SAE was trained on",
        )
