"""Steer toward a cell type (docs/method.md §6b): rank the features whose steering moves cells of
type A toward type B's centroid, then run the best one.

    from core.steer import rank_toward, steer_toward
    ranking = rank_toward(analysis, cells="cell_type=MEP", toward="Erythroblast")   # one row per live feature
    res = steer_toward(analysis, cells="cell_type=MEP", toward="Erythroblast")      # res.ranking, res.result

For every live feature f set to its target t_f (``config.target``, default its maximum) in the
selected cells x (n, d), the embedding moves by Δz_i·v_f (v_f = s·W_dec[:, f], Δz_i = t_f − z_if:
the change the error-term steering makes). The distance of each cell to B's centroid c after,
‖x_i − c + Δz_i v_f‖² = ‖x_i − c‖² + 2Δz_i v_f·(x_i − c) + Δz_i²‖v_f‖², is computed for all
features at once ((n, F) matrices). Features are ranked by the mean change of that distance over
the cells (most negative first: the cells came closest to B), ties by the fraction of cells whose
nearest centroid becomes B.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.base.errors import InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress
from core.steer.cells import select_cells
from core.steer.config import SteerConfig
from core.steer.context import SteeringContext, steering_context
from core.steer.run import SteeringResult, steer
from core.steer.store import save_steering_run
from core.steer.targets import resolve_targets

__all__ = ["rank_toward", "steer_toward", "TowardResult", "TOWARD_COLUMNS"]

TOWARD_COLUMNS = ["rank", "feature", "target", "mean_distance_before", "mean_distance_after", "change", "progress",
                  "nearest_target_before", "nearest_target_after"]


@dataclass
class TowardResult:
    """``ranking``: :data:`TOWARD_COLUMNS`, best first; ``feature``: the best; ``result``: its run."""

    toward: str
    ranking: pd.DataFrame
    feature: int
    result: SteeringResult


def _cell_index(ctx: SteeringContext, cells, toward: str) -> tuple[np.ndarray, int]:
    types = ctx.cell_types
    if types is None:
        raise InputError("the analysis's data has no cell-type column, so there is no cell type to steer toward",
                         fix="steer a chosen feature instead (--feature)")
    names, _ = ctx.centroids()
    toward = str(toward).strip()
    if toward not in names:
        raise InputError(f"unknown cell type {toward!r} to steer toward", fix=f"choose one of: {', '.join(names[:30])}")
    idx = select_cells(ctx, cells)
    if (types[idx] == toward).all():
        raise InputError(f"every selected cell already is {toward!r}",
                         fix=f"select cells of another type, e.g. --cells \"cell_type={names[0] if names[0] != toward else names[-1]}\"")
    return idx, names.index(toward)


def _live_candidates(ctx, features) -> np.ndarray:
    """Sorted live feature ids among ``features`` (None: every live feature); InputError for none."""
    fired = np.diff(ctx.activations.indptr)
    if features is None:
        cand = np.flatnonzero(fired > 0)
    else:
        cand = np.unique(np.asarray(list(features), np.int64))
        bad = cand[(cand < 0) | (cand >= fired.size)]
        if bad.size:
            raise InputError(f"feature {int(bad[0])} does not exist (the SAE has {fired.size} features)")
        cand = cand[fired[cand] > 0]
    if cand.size == 0:
        raise InputError("no live feature to rank", fix="choose live features (features.parquet, column 'live')")
    return cand


def _nearest_fractions(top: pd.DataFrame, *, cand, z, x, v, centroids, j) -> list[float]:
    """For each row of ``top`` (feature, target): the fraction of cells nearest to type ``j`` after steering."""
    fracs = []
    for f, t in zip(top["feature"], top["target"]):
        k = int(np.searchsorted(cand, f))
        zf = z[:, [f]].toarray().ravel().astype(np.float64)
        after = x + (t - zf)[:, None] * v[:, k][None, :]
        fracs.append(float((_nearest(after, centroids) == j).mean()))
    return fracs


def rank_toward(analysis, *, cells, toward: str, config: SteerConfig = SteerConfig(), features=None,
                nearest_for: int = 50, chunk: int = 2048) -> pd.DataFrame:
    """Rank features by how far steering them (to ``config.target``) moves ``cells`` toward cell type
    ``toward``'s centroid; one row per live candidate (``features``: ids to consider, default every
    live feature), columns :data:`TOWARD_COLUMNS`: mean distance before / after, ``change`` (after
    − before, negative = closer), ``progress`` (−change / before), and for the first
    ``nearest_for`` rows the fraction of cells nearest to that type before and after (NaN beyond).
    Cells above ``config.max_cells`` are subsampled as by :func:`core.steer.steer`.
    InputError for an unknown type, no cell types, an empty selection or no live candidate."""
    ctx = analysis if isinstance(analysis, SteeringContext) else steering_context(analysis)
    idx, j = _cell_index(ctx, cells, toward)
    if config.max_cells is not None and idx.size > config.max_cells:
        rng = np.random.default_rng(ctx.seed if config.seed is None else config.seed)
        idx = np.sort(rng.choice(idx, size=config.max_cells, replace=False))
    cand = _live_candidates(ctx, features)
    names, centroids = ctx.centroids()
    targets = resolve_targets(config.targets_for(1) * cand.size, cand.tolist(), activations_csc=ctx.activations,
                              cell_types=ctx.cell_types).astype(np.float64)
    w = ctx.sae.W_dec.detach().cpu().numpy().astype(np.float64)
    scale = ctx.sae.input_scale.detach().cpu().numpy().astype(np.float64)
    v = w[:, cand] * (scale.reshape(-1, 1) if scale.ndim else float(scale))  # (d, F)
    x = np.asarray(ctx.embedding[idx], np.float64)
    diff = x - centroids[j][None, :]
    d0sq = (diff * diff).sum(1)  # (n,)
    z = ctx.activations.tocsr()[idx].tocsc()
    mean_after = np.empty(cand.size)
    for a in range(0, cand.size, chunk):
        cols = cand[a:a + chunk]
        zf = z[:, cols].toarray().astype(np.float64)  # (n, c)
        dz = targets[a:a + chunk][None, :] - zf
        vv = v[:, a:a + chunk]
        d1sq = d0sq[:, None] + 2.0 * dz * (diff @ vv) + dz * dz * (vv * vv).sum(0)[None, :]
        mean_after[a:a + chunk] = np.sqrt(np.maximum(d1sq, 0.0)).mean(0)
    before = float(np.sqrt(d0sq).mean())
    out = pd.DataFrame({"feature": cand, "target": targets, "mean_distance_before": before,
                        "mean_distance_after": mean_after})
    out["change"] = out["mean_distance_after"] - before
    out["progress"] = -out["change"] / before if before > 0 else 0.0
    out = out.sort_values(["change", "feature"], kind="stable").reset_index(drop=True)
    fracs = _nearest_fractions(out.head(nearest_for), cand=cand, z=z, x=x, v=v, centroids=centroids, j=j)
    out["nearest_target_before"] = float((_nearest(x, centroids) == j).mean())
    out["nearest_target_after"] = np.nan
    out.loc[: len(fracs) - 1, "nearest_target_after"] = fracs
    head = out.head(len(fracs)).sort_values(["change", "nearest_target_after"], ascending=[True, False],
                                            kind="stable")
    out = pd.concat([head, out.iloc[len(fracs):]], ignore_index=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out[TOWARD_COLUMNS]


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    return d2.argmin(1)


def steer_toward(analysis, *, cells, toward: str, config: SteerConfig = SteerConfig(), features=None,
                 save: bool = True, progress: Progress = no_progress,
                 should_stop: ShouldStop = never_stop) -> TowardResult:
    """Rank features (:func:`rank_toward`) and steer the best one in ``cells``; the run is stored in
    the analysis (``save`` and an Analysis given) with the ranking's top 10 in its ``info["toward"]``.
    InputError as :func:`rank_toward`, or when no feature brings the cells closer to ``toward``."""
    ranking = rank_toward(analysis, cells=cells, toward=toward, config=config, features=features)
    best = ranking.iloc[0]
    if not best["change"] < 0:
        raise InputError(f"no feature moves these cells toward {toward!r} when steered to {config.target}",
                         fix="try a stronger target (e.g. --target x2) or other cells")
    feature = int(best["feature"])
    ctx = analysis if isinstance(analysis, SteeringContext) else steering_context(analysis)
    result = steer(ctx, features=[feature], cells=cells, config=config, progress=progress, should_stop=should_stop)
    result.info["toward"] = {"cell_type": str(toward).strip(),
                             "ranking": ranking.head(10).replace({np.nan: None}).to_dict("records")}
    if save and not isinstance(analysis, SteeringContext):
        save_steering_run(analysis, result)
    return TowardResult(toward=str(toward).strip(), ranking=ranking, feature=feature, result=result)
