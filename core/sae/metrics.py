"""Metrics of a trained SAE on any data (paper A.1.5 and common SAE practice).

- reconstruction: MSE (mean over cells × dims, raw units) and fraction of variance
  unexplained, FVU = Σ‖x − x̂‖² / Σ‖x − mean(x)‖²;
- L0: mean number of latents firing (activation > 0) per cell;
- live / dead: live = fired on at least one cell;
- redundant: a latent whose activations have Pearson correlation > threshold (0.9) with
  another latent's, across cells;
- the histogram of log10 activation frequencies of live latents (the feature density);
- SAEBench's reconstruction and shrinkage metrics, in the raw input space
  (:func:`reconstruction_quality`): explained variance (1 − FVU), the mean cosine of x and x̂,
  the mean norm ratio ‖x̂‖/‖x‖ and the relative reconstruction bias E‖x̂‖² / E[x·x̂];
- decoder geometry: each live latent's largest |cosine| with another live latent's decoder
  direction (:func:`max_decoder_cosines`).

:func:`activation_metrics` works on any activation matrix (sparse or dense);
:func:`sae_metrics` encodes data with an SAE and adds reconstruction and decoder norms.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.sae.data import as_matrix
from core.sae.models import SparseAutoencoder
from core.sae.encode import encode_activations

__all__ = [
    "reconstruction_metrics",
    "reconstruction_quality",
    "max_decoder_cosines",
    "activation_stats",
    "activation_metrics",
    "redundant_latents",
    "frequency_histogram",
    "sae_metrics",
    "FEATURE_COLUMNS",
]

FEATURE_COLUMNS = (
    "feature", "live", "n_cells", "frequency", "mean_activation", "mean_active", "max_activation",
    "decoder_norm", "max_decoder_cosine", "max_corr", "redundant", "redundant_with",
)


def reconstruction_metrics(x: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    """``{"mse", "fvu"}`` of reconstructions ``x_hat`` of ``x``, both (n_cells, d)."""
    x = np.asarray(x, dtype=np.float64)
    err = np.asarray(x_hat, dtype=np.float64) - x
    sse = float(np.square(err).sum())
    total = float(np.square(x - x.mean(axis=0)).sum())
    return {"mse": sse / x.size, "fvu": sse / total if total > 0 else float("nan")}


def reconstruction_quality(x: np.ndarray, x_hat: np.ndarray) -> dict[str, float]:
    """SAEBench's reconstruction and shrinkage metrics of ``x_hat`` for ``x``, both (n_cells, d), raw space.

    ``explained_variance`` = 1 − FVU = 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖² (pooled over cells);
    ``cossim``: mean over cells of cos(x, x̂); ``l2_ratio``: mean over cells of ‖x̂‖ / ‖x‖
    (cells with a zero vector are left out of both); ``relative_reconstruction_bias``:
    E‖x̂‖² / E[x·x̂] (1 = unbiased, < 1 = shrunk; Rajamanoharan et al. 2024, eq. 10)."""
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.asarray(x_hat, dtype=np.float64)
    fvu = reconstruction_metrics(x, x_hat)["fvu"]
    nx, nh = np.linalg.norm(x, axis=1), np.linalg.norm(x_hat, axis=1)
    dot = (x * x_hat).sum(axis=1)
    both, some = (nx > 0) & (nh > 0), nx > 0
    mean_dot = float(dot.mean()) if dot.size else float("nan")
    return {
        "explained_variance": 1.0 - fvu,
        "cossim": float((dot[both] / (nx[both] * nh[both])).mean()) if both.any() else float("nan"),
        "l2_ratio": float((nh[some] / nx[some]).mean()) if some.any() else float("nan"),
        "relative_reconstruction_bias": float(np.square(nh).mean()) / mean_dot if mean_dot > 0 else float("nan"),
    }


def max_decoder_cosines(w_dec: np.ndarray, live: np.ndarray, *, block: int = 1024) -> np.ndarray:
    """Each live latent's largest |cosine| between its decoder direction and another live latent's.

    ``w_dec``: (d, hidden) decoder columns; ``live``: (hidden,) bool. Returns (hidden,) float64,
    NaN for dead latents, zero-norm columns, or when fewer than two latents qualify. Computed in
    blocks of ``block`` latents (memory O(hidden × block))."""
    w = np.asarray(w_dec, dtype=np.float64)
    norms = np.linalg.norm(w, axis=0)
    cols = np.flatnonzero(np.asarray(live, dtype=bool) & (norms > 0))
    out = np.full(w.shape[1], np.nan)
    if cols.size < 2:
        return out
    unit = (w[:, cols] / norms[cols]).astype(np.float32)                 # (d, k)
    for j0 in range(0, cols.size, block):
        j1 = min(j0 + block, cols.size)
        cos = np.abs(unit.T @ unit[:, j0:j1])                            # (k, j1 - j0)
        cos[np.arange(j0, j1), np.arange(j1 - j0)] = -1.0                # not with itself
        out[cols[j0:j1]] = np.minimum(cos.max(axis=0), 1.0)
    return out


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
    val_index: np.ndarray | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics of ``sae`` on ``data`` (n_cells, d_in): ``(metrics, features)``.

    ``metrics``: :func:`activation_metrics` plus ``mse`` and ``fvu`` (raw units), ``d_in``, the
    :func:`reconstruction_quality` keys and ``max_decoder_cosine`` (the largest over live
    latents) with ``median_max_decoder_cosine``; with ``val_index`` (the held-out cells),
    ``validation`` holds ``n_cells``, ``mse``, ``fvu`` and the quality keys on those cells.
    ``features``: one row per feature with :data:`FEATURE_COLUMNS` (``decoder_norm`` is the
    norm of the decoder column in the SAE's normalised space). Pass ``activations`` (from
    :func:`~core.sae.encode.encode_activations`) to avoid encoding twice."""
    import torch


    x = as_matrix(data)
    acts = activations if activations is not None else encode_activations(sae, x)
    summary, table = activation_metrics(acts, redundancy_threshold=redundancy_threshold)
    with torch.no_grad():
        w_dec = sae.W_dec.detach().cpu().double().numpy()                  # (d, h)
        b_dec = sae.b_dec.detach().cpu().double().numpy()
        mean = sae.input_mean.detach().cpu().double().numpy()
        scale = float(sae.input_scale)
    x_hat = (np.asarray(sp.csr_matrix(acts, dtype=np.float64) @ w_dec.T) + b_dec) * scale + mean
    dec_cos = max_decoder_cosines(w_dec, table["live"].to_numpy())
    finite = dec_cos[np.isfinite(dec_cos)]
    summary = {"d_in": sae.d_in, **reconstruction_metrics(x, x_hat), **reconstruction_quality(x, x_hat),
               "max_decoder_cosine": float(finite.max()) if finite.size else None,
               "median_max_decoder_cosine": float(np.median(finite)) if finite.size else None, **summary}
    if val_index is not None and len(val_index):
        v = np.asarray(val_index)
        summary["validation"] = {"n_cells": int(v.size), **reconstruction_metrics(x[v], x_hat[v]),
                                 **reconstruction_quality(x[v], x_hat[v])}
    table.insert(table.columns.get_loc("max_corr"), "decoder_norm", np.linalg.norm(w_dec, axis=0))
    table.insert(table.columns.get_loc("max_corr"), "max_decoder_cosine", dec_cos)
    return summary, table[list(FEATURE_COLUMNS)]
