"""The paper's hierarchical simulation (docs/method.md §2; paper §4 and appendix A.1.2).

Programs ``X`` are shifted by batch noise ``B`` into ``X′ = max(X + B, 0)``, scaled by the
cell type's activity ``A`` into ``X″ = X′ ⊙ A``, and reach the genes through the
connectivity ``M`` (genes × programs): ``E[Y] = M X″``. ``B`` and ``A`` are one-hot
selections (the cell's batch / type) of a noise matrix and an activity matrix.

* :class:`SmallSimConfig` — the paper's "small" set: no noise, 3 programs, ``X`` Binomial,
  one Poisson activity variable ``A`` per cell (``X″ = X · A``) and ``Y = M X″`` exactly,
  with a binary ``M`` (so ``Y`` is integer).
* :class:`LargeSimConfig` — "large": ~20,000 genes, cell types, batches, and
  negative-binomial counts with realistic sparsity and library sizes.

The paper's text as we have it lost its numbers (sizes, distribution parameters); the
defaults here are our choices, documented in README ("Simulation lab").

Output: an AnnData with counts in ``.X`` (CSR float32, integer values), ``obs``
(``cell_type``, ``batch``, ``split``), the ground truth in ``.obsm`` (``sim_X``,
``sim_X_prime``, ``sim_X_dprime``, ``sim_A``, ``sim_B``), ``.varm['sim_M']`` and
``.uns['simulation']`` (kind, seed, config JSON, activity and noise matrices, the variables
present).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress
from core.base.io import atomic_path
from core.data.load import read_anndata

__all__ = [
    "SmallSimConfig",
    "LargeSimConfig",
    "simulate",
    "write_simulation",
    "read_simulation",
    "simulation_info",
    "simulation_variables",
    "data_summary",
    "VARIABLES",
    "OBSM_KEYS",
]

#: Variables in order of distance from the observed counts (paper Fig. 1B).
VARIABLES = ("Y", "X''", "A", "B", "X'", "X")
#: Where each hidden variable lives in ``.obsm`` (``Y`` is ``.X``).
OBSM_KEYS = {"X''": "sim_X_dprime", "A": "sim_A", "B": "sim_B", "X'": "sim_X_prime", "X": "sim_X"}
MAX_ENTRIES = 2_000_000_000  # cells × genes above this would not fit in memory as counts


def _need(cond: bool, what: str, fix: str | None = None) -> None:
    if not cond:
        raise InputError(f"invalid simulation setting: {what}", fix=fix)


def _int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _num(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _check_sizes(n_cells: Any, n_genes: Any, n_programs: Any) -> None:
    _need(_int(n_cells) and n_cells >= 1, f"n_cells must be a positive integer (got {n_cells!r})",
          "e.g. --cells 5000")
    _need(_int(n_genes) and n_genes >= 1, f"n_genes must be a positive integer (got {n_genes!r})",
          "e.g. --genes 20000")
    _need(_int(n_programs) and n_programs >= 1, f"n_programs must be a positive integer (got {n_programs!r})",
          "e.g. --programs 50")
    _need(n_programs <= n_genes,
          f"{n_programs} programs but only {n_genes} genes: every program needs its own genes "
          "(M must have at least as many genes as programs)",
          f"use --programs {n_genes} or fewer, or more --genes")
    _need(n_cells * n_genes <= MAX_ENTRIES,
          f"{n_cells:,} cells × {n_genes:,} genes is too large to simulate in memory",
          "use fewer cells or genes")


@dataclass(frozen=True)
class SmallSimConfig:
    """The paper's "small" simulation (appendix A.1.2): no noise, ``X`` 3-d Binomial.

    ``X_j ~ Binomial(binomial_trials, program_probs[j])``; one activity ``A ~ Poisson(activity_rate)``
    per cell; ``X″ = X · A``; ``Y = M X″`` with a binary ``M`` (genes × programs) of edge
    density ``connectivity`` and full column rank. Cell types are the sets of active programs
    (``"P1+P3"``, ``"none"``); there is one batch.
    """

    n_cells: int = 5000
    n_genes: int = 10
    n_programs: int = 3
    program_probs: tuple[float, ...] = (0.3, 0.5, 0.7)
    binomial_trials: int = 1
    activity_rate: float = 5.0
    connectivity: float = 0.5
    val_fraction: float = 0.1

    kind = "small"

    def __post_init__(self) -> None:
        _check_sizes(self.n_cells, self.n_genes, self.n_programs)
        probs = tuple(self.program_probs)
        object.__setattr__(self, "program_probs", probs)
        _need(len(probs) == self.n_programs,
              f"program_probs has {len(probs)} values for {self.n_programs} programs",
              "give one Binomial probability per program")
        _need(all(_num(p) and 0 < p < 1 for p in probs), f"program_probs must lie in (0, 1) (got {probs})")
        _need(_int(self.binomial_trials) and self.binomial_trials >= 1,
              f"binomial_trials must be a positive integer (got {self.binomial_trials!r})")
        _need(_num(self.activity_rate) and self.activity_rate > 0,
              f"activity_rate must be positive (got {self.activity_rate!r})")
        _need(_num(self.connectivity) and 0 < self.connectivity <= 1,
              f"connectivity must be in (0, 1] (got {self.connectivity!r})")
        _need(_num(self.val_fraction) and 0 <= self.val_fraction < 1,
              f"val_fraction must be in [0, 1) (got {self.val_fraction!r})")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class LargeSimConfig:
    """The "large" simulation: realistic dimensions and counts (paper §4, Supp. Fig. 1).

    Per cell: type ``t`` (proportions ~ Dirichlet(5)), batch ``k`` (uniform);
    ``X_j ~ Binomial(binomial_trials, p_j)``, ``p_j ~ Beta(2, 3)``; ``B = N[:, k]`` with
    ``N ~ Normal(0, noise_sd)``; ``X′ = max(X + B, 0)``; ``A = Act[:, t]`` where each type
    activates a ``type_program_fraction`` of the programs at Gamma(2, 0.5) levels times a
    type-wide LogNormal(0, ``type_level_sd``) expression level; ``X″ = X′ ⊙ A``;
    ``M`` (genes × programs): edges with probability ``connectivity`` (every gene and program
    has at least one), Exp(1) weights × LogNormal(0, ``gene_scale_sd``) gene scales, rescaled
    so the median expected library size is ``median_library_size``;
    ``Y ~ NegativeBinomial(mean M X″, dispersion)`` (``dispersion=None``: Poisson).
    """

    n_cells: int = 10_000
    n_genes: int = 20_000
    n_programs: int = 50
    n_cell_types: int = 10
    n_batches: int = 4
    binomial_trials: int = 10
    type_program_fraction: float = 0.3
    type_level_sd: float = 0.5
    noise_sd: float = 1.0
    connectivity: float = 0.05
    gene_scale_sd: float = 1.5
    median_library_size: float = 3000.0
    dispersion: float | None = 2.0
    val_fraction: float = 0.1
    chunk_cells: int = 512

    kind = "large"

    def __post_init__(self) -> None:
        _check_sizes(self.n_cells, self.n_genes, self.n_programs)
        _need(_int(self.n_cell_types) and self.n_cell_types >= 1,
              f"n_cell_types must be a positive integer (got {self.n_cell_types!r})")
        _need(_int(self.n_batches) and self.n_batches >= 1,
              f"n_batches must be a positive integer (got {self.n_batches!r})")
        _need(_int(self.binomial_trials) and self.binomial_trials >= 1,
              f"binomial_trials must be a positive integer (got {self.binomial_trials!r})")
        _need(_num(self.type_program_fraction) and 0 < self.type_program_fraction <= 1,
              f"type_program_fraction must be in (0, 1] (got {self.type_program_fraction!r})")
        for name in ("type_level_sd", "noise_sd", "gene_scale_sd"):
            value = getattr(self, name)
            _need(_num(value) and value >= 0, f"{name} must be >= 0 (got {value!r})")
        _need(_num(self.connectivity) and 0 < self.connectivity <= 1,
              f"connectivity must be in (0, 1] (got {self.connectivity!r})")
        _need(_num(self.median_library_size) and self.median_library_size > 0,
              f"median_library_size must be positive (got {self.median_library_size!r})")
        _need(self.dispersion is None or (_num(self.dispersion) and self.dispersion > 0),
              f"dispersion must be positive or None for Poisson counts (got {self.dispersion!r})")
        _need(_num(self.val_fraction) and 0 <= self.val_fraction < 1,
              f"val_fraction must be in [0, 1) (got {self.val_fraction!r})")
        _need(_int(self.chunk_cells) and self.chunk_cells >= 1, "chunk_cells must be a positive integer")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


SimConfig = SmallSimConfig | LargeSimConfig


@dataclass
class _Truth:
    """Ground truth of one draw (arrays cells × dims unless noted)."""

    counts: sp.csr_matrix
    cell_type: np.ndarray
    batch: np.ndarray
    type_names: list[str]
    batch_names: list[str]
    variables: dict[str, np.ndarray]
    M: np.ndarray                         # (genes, programs)
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def simulate(config: SimConfig, *, seed: int, progress: Progress = no_progress,
             should_stop: ShouldStop = never_stop) -> "anndata.AnnData":  # noqa: F821
    """Draw one simulated dataset. Same config and seed, same data.

    Returns an AnnData (n_cells × n_genes) laid out as described in the module docstring.
    ``progress(done, total, message)`` reports the count sampling (chunks of cells);
    ``should_stop()`` cancels it (:class:`~core.base.progress.Cancelled`)."""
    _need(_int(seed) and seed >= 0, f"seed must be a non-negative integer (got {seed!r})", "e.g. --seed 0")
    rng = np.random.default_rng(seed)
    if isinstance(config, SmallSimConfig):
        truth = _draw_small(config, rng)
    elif isinstance(config, LargeSimConfig):
        truth = _draw_large(config, rng, progress=progress, should_stop=should_stop)
    else:
        raise InputError(f"unknown simulation config {type(config).__name__}",
                         fix="use SmallSimConfig or LargeSimConfig")
    return _to_anndata(truth, config=config, seed=seed, rng=rng)


# --------------------------------------------------------------------------- small
def _draw_small(cfg: SmallSimConfig, rng: np.random.Generator) -> _Truth:
    n, p = cfg.n_cells, cfg.n_programs
    x = rng.binomial(cfg.binomial_trials, np.asarray(cfg.program_probs), size=(n, p)).astype(np.float32)
    a = rng.poisson(cfg.activity_rate, size=(n, 1)).astype(np.float32)
    x2 = x * a
    M = _binary_connectivity(rng, cfg.n_genes, p, cfg.connectivity)
    counts = sp.csr_matrix((x2 @ M.T).astype(np.float32))
    active = x > 0
    labels = np.array(["+".join(f"P{j + 1}" for j in np.flatnonzero(row)) or "none" for row in active])
    type_names = sorted(set(labels.tolist()), key=lambda s: (s == "none", len(s), s))
    code = {name: i for i, name in enumerate(type_names)}
    cell_type = np.array([code[s] for s in labels])
    return _Truth(counts=counts, cell_type=cell_type, batch=np.zeros(n, dtype=int), type_names=type_names,
                  batch_names=["batch1"], variables={"X''": x2, "A": a, "X": x}, M=M.astype(np.float32))


def _binary_connectivity(rng: np.random.Generator, n_genes: int, n_programs: int, density: float) -> np.ndarray:
    """A binary (genes, programs) matrix with every gene and program connected, distinct
    columns and full column rank (so X″ is determined by Y)."""
    for _ in range(1000):
        M = (rng.random((n_genes, n_programs)) < density).astype(np.float64)
        _cover(rng, M)
        distinct = len({tuple(c) for c in M.T}) == n_programs
        if distinct and np.linalg.matrix_rank(M) == n_programs:
            return M
    # dense fallback that is always full rank: identity on the first programs, random below
    M = np.zeros((n_genes, n_programs))
    M[np.arange(n_programs), np.arange(n_programs)] = 1.0
    M[n_programs:] = rng.random((n_genes - n_programs, n_programs)) < density
    _cover(rng, M)
    return M


def _cover(rng: np.random.Generator, mask: np.ndarray) -> None:
    """In place: give every empty row and every empty column of ``mask`` one random edge."""
    rows = np.flatnonzero(mask.sum(1) == 0)
    mask[rows, rng.integers(0, mask.shape[1], rows.size)] = 1.0
    cols = np.flatnonzero(mask.sum(0) == 0)
    mask[rng.integers(0, mask.shape[0], cols.size), cols] = 1.0


# --------------------------------------------------------------------------- large
def _draw_large(cfg: LargeSimConfig, rng: np.random.Generator, *, progress: Progress,
                should_stop: ShouldStop) -> _Truth:
    n, g, p, t, k = cfg.n_cells, cfg.n_genes, cfg.n_programs, cfg.n_cell_types, cfg.n_batches
    proportions = rng.dirichlet(np.full(t, 5.0))
    cell_type = rng.choice(t, size=n, p=proportions)
    batch = rng.integers(0, k, size=n)

    probs = rng.beta(2.0, 3.0, size=p)
    x = rng.binomial(cfg.binomial_trials, probs, size=(n, p)).astype(np.float32)

    noise = rng.normal(0.0, cfg.noise_sd, size=(p, k)).astype(np.float32)          # N: programs × batches
    b = noise[:, batch].T                                                           # (n, p)
    x1 = np.maximum(x + b, 0.0)

    active = (rng.random((p, t)) < cfg.type_program_fraction).astype(np.float64)
    _cover(rng, active)
    levels = rng.gamma(2.0, 0.5, size=(p, t)) * rng.lognormal(0.0, cfg.type_level_sd, size=(1, t))
    activity = (active * levels).astype(np.float32)                                 # Act: programs × types
    a = activity[:, cell_type].T                                                    # (n, p)
    x2 = x1 * a

    mask = (rng.random((g, p)) < cfg.connectivity).astype(np.float64)
    _cover(rng, mask)
    gene_scale = rng.lognormal(0.0, cfg.gene_scale_sd, size=(g, 1))
    M = mask * rng.exponential(1.0, size=(g, p)) * gene_scale
    expected_library = x2.astype(np.float64) @ M.sum(0)                             # (n,) exactly Σ_g E[Y]
    positive = expected_library[expected_library > 0]
    if positive.size:
        M *= cfg.median_library_size / float(np.median(positive))
    M = M.astype(np.float32)

    counts = _sample_counts(x2, M, dispersion=cfg.dispersion, chunk=cfg.chunk_cells, rng=rng,
                            progress=progress, should_stop=should_stop)
    return _Truth(counts=counts, cell_type=cell_type, batch=batch,
                  type_names=[f"type{i + 1}" for i in range(t)], batch_names=[f"batch{i + 1}" for i in range(k)],
                  variables={"X''": x2, "A": a, "B": b, "X'": x1, "X": x}, M=M,
                  extra={"activity_matrix": activity, "noise_matrix": noise, "program_probs": probs,
                         "type_proportions": proportions})


def _sample_counts(x2: np.ndarray, M: np.ndarray, *, dispersion: float | None, chunk: int,
                   rng: np.random.Generator, progress: Progress, should_stop: ShouldStop) -> sp.csr_matrix:
    """``Y ~ NB(mean x2 @ M.T, dispersion)`` (Poisson when ``dispersion`` is None), chunk by chunk,
    as CSR float32 (n, genes)."""
    n = x2.shape[0]
    blocks = []
    for start in range(0, n, chunk):
        if should_stop():
            raise Cancelled("simulation cancelled")
        mu = x2[start:start + chunk] @ M.T                                          # float32 (c, genes)
        if dispersion is None:
            y = rng.poisson(mu)
        else:
            y = rng.poisson(rng.gamma(dispersion, 1.0, size=mu.shape) * (mu / dispersion))
        blocks.append(sp.csr_matrix(y.astype(np.float32)))
        progress(min(start + chunk, n), n, "sampling counts")
    return sp.vstack(blocks, format="csr")


# --------------------------------------------------------------------------- AnnData
def _to_anndata(truth: _Truth, *, config: SimConfig, seed: int, rng: np.random.Generator):
    import anndata as ad

    n, g = truth.counts.shape
    split = np.full(n, "train", dtype=object)
    n_val = int(round(n * config.val_fraction))
    if n_val:
        split[rng.choice(n, size=n_val, replace=False)] = "validation"
    obs = pd.DataFrame({
        "cell_type": pd.Categorical.from_codes(truth.cell_type, categories=truth.type_names),
        "batch": pd.Categorical.from_codes(truth.batch, categories=truth.batch_names),
        "split": pd.Categorical(split, categories=["train", "validation"]),
    }, index=pd.Index([f"cell{i}" for i in range(n)]))
    width = len(str(g))
    var = pd.DataFrame({"n_programs": (truth.M > 0).sum(1).astype(np.int32)},
                       index=pd.Index([f"simgene{j + 1:0{width}d}" for j in range(g)]))
    obsm = {OBSM_KEYS[name]: np.ascontiguousarray(arr, dtype=np.float32) for name, arr in truth.variables.items()}
    present = ["Y", *[v for v in VARIABLES if v in truth.variables]]
    uns = {"simulation": {
        "kind": config.kind,
        "seed": int(seed),
        "config_json": json.dumps(config.to_dict()),
        "variables": np.array(present, dtype=object),
        "n_programs": int(truth.M.shape[1]),
        **{key: np.asarray(val) for key, val in truth.extra.items()},
    }}
    return ad.AnnData(X=truth.counts, obs=obs, var=var, obsm=obsm, varm={"sim_M": truth.M}, uns=uns)


def write_simulation(adata, path: str | os.PathLike) -> str:
    """Write ``adata`` to ``path`` (.h5ad) atomically; returns the path."""

    path = os.fspath(path)
    if not path.endswith(".h5ad"):
        raise InputError(f"the output must be an .h5ad file (got {path})", fix="e.g. --out simulated.h5ad")
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    return path


def read_simulation(path: str | os.PathLike):
    """Read a simulated .h5ad and check it carries the ground truth (``.uns['simulation']``)."""

    adata = read_anndata(path)
    simulation_info(adata, what=os.fspath(path))
    return adata


def simulation_info(adata, *, what: str = "the data") -> dict[str, Any]:
    """``{"kind", "seed", "config", "variables", "n_programs"}`` of a simulated AnnData; raises
    InputError when ``adata`` has no ground truth."""
    info = adata.uns.get("simulation") if hasattr(adata, "uns") else None
    if not isinstance(info, dict) or "config_json" not in info or "sim_M" not in adata.varm:
        raise InputError(f"{what} is not a FeatureLens simulation (no ground truth in .uns['simulation'])",
                         fix="create one with `featurelens simulate small --out sim.h5ad` (or large)")
    variables = [str(v) for v in np.asarray(info["variables"]).tolist()]
    missing = [v for v in variables if v != "Y" and OBSM_KEYS[v] not in adata.obsm]
    if missing:
        raise InputError(f"{what} lacks the ground-truth variables {', '.join(missing)} in .obsm",
                         fix="re-create the simulation with `featurelens simulate`")
    return {"kind": str(info["kind"]), "seed": int(info["seed"]), "config": json.loads(str(info["config_json"])),
            "variables": variables, "n_programs": int(info["n_programs"])}


def simulation_variables(adata) -> dict[str, Any]:
    """The ground-truth variables of a simulation, nearest to the counts first:
    ``{"Y": CSR counts (cells, genes), "X''": (cells, programs), ...}``."""
    info = simulation_info(adata)
    out: dict[str, Any] = {}
    for name in info["variables"]:
        out[name] = sp.csr_matrix(adata.X, dtype=np.float32) if name == "Y" else \
            np.asarray(adata.obsm[OBSM_KEYS[name]], dtype=np.float32)
    return out


def data_summary(adata) -> dict[str, Any]:
    """Sizes and count realism of a simulated AnnData."""
    info = simulation_info(adata)
    y = sp.csr_matrix(adata.X)
    lib = np.asarray(y.sum(1)).ravel()
    n, g = y.shape
    return {
        "kind": info["kind"], "seed": info["seed"], "n_cells": int(n), "n_genes": int(g),
        "n_programs": info["n_programs"], "n_cell_types": int(adata.obs["cell_type"].nunique()),
        "n_batches": int(adata.obs["batch"].nunique()),
        "zero_fraction": round(1.0 - y.count_nonzero() / (n * g), 4),
        "median_library_size": float(np.median(lib)),
        "median_genes_per_cell": float(np.median(np.diff(sp.csr_matrix(y > 0).indptr))),
    }
