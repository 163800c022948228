"""Features in gene space, and the analysis written back into the user's AnnData.

:func:`gene_directions` turns SAE features into gene-space directions through the expression
model's decoder: the slope of log2 expected expression per unit of a feature's activation, at
the cells' own embeddings. :func:`export_h5ad` is the one call for notebooks and
``featurelens export --h5ad``: the reported concepts and these directions, handed to
:func:`core.store.export.write_h5ad`. It lives here, not in ``core.store``, because it needs the
SAE and the decoder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from core.annotate.reported import reported
from core.base.errors import InputError
from core.model.predict import analysis_decoder
from core.steer.context import steering_context
from core.store.export import top_features, write_h5ad

__all__ = ["gene_directions", "export_h5ad", "DIRECTIONS_NOTE", "MAX_DIRECTION_CELLS"]

MAX_DIRECTION_CELLS = 500
STEP_FRACTION = 0.1
DIRECTIONS_NOTE = ("d log2(expected expression) / d activation: the mean over {n} cells (seeded sample) of the "
                   "change in log2 of the decoder's expected expression when the feature's activation rises by "
                   "10 % of its largest activation, divided by that step; genes × the features in decoder_features")


def gene_directions(ctx, features: Sequence[int], *, max_cells: int = MAX_DIRECTION_CELLS,
                    seed: int = 0) -> pd.DataFrame:
    """Each feature's direction in gene space, (n_genes × len(features)) float64, index the genes.

    ``ctx``: a :class:`~core.steer.context.SteeringContext` (SAE, decoder, embedding, covariates).
    For feature j with largest activation m_j, step h_j = 0.1·m_j: the embedding moves by the
    SAE decoder's change for +h_j of feature j, and the column is the mean over up to
    ``max_cells`` cells of ``(log2 μ(z + Δ_j) − log2 μ(z)) / h_j`` (μ per unit library, so the
    library size cancels). A feature that never fires (m_j = 0) gets a column of zeros.
    """
    import torch

    feats = [int(f) for f in features]
    n = ctx.n_cells
    rows = np.arange(n) if n <= max_cells else np.sort(np.random.default_rng(seed).choice(n, max_cells, replace=False))
    z = np.asarray(ctx.embedding[rows], dtype=np.float32)
    cov = None if ctx.covariates is None else np.asarray(ctx.covariates)[rows]
    base = np.log2(ctx.decoder.decode_chunk(z, None, cov).astype(np.float64) + 1e-12)
    top = np.asarray(ctx.activations.max(axis=0).toarray()).ravel()
    out = np.zeros((len(ctx.gene_names), len(feats)))
    with torch.no_grad():
        zero = ctx.sae.decode(torch.zeros(1, ctx.sae.hidden))
        for k, f in enumerate(feats):
            h = STEP_FRACTION * float(top[f])
            if h <= 0:
                continue
            unit = torch.zeros(1, ctx.sae.hidden)
            unit[0, f] = h
            shift = (ctx.sae.decode(unit) - zero).numpy().astype(np.float32)
            moved = np.log2(ctx.decoder.decode_chunk(z + shift, None, cov).astype(np.float64) + 1e-12)
            out[:, k] = (moved - base).mean(axis=0) / h
    return pd.DataFrame(out, index=pd.Index(ctx.gene_names), columns=feats)


def export_h5ad(analysis, out: str | os.PathLike, *, features: Sequence[int] | None = None, top: int = 0,
                directions: bool = True, max_cells: int = MAX_DIRECTION_CELLS) -> Path:
    """Write a copy of ``analysis``'s AnnData with the SAE's results into ``out`` (see
    :func:`core.store.export.write_h5ad`).

    ``features`` and the ``top`` best (most reported concepts, then most frequent live features)
    get ``.obs`` columns ``featurelens_<id>`` and, when ``directions`` and the analysis has a
    decoder, columns of ``.varm['sae_decoder']`` (:func:`gene_directions`). Returns ``out``.
    """
    if top < 0:
        raise InputError(f"--top must be ≥ 0 (got {top})", fix="e.g. --top 10")
    feats_table = analysis.read_parquet("features.parquet") if analysis.has("features.parquet") else None
    ann = reported(analysis.read_parquet("annotations.parquet")) if analysis.has("annotations.parquet") else None
    chosen = list(dict.fromkeys([int(f) for f in (features or ())]
                                + (top_features(feats_table, ann, top) if feats_table is not None and top else [])))
    table, note = None, ""
    if directions and chosen and analysis_decoder(analysis) is not None:
        ctx = steering_context(analysis)
        bad = [f for f in chosen if not 0 <= f < ctx.sae.hidden]
        if bad:
            raise InputError(f"feature {bad[0]} does not exist (the SAE has {ctx.sae.hidden} features)",
                             fix=f"give ids between 0 and {ctx.sae.hidden - 1}")
        table = gene_directions(ctx, chosen, max_cells=max_cells, seed=analysis.seed)
        note = DIRECTIONS_NOTE.format(n=min(ctx.n_cells, max_cells))
    return write_h5ad(analysis, out, obs_features=chosen, annotations=ann, directions=table, directions_note=note)
