"""Does a feature track a technical variable? Its activation against library size, detected
genes, % mitochondrial counts and batch, *within cell types*.

A feature of erythroid cells correlates with library size whenever erythroid cells are smaller,
and that is biology, not an artefact. So each association is measured after removing the cell
types' means from both the activation and the covariate:

- numeric covariates (``library_size`` and ``detected_genes`` on a log1p scale, ``pct_mito``):
  Pearson r of the within-type residuals;
- ``batch``: η², the share of the activation's within-type variance that the batch explains
  (type × batch means against type means).

A feature *tracks* a variable when |r| ≥ :data:`FLAG_R` or η² ≥ :data:`FLAG_ETA2`. Under the
null (activations unrelated to the covariates) r is about ±1/√n and η² about (batches − 1)·types/n,
so at thousands of cells both thresholds sit far above chance (tests/test_confounders.py).
Without cell types the whole population is one group.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.base.errors import InputError
from core.data.counts import cell_qc
from core.store.dataset import load_analysis_dataset

__all__ = ["FLAG_R", "FLAG_ETA2", "LOG_SCALED", "BATCH_KEYS", "confounder_table", "tracked_variable",
           "analysis_confounders", "tracking_counts"]

FLAG_R = 0.5
FLAG_ETA2 = 0.25
LOG_SCALED = ("library_size", "detected_genes")
BATCH_KEYS = ("batch", "sample", "donor", "batch_id", "sample_id", "library_id")  # the first with 2+ values


def _codes(labels, n: int) -> tuple[np.ndarray, int]:
    if labels is None:
        return np.zeros(n, np.int64), 1
    codes, uniques = pd.factorize(pd.Series(np.asarray(labels)).astype(str), sort=True)
    if len(codes) != n:
        raise InputError(f"{len(codes)} labels for {n} cells")
    return codes.astype(np.int64), len(uniques)


def _group_sums(acts: sp.csc_matrix, codes: np.ndarray, k: int) -> np.ndarray:
    """(k, features) column sums of ``acts`` per group."""
    onehot = sp.csr_matrix((np.ones(codes.size), (codes, np.arange(codes.size))), shape=(k, codes.size))
    return np.asarray((onehot @ acts).todense(), dtype=np.float64)


def confounder_table(acts, covariates: dict, *, cell_types=None) -> pd.DataFrame:
    """One row per feature of ``acts`` (cells × features, sparse or dense): ``<name>_r`` for each
    numeric covariate, ``batch_eta2`` when ``covariates["batch"]`` is given (labels), and
    ``tracks``: the technical variable the feature mostly tracks ("" when none; the strongest
    when several), as defined in the module docstring.

    ``covariates``: name → (n_cells,) values; numeric ones with non-finite values are refused."""
    a = sp.csc_matrix(acts, dtype=np.float64)
    n, f = a.shape
    codes, k = _codes(cell_types, n)
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    g = _group_sums(a, codes, k)                                          # (k, f)
    sq = np.asarray(a.multiply(a).sum(axis=0)).ravel()
    ss_within = np.maximum(sq - (g ** 2 / np.maximum(counts, 1)[:, None]).sum(0), 0.0)  # (f,)
    out = pd.DataFrame({"feature": np.arange(f)})
    scores = {}
    for name, values in covariates.items():
        if values is None:
            continue
        if name == "batch":
            out["batch_eta2"] = _batch_eta2(a, codes, k, values, g, counts, ss_within)
            scores["batch"] = out["batch_eta2"] / FLAG_ETA2
            continue
        t = np.asarray(values, dtype=np.float64)
        if t.shape != (n,) or not np.all(np.isfinite(t)):
            raise InputError(f"the covariate {name!r} needs one finite number per cell")
        if name in LOG_SCALED:
            t = np.log1p(np.maximum(t, 0))
        resid = t - (np.bincount(codes, weights=t, minlength=k) / np.maximum(counts, 1))[codes]
        cov = a.T @ resid                                # Σ a·(t − t̄_type); Σ ā_type·(t − t̄_type) = 0
        denom = np.sqrt(ss_within * float(resid @ resid))
        r = np.divide(cov, denom, out=np.zeros(f), where=denom > 1e-12 * max(1.0, denom.max(initial=0)))
        out[f"{name}_r"] = np.clip(r, -1, 1)
        scores[name] = np.abs(out[f"{name}_r"]) / FLAG_R
    out["tracks"] = tracked_variable(pd.DataFrame(scores)) if scores else ""
    return out


def _batch_eta2(a, codes, k, batch, g, counts, ss_within) -> np.ndarray:
    bcodes, nb = _codes(batch, a.shape[0])
    cells = codes * nb + bcodes
    gb = _group_sums(a, cells, k * nb)
    nbk = np.bincount(cells, minlength=k * nb).astype(np.float64)
    between_tb = (gb ** 2 / np.maximum(nbk, 1)[:, None]).sum(0)
    between_t = (g ** 2 / np.maximum(counts, 1)[:, None]).sum(0)
    explained = np.maximum(between_tb - between_t, 0.0)
    return np.divide(explained, ss_within, out=np.zeros_like(ss_within), where=ss_within > 0).clip(0, 1)


def tracked_variable(scores: pd.DataFrame) -> np.ndarray:
    """Per row, the column whose score (value / its threshold) is largest and ≥ 1, else ""."""
    if scores.empty:
        return np.full(len(scores), "", dtype=object)
    best = scores.to_numpy(np.float64)
    idx = np.nanargmax(np.nan_to_num(best, nan=-1), axis=1)
    top = best[np.arange(len(best)), idx]
    names = np.asarray(scores.columns, dtype=object)[idx]
    return np.where(top >= 1, names, "").astype(object)


def analysis_confounders(analysis, acts) -> pd.DataFrame | None:
    """:func:`confounder_table` of ``acts`` (cells × features) against the analysis's dataset: the
    cells' library size, detected genes and % counts in ``MT-`` genes (one pass over the counts
    file) and the first :data:`BATCH_KEYS` column of ``.obs`` with two or more values, within the
    analysis's cell types. None when the dataset is an embedding file (no counts)."""
    ref = analysis.config.get("dataset", {}) or {}
    if ref.get("format") != "h5ad":
        return None
    adata = load_analysis_dataset(analysis, backed=True)
    try:
        obs = adata.obs.copy()
        genes = pd.Index(adata.var_names.astype(str))
    finally:
        adata.file.close()
    covariates: dict = cell_qc(ref["path"], layer=ref.get("counts_layer"), mito=genes.str.upper().str.startswith("MT-"))
    batch = next((k for k in BATCH_KEYS if k in obs.columns and obs[k].nunique() >= 2), None)
    covariates["batch"] = None if batch is None else obs[batch].astype(str).to_numpy()
    cell_type = ref.get("cell_type")
    types = obs[cell_type].astype(str).to_numpy() if cell_type and cell_type in obs.columns else None
    table = confounder_table(acts, covariates, cell_types=types)
    table.attrs = {"batch_key": batch, "cell_type_key": cell_type if types is not None else None}
    return table


def tracking_counts(table: pd.DataFrame | None, *, live=None) -> dict[str, int]:
    """How many (live) features track each technical variable: ``{"library_size": 3, …}``."""
    if table is None:
        return {}
    t = table if live is None else table[np.asarray(live, dtype=bool)]
    return {str(k): int(v) for k, v in t["tracks"][t["tracks"] != ""].value_counts().items()}
