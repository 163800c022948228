"""Characterise SAE features by their activations: live/dead, cell-type profile, locality
(local / regional / global), trajectory features (docs/method.md §3).

Significance rule (paper appendix B 2.5): feature f is significantly higher in cell type t when
``mean_t − mean_rest > 1.96 · (SE_t + SE_rest)`` with ``SE = sd / sqrt(n)`` (sample sd, ddof=1).
Locality of a live feature, from the number m of such types:

- **local**: m = 1 (the paper's local features);
- **regional**: 2 ≤ m ≤ k, a few related types (a lineage, e.g. MEP → ProEry → Ery);
- **global**: m > k, or m = 0 (live but higher in no type: not specific to any part of the tissue).

The paper names only local and global (its "global" is everything not local); it does not state
where regional ends, so k is an option, by default :func:`default_max_regional_types` (a quarter
of the cell types, rounded up, at least 2). ``max_regional_types=1`` gives the paper's two-way split.
All statistics are computed for all features at once from sparse group sums.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.base.errors import InputError

__all__ = ["CellTypeStats", "cell_type_stats", "characterise", "check_max_regional_types",
           "default_max_regional_types", "find_trajectory_features", "locality_counts", "LOCALITIES", "Z_CRIT"]

Z_CRIT = 1.96
#: Locality labels in display order ("unknown": live, but no cell types to judge by).
LOCALITIES = ("local", "regional", "global", "dead", "unknown")


@dataclass(frozen=True)
class CellTypeStats:
    """Per cell type × feature statistics; arrays of shape (n_types, n_features)."""

    types: list
    n: np.ndarray          # (n_types,)
    mean: np.ndarray
    se: np.ndarray
    mean_rest: np.ndarray
    se_rest: np.ndarray

    @property
    def significant(self) -> np.ndarray:
        """Bool (n_types, n_features): feature significantly higher in the type than in the rest."""
        return (self.mean - self.mean_rest) > Z_CRIT * (self.se + self.se_rest)


def _as_csr(activations) -> sp.csr_matrix:
    A = activations if sp.issparse(activations) else sp.csr_matrix(np.asarray(activations))
    return sp.csr_matrix(A, dtype=np.float64)


def _mean_se(s1: np.ndarray, s2: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error from sums and sums of squares; n has shape (groups, 1)."""
    n = n.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        ss = np.maximum(s2 - s1 * mean, 0.0)  # sum of squared deviations
        var = np.where(n > 1, ss / (n - 1), np.nan)
        se = np.sqrt(var / n)
    return mean, se


def cell_type_stats(activations, cell_types) -> CellTypeStats:
    """Group statistics of activations (cells × features) by cell type (length n_cells)."""
    A = _as_csr(activations)
    cats = pd.Categorical(cell_types)
    if len(cats) != A.shape[0]:
        raise InputError(f"{len(cats)} cell-type labels for {A.shape[0]} cells")
    if (cats.codes < 0).any():
        raise InputError("some cells have no cell-type label", fix="label every cell (e.g. 'unknown')")
    types = list(cats.categories)
    onehot = sp.csr_matrix((np.ones(len(cats)), (cats.codes, np.arange(len(cats)))), shape=(len(types), len(cats)))
    s1 = np.asarray((onehot @ A).todense())
    s2 = np.asarray((onehot @ A.multiply(A)).todense())
    n = np.asarray(onehot.sum(axis=1)).reshape(-1, 1)
    mean, se = _mean_se(s1, s2, n)
    mean_r, se_r = _mean_se(s1.sum(0, keepdims=True) - s1, s2.sum(0, keepdims=True) - s2, A.shape[0] - n)
    return CellTypeStats(types, n.ravel(), mean, se, mean_r, se_r)


def default_max_regional_types(n_types: int) -> int:
    """k for ``n_types`` cell types: ``max(2, ceil(n_types / 4))`` (22 types → 6, 14 → 4, 8 → 2).

    A regional feature marks a part of the tissue (a lineage or a few related types); once a
    feature is higher in more than a quarter of the types it marks most of the tissue, i.e. it is
    global. At least 2, so that "regional" exists whenever there are two or more types."""
    return max(2, math.ceil(n_types / 4))


def check_max_regional_types(k) -> int:
    """``k`` as an int; InputError unless it is a whole number ≥ 1."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"max_regional_types must be a whole number ≥ 1 (got {k!r})",
                         fix="e.g. 6 (regional = 2–6 cell types); 1 = the paper's local/global split only")
    return int(k)


def characterise(activations, cell_types=None, *, max_regional_types: int | None = None) -> pd.DataFrame:
    """Cell-type characterisation, one row per feature (index ``feature``).

    ``activations``: (n_cells, n_features), dense or sparse; ``cell_types``: length n_cells.
    ``max_regional_types``: k, the most significant types a regional feature may have (``None``:
    :func:`default_max_regional_types` of the number of types).
    Columns: ``locality`` (local / regional / global / dead; "unknown" without cell types), and
    with cell types the per-type means ``mean[<type>]``, ``n_significant_types``,
    ``significant_types`` ("|"-joined) and ``top_cell_type``. ``df.attrs["max_regional_types"]``:
    the k used. Activation statistics (live, frequency, …) come from :func:`core.sae.activation_stats`.
    """
    if max_regional_types is not None:
        max_regional_types = check_max_regional_types(max_regional_types)
    A = _as_csr(activations)
    n_feat = A.shape[1]
    live = np.diff(A.tocsc().indptr) > 0
    df = pd.DataFrame(index=pd.RangeIndex(n_feat, name="feature"))
    if cell_types is None:
        df["locality"] = np.where(live, "unknown", "dead")
        return df
    st = cell_type_stats(A, cell_types)
    sig = st.significant & live[None, :]
    n_sig = sig.sum(axis=0)
    for i, t in enumerate(st.types):
        df[f"mean[{t}]"] = st.mean[i]
    df["n_significant_types"] = n_sig
    df["significant_types"] = ["|".join(str(st.types[i]) for i in np.flatnonzero(sig[:, j])) for j in range(n_feat)]
    k = max_regional_types if max_regional_types is not None else default_max_regional_types(len(st.types))
    df["locality"] = np.select([~live, n_sig == 1, (n_sig >= 2) & (n_sig <= k)], ["dead", "local", "regional"],
                               default="global")
    top = np.argmax(st.mean, axis=0)
    df["top_cell_type"] = [str(st.types[i]) if ok else "" for i, ok in zip(top, live)]
    df.attrs["max_regional_types"] = k
    return df


def locality_counts(locality) -> dict[str, int]:
    """``{"local", "regional", "global"}`` counts of a ``locality`` column (old tables without
    regional features count 0 regional)."""
    loc = pd.Series(locality).astype(str)
    return {name: int((loc == name).sum()) for name in ("local", "regional", "global")}


def find_trajectory_features(activations, cell_types, lineage: list, *, strict: bool = True,
                             tolerance: float = 0.0) -> pd.DataFrame:
    """Features that follow a differentiation trajectory (paper appendix B 2.2).

    ``lineage``: cell types ordered from the first stage to the last (e.g. HSC → … → erythroblast).
    A candidate's mean activation is higher over the lineage's cells than over all other cells,
    and its per-stage means increase monotonically along ``lineage`` (``strict``: strictly; else
    they end higher and no step falls by more than ``tolerance`` × the largest stage mean, 0 = never
    falls: a late program's near-zero early stages wobble).
    Ranked by the rise from first to last stage relative to the feature's maximum stage mean.
    Columns: ``feature``, ``rise``, ``mean_lineage``, ``mean_other``, ``significant`` (the last stage's
    mean above the first's by the rule of this module: ``> Z_CRIT · (SE_first + SE_last)``), and per
    stage ``mean[<t>]`` and ``se[<t>]``. (The paper then re-ranks candidates by the latent shift
    steering produces: :func:`core.steer.trajectory.rank_trajectory`.)
    """
    cats = pd.Categorical(cell_types)
    missing = [t for t in lineage if t not in set(cats.categories)]
    if missing:
        raise InputError(f"cell type(s) {missing} not in the data",
                         fix=f"choose from: {', '.join(map(str, cats.categories))}")
    if len(lineage) < 2:
        raise InputError("a trajectory needs at least two ordered cell types")
    A = _as_csr(activations)
    st = cell_type_stats(A, cats)
    idx = [st.types.index(t) for t in lineage]
    stage = st.mean[idx]                        # (n_stages, n_features)
    in_lin = np.isin(np.asarray(cats), lineage)
    if in_lin.all():
        raise InputError("the lineage covers every cell; there is nothing to compare it with")
    mean_lin = np.asarray(A[in_lin].mean(axis=0)).ravel()
    mean_other = np.asarray(A[~in_lin].mean(axis=0)).ravel()
    steps = np.diff(stage, axis=0)
    se = np.nan_to_num(st.se[idx])
    tol = float(tolerance) * stage.max(axis=0)
    mono = (steps > 0).all(axis=0) if strict else (steps >= -tol).all(axis=0) & (stage[-1] > stage[0])
    ok = mono & (mean_lin > mean_other)
    feats = np.flatnonzero(ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = (stage[-1] - stage[0]) / stage.max(axis=0)
    sig = (stage[-1] - stage[0]) > Z_CRIT * (se[-1] + se[0])
    out = pd.DataFrame({"feature": feats, "rise": rise[feats], "mean_lineage": mean_lin[feats],
                        "mean_other": mean_other[feats], "significant": sig[feats]})
    for k, t in enumerate(lineage):
        out[f"mean[{t}]"] = stage[k, feats]
    for k, t in enumerate(lineage):
        out[f"se[{t}]"] = se[k, feats]
    return out.sort_values(["rise", "mean_lineage"], ascending=False, ignore_index=True)
