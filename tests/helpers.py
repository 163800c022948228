"""Small synthetic datasets with planted structure, made from an explicit rng."""
from __future__ import annotations

import numpy as np
import pandas as pd


def gen_adata(
    n_cells: int = 60,
    n_genes: int = 40,
    *,
    n_types: int = 3,
    latent: int = 5,
    rng: np.random.Generator | None = None,
    sparse: bool = True,
    gene_prefix: str = "GENE",
):
    """AnnData with integer counts, a categorical ``cell_type`` and an embedding ``X_emb``."""
    import anndata as ad
    import scipy.sparse as sp

    rng = rng or np.random.default_rng(0)
    types = np.repeat(np.arange(n_types), int(np.ceil(n_cells / n_types)))[:n_cells]
    emb = rng.normal(size=(n_cells, latent)).astype(np.float32) + types[:, None]
    rate = np.exp(rng.normal(size=(n_cells, n_genes)) * 0.5 + types[:, None] * 0.3)
    counts = rng.poisson(rate).astype(np.float32)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"type_{t}" for t in types]), "batch": rng.integers(0, 2, n_cells).astype(str)},
        index=[f"cell_{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"{gene_prefix}{j}" for j in range(n_genes)])
    X = sp.csr_matrix(counts) if sparse else counts
    return ad.AnnData(X=X, obs=obs, var=var, obsm={"X_emb": emb})


def one_torch_thread():
    """Generator for a module fixture: tiny models run fastest (and most predictably on a shared
    machine) on one torch thread; automatic choices inside keep it (core.base.threads)."""
    from core.base.threads import torch_threads

    with torch_threads(1):
        yield
