"""Expression-space fidelity of an SAE: does the expression model still explain the counts when the
embedding is replaced by its SAE reconstruction? (The analogue of SAEBench's cross-entropy loss score.)

On held-out cells, the model's log-likelihood of the observed counts is computed with the decoder
applied to (a) the original embedding, (b) the SAE reconstruction x̂ and (c) the mean embedding put
in place of every cell (the analogue of zero-ablation). Then

    fidelity = (LL_reconstruction − LL_mean) / (LL_original − LL_mean)

1: the reconstruction explains the counts as well as the embedding; 0: no better than the mean.

:func:`expression_fidelity` works on arrays and a ``decode`` callable; :func:`analysis_fidelity`
gathers them from an analysis (its decoder, the held-out cells' counts, library sizes, batches).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from core.base.errors import InputError
from core.data.counts import count_rows
from core.model.decoders import BuiltinDecoder

__all__ = ["fidelity_score", "expression_fidelity", "nb_cell_log_likelihood", "analysis_fidelity",
           "model_log_likelihood", "MAX_FIDELITY_CELLS"]

MAX_FIDELITY_CELLS = 2000
THETA_FIT_CELLS = 500

Decode = Callable[[np.ndarray, np.ndarray], np.ndarray]   # (latent (m, d), rows (m,)) -> expected (m, genes)
CellLogLik = Callable[[Any, Any], Any]                     # (x, mu) tensors (m, genes) -> (m,) log p per cell


def fidelity_score(ll_original: float, ll_reconstruction: float, ll_mean: float) -> float | None:
    """(LL_reconstruction − LL_mean) / (LL_original − LL_mean); None when the embedding is no better
    than the mean (the score is then undefined)."""
    den = ll_original - ll_mean
    if not (math.isfinite(den) and den > 0 and math.isfinite(ll_reconstruction)):
        return None
    return (ll_reconstruction - ll_mean) / den


def nb_cell_log_likelihood(theta) -> CellLogLik:
    """Per-cell NB log-likelihood (with its −log x! term) for per-gene inverse dispersions ``theta`` (g,)."""
    import torch

    from core.model.nb import nb_log_prob

    th = torch.as_tensor(np.asarray(theta, dtype=np.float32))
    return lambda x, mu: nb_log_prob(x, mu, th).double().sum(1)


def _gaussian_cell_log_likelihood(log_var) -> CellLogLik:
    import torch

    from core.model.nb import gaussian_log_prob

    lv = torch.as_tensor(np.asarray(log_var, dtype=np.float32))
    return lambda x, mu: gaussian_log_prob(x, mu, lv).double().sum(1)


def _dense_rows(counts, start: int, stop: int) -> np.ndarray:
    part = counts[start:stop]
    return np.asarray(part.toarray() if sp.issparse(part) else part, dtype=np.float32)


def expression_fidelity(counts, *, original: np.ndarray, reconstruction: np.ndarray, decode: Decode,
                        log_likelihood: CellLogLik | None = None, baseline: np.ndarray | None = None,
                        chunk: int = 256) -> dict[str, Any]:
    """Log-likelihood of ``counts`` (n, genes; dense or sparse) given the decoder applied to three latents.

    ``original``, ``reconstruction``: (n, d) embeddings of the same cells; ``decode(latent, rows)``
    returns expected expression (m, genes) for rows ``rows`` (positions 0..n−1, for their library
    sizes and batches); ``log_likelihood(x, mu)`` returns per-cell log-likelihoods (m,) as torch
    tensors; None: NB with per-gene θ fitted by maximum likelihood to the counts given the original
    decoding (on up to 500 cells). ``baseline`` (d,): the latent put in place of every cell for the
    mean ablation (default: the mean of ``original``).

    Returns ``n_cells``, ``loglik_original``, ``loglik_reconstruction``, ``loglik_mean`` (per cell,
    nats) and ``fidelity`` (:func:`fidelity_score`), ``dispersion`` ("given" or "fitted").
    """
    import torch

    original = np.asarray(original, dtype=np.float32)
    reconstruction = np.asarray(reconstruction, dtype=np.float32)
    n = original.shape[0]
    if reconstruction.shape != original.shape:
        raise InputError(f"the reconstruction has shape {reconstruction.shape}; the embedding {original.shape}")
    if counts.shape[0] != n:
        raise InputError(f"{counts.shape[0]} cells of counts for {n} embedded cells")
    if n == 0:
        raise InputError("expression fidelity needs at least one held-out cell")
    base = original.mean(axis=0) if baseline is None else np.asarray(baseline, dtype=np.float32).reshape(-1)
    if base.shape != (original.shape[1],):
        raise InputError(f"the baseline has {base.size} dimensions; the embedding {original.shape[1]}")
    dispersion = "given"
    if log_likelihood is None:
        from core.model.nb import fit_nb_theta

        m = min(n, THETA_FIT_CELLS)
        rows = np.arange(m)
        x = torch.from_numpy(_dense_rows(counts, 0, m))
        mu = torch.from_numpy(np.asarray(decode(original[:m], rows), dtype=np.float32))
        log_likelihood = nb_cell_log_likelihood(fit_nb_theta(x, mu).numpy())
        dispersion = "fitted"
    sums = {"original": 0.0, "reconstruction": 0.0, "mean": 0.0}
    with torch.no_grad():
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            rows = np.arange(start, stop)
            x = torch.from_numpy(_dense_rows(counts, start, stop))
            latents = {"original": original[start:stop], "reconstruction": reconstruction[start:stop],
                       "mean": np.broadcast_to(base, (stop - start, base.size)).copy()}
            for name, z in latents.items():
                mu = torch.from_numpy(np.asarray(decode(z, rows), dtype=np.float32))
                sums[name] += float(log_likelihood(x, mu).sum())
    ll = {k: v / n for k, v in sums.items()}
    return {"n_cells": int(n), "loglik_original": ll["original"], "loglik_reconstruction": ll["reconstruction"],
            "loglik_mean": ll["mean"], "fidelity": fidelity_score(ll["original"], ll["reconstruction"], ll["mean"]),
            "dispersion": dispersion}


def model_log_likelihood(decoder) -> CellLogLik | None:
    """The built-in model's own likelihood (its θ or variances, in the data's gene order); None otherwise."""

    if not isinstance(decoder, BuiltinDecoder):
        return None
    param = decoder.fitted.model.log_gene_param.detach().cpu().numpy().astype(np.float64)
    if decoder._order is not None:
        param = param[decoder._order]
    if decoder.fitted.config.likelihood == "nb":
        return nb_cell_log_likelihood(np.clip(np.exp(param), 1e-4, 1e6))  # as the model's likelihood
    return _gaussian_cell_log_likelihood(np.clip(param, -12.0, 12.0))


def analysis_fidelity(analysis, x: np.ndarray, cells: np.ndarray, *, reconstruct: Callable[[np.ndarray], np.ndarray],
                      max_cells: int = MAX_FIDELITY_CELLS, seed: int = 0) -> dict[str, Any] | None:
    """:func:`expression_fidelity` of ``analysis``'s decoder on held-out ``cells`` (indices into ``x``).

    ``x``: (n_cells, d) the analysis's embedding; ``reconstruct(x_rows)``: the SAE's reconstruction
    (m, d) of embedding rows (m, d). At most ``max_cells`` of ``cells`` are used (a seeded random
    subset). The mean ablation puts the mean of all cells' embedding in place of each cell.
    Returns None when the analysis has no decoder; ``{"unavailable": reason}`` when it has one but
    the score cannot be computed (no counts, counts a count model cannot score); else the result
    plus ``cells`` ("SAE validation cells") and ``decoder`` (its kind).
    """
    from core.store.dataset import load_analysis_dataset
    from core.model.fit import check_counts
    from core.model.multiomics import expression_columns
    from core.model.predict import analysis_decoder, resolve_decoder_for_data

    decoder = analysis_decoder(analysis)
    if decoder is None or not getattr(decoder, "available", True):
        return None
    ds = analysis.config.get("dataset", {}) or {}
    if ds.get("format") != "h5ad" or not ds.get("path"):
        return {"unavailable": "the analysis's data has no counts (not an .h5ad)"}
    cells = np.unique(np.asarray(cells, dtype=np.int64))
    if cells.size > max_cells:
        cells = np.sort(np.random.default_rng(seed).choice(cells, max_cells, replace=False))
    if cells.size == 0:
        return {"unavailable": "no held-out cells"}
    adata = load_analysis_dataset(analysis, check_hash=False, backed=True)
    try:
        cols = expression_columns(adata)
        genes = [str(g) for g in adata.var_names[cols]]
        decoder, covariates = resolve_decoder_for_data(decoder, adata, x, genes, key=ds.get("embedding"))
    finally:
        adata.file.close()
    counts = count_rows(ds["path"], cells, layer=ds.get("counts_layer"), columns=cols)
    log_likelihood = model_log_likelihood(decoder)
    if log_likelihood is None or decoder.fitted.config.likelihood == "nb":
        try:
            check_counts(counts, "nb", what="the held-out cells' counts")
        except InputError as exc:
            return {"unavailable": exc.message}
    lib = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    cov = None if covariates is None else np.asarray(covariates)[cells]

    def decode(z, rows):
        return decoder.decode_chunk(z, lib[rows], None if cov is None else cov[rows])

    out = expression_fidelity(counts, original=x[cells], reconstruction=reconstruct(x[cells]), decode=decode,
                              log_likelihood=log_likelihood, baseline=np.asarray(x, np.float64).mean(axis=0))
    return {**out, "cells": "SAE validation cells", "decoder": decoder.kind}
