"""A small analysis with a planted trajectory, for the Trajectories tests (builds in about a second).

Lineage s0 → s1 → s2 → s3 plus a cell type "other" (60 cells each), 4-d embedding (noise sd 0.3):

    s0 (0, 0, 0, −1)   s1 (1, 0, 1.5, −1/3)   s2 (2, 0, 1.5, 1/3)   s3 (3, 0, 0, 1)   other (0, 3, 0, 0)

The SAE of :func:`steer_data.planted_sae` (features 0–3 = positive parts of the 4 dimensions, 4–7
the negative parts, 8–9 dead). Feature 0 rises along the lineage and points from s0 straight to
s3 (steering it moves s0 cells furthest toward s3); feature 3 rises too, with a larger relative
rise but a smaller shift; feature 2 rises then falls (no trend); feature 1 lives in "other".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

STAGES = ("s0", "s1", "s2", "s3")
CENTRES = {"s0": (0, 0, 0, -1), "s1": (1, 0, 1.5, -1 / 3), "s2": (2, 0, 1.5, 1 / 3), "s3": (3, 0, 0, 1),
           "other": (0, 3, 0, 0)}
RISING, ALSO_RISING, UP_THEN_DOWN, ELSEWHERE = 0, 3, 2, 1


def build_trajectory_analysis(base: Path, *, decoder: bool = True, n_per_type: int = 60, seed: int = 0) -> Path:
    """Build into ``base`` (the analysis is ``base/analysis``, with features.parquet); returns its path."""
    from core.data.load import load_dataset
    from core.sae.characterise import characterise
    from core.sae.metrics import activation_stats
    from steer_data import SoftmaxDecoder, planted_genes, planted_sae, write_planted_analysis

    rng = np.random.default_rng(seed)
    types = np.repeat(list(CENTRES), n_per_type)
    emb = (np.array([CENTRES[t] for t in types], np.float32)
           + rng.normal(0, 0.3, (types.size, 4)).astype(np.float32))
    genes, _, _ = planted_genes(60)
    module = SoftmaxDecoder(torch.zeros(len(genes)), torch.zeros(4, len(genes)))
    a = write_planted_analysis(base, "trajectory.h5ad", module=module, emb=emb, types=types, genes=genes, rng=rng,
                               sae=planted_sae(), inputs={"trajectory": seed}, decoder=decoder)
    acts = a.read_npz_sparse("activations.npz")
    ds = load_dataset(a.config["dataset"]["path"], embedding="X_emb")
    feats = activation_stats(acts)
    if "feature" not in feats:
        feats = feats.rename_axis("feature").reset_index()
    feats = feats.merge(characterise(acts, ds.cell_types).reset_index(), on="feature")
    with a.step("features", inputs={"trajectory": True}) as w:
        w.write_parquet("features.parquet", feats)
    return Path(a.path)
