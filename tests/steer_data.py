"""A small analysis with a planted steering effect, for the steering tests.

Embedding (4-d): three cell types with centroids a = (−1, 0, 0, 0), b = (2, 0, 0, 0),
c = (0, 2, 0, 0). SAE (Vanilla, 10 latents, exact): features 0–3 = the positive parts of the 4
dimensions, 4–7 = the negative parts (decoder = [I, −I]), 8 and 9 never fire (dead).
Decoder (TorchScript): softmax(b + z M) × library size; dimension 0 raises the genes of GO
"oxygen transport" (planted term), dimension 1 those of "DNA replication".
"""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from core.store.analysis import Analysis
from core.concepts import load_go
from core.data.load import load_dataset
from core.sae import VanillaConfig, build_sae, encode_activations, save_sae

PLANTED_TERM = "GO:0015671"   # oxygen transport (dimension 0 / feature 0)
SECOND_TERM = "GO:0006260"    # DNA replication (dimension 1 / feature 1)
CENTROIDS = {"a": (-1.0, 0.0, 0.0, 0.0), "b": (2.0, 0.0, 0.0, 0.0), "c": (0.0, 2.0, 0.0, 0.0)}


class SoftmaxDecoder(nn.Module):
    def __init__(self, bias: torch.Tensor, weight: torch.Tensor):
        super().__init__()
        self.bias = nn.Parameter(bias)
        self.weight = nn.Parameter(weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.bias + z @ self.weight, dim=1)


def planted_sae():
    sae = build_sae(VanillaConfig(hidden=10, center=False, scale=False, decoder_norm="none"), d_in=4)
    eye = torch.eye(4)
    w_dec = torch.zeros(4, 10)
    w_dec[:, :4], w_dec[:, 4:8] = eye, -eye
    w_dec[:, 8:] = torch.tensor([[0.5, -0.5], [0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    with torch.no_grad():
        sae.W_dec.copy_(w_dec)
        sae.W_enc.zero_()
        sae.W_enc[:8] = w_dec[:, :8].T
        sae.b_enc.zero_()
        sae.b_enc[8:] = -1.0
        sae.b_dec.zero_()
    return sae.eval()


def build_planted(base, *, n_per_type: int = 80, n_genes: int = 500, seed: int = 0, decoder: bool = True):
    """(analysis, genes, planted gene indices, second-term gene indices) in folder ``base``."""
    rng = np.random.default_rng(seed)
    genes, p_idx, s_idx = planted_genes(n_genes)
    types = np.repeat(list(CENTROIDS), n_per_type)
    emb = np.array([CENTROIDS[t] for t in types], np.float32) + rng.normal(0, 0.4, (types.size, 4)).astype(np.float32)
    bias = np.log(rng.gamma(2.0, 1.0, len(genes)) + 0.1)
    bias[p_idx] += np.log(0.05)  # planted genes start low, so their rise barely dilutes the others
    weight = np.zeros((4, len(genes)), np.float32)
    weight[0, p_idx] = 1.2
    weight[1, s_idx] = 0.6
    module = SoftmaxDecoder(torch.tensor(bias, dtype=torch.float32), torch.tensor(weight))
    a = write_planted_analysis(base, "planted.h5ad", module=module, emb=emb, types=types, genes=genes, rng=rng,
                               sae=planted_sae(), inputs={"planted": seed}, decoder=decoder)
    return a, genes, p_idx, s_idx


def planted_genes(n_genes: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``n_genes`` GO genes: the planted term's, the second term's, then others; and the two terms' columns."""
    bp = load_go(["BP"])
    planted = bp.genes_of(PLANTED_TERM)
    second = [g for g in bp.genes_of(SECOND_TERM) if g not in set(planted)]
    others = [g for g in bp.genes[:4000] if g not in set(planted) | set(second)]
    genes = planted + second + others[: n_genes - len(planted) - len(second)]
    col = {g: j for j, g in enumerate(genes)}
    return genes, np.array([col[g] for g in planted]), np.array([col[g] for g in second])


def write_planted_analysis(base, name: str, *, module, emb, types, genes, rng, sae, inputs: dict,
                           decoder: bool = True) -> Analysis:
    """Counts drawn from ``module``'s expression of ``emb`` (library sizes 1,500–3,000), written as
    ``base/name`` with the TorchScript decoder (or none), and an analysis of it holding ``sae``."""
    with torch.no_grad():
        frac = module(torch.from_numpy(emb)).numpy()
    lib = rng.uniform(1500, 3000, types.size)
    counts = rng.poisson(frac * lib[:, None]).astype(np.float32)
    obs = pd.DataFrame({"cell_type": pd.Categorical(types)}, index=[f"cell{i}" for i in range(types.size)])
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes), obsm={"X_emb": emb})
    base.mkdir(parents=True, exist_ok=True)
    path = base / name
    adata.write_h5ad(path)
    settings = {"decoder": "none"}
    if decoder:
        dec_path = base / "decoder.pt"
        torch.jit.save(torch.jit.script(module), str(dec_path))
        settings = {"decoder": str(dec_path)}
    ds = load_dataset(path, embedding="X_emb")
    a = Analysis.create(base / "analysis", dataset=ds.source, seed=3, settings=settings)
    with a.step("sae", inputs=inputs) as w:
        save_sae(sae, w)
        w.write_npz_sparse("activations.npz", encode_activations(sae, emb))
    return a
