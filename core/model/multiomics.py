"""A second modality (e.g. chromatin accessibility) and the paper's high-vs-low comparison (docs/method.md §7).

Where a second modality lives in an AnnData (``get_modality(adata, spec)``):

- ``"obsm:X_atac"``: a cells × peaks matrix in ``.obsm`` (peak names in ``.uns['X_atac_names']``
  if present);
- ``"layer:atac"``: a layer (same columns as ``.X``);
- ``"var:feature_types=ATAC"``: the columns of ``.X`` whose ``.var`` column has that value
  (multiDGD/10x multiome files keep genes and peaks side by side this way);
- ``.uns['featurelens_modalities'] = {"atac": "obsm:X_atac"}`` names them; with no spec the
  first one found is used (``find_modalities``).

The comparison, per SAE feature: **high** cells have activation above the feature's 99th
percentile; **low** cells have activation exactly 0 (up to 1,000, sampled with a seed, the same
sample for a feature whatever else is computed). For the per-cell accessibility (mean over
peaks) and for every peak: ``mean_high − mean_low > 1.96·(SE_high + SE_low)`` (SE = sd/√n,
``ddof=1``); reported as ``z = (mean_high − mean_low) / (SE_high + SE_low)`` so that
``|z| > 1.96`` is the rule, with direction "higher"/"lower"/"ns". Group sums are sparse
selection matrices (features × cells) times the modality matrix, for blocks of features.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress

__all__ = [
    "Modality", "find_modalities", "get_modality", "expression_columns", "high_low_cells",
    "selection_matrices", "compare_modality", "peak_comparison", "Z_CRITICAL",
]

Z_CRITICAL = 1.96
UNS_KEY = "featurelens_modalities"
_MODALITY_WORDS = ("atac", "peak", "chromatin", "accessib", "adt", "protein")
_GEX_VALUES = {"gene expression", "gex", "rna", "gene", "genes", "expression"}
_FEATURE_TYPE_COLUMNS = ("feature_types", "feature_type", "modality", "modalities")


@dataclass
class Modality:
    name: str
    matrix: Any  # cells × features: scipy CSR or ndarray
    feature_names: list[str]
    spec: str

    @property
    def n_features(self) -> int:
        return self.matrix.shape[1]


def _feature_type_column(adata) -> str | None:
    for col in _FEATURE_TYPE_COLUMNS:
        if col in adata.var.columns and adata.var[col].astype(str).nunique() > 1:
            return col
    return None


def expression_columns(adata) -> np.ndarray:
    """Boolean mask of ``.X`` columns that are gene expression (all True unless ``.var`` marks feature types)."""
    col = _feature_type_column(adata)
    if col is None:
        return np.ones(adata.n_vars, dtype=bool)
    values = adata.var[col].astype(str).str.lower()
    mask = values.isin(_GEX_VALUES).to_numpy()
    return mask if mask.any() else np.ones(adata.n_vars, dtype=bool)


def find_modalities(adata) -> dict[str, str]:
    """Second modalities found in ``adata``: {name: spec}."""
    found: dict[str, str] = {}
    described = adata.uns.get(UNS_KEY, {}) if hasattr(adata, "uns") else {}
    if isinstance(described, dict):
        for name, spec in described.items():
            found[str(name)] = str(spec)
    for key in adata.obsm.keys():
        if any(w in str(key).lower() for w in _MODALITY_WORDS) and f"obsm:{key}" not in found.values():
            found[str(key).removeprefix("X_").lower()] = f"obsm:{key}"
    for key in adata.layers.keys():
        if any(w in str(key).lower() for w in _MODALITY_WORDS) and f"layer:{key}" not in found.values():
            found[str(key).lower()] = f"layer:{key}"
    col = _feature_type_column(adata)
    if col is not None:
        for value in adata.var[col].astype(str).unique():
            if value.lower() not in _GEX_VALUES and f"var:{col}={value}" not in found.values():
                found[value.lower()] = f"var:{col}={value}"
    return found


def get_modality(adata, spec: str | None = None) -> Modality:
    """The modality named by ``spec`` (see the module docstring), or the first one found."""
    import scipy.sparse as sp

    if spec is None:
        found = find_modalities(adata)
        if not found:
            raise InputError("this dataset has no second modality",
                             fix="put it in .obsm['X_atac'] (cells × peaks), or describe it in "
                                 f".uns['{UNS_KEY}'] = {{'atac': 'obsm:KEY'}}")
        name, spec = next(iter(found.items()))
    else:
        name = spec.split(":", 1)[-1].split("=")[-1]
        name = next((n for n, s in find_modalities(adata).items() if s == spec), name)
    kind, _, rest = spec.partition(":")
    if kind == "obsm":
        if rest not in adata.obsm:
            raise InputError(f".obsm[{rest!r}] not found", fix=f"available: {', '.join(map(str, adata.obsm.keys())) or 'none'}")
        m = adata.obsm[rest]
        names = adata.uns.get(f"{rest}_names")
        if isinstance(m, pd.DataFrame):
            names, m = list(m.columns), m.to_numpy()
        names = [str(n) for n in names] if names is not None else [f"{rest}_{j}" for j in range(m.shape[1])]
    elif kind == "layer":
        if rest not in adata.layers:
            raise InputError(f"layer {rest!r} not found", fix=f"available: {', '.join(adata.layers.keys()) or 'none'}")
        m, names = adata.layers[rest], [str(v) for v in adata.var_names]
    elif kind == "var":
        col, _, value = rest.partition("=")
        if col not in adata.var.columns:
            raise InputError(f".var column {col!r} not found")
        mask = (adata.var[col].astype(str) == value).to_numpy()
        if not mask.any():
            raise InputError(f"no .var rows have {col} == {value!r}",
                             fix=f"values: {', '.join(map(str, adata.var[col].astype(str).unique()[:10]))}")
        m, names = adata.X[:, np.flatnonzero(mask)], [str(v) for v in adata.var_names[mask]]
    else:
        raise InputError(f"unknown modality spec {spec!r}", fix="use obsm:KEY, layer:NAME or var:COLUMN=VALUE")
    if m.shape[0] != adata.n_obs:
        raise InputError(f"modality {spec} has {m.shape[0]} rows for {adata.n_obs} cells")
    if len(names) != m.shape[1]:
        raise InputError(f"{len(names)} feature names for {m.shape[1]} columns of modality {spec}")
    m = sp.csr_matrix(m) if sp.issparse(m) else np.asarray(m)
    return Modality(name=name, matrix=m, feature_names=names, spec=spec)


# --------------------------------------------------------------------------- high / low cells

def _column_block(acts, cols: np.ndarray) -> np.ndarray:
    import scipy.sparse as sp

    block = acts[:, cols]
    return block.toarray() if sp.issparse(block) else np.asarray(block)


def high_low_cells(activations, features: Sequence[int] | None = None, *, percentile: float = 99.0,
                   n_low: int = 1000, seed: int = 0, block: int = 256):
    """Per feature: (threshold, high cell indices, low cell indices), as three lists.

    High: activation > the feature's ``percentile`` (numpy's linear interpolation over all
    cells, zeros included). Low: activation == 0, at most ``n_low`` drawn without replacement
    by ``np.random.default_rng([seed, feature])`` (independent of which other features run).
    """
    import scipy.sparse as sp

    if not 0 < percentile < 100:
        raise InputError(f"percentile must be in (0, 100), got {percentile}")
    if n_low < 1:
        raise InputError(f"n_low must be at least 1, got {n_low}")
    acts = activations.tocsc() if sp.issparse(activations) else np.asarray(activations)
    n_cells, n_feat = acts.shape
    feats = np.arange(n_feat) if features is None else np.asarray(features, dtype=np.int64)
    if feats.size and (feats.min() < 0 or feats.max() >= n_feat):
        raise InputError(f"feature indices out of range (0–{n_feat - 1})")
    thresholds, highs, lows = [], [], []
    for b0 in range(0, feats.size, block):
        cols = feats[b0:b0 + block]
        dense = _column_block(acts, cols).astype(np.float64, copy=False)
        thr = np.percentile(dense, percentile, axis=0)
        for j, f in enumerate(cols):
            col = dense[:, j]
            thresholds.append(float(thr[j]))
            highs.append(np.flatnonzero(col > thr[j]))
            zero = np.flatnonzero(col == 0)
            if zero.size > n_low:
                zero = np.sort(np.random.default_rng([seed, int(f)]).choice(zero, n_low, replace=False))
            lows.append(zero)
    return thresholds, highs, lows


def selection_matrices(groups: list[np.ndarray], n_cells: int):
    """A (len(groups) × n_cells) CSR 0/1 matrix with row i selecting ``groups[i]``."""
    import scipy.sparse as sp

    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    indices = np.concatenate(groups).astype(np.int64) if len(groups) and sizes.sum() else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(len(groups), n_cells))


def _group_stats(S, M, M2, n: np.ndarray, ddof: int):
    """Means and standard errors of the groups selected by S: each (groups, columns)."""
    import scipy.sparse as sp

    def prod(A, B):
        out = A @ B
        return out.toarray() if sp.issparse(out) else np.asarray(out)

    with np.errstate(invalid="ignore", divide="ignore"):
        s1, s2 = prod(S, M), prod(S, M2)
        nn = n[:, None].astype(np.float64)
        mean = s1 / nn
        var = np.maximum(s2 - nn * mean ** 2, 0.0) / (nn - ddof)
        se = np.sqrt(var) / np.sqrt(nn)
    return mean, se


def _z(mean_h, mean_l, se_h, se_l):
    diff = mean_h - mean_l
    den = se_h + se_l
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(den > 0, diff / np.where(den > 0, den, 1.0), np.where(diff == 0, 0.0, np.sign(diff) * np.inf))
    z = np.where(np.isnan(diff), np.nan, z)
    return diff, z


def _direction(z: np.ndarray) -> np.ndarray:
    return np.where(z > Z_CRITICAL, "higher", np.where(z < -Z_CRITICAL, "lower", "ns"))


def _modality_matrix(modality, *, n_cells: int):
    """The modality's cells × peaks matrix as float64 (CSR or dense), refused when it does not fit."""
    import scipy.sparse as sp

    M = modality.matrix if isinstance(modality, Modality) else modality
    M = sp.csr_matrix(M, dtype=np.float64) if sp.issparse(M) else np.asarray(M, dtype=np.float64)
    if M.shape[0] != n_cells:
        raise InputError(f"activations have {n_cells} cells but the modality has {M.shape[0]}",
                         fix="both must describe the same cells in the same order")
    if M.shape[1] == 0:
        raise InputError("the modality has no columns")
    return M


def _high_low_stats(M, highs, lows, n_high: np.ndarray, n_lo: np.ndarray, *, ddof: int, max_block_bytes: int,
                    progress: Progress, should_stop: ShouldStop, prefix: str) -> dict[str, np.ndarray]:
    """Per feature (in blocks of features): mean and SE of the per-cell accessibility in the high and low
    cells (``mean_high``, ...), and the peaks higher / lower in the high cells (``peaks_up``, ``peaks_down``)."""
    import scipy.sparse as sp

    n_cells, n_peaks = M.shape
    M2 = M.multiply(M).tocsr() if sp.issparse(M) else M * M
    score = np.asarray(M.mean(axis=1)).ravel()  # per-cell accessibility
    score_m = np.column_stack([score])
    score_m2 = score_m ** 2
    n_feats = len(highs)
    block = max(1, min(512, int(max_block_bytes // (8 * 6 * n_peaks))))
    cols: dict[str, list] = {k: [] for k in ("mean_high", "mean_low", "se_high", "se_low", "peaks_up", "peaks_down")}
    for b0 in range(0, n_feats, block):
        if should_stop():
            raise Cancelled("modality comparison cancelled")
        sl = slice(b0, min(n_feats, b0 + block))
        Sh = selection_matrices(highs[sl], n_cells)
        Sl = selection_matrices(lows[sl], n_cells)
        mh, sh = _group_stats(Sh, score_m, score_m2, n_high[sl], ddof)
        ml, sl_ = _group_stats(Sl, score_m, score_m2, n_lo[sl], ddof)
        cols["mean_high"].append(mh[:, 0])
        cols["mean_low"].append(ml[:, 0])
        cols["se_high"].append(sh[:, 0])
        cols["se_low"].append(sl_[:, 0])
        pmh, psh = _group_stats(Sh, M, M2, n_high[sl], ddof)
        pml, psl = _group_stats(Sl, M, M2, n_lo[sl], ddof)
        _, pz = _z(pmh, pml, psh, psl)
        cols["peaks_up"].append((pz > Z_CRITICAL).sum(axis=1))
        cols["peaks_down"].append((pz < -Z_CRITICAL).sum(axis=1))
        progress(sl.stop, n_feats, f"{prefix}: compared {sl.stop:,} of {n_feats:,} features")
    return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}


def compare_modality(
    activations,
    modality,
    *,
    features: Sequence[int] | None = None,
    prefix: str = "atac",
    percentile: float = 99.0,
    n_low: int = 1000,
    seed: int = 0,
    ddof: int = 1,
    max_block_bytes: int = 256 << 20,
    progress: Progress = no_progress,
    should_stop: ShouldStop = never_stop,
) -> pd.DataFrame:
    """High-vs-low comparison of a second modality for every feature (docs/method.md §7).

    activations: cells × features (scipy CSR from the SAE engine, or dense); modality: a
    :class:`Modality` or a cells × peaks matrix. Returns a DataFrame indexed by ``feature``
    with columns ``{prefix}_n_high, _n_low, _threshold, _mean_high, _mean_low, _se_high,
    _se_low, _diff, _z, _direction`` (per-cell accessibility = mean over peaks) and
    ``_n_peaks_higher, _n_peaks_lower`` (peaks passing the same rule each way), ready to join
    into ``features.parquet``. Features without high cells get NaN statistics and "ns".
    """
    M = _modality_matrix(modality, n_cells=activations.shape[0])
    feats = np.arange(activations.shape[1]) if features is None else np.asarray(features, dtype=np.int64)
    thresholds, highs, lows = high_low_cells(activations, feats, percentile=percentile, n_low=n_low, seed=seed)
    n_high = np.array([len(h) for h in highs], dtype=np.int64)
    n_lo = np.array([len(lw) for lw in lows], dtype=np.int64)
    cat = _high_low_stats(M, highs, lows, n_high, n_lo, ddof=ddof, max_block_bytes=max_block_bytes,
                          progress=progress, should_stop=should_stop, prefix=prefix)
    diff, z = _z(cat["mean_high"], cat["mean_low"], cat["se_high"], cat["se_low"])
    p = f"{prefix}_"
    df = pd.DataFrame({
        p + "n_high": n_high, p + "n_low": n_lo, p + "threshold": np.asarray(thresholds, dtype=np.float64),
        p + "mean_high": cat["mean_high"], p + "mean_low": cat["mean_low"],
        p + "se_high": cat["se_high"], p + "se_low": cat["se_low"],
        p + "diff": diff, p + "z": z, p + "direction": _direction(z),
        p + "n_peaks_higher": cat["peaks_up"].astype(np.int64), p + "n_peaks_lower": cat["peaks_down"].astype(np.int64),
    }, index=pd.Index(feats, name="feature"))
    df[p + "direction"] = df[p + "direction"].astype("category")
    return df


def peak_comparison(activations, modality, feature: int, *, percentile: float = 99.0, n_low: int = 1000,
                    seed: int = 0, ddof: int = 1) -> pd.DataFrame:
    """Per-peak high-vs-low statistics of one feature (its card), sorted by |z|, indexed by peak name."""
    import scipy.sparse as sp

    M = modality.matrix if isinstance(modality, Modality) else modality
    names = modality.feature_names if isinstance(modality, Modality) else [f"peak_{j}" for j in range(M.shape[1])]
    M = sp.csr_matrix(M, dtype=np.float64) if sp.issparse(M) else np.asarray(M, dtype=np.float64)
    if activations.shape[0] != M.shape[0]:
        raise InputError(f"activations have {activations.shape[0]} cells but the modality has {M.shape[0]}")
    M2 = M.multiply(M).tocsr() if sp.issparse(M) else M * M
    _, highs, lows = high_low_cells(activations, [feature], percentile=percentile, n_low=n_low, seed=seed)
    n = M.shape[0]
    mh, sh = _group_stats(selection_matrices(highs, n), M, M2, np.array([len(highs[0])]), ddof)
    ml, sl = _group_stats(selection_matrices(lows, n), M, M2, np.array([len(lows[0])]), ddof)
    diff, z = _z(mh[0], ml[0], sh[0], sl[0])
    df = pd.DataFrame({"mean_high": mh[0], "mean_low": ml[0], "se_high": sh[0], "se_low": sl[0],
                       "diff": diff, "z": z, "direction": _direction(z)}, index=pd.Index(names, name="peak"))
    return df.reindex(df["z"].abs().sort_values(ascending=False, na_position="last").index)
