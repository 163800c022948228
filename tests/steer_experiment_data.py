"""The planted steering analysis of :mod:`steer_data` in a wider embedding, for the experiment tests.

Why wider: in the 4-d planted embedding a random unit direction has |cos| ≈ 0.5 with the planted
feature's direction on average, so a random-direction control legitimately reproduces much of
the planted effect; real embeddings have 10–128 dimensions. Here: ``dims`` (16) dimensions, the
same three cell types a, b, c on dimensions 0 and 1, an exact SAE with features 0…dims−1 = the
positive parts of the dimensions, dims…2·dims−1 the negative parts, two dead; the decoder
raises GO "oxygen transport" along dimension 0 (feature 0), "DNA replication" along dimension 1
(feature 1), and every other dimension moves every gene a little at random (weights N(0, 0.3)),
so steering one of those features changes many genes with no program behind them. Builds in ~1 s.
"""
from __future__ import annotations

import numpy as np
import torch

from core.sae import VanillaConfig, build_sae
from steer_data import CENTROIDS, SoftmaxDecoder, planted_genes, write_planted_analysis

__all__ = ["build_wide"]


def wide_sae(dims: int):
    hidden = 2 * dims + 2
    sae = build_sae(VanillaConfig(hidden=hidden, center=False, scale=False, decoder_norm="none"), d_in=dims)
    eye = torch.eye(dims)
    w_dec = torch.zeros(dims, hidden)
    w_dec[:, :dims], w_dec[:, dims:2 * dims] = eye, -eye
    w_dec[:, 2 * dims:] = 0.5
    with torch.no_grad():
        sae.W_dec.copy_(w_dec)
        sae.W_enc.zero_()
        sae.W_enc[:2 * dims] = w_dec[:, :2 * dims].T
        sae.b_enc.zero_()
        sae.b_enc[2 * dims:] = -100.0
        sae.b_dec.zero_()
    return sae.eval()


def build_wide(base, *, dims: int = 16, n_per_type: int = 80, n_genes: int = 500, seed: int = 0):
    """(analysis, genes, planted gene indices, second-term gene indices) in folder ``base``."""
    rng = np.random.default_rng(seed)
    genes, p_idx, s_idx = planted_genes(n_genes)
    types = np.repeat(list(CENTROIDS), n_per_type)
    centres = np.zeros((len(CENTROIDS), dims), np.float32)
    centres[:, :4] = np.array(list(CENTROIDS.values()))
    emb = centres[np.repeat(np.arange(len(CENTROIDS)), n_per_type)]
    emb = (emb + rng.normal(0, 0.4, emb.shape)).astype(np.float32)
    bias = np.log(rng.gamma(2.0, 1.0, len(genes)) + 0.1)
    bias[p_idx] += np.log(0.05)
    weight = np.zeros((dims, len(genes)), np.float32)
    weight[0, p_idx] = 1.2
    weight[1, s_idx] = 0.6
    weight[2:] = rng.normal(0, 0.3, (dims - 2, len(genes)))
    module = SoftmaxDecoder(torch.tensor(bias, dtype=torch.float32), torch.tensor(weight))
    a = write_planted_analysis(base, "wide.h5ad", module=module, emb=emb, types=types, genes=genes, rng=rng,
                               sae=wide_sae(dims), inputs={"wide": seed, "dims": dims})
    return a, genes, p_idx, s_idx
