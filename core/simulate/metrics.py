"""Numbers the simulation experiments share: the ground-truth variables as one matrix,
Pearson correlations between latents and variables, R² of linear fits, and the paper's
per-variable recovery metrics (appendix A.1.5)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.simulate.generator import simulation_info, simulation_variables

__all__ = ["VariableMatrix", "variable_matrix", "pearson_matrix", "r2_scores", "recovery_table", "group_means",
           "ORDER"]

#: Variables in the order the tables show them: the counts, their expectation, then the
#: hidden variables by distance from the counts (paper Fig. 1B).
ORDER = ("Y", "E[Y]", "X''", "A", "B", "X'", "X")


@dataclass
class VariableMatrix:
    """All ground-truth variables side by side: ``values`` (cells, columns) float64 and per
    column its ``variable`` (``"Y"``, ``"X''"``, …) and ``dim`` (gene or program index).
    ``Y`` holds a seeded sample of genes when the simulation has more than ``y_genes``."""

    values: np.ndarray
    variable: np.ndarray
    dim: np.ndarray

    def columns(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.variable == name)

    @property
    def names(self) -> list[str]:
        seen: list[str] = []
        for v in self.variable.tolist():
            if v not in seen:
                seen.append(v)
        return seen


def variable_matrix(adata, *, y_genes: int = 2000, seed: int = 0) -> VariableMatrix:
    """The variables of a simulated AnnData (see :func:`~core.simulate.simulation_variables`)
    as one dense matrix. Genes for ``Y``: all when ``n_genes <= y_genes``, else a seeded
    random sample of ``y_genes`` among the genes that vary. Large simulations add ``E[Y]``,
    the expected counts ``M X″`` of the same genes (Y without its sampling noise; on the small
    simulation Y has no noise and equals it)."""
    variables = simulation_variables(adata)
    noisy = simulation_info(adata)["kind"] != "small"
    blocks, names, dims = [], [], []
    for name, value in variables.items():
        if name == "Y":
            y = sp.csr_matrix(value)
            genes = np.arange(y.shape[1])
            if y.shape[1] > y_genes:
                varies = np.flatnonzero(_column_var(y) > 0)
                genes = np.sort(np.random.default_rng(seed).choice(varies, size=min(y_genes, varies.size),
                                                                    replace=False))
            blocks.append(y[:, genes].toarray().astype(np.float64))
            dims.append(genes)
            if noisy:
                names.append(np.full(blocks[-1].shape[1], name, dtype=object))
                M = np.asarray(adata.varm["sim_M"], dtype=np.float64)[genes]
                blocks.append(np.asarray(variables["X''"], dtype=np.float64) @ M.T)
                dims.append(genes)
                name = "E[Y]"
        else:
            blocks.append(np.asarray(value, dtype=np.float64))
            dims.append(np.arange(value.shape[1]))
        names.append(np.full(blocks[-1].shape[1], name, dtype=object))
    return VariableMatrix(values=np.concatenate(blocks, axis=1), variable=np.concatenate(names),
                          dim=np.concatenate(dims))


def _column_var(m: sp.csr_matrix) -> np.ndarray:
    mean = np.asarray(m.mean(0)).ravel()
    return np.asarray(m.multiply(m).mean(0)).ravel() - mean ** 2


def pearson_matrix(latents, values: np.ndarray) -> np.ndarray:
    """Pearson correlation (latents, columns) between every latent column of ``latents``
    (cells, h; dense or sparse) and every column of ``values`` (cells, m). NaN where either
    side is constant (a dead latent, a variable without variance)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    vc = v - v.mean(0)
    sv = np.sqrt((vc ** 2).sum(0))
    if sp.issparse(latents):
        a = sp.csr_matrix(latents, dtype=np.float64)
        mean = np.asarray(a.mean(0)).ravel()
        sq = np.asarray(a.multiply(a).sum(0)).ravel()
        cov = np.asarray((a.T @ vc))                       # Σ a (v − v̄) = Σ (a − ā)(v − v̄)
    else:
        a = np.asarray(latents, dtype=np.float64)
        mean = a.mean(0)
        sq = (a ** 2).sum(0)
        cov = a.T @ vc
    sa = np.sqrt(np.maximum(sq - n * mean ** 2, 0.0))
    denom = sa[:, None] * sv[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / denom
    tol = 1e-12 * max(1.0, float(np.max(denom)) if denom.size else 1.0)
    r[denom <= tol] = np.nan
    return np.clip(r, -1.0, 1.0)


def r2_scores(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column (as ``sklearn.metrics.r2_score(...,
    multioutput="raw_values")``), NaN for constant columns."""
    y_true = np.asarray(y_true, dtype=np.float64)
    ss_res = ((y_true - y_pred) ** 2).sum(0)
    ss_tot = ((y_true - y_true.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - ss_res / ss_tot
    r2[ss_tot <= 1e-12 * max(1.0, float(ss_tot.max()) if ss_tot.size else 1.0)] = np.nan
    return r2


def recovery_table(r: np.ndarray, variables: VariableMatrix, *, threshold: float, absolute: bool = False,
                   live: np.ndarray | None = None) -> pd.DataFrame:
    """Per variable column: ``best_r`` (highest Pearson of any latent; ``|r|`` when
    ``absolute``), ``best_latent`` and ``n_latents`` (latents with r above ``threshold``).
    ``r`` is (latents, columns) from :func:`pearson_matrix`; ``live`` masks latents."""
    r = np.abs(r) if absolute else r
    if live is not None:
        r = np.where(np.asarray(live, bool)[:, None], r, np.nan)
    filled = np.where(np.isnan(r), -np.inf, r)
    if r.shape[0]:
        best_latent = filled.argmax(0)
        best_r = filled[best_latent, np.arange(r.shape[1])]
    else:
        best_latent = np.zeros(r.shape[1], dtype=int)
        best_r = np.full(r.shape[1], -np.inf)
    best_r = np.where(np.isfinite(best_r), best_r, np.nan)
    return pd.DataFrame({
        "variable": variables.variable,
        "dim": variables.dim.astype(int),
        "best_r": best_r,
        "best_latent": np.where(np.isnan(best_r), -1, best_latent).astype(int),
        "n_latents": (filled > threshold).sum(0).astype(int),
    })


def group_means(table: pd.DataFrame, column: str, *, by: list[str] | None = None) -> pd.DataFrame:
    """Mean of ``column`` per variable (and ``by`` columns), NaNs skipped, variables in the
    paper's order (nearest to the counts first)."""
    keys = [*(by or []), "variable"]
    out = table.groupby(keys, sort=False, observed=True)[column].mean().reset_index()
    order = {v: i for i, v in enumerate(ORDER)}
    return out.sort_values([*(by or []), "variable"], key=lambda s: s.map(order) if s.name == "variable" else s,
                           kind="stable").reset_index(drop=True)
