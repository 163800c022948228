"""Trajectory features ranked by steering (docs/method.md §3 and §6b; paper appendix B 2.2).

    from core.steer import rank_trajectory, rising_features
    rising = rising_features(acts, cell_types, ["HSC", "MPP", "MEP", "ProEry", "Ery"])   # no model needed
    ranked = rank_trajectory(steering_context(analysis), rising, lineage=[...])        # + shift_rank

:func:`rising_features` lists the features whose activation rises along an ordered lineage
(:func:`core.sae.characterise.find_trajectory_features`: higher over the lineage's cells than
elsewhere, per-stage means rising, up to small dips) and, by default, keeps those whose rise from the first
stage to the last is significant (last − first > 1.96·(SE_first + SE_last), the rule of §3): without
that test, random stage labels list about 1/k! of the live features. :func:`rank_trajectory` is the
paper's re-ranking: each candidate is steered to its target (default its maximum) in the first
stage's cells, and candidates are ordered by how far those cells move toward the last stage's
centroid (:func:`core.steer.toward.rank_toward`, restricted to the candidates).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.base.errors import InputError
from core.sae.characterise import find_trajectory_features
from core.steer.config import SteerConfig
from core.steer.context import SteeringContext
from core.steer.toward import rank_toward

__all__ = ["check_lineage", "rising_features", "rank_trajectory", "SHIFT_COLUMNS", "TOLERANCE"]

#: columns :func:`rank_trajectory` adds: rank by shift (1 = moves the first stage furthest toward the
#: last), mean change of the distance to the last stage's centroid (negative = closer) and −change / before
SHIFT_COLUMNS = ["shift_rank", "shift_change", "shift_progress"]
#: the largest step down a rising feature may take, as a fraction of its largest stage mean
TOLERANCE = 0.1


def check_lineage(lineage, cell_types) -> list[str]:
    """``lineage`` (a list, or a comma/arrow-separated string) as a list of known, distinct cell types.

    InputError for no cell types, fewer than two stages, a repeated stage or an unknown type (the
    message lists the known ones)."""
    if cell_types is None:
        raise InputError("the analysis's data has no cell-type column, so there is no lineage to follow",
                         fix="train the SAE on data with a cell-type column (`featurelens train --cell-type COLUMN`)")
    if isinstance(lineage, str):
        lineage = lineage.replace("→", ",").replace("->", ",").split(",")
    stages = [str(t).strip() for t in (lineage or []) if str(t).strip()]
    known = sorted({str(t) for t in pd.unique(np.asarray(cell_types).astype(str))})
    if len(stages) < 2:
        raise InputError(f"a lineage needs at least two ordered cell types (got {len(stages)})",
                         fix=f"name two or more of: {', '.join(known)} (first stage first)")
    repeated = sorted({t for t in stages if stages.count(t) > 1})
    if repeated:
        raise InputError(f"cell type(s) {', '.join(repeated)} appear more than once in the lineage",
                         fix="name each stage once, first stage first")
    unknown = [t for t in stages if t not in set(known)]
    if unknown:
        raise InputError(f"unknown cell type(s): {', '.join(unknown)}", fix=f"choose from: {', '.join(known)}")
    return stages


def rising_features(activations, cell_types, lineage, *, strict: bool = False, tolerance: float = TOLERANCE,
                    significant: bool = True) -> pd.DataFrame:
    """The features whose activation rises along ``lineage`` (first stage first).

    ``activations``: (n_cells, n_features), dense or sparse; ``cell_types``: length n_cells.
    ``strict``: rise at every step (the paper's rule); by default they end higher than they start and
    no step falls by more than ``tolerance`` (:data:`TOLERANCE`) × the largest stage mean: a late
    program sits near 0 in the first stages, where its means wobble. ``significant``: keep only
    those whose first → last rise passes the §3 rule. Columns as :func:`~core.sae.characterise.find_trajectory_features`
    (``feature``, ``rise``, ``mean_lineage``, ``mean_other``, ``significant``, ``mean[<t>]``,
    ``se[<t>]``), largest rise first; ``df.attrs``: ``lineage``, ``n_cells`` per stage, and
    ``n_monotone`` (candidates before the significance filter)."""
    stages = check_lineage(lineage, cell_types)
    labels = np.asarray(cell_types).astype(str)
    out = find_trajectory_features(activations, labels, stages, strict=strict, tolerance=tolerance)
    n_monotone = len(out)
    if significant:
        out = out[out["significant"].to_numpy(bool)].reset_index(drop=True)
    out.attrs = {"lineage": stages, "n_cells": {t: int((labels == t).sum()) for t in stages},
                 "n_monotone": n_monotone, "strict": strict, "tolerance": tolerance, "significant_only": significant}
    return out


def rank_trajectory(ctx: SteeringContext, rising: pd.DataFrame, *, lineage, config: SteerConfig = SteerConfig()
                    ) -> pd.DataFrame:
    """``rising`` (:func:`rising_features`) ordered by the latent shift steering produces, plus
    :data:`SHIFT_COLUMNS`: each candidate set to ``config.target`` in the first stage's cells,
    ranked by the mean change of their distance to the last stage's centroid (most negative first;
    :func:`~core.steer.toward.rank_toward`). ``ctx``: the analysis's steering context (SAE, embedding)."""
    stages = check_lineage(lineage, ctx.cell_types)
    if rising.empty:
        return rising.assign(**{c: pd.Series(dtype=float) for c in SHIFT_COLUMNS})
    cells = np.flatnonzero(ctx.cell_types == stages[0])
    ranking = rank_toward(ctx, cells=cells, toward=stages[-1], config=config, features=rising["feature"].tolist())
    shift = ranking.set_index("feature")
    out = rising.copy()
    out["shift_rank"] = shift["rank"].reindex(out["feature"]).to_numpy()
    out["shift_change"] = shift["change"].reindex(out["feature"]).to_numpy()
    out["shift_progress"] = shift["progress"].reindex(out["feature"]).to_numpy()
    out = out.sort_values(["shift_rank", "feature"], na_position="last", kind="stable", ignore_index=True)
    out.attrs = {**rising.attrs, "shift_cells": int(cells.size), "toward": stages[-1]}
    return out

