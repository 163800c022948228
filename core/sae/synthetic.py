"""Synthetic embeddings with planted sparse structure: a known dictionary of unit directions,
each cell a sparse non-negative combination of a few of them, plus an offset and noise.

Used by tests (does the SAE find the planted atoms?) and by the training benchmark.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["PlantedData", "planted_sparse_data", "atom_recovery"]


@dataclass
class PlantedData:
    """``x`` float32 (n_cells, d); ``dictionary`` (n_atoms, d) unit rows; ``codes`` CSR
    (n_cells, n_atoms) non-negative coefficients; ``offset`` (d,) added to every cell."""

    x: np.ndarray
    dictionary: np.ndarray
    codes: sp.csr_matrix
    offset: np.ndarray


def planted_sparse_data(
    n_cells: int,
    *,
    d: int = 20,
    n_atoms: int = 100,
    active: float = 3.0,
    frequency_decay: float = 0.0,
    noise: float = 0.01,
    offset: float = 1.0,
    max_cosine: float = 0.7,
    seed: int = 0,
) -> PlantedData:
    """Draw cells ``x = codes @ dictionary + offset + noise``.

    Each cell uses ``1 + Poisson(active − 1)`` atoms (at most ``n_atoms``), picked with
    probability ∝ ``(rank + 1) ** −frequency_decay`` (0: uniform; 1: Zipf-like, a few common
    and many rare atoms); coefficients are Exp(1) + 0.5. Atoms are random unit vectors redrawn
    until no two have cosine above ``max_cosine``; the offset is a random direction of norm
    ``offset``; ``noise`` is the standard deviation of isotropic Gaussian noise.
    """
    rng = np.random.default_rng(seed)
    dictionary = _spread_atoms(rng, n_atoms, d, max_cosine)
    weights = (np.arange(n_atoms) + 1.0) ** -float(frequency_decay)
    weights /= weights.sum()
    n_active = np.minimum(1 + rng.poisson(max(active - 1.0, 0.0), size=n_cells), n_atoms)
    indptr = np.concatenate([[0], np.cumsum(n_active)])
    indices = np.empty(indptr[-1], dtype=np.int32)
    # sample without replacement per cell via Gumbel top-k on log-weights (vectorised per size)
    logw = np.log(weights)
    for size in np.unique(n_active):
        cells = np.flatnonzero(n_active == size)
        keys = logw + rng.gumbel(size=(cells.size, n_atoms))
        chosen = np.argpartition(-keys, size - 1, axis=1)[:, :size]
        for j in range(size):
            indices[indptr[cells] + j] = chosen[:, j]
    values = (rng.exponential(1.0, size=indptr[-1]) + 0.5).astype(np.float32)
    codes = sp.csr_matrix((values, indices, indptr), shape=(n_cells, n_atoms))
    codes.sort_indices()
    shift = rng.normal(size=d)
    shift *= offset / max(np.linalg.norm(shift), 1e-12)
    x = codes @ dictionary + shift + rng.normal(scale=noise, size=(n_cells, d))
    return PlantedData(x=x.astype(np.float32), dictionary=dictionary.astype(np.float32),
                       codes=codes, offset=shift.astype(np.float32))


def _spread_atoms(rng: np.random.Generator, n_atoms: int, d: int, max_cosine: float) -> np.ndarray:
    atoms = np.empty((0, d))
    tries = 0
    while atoms.shape[0] < n_atoms:
        cand = rng.normal(size=d)
        cand /= np.linalg.norm(cand)
        if atoms.shape[0] == 0 or np.max(atoms @ cand) <= max_cosine:
            atoms = np.vstack([atoms, cand])
        tries += 1
        if tries > 200 * n_atoms:
            raise ValueError(f"cannot place {n_atoms} atoms in {d} dimensions with cosine <= {max_cosine}")
    return atoms


def atom_recovery(directions: np.ndarray, dictionary: np.ndarray, *, threshold: float = 0.9) -> tuple[float, np.ndarray]:
    """Fraction of dictionary atoms (n_atoms, d) whose best-matching direction among
    ``directions`` (n_features, d) has cosine ≥ ``threshold``; and the best cosine per atom."""
    a = dictionary / np.linalg.norm(dictionary, axis=1, keepdims=True)
    w = directions / np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
    best = (a @ w.T).max(axis=1)
    return float((best >= threshold).mean()), best
