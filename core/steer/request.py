"""What a user asks of a steering run, and running it into the analysis.

The CLI (``featurelens steer``) and the Steering page both build a :class:`SteerRequest` (the page
from its form with :meth:`SteerRequest.from_form`) and call :func:`steer_into_analysis`::

    from core.steer.request import SteerRequest, steer_into_analysis
    request = SteerRequest(features=(12,), cells="cell_type=Proerythroblast", config=SteerConfig(target="x2"))
    result = steer_into_analysis(analysis, request)   # stored as steering/<result.run_id>/
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.base.errors import InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress
from core.steer.config import SteerConfig
from core.steer.context import steering_context
from core.steer.run import SteeringResult, steer
from core.steer.store import save_steering_run

__all__ = ["SteerRequest", "steer_into_analysis", "feature_ids", "MAX_FEATURES", "CELL_MODES", "TARGET_KINDS"]

MAX_FEATURES = 10  # features the page steers together
CELL_MODES = ("types", "lasso", "explorer", "all")
TARGET_KINDS = ("max", "factor", "percentile", "mean", "value", "off")


def feature_ids(values: Iterable | None) -> list[int]:
    """Feature numbers of a form's values (``[3, "5"]`` -> ``[3, 5]``); InputError for anything else."""
    out = []
    for v in values or []:
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            raise InputError(f"{v!r} is not a feature number", fix="choose features from the list") from None
    return out


@dataclass(frozen=True)
class SteerRequest:
    """Which features to steer in which cells, and how.

    ``features``: feature ids (distinct); ``cells``: a selection text (``"all"``,
    ``"cell_type=A,B"``, see :data:`core.steer.cells.SELECTION_HELP`) or cell indices;
    ``config``: target(s), error term, test and enrichment (:class:`SteerConfig`);
    ``cells_label``: how the stored run names its cells (default: the selection itself).
    InputError for ids that are not integers, none or a repeated one, or a number of targets that
    fits neither one for all features nor one per feature.
    """

    features: tuple[int, ...]
    cells: str | tuple[int, ...]
    config: SteerConfig = field(default_factory=SteerConfig)
    cells_label: str | None = None

    def __post_init__(self) -> None:
        raw = self.features
        if isinstance(raw, (int, float, str)) and not isinstance(raw, bool):
            raw = (raw,)
        try:
            feats = tuple(int(f) for f in raw)
        except (TypeError, ValueError):
            raise InputError(f"features must be integers, got {self.features!r}", fix="e.g. --feature 12 or 12,40") \
                from None
        if not feats:
            raise InputError("no feature to steer", fix="give at least one feature id")
        if len(set(feats)) != len(feats):
            raise InputError(f"feature listed twice in {list(feats)}", fix="list each feature once")
        object.__setattr__(self, "features", feats)
        if not isinstance(self.cells, str):
            object.__setattr__(self, "cells", tuple(int(c) for c in self.cells))
        if not isinstance(self.config, SteerConfig):
            raise InputError(f"config must be a SteerConfig, not {type(self.config).__name__}")
        self.config.targets_for(len(feats))  # one target for all, or one per feature

    @classmethod
    def from_form(cls, *, features, cell_mode: str | None = "types", cell_types=None, lasso=None, carried=None,
                  target_kind: str | None = "max", factor=None, percentile=None, mean_type=None, mean_factor=None,
                  value=None, error_term: bool | None = True, test: str | None = "paired-log") -> SteerRequest:
        """The Steering page's form -> a request; InputError saying what to fix.

        ``cell_mode``: one of :data:`CELL_MODES` (``types`` uses ``cell_types``, ``lasso`` the cells
        lassoed on the page, ``explorer`` those ``carried`` from the Explorer); ``target_kind``: one of
        :data:`TARGET_KINDS` (``factor`` × maximum, ``percentile``, ``mean`` of ``mean_type`` ×
        ``mean_factor``, a ``value``). At most :data:`MAX_FEATURES` features.
        """
        feats = feature_ids(features)
        if not feats:
            raise InputError("no feature chosen", fix="choose at least one feature to steer")
        if len(feats) > MAX_FEATURES:
            raise InputError(f"{len(feats)} features chosen; at most {MAX_FEATURES} can be steered together",
                             fix="remove some features")
        cells, label = _form_cells(cell_mode or "types", cell_types, lasso, carried)
        config = SteerConfig(target=_form_target(target_kind or "max", factor, percentile, mean_type, mean_factor,
                                                 value),
                             error_term=bool(True if error_term is None else error_term), test=test or "paired-log",
                             save_expression=False)
        return cls(features=tuple(feats), cells=cells, config=config, cells_label=label)

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features),
                "cells": self.cells if isinstance(self.cells, str) else list(self.cells),
                "config": self.config.to_dict(), "cells_label": self.cells_label}


def _form_cells(mode: str, cell_types, lasso, carried) -> tuple[str | tuple[int, ...], str]:
    """``(selection, label for the stored run)`` of the form's cell choice."""
    if mode == "types":
        types = [str(t) for t in cell_types or []]
        if not types:
            raise InputError("no cell type chosen", fix="choose one or more cell types, or steer all cells")
        cells = "cell_type=" + ",".join(types)
        return cells, cells
    if mode == "lasso":
        idx = tuple(sorted({int(c) for c in lasso or []}))
        if not idx:
            raise InputError("no cells lassoed", fix="draw a lasso around cells in the latent view, or choose "
                                                     "cell types")
        return idx, f"lasso: {len(idx):,} cells"
    if mode == "explorer":
        idx = tuple(sorted({int(c) for c in carried or []}))
        if not idx:
            raise InputError("no cells were carried from the Explorer for this analysis",
                             fix="lasso cells in the Explorer's latent space and press “Steer in these cells”, "
                                 "or choose cell types")
        return idx, f"Explorer selection: {len(idx):,} cells"
    if mode == "all":
        return "all", "all"
    raise InputError(f"unknown cell selection {mode!r}", fix="choose cell types, a lasso or all cells")


def _form_target(kind: str, factor, percentile, mean_type, mean_factor, value) -> str | float:
    """The target spec (:mod:`core.steer.targets`) of the form's target choice."""
    if kind == "factor":
        if factor is None:
            raise InputError("no multiple chosen", fix="set the × maximum slider")
        return f"x{float(factor):g}"
    if kind == "percentile":
        if percentile is None:
            raise InputError("no percentile chosen", fix="set the percentile slider")
        return f"p{float(percentile):g}"
    if kind == "mean":
        if not mean_type:
            raise InputError("no cell type chosen for the cell-type mean", fix="choose the cell type whose mean "
                                                                              "activation is the target")
        f = _positive(mean_factor, "factor of the cell-type mean", "e.g. 1.5")
        return f"mean:{mean_type}x{f:g}"
    if kind == "value":
        if value is None or value == "":
            raise InputError("no activation value given", fix="type the activation to set, e.g. 2.5")
        return float(value)
    if kind in ("max", "off"):
        return kind
    raise InputError(f"unknown target {kind!r}", fix="choose maximum, × maximum, percentile, cell-type mean, off or a value")


def _positive(value, what: str, example: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"no {what} given", fix=example) from None
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"the {what} must be a positive number, not {value!r}", fix=example)
    return v


def steer_into_analysis(analysis, request: SteerRequest, *, progress: Progress = no_progress,
                        should_stop: ShouldStop = never_stop) -> SteeringResult:
    """Run ``request`` on ``analysis`` and store the run in it (one atomic step, ``steering/<run id>/``).

    Returns the result, its ``run_id`` set. Progress goes through 7 stages (6 of steering, then
    saving). InputError (nothing written) for a missing decoder, an unknown or dead feature, an
    unknown cell type or an empty selection; :class:`~core.base.progress.Cancelled` when ``should_stop()``.
    """
    stages = 7

    def sub(done, total, message=""):
        progress(done / max(total, 1) * (stages - 1), stages, message)

    ctx = steering_context(analysis)
    cells = request.cells if isinstance(request.cells, str) else list(request.cells)
    result = steer(ctx, features=list(request.features), cells=cells, config=request.config, progress=sub,
                   should_stop=should_stop)
    if request.cells_label is not None:
        result.info["cells"] = request.cells_label
    progress(stages - 1, stages, "saving the run in the analysis")
    save_steering_run(analysis, result)  # the step writer adds to the config on disk (another job may have written)
    progress(stages, stages, "saved")
    return result
