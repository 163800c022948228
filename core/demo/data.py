"""The simulated haematopoietic demo dataset: counts with a known generative ground truth.

The process follows the paper's hierarchical model (docs/method.md §2), with the connectivity
built from real Gene Ontology gene sets (the shipped GO, ``core.concepts.load_go``):

1. **programs X** (cells × K): per-cell intensities of K gene programs, each named after a
   real GO term (Gamma with mean 1; "sparse" programs are on in a fraction of cells only; the
   two cell-cycle programs are mutually exclusive phases S and G2/M of cycling cells);
2. **X′ = X ⊙ exp(B[batch])**: the batch alters every program (one-hot batch × a noise matrix
   B of shape (batches, K));
3. **X″ = X′ ⊙ A[cell type]**: cell-type activity (one-hot cell type × the activity matrix A of
   shape (types, K)): global programs are on in every type, local programs in some types only,
   at stage-dependent levels (the erythroid programs peak one after another along
   HSC → MPP → MEP → ProEry → Ery: commitment, heme synthesis, haemoglobin);
4. **counts Y**: ``log μ = base + identity[cell type] + M·X″ + batch offset``, softmax over genes ×
   library size, Y ~ negative binomial(μ, θ_gene). M (genes × K) connects each program to a
   random ``connect_fraction`` of its GO term's genes with log-effects ``effect · U(0.7, 1.3)``;
   ``identity`` gives each node of the haematopoietic tree its own marker genes (not planted
   GO programs).

Everything that generated the data is stored in the AnnData (see :func:`generate_demo_dataset`).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.base.errors import InputError
from core.base.progress import Progress, no_progress
from core.concepts import load_go

__all__ = ["Program", "PROGRAMS", "CELL_TYPES", "LINEAGES", "ERYTHROID_STAGES", "DemoDataConfig",
           "GroundTruth", "generate_demo_dataset", "write_demo_dataset", "ground_truth"]

#: cell type → (lineage, differentiation stage, share of cells)
CELL_TYPES: dict[str, tuple[str, int, float]] = {
    "HSC": ("stem", 0, 0.05), "MPP": ("stem", 1, 0.07),
    "MEP": ("erythroid", 2, 0.06), "ProEry": ("erythroid", 3, 0.08), "Ery": ("erythroid", 4, 0.10),
    "GMP": ("myeloid", 2, 0.06), "Mono": ("myeloid", 3, 0.10), "Neut": ("myeloid", 3, 0.08),
    "DC": ("myeloid", 3, 0.05),
    "CLP": ("lymphoid", 2, 0.05), "ProB": ("lymphoid", 3, 0.06), "B": ("lymphoid", 4, 0.09),
    "T": ("lymphoid", 3, 0.09), "NK": ("lymphoid", 3, 0.05),
}
#: the ordered stages of each branch of the tree (for the trajectory finder)
LINEAGES: dict[str, tuple[str, ...]] = {
    "erythroid": ("HSC", "MPP", "MEP", "ProEry", "Ery"),
    "monocyte": ("HSC", "MPP", "GMP", "Mono"),
    "neutrophil": ("HSC", "MPP", "GMP", "Neut"),
    "dendritic cell": ("HSC", "MPP", "GMP", "DC"),
    "B cell": ("HSC", "MPP", "CLP", "ProB", "B"),
    "T cell": ("HSC", "MPP", "CLP", "T"),
    "NK cell": ("HSC", "MPP", "CLP", "NK"),
}
ERYTHROID_STAGES = LINEAGES["erythroid"]


@dataclass(frozen=True)
class Program:
    """A planted gene program: a real GO term, where it is active and how its intensity is drawn.

    ``activity``: cell type → level in [0, 1] (local programs; types not named are 0); ``None`` =
    global (level 1 in every type). ``kind``: "dense" (every cell), "sparse" (on in ``p_on`` of the
    cells), "S" / "G2M" (on in cycling cells of that phase).
    """

    key: str
    term_id: str
    activity: dict | None = None
    kind: str = "dense"
    p_on: float = 1.0

    @property
    def scope(self) -> str:
        return "global" if self.activity is None else "local"


PROGRAMS: tuple[Program, ...] = (
    Program("stem_cell_maintenance", "GO:0019827", {"HSC": 1.0, "MPP": 0.6, "MEP": 0.15, "GMP": 0.15, "CLP": 0.15}),
    # the erythroid programs come in a wave along the stages: commitment, then heme, then haemoglobin
    Program("erythrocyte_differentiation", "GO:0030218", {"MEP": 1.0, "ProEry": 0.4, "Ery": 0.1}),
    Program("heme_biosynthesis", "GO:0006783", {"MEP": 0.1, "ProEry": 1.0, "Ery": 0.25}),
    Program("oxygen_transport", "GO:0015671", {"ProEry": 0.15, "Ery": 1.0}),
    Program("neutrophil_chemotaxis", "GO:0030593", {"GMP": 0.2, "Mono": 0.2, "Neut": 1.0}),
    Program("respiratory_burst", "GO:0045730", {"GMP": 0.1, "Mono": 1.0, "Neut": 0.3}),
    Program("mhc_ii_antigen_presentation", "GO:0019886", {"DC": 1.0, "Mono": 0.3, "B": 0.3}),
    Program("t_cell_receptor_signaling", "GO:0050852", {"T": 1.0, "NK": 0.15}),
    Program("b_cell_receptor_signaling", "GO:0050853", {"ProB": 0.4, "B": 1.0}),
    Program("nk_cell_cytotoxicity", "GO:0042267", {"T": 0.15, "NK": 1.0}),
    Program("interferon_response", "GO:0034340", None, "sparse", 0.15),
    Program("unfolded_protein_response", "GO:0006986", None, "sparse", 0.15),
    Program("dna_replication", "GO:0006260", None, "S"),
    Program("chromatid_segregation", "GO:0000070", None, "G2M"),
    Program("cholesterol_biosynthesis", "GO:0006695", None, "sparse", 0.4),
    Program("glycolysis", "GO:0006096", None, "sparse", 0.4),
    Program("cytoplasmic_translation", "GO:0002181"),
)

#: fraction of cycling cells per type (S and G2/M share them 55 : 45)
_CYCLING = {"HSC": 0.2, "MPP": 0.5, "MEP": 0.6, "GMP": 0.6, "CLP": 0.5, "ProEry": 0.6, "ProB": 0.5, "Ery": 0.2}
#: library-size factor per type (smaller mature erythroid cells and neutrophils, larger progenitors)
_LIBRARY = {"Ery": 0.85, "Neut": 0.85, "HSC": 1.15, "MPP": 1.15, "MEP": 1.1, "GMP": 1.1, "CLP": 1.1}
#: tree nodes with their own marker genes: node → cell type → level
_IDENTITY = {
    "progenitor": {"HSC": 1.0, "MPP": 0.8, "MEP": 0.4, "GMP": 0.4, "CLP": 0.4},
    "erythroid": {"MPP": 0.15, "MEP": 0.4, "ProEry": 0.8, "Ery": 1.0},        # MPPs are lineage-primed
    "myeloid": {"MPP": 0.15, "GMP": 0.5, "Mono": 1.0, "Neut": 1.0, "DC": 1.0},
    "lymphoid": {"MPP": 0.15, "CLP": 0.5, "ProB": 0.8, "B": 1.0, "T": 1.0, "NK": 1.0},
    **{t: {t: 1.0} for t in CELL_TYPES},
}


@dataclass(frozen=True)
class DemoDataConfig:
    """Sizes and effect strengths of the demo dataset (defaults: what ``featurelens demo`` uses)."""

    n_cells: int = 10_000
    n_genes: int = 2_500
    n_batches: int = 2
    programs: tuple = PROGRAMS
    connect_fraction: float = 0.8       # share of a term's genes a program drives
    effect: float = 1.0                 # log fold change per unit of program activity (× U(0.7, 1.3))
    intensity_shape: float = 3.0        # Gamma shape of program intensities (mean 1)
    identity_genes: int = 12            # marker genes per tree node
    identity_effect: float = 1.5        # their log fold change at level 1
    base_sd: float = 1.2                # spread of the genes' baseline log expression
    batch_program_sd: float = 0.15      # B: log-scale batch effect on programs
    batch_gene_sd: float = 0.1          # per-gene log offset per batch
    library_median: float = 3_000.0     # counts per cell (median, before cell-type factors)
    library_sd: float = 0.35            # log-normal spread of library sizes
    dispersion_median: float = 4.0      # NB θ per gene (log-normal around it; var = μ + μ²/θ)

    def __post_init__(self):
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise InputError(f"invalid demo-data setting: {what}")

        need(500 <= self.n_cells <= 1_000_000, f"n_cells must be 500–1,000,000 (got {self.n_cells})")
        need(self.n_batches >= 1, f"n_batches must be ≥ 1 (got {self.n_batches})")
        need(len(self.programs) >= 1, "at least one program is needed")
        need(len({p.key for p in self.programs}) == len(self.programs), "program keys must be unique")
        need(len({p.term_id for p in self.programs}) == len(self.programs), "program GO terms must be unique")
        for p in self.programs:
            need(p.kind in ("dense", "sparse", "S", "G2M"), f"unknown program kind {p.kind!r}")
            need(0 < p.p_on <= 1, f"p_on of {p.key} must lie in (0, 1]")
            need(p.activity is None or set(p.activity) <= set(CELL_TYPES), f"unknown cell type in {p.key}")
        need(0 < self.connect_fraction <= 1, "connect_fraction must lie in (0, 1]")
        need(self.effect > 0 and self.intensity_shape > 0 and self.identity_effect >= 0, "effects must be positive")
        need(self.library_median >= 10 and self.dispersion_median > 0, "library_median ≥ 10, dispersion > 0")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["programs"] = [asdict(p) for p in self.programs]
        return d


@dataclass(frozen=True)
class GroundTruth:
    """What generated a demo dataset, read back from the AnnData by :func:`ground_truth`.

    ``programs``: one row per program (key, term_id, term_name, scope, kind, cell_types,
    n_genes_driven); ``activity``: X″ (n_cells, K); ``connectivity``: M (n_genes, K) log-effects
    (0 = not connected); ``cell_type_activity``: A (n_types, K) as a DataFrame.
    """

    programs: pd.DataFrame
    activity: np.ndarray
    connectivity: np.ndarray
    cell_type_activity: pd.DataFrame
    gene_names: pd.Index


def _program_genes(programs, *, go) -> tuple[list[np.ndarray], list[str]]:
    """GO gene columns and term names of each program's term (propagated GO BP)."""
    ids = go.terms["id"].to_numpy()
    cols, names = [], []
    for p in programs:
        row = np.flatnonzero(ids == p.term_id)
        if row.size == 0:
            raise InputError(f"GO term {p.term_id} ({p.key}) is not in the shipped GO data",
                             fix="choose a GO BP term id present in data/go_human.npz")
        genes = go.matrix[row[0]].indices
        if genes.size < 10:
            raise InputError(f"GO term {p.term_id} ({p.key}) has only {genes.size} genes; programs need ≥ 10")
        cols.append(np.sort(genes))
        names.append(str(go.terms["name"].iat[row[0]]))
    return cols, names


@dataclass
class _Draw:
    """Everything drawn before the counts (internal; the means ``mu`` are noise-free expression)."""

    genes: pd.Index
    term_names: list
    term_sizes: list
    types: list
    ct: np.ndarray          # (n_cells,) cell-type index
    batch: np.ndarray       # (n_cells,) batch index
    phase: np.ndarray       # (n_cells,) "G1" / "S" / "G2M"
    X: np.ndarray           # (n_cells, K) program intensities
    X1: np.ndarray          # X′ = X · exp(B[batch])
    X2: np.ndarray          # X″ = X′ · A[cell type]
    A: np.ndarray           # (n_types, K)
    B: np.ndarray           # (n_batches, K)
    M: np.ndarray           # (n_genes, K)
    identity: np.ndarray    # (n_genes, n_types)
    marker: np.ndarray      # (n_nodes, identity_genes) gene indices
    mu: np.ndarray          # (n_cells, n_genes) NB means, float32
    theta: np.ndarray       # (n_genes,) NB dispersions
    go_source: str


def _simulate(cfg: DemoDataConfig, rng: np.random.Generator, progress: Progress) -> _Draw:
    progress(0, 5, "choosing genes from GO")
    go = load_go(("BP",))
    term_cols, term_names = _program_genes(cfg.programs, go=go)
    gene_cols = _gene_columns(cfg, go, term_cols, rng)
    genes = pd.Index(go.genes[gene_cols].astype(str), name="gene")
    M = _connectivity(cfg, term_cols, gene_cols, rng)

    progress(1, 5, "drawing cells and programs")
    types = list(CELL_TYPES)
    ct, batch, phase = _cell_labels(cfg, types, rng)
    X, X1, X2, A, B = _programs(cfg, types, ct, batch, phase, rng)

    progress(2, 5, "expression means")
    mu, theta, identity, marker = _means(cfg, types, M, X2, ct, batch, rng)
    return _Draw(genes=genes, term_names=term_names, term_sizes=[int(c.size) for c in term_cols], types=types,
                 ct=ct, batch=batch, phase=phase, X=X, X1=X1, X2=X2, A=A, B=B, M=M, identity=identity,
                 marker=marker, mu=mu, theta=theta, go_source=str(go.terms["source"].iat[0]))


def _gene_columns(cfg: DemoDataConfig, go, term_cols: list, rng: np.random.Generator) -> np.ndarray:
    """The GO gene columns simulated (sorted): every program gene, and random annotated filler genes."""
    program_cols = np.unique(np.concatenate(term_cols))
    if program_cols.size > cfg.n_genes:
        raise InputError(f"the programs' GO terms hold {program_cols.size} genes, more than n_genes={cfg.n_genes}",
                         fix=f"use n_genes ≥ {program_cols.size} or fewer programs")
    annotated = np.flatnonzero(np.diff(go.matrix.tocsc().indptr) > 0)
    filler = rng.choice(np.setdiff1d(annotated, program_cols), size=cfg.n_genes - program_cols.size, replace=False)
    return np.sort(np.concatenate([program_cols, filler]))


def _connectivity(cfg: DemoDataConfig, term_cols: list, gene_cols: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """M (genes × programs): a random share of each term's genes, with log-effects."""
    col_pos = {c: i for i, c in enumerate(gene_cols.tolist())}
    M = np.zeros((gene_cols.size, len(cfg.programs)), np.float32)
    for k, cols in enumerate(term_cols):
        pos = np.fromiter((col_pos[c] for c in cols.tolist()), np.int64, cols.size)
        n_on = min(pos.size, max(10, int(round(cfg.connect_fraction * pos.size))))
        on = rng.choice(pos, size=n_on, replace=False)
        M[on, k] = cfg.effect * rng.uniform(0.7, 1.3, on.size)
    return M


def _cell_labels(cfg: DemoDataConfig, types: list, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cell type index, batch index, cell-cycle phase)`` of every cell; cells grouped by type, as in an atlas."""
    share = np.array([CELL_TYPES[t][2] for t in types])
    ct = np.sort(rng.choice(len(types), size=cfg.n_cells, p=share / share.sum()))
    batch = rng.integers(0, cfg.n_batches, cfg.n_cells)
    cycling = rng.random(cfg.n_cells) < np.array([_CYCLING.get(t, 0.05) for t in types])[ct]
    phase = np.where(cycling, np.where(rng.random(cfg.n_cells) < 0.55, "S", "G2M"), "G1")
    return ct, batch, phase


def _programs(cfg: DemoDataConfig, types: list, ct: np.ndarray, batch: np.ndarray, phase: np.ndarray,
              rng: np.random.Generator):
    """``(X, X′, X″, A, B)``: program intensities, X′ = X · exp(B[batch]), X″ = X′ · A[cell type]."""
    K = len(cfg.programs)
    X = rng.gamma(cfg.intensity_shape, 1.0 / cfg.intensity_shape, size=(cfg.n_cells, K))
    for k, p in enumerate(cfg.programs):
        if p.kind == "sparse":
            X[:, k] *= rng.random(cfg.n_cells) < p.p_on
        elif p.kind in ("S", "G2M"):
            X[:, k] *= phase == p.kind
    B = rng.normal(0.0, cfg.batch_program_sd, size=(cfg.n_batches, K))
    X1 = X * np.exp(B[batch])
    A = np.array([[1.0 if p.activity is None else p.activity.get(t, 0.0) for p in cfg.programs] for t in types])
    X2 = X1 * A[ct]
    return X, X1, X2, A, B


def _means(cfg: DemoDataConfig, types: list, M: np.ndarray, X2: np.ndarray, ct: np.ndarray, batch: np.ndarray,
           rng: np.random.Generator):
    """``(NB means (cells × genes, float32), dispersions, identity log-offsets, marker genes)``: log means
    base + identity + programs + batch, softmax × library size."""
    G = M.shape[0]
    base = rng.normal(0.0, cfg.base_sd, G)
    nodes = list(_IDENTITY)
    free = np.flatnonzero(~M.any(axis=1))
    need = len(nodes) * cfg.identity_genes
    pool = free if free.size >= need else np.arange(G)
    marker = rng.choice(pool, size=need, replace=False).reshape(len(nodes), cfg.identity_genes)
    identity = np.zeros((G, len(types)), np.float32)
    for n, node in enumerate(nodes):
        fx = cfg.identity_effect * rng.uniform(0.7, 1.3, cfg.identity_genes)
        for t, level in _IDENTITY[node].items():
            identity[marker[n], types.index(t)] += level * fx
    batch_gene = rng.normal(0.0, cfg.batch_gene_sd, size=(cfg.n_batches, G))
    mu = (base[None, :] + identity.T[ct] + X2 @ M.T + batch_gene[batch]).astype(np.float32)
    mu -= mu.max(axis=1, keepdims=True)
    np.exp(mu, out=mu)
    mu /= mu.sum(axis=1, keepdims=True)
    lib_factor = np.array([_LIBRARY.get(t, 1.0) for t in types])[ct] * np.where(batch == 1, 0.9, 1.0)
    lib = cfg.library_median * lib_factor * np.exp(rng.normal(0.0, cfg.library_sd, cfg.n_cells))
    mu *= lib[:, None].astype(np.float32)
    theta = cfg.dispersion_median * np.exp(rng.normal(0.0, 0.5, G))
    return mu, theta, identity, marker



def _nb_counts(mu: np.ndarray, theta: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
    """Negative-binomial counts (Gamma–Poisson mixture) of means ``mu`` (cells × genes), in row blocks."""
    blocks = []
    step = max(1, 4_000_000 // mu.shape[1])
    for s in range(0, mu.shape[0], step):
        lam = rng.gamma(theta[None, :], mu[s:s + step] / theta[None, :])
        blocks.append(sp.csr_matrix(rng.poisson(lam).astype(np.int32)))
    return sp.vstack(blocks).tocsr()


def generate_demo_dataset(config: DemoDataConfig = DemoDataConfig(), *, seed: int = 0,
                          progress: Progress = no_progress):
    """Simulate the haematopoietic demo dataset; returns an ``anndata.AnnData``.

    ``.X``: raw counts (CSR int32, cells × genes, human gene symbols). ``.obs``: ``cell_type``,
    ``lineage``, ``stage``, ``batch``, ``phase`` (G1/S/G2M), ``library_size``. Ground truth:
    ``.obsm['truth_X']`` (program intensities X), ``['truth_X_batch']`` (X′),
    ``['truth_activity']`` (X″, the activities that drive the genes), all (cells × K);
    ``.varm['truth_connectivity']`` (M, genes × K log-effects), ``.varm['truth_identity']``
    (genes × cell types log-offsets of the marker genes), ``.var['program_genes']`` (the programs
    driving each gene, "|"-joined), ``.var['marker_of']`` (tree nodes whose marker it is);
    ``.uns['ground_truth']`` (program table, activity matrix A, batch matrix B, lineages,
    config, seed). Deterministic in ``seed``.
    """
    import anndata as ad

    cfg = config
    rng = np.random.default_rng(seed)
    d = _simulate(cfg, rng, progress)
    progress(3, 5, "sampling negative-binomial counts")
    counts = _nb_counts(d.mu, d.theta, rng)
    d.mu = None  # free the dense means before assembling

    progress(4, 5, "assembling the AnnData")
    types, ct = d.types, d.ct
    obs = pd.DataFrame({
        "cell_type": pd.Categorical(np.array(types)[ct], categories=types),
        "lineage": pd.Categorical([CELL_TYPES[types[i]][0] for i in ct]),
        "stage": np.array([CELL_TYPES[t][1] for t in types])[ct].astype(np.int64),
        "batch": pd.Categorical([f"batch{b + 1}" for b in d.batch]),
        "phase": pd.Categorical(d.phase, categories=["G1", "S", "G2M"]),
        "library_size": np.asarray(counts.sum(axis=1)).ravel().astype(np.int64),
    }, index=pd.Index([f"cell{i:05d}" for i in range(cfg.n_cells)], name="cell"))
    nodes = list(_IDENTITY)
    var = pd.DataFrame({
        "program_genes": ["|".join(cfg.programs[k].key for k in np.flatnonzero(row)) for row in d.M],
        "marker_of": ["|".join(nodes[n] for n in np.flatnonzero((d.marker == g).any(axis=1)))
                      for g in range(len(d.genes))],
    }, index=d.genes)
    adata = ad.AnnData(X=counts, obs=obs, var=var)
    adata.obsm["truth_X"] = d.X.astype(np.float32)
    adata.obsm["truth_X_batch"] = d.X1.astype(np.float32)
    adata.obsm["truth_activity"] = d.X2.astype(np.float32)
    adata.varm["truth_connectivity"] = d.M
    adata.varm["truth_identity"] = d.identity
    adata.uns["ground_truth"] = _ground_truth(cfg, d, seed=seed)
    progress(5, 5, f"{cfg.n_cells:,} cells × {len(d.genes):,} genes simulated")
    return adata


def _ground_truth(cfg: DemoDataConfig, d: _Draw, *, seed: int) -> dict:
    """``.uns['ground_truth']``: the program table, A, B, lineages, the model, config and seed."""
    types, M = d.types, d.M
    return {
        "programs": {
            "key": [p.key for p in cfg.programs], "term_id": [p.term_id for p in cfg.programs],
            "term_name": d.term_names, "scope": [p.scope for p in cfg.programs], "kind": [p.kind for p in cfg.programs],
            "cell_types": ["|".join(t for t in types if p.activity is None or p.activity.get(t, 0) > 0)
                           for p in cfg.programs],
            "n_term_genes": d.term_sizes,
            "n_genes_driven": [int((M[:, k] > 0).sum()) for k in range(len(cfg.programs))],
        },
        "cell_types": types,
        "cell_type_activity": d.A.astype(np.float32),
        "batch_program_effect": d.B.astype(np.float32),
        "lineages": {k: list(v) for k, v in LINEAGES.items()},
        "identity_nodes": list(_IDENTITY),
        "model": "X → X′ = X·exp(B[batch]) → X″ = X′·A[cell type] → "
                 "Y ~ NB(softmax(base + identity + M·X″ + batch offset) × library size, θ)",
        "config": _json_config(cfg), "seed": int(seed), "go_source": d.go_source,
    }



def _json_config(cfg: DemoDataConfig) -> str:
    import json

    return json.dumps(cfg.to_dict(), sort_keys=True)


def write_demo_dataset(path: str | os.PathLike, *, seed: int = 0, config: DemoDataConfig = DemoDataConfig(),
                       progress: Progress = no_progress) -> Path:
    """Generate the demo dataset and write it to ``path`` (.h5ad) atomically (temporary file + rename)."""
    path = Path(path)
    if path.suffix.lower() != ".h5ad":
        raise InputError(f"{path.name} is not an .h5ad path", fix="name the output file *.h5ad")
    if path.exists() and path.is_dir():
        raise InputError(f"{path} is a folder", fix="give a file path ending in .h5ad")

    def sub(done, total, message=""):
        progress(done, total + 1, message)

    adata = generate_demo_dataset(config, seed=seed, progress=sub)
    from core.model.api import write_h5ad_atomic

    write_h5ad_atomic(adata, path)
    progress(1, 1, f"wrote {path.name}")
    return path


def ground_truth(adata) -> GroundTruth:
    """The ground truth stored in a dataset made by :func:`generate_demo_dataset`."""
    gt = adata.uns.get("ground_truth") if hasattr(adata, "uns") else None
    if gt is None or "truth_activity" not in adata.obsm or "truth_connectivity" not in adata.varm:
        raise InputError("this dataset has no planted ground truth",
                         fix="use a dataset made by `featurelens simulate demo` (or the default demo)")
    programs = pd.DataFrame({k: list(v) for k, v in gt["programs"].items()})
    A = pd.DataFrame(np.asarray(gt["cell_type_activity"]), index=list(gt["cell_types"]), columns=programs["key"])
    return GroundTruth(programs=programs, activity=np.asarray(adata.obsm["truth_activity"]),
                       connectivity=np.asarray(adata.varm["truth_connectivity"]), cell_type_activity=A,
                       gene_names=pd.Index(adata.var_names.astype(str)))

