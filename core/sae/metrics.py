"""Metrics of a trained SAE on any data (paper A.1.5 and common SAE practice).

- reconstruction: MSE (mean over cells × dims, raw units) and fraction of variance
  unexplained, FVU = Σ‖x − x̂‖² / Σ‖x − mean(x)‖²;
- L0: mean number of latents firing (activation > 0) per cell;
- live / dead: live = fired on at least one cell;
- redundant: a latent whose activations have Pearson correlation > threshold (0.9) with
  another latent's, across cells;
- the histogram of log10 activation frequencies of live latents.

:func:`activation_metrics` works on any activation matrix (sparse or dense);
:func:`sae_metrics` encodes data with an SAE and adds reconstruction and decoder norms.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .data import as_matrix
from .models import SparseAutoencoder

__all__ = [
    "reconstruction_metrics",
    "activation_stats",
    "activation_metrics",
    "redundant_latents",
    "frequency_histogram",
    "sae_metrics",
    "FEATURE_COLUMNS",
]

FEATURE_COLUMNS = (
    "feature", "live", "n_cells", "frequency", "mean_activation", "mean_active", "max_activation",
    "decoder_norm", "max_corr", "redundant", "redundant_with",
)


def reconstruction_metrics(x: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    """``{"mse", "fvu"}`` of reconstructions ``x_hat`` of ``x``, both (n_cells, d)."""
    x = np.asarray(x, dtype=np.float64)
    err = np.asarray(x_hat, dtype=np.float64) - x
    sse = float(np.square(err).sum())
    total = float(np.square(x - x.mean(axis=0)).sum())
    return {"mse": sse / x.size, "fvu": sse / total if total > 0 else float("nan")}


def _csr(acts: Any) -> sp.csr_matrix:
    if sp.issparse(acts):
        m = sp.csr_matrix(acts, dtype=np.float64)
    else:
        m = sp.csr_matrix(np.asarray(acts, dtype=np.float64))
    m.eliminate_zeros()
    return m


def activation_stats(acts: Any) -> pd.DataFrame:
    """One row per latent of an activation matrix (n_cells, hidden): ``n_cells`` firing (> 0),
    ``frequency`` (their fraction), ``live``, ``mean_activation`` (over all cells),
    ``mean_active`` (over firing cells; NaN when dead) and ``max_activation``."""
    m = _csr(acts)
    n, h = m.shape
    fired = np.asarray((m > 0).sum(axis=0)).ravel().astype(np.int64)
    total = np.asarray(m.sum(axis=0)).ravel()
    maxima = np.asarray(m.max(axis=0).toarray()).ravel() if m.nnz else np.zeros(h)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_active = np.where(fired > 0, total / np.maximum(fired, 1), np.nan)
    return pd.DataFrame({
        "feature": np.arange(h, dtype=np.int64),
        "live": fired > 0,
        "n_cells": fired,
        "frequency": fired / n,
        "mean_activation": total / n,
        "mean_active": mean_active,
        "max_activation": maxima,
    })


def redundant_latents(acts: Any, *, threshold: float = 0.9, block: int = 1024, method: str = "auto") -> pd.DataFrame:
    """Pearson correlation of every latent with every other one, across cells.

    Returns one row per latent: ``max_corr`` (its highest correlation with another latent;
    NaN for latents with zero variance, e.g. dead ones), ``redundant_with`` (that latent, −1
    if none) and ``redundant`` (``max_corr > threshold``). The Gram matrix comes from a sparse
    product in blocks of ``block`` latents (``method="sparse"``, memory O(hidden × block)) or
    from float32 matmuls over chunks of cells (``"dense"``, memory O(hidden²)); ``"auto"``
    picks the cheaper one (sparse for typical SAEs, whose L0 is a small fraction of hidden)."""
    if method not in ("auto", "sparse", "dense"):
        raise ValueError(f"method must be auto, sparse or dense (got {method!r})")
    m = _csr(acts)
    n, h = m.shape
    mean = np.asarray(m.sum(axis=0)).ravel() / n
    sq = np.asarray(m.multiply(m).sum(axis=0)).ravel() / n
    var = np.maximum(sq - mean**2, 0.0)
    std = np.sqrt(var)
    ok = std > 1e-12 * np.maximum(1.0, np.abs(mean))
    max_corr = np.full(h, np.nan)
    partner = np.full(h, -1, dtype=np.int64)
    cols = np.flatnonzero(ok)
    if cols.size >= 2:
        sub = m[:, cols]
        mu, sd = mean[cols], std[cols]
        for j0, j1, gram in _gram_blocks(sub, block=block, method=method):                # gram: (k, j1 - j0) E[a_i a_j]
            corr = (gram - np.outer(mu, mu[j0:j1])) / np.outer(sd, sd[j0:j1])
            corr[np.arange(j0, j1), np.arange(j1 - j0)] = -np.inf      # not with itself
            best = corr.argmax(axis=0)
            max_corr[cols[j0:j1]] = corr[best, np.arange(j1 - j0)]
            partner[cols[j0:j1]] = cols[best]
    return pd.DataFrame({
        "max_corr": max_corr,
        "redundant_with": np.where(max_corr > threshold, partner, -1),
        "redundant": max_corr > threshold,
    })


def _gram_blocks(m: sp.csr_matrix, *, block: int, method: str):
    """Yield ``(j0, j1, G[:, j0:j1] / n)`` of the Gram matrix ``G = mᵀ m`` (k × k)."""
    n, k = m.shape
    row_nnz = np.diff(m.indptr).astype(np.float64)
    sparse_cost = float((row_nnz**2).sum()) / 1e8      # ~1e8 multiply-adds/s in scipy
    dense_cost = 2.0 * n * k * k / 2e10                 # ~2e10 flop/s in torch on a few cores
    if method == "sparse" or (method == "auto" and sparse_cost <= max(dense_cost, 1.0)):
        csc = m.tocsc()
        m_t = csc.T.tocsr()
        for j0 in range(0, k, block):
            j1 = min(j0 + block, k)
            yield j0, j1, (m_t @ csc[:, j0:j1]).toarray() / n
        return
    import torch

    gram = torch.zeros(k, k, dtype=torch.float64)
    for r0 in range(0, n, 4096):
        a = torch.from_numpy(m[r0:r0 + 4096].toarray().astype(np.float32))
        gram += (a.T @ a).double()
    gram = (gram / n).numpy()
    for j0 in range(0, k, block):
        j1 = min(j0 + block, k)
        yield j0, j1, gram[:, j0:j1]


def frequency_histogram(frequency: np.ndarray, *, n_cells: int, bins_per_decade: int = 4) -> dict[str, Any]:
    """Histogram of log10 firing frequency of live latents: ``{"log10_edges", "counts", "dead"}``.
    Edges run from ``log10(1 / n_cells)`` (rounded down) to 0."""
    frequency = np.asarray(frequency, dtype=np.float64)
    live = frequency > 0
    low = np.floor(np.log10(1.0 / max(n_cells, 1)) * bins_per_decade) / bins_per_decade
    edges = np.linspace(low, 0.0, int(round(-low * bins_per_decade)) + 1) if low < 0 else np.array([-1.0, 0.0])
    counts, _ = np.histogram(np.log10(frequency[live]), bins=edges)
    return {"log10_edges": [round(float(e), 4) for e in edges], "counts": counts.astype(int).tolist(),
            "dead": int((~live).sum())}


def activation_metrics(acts: Any, *, redundancy_threshold: float = 0.9) -> tuple[dict[str, Any], pd.DataFrame]:
    """Summary and per-latent table of any activation matrix (n_cells, hidden).

    Summary: ``n_cells``, ``hidden``, ``l0``, ``live``, ``dead``, ``dead_fraction``,
    ``redundant``, ``redundancy_threshold``, ``frequency_histogram``."""
    m = _csr(acts)
    n, h = m.shape
    table = activation_stats(m)
    red = redundant_latents(m, threshold=redundancy_threshold)
    table = pd.concat([table, red], axis=1)
    live = int(table["live"].sum())
    summary = {
        "n_cells": n,
        "hidden": h,
        "l0": float(m.nnz / n) if n else 0.0,
        "live": live,
        "dead": h - live,
        "dead_fraction": (h - live) / h if h else 0.0,
        "redundant": int(table["redundant"].sum()),
        "redundancy_threshold": redundancy_threshold,
        "frequency_histogram": frequency_histogram(table["frequency"].to_numpy(), n_cells=n),
    }
    return summary, table


def sae_metrics(
    sae: SparseAutoencoder,
    data: Any,
    *,
    activations: sp.spmatrix | None = None,
    redundancy_threshold: float = 0.9,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics of ``sae`` on ``data`` (n_cells, d_in): ``(metrics, features)``.

    ``metrics``: :func:`activation_metrics` plus ``mse`` and ``fvu`` (raw units), ``d_in``.
    ``features``: one row per feature with :data:`FEATURE_COLUMNS` (``decoder_norm`` is the
    norm of the decoder column in the SAE's normalised space). Pass ``activations`` (from
    :func:`~core.sae.encode.encode_activations`) to avoid encoding twice."""
    import torch

    from .encode import encode_activations

    x = as_matrix(data)
    acts = activations if activations is not None else encode_activations(sae, x)
    summary, table = activation_metrics(acts, redundancy_threshold=redundancy_threshold)
    with torch.no_grad():
        w_dec = sae.W_dec.detach().cpu().double().numpy()                  # (d, h)
        b_dec = sae.b_dec.detach().cpu().double().numpy()
        mean = sae.input_mean.detach().cpu().double().numpy()
        scale = float(sae.input_scale)
    xn_hat = np.asarray(sp.csr_matrix(acts, dtype=np.float64) @ w_dec.T) + b_dec
    summary = {"d_in": sae.d_in, **reconstruction_metrics(x, xn_hat * scale + mean), **summary}
    table.insert(table.columns.get_loc("max_corr"), "decoder_norm", np.linalg.norm(w_dec, axis=0))
    return summary, table[list(FEATURE_COLUMNS)]
