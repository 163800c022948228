"""Synthetic embeddings with planted sparse structure.

- :func:`planted_sparse_data`: a known dictionary of unit directions, each cell a sparse
  non-negative combination of a few of them, plus an offset and noise;
- :func:`planted_programs`: program activities (each on in a fraction of cells) and cell-type
  indicators mixed linearly (or through a saturating non-linearity) into an embedding, as a
  model's latent space mixes biological programs.

Used by tests (does the SAE find the planted atoms?) and by the training benchmarks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["PlantedData", "planted_sparse_data", "planted_programs", "atom_recovery"]


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


def planted_programs(n_cells: int, *, d: int = 10, n_programs: int = 12, n_types: int = 4, noise: float = 0.05,
                     nonlinear: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x, truth)``: an embedding x float32 (n_cells, d) and its ground truth (n_cells,
    n_programs + n_types).

    Each program is on in a fraction U(0.05, 0.4) of cells with a Gamma(2, 0.5) activity; each
    cell has one of ``n_types`` types, an indicator × a type strength U(1, 3). Truth is mixed by
    a Gaussian matrix into ``d`` dimensions, plus Gaussian noise of standard deviation
    ``noise · √d``; ``nonlinear`` passes each standardised dimension through ``tanh(u) + 0.2 u``."""
    rng = np.random.default_rng(seed)
    types = rng.integers(n_types, size=n_cells)
    onehot = np.eye(n_types)[types] * rng.uniform(1, 3, size=n_types)
    on = rng.random((n_cells, n_programs)) < rng.uniform(0.05, 0.4, size=n_programs)
    truth = np.hstack([on * rng.gamma(2.0, 0.5, size=(n_cells, n_programs)), onehot])
    x = truth @ rng.normal(size=(truth.shape[1], d)) + rng.normal(scale=noise, size=(n_cells, d)) * np.sqrt(d)
    if nonlinear:
        u = x / x.std(0)
        x = np.tanh(u) + 0.2 * u
    return x.astype(np.float32), truth

