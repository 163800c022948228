"""Choose the L1 strength from the data: a short sweep and the knee of the FVU–L0 frontier.

The ``auto`` preset trains one short Vanilla SAE per strength in :attr:`SweepConfig.l1` (on at
most ``max_cells`` cells, for a fraction of the epochs), measures each on its held-out cells,
and keeps the strength at the knee of the frontier of reconstruction error (FVU) against
latents per cell (L0, log scale). The knee is where buying more reconstruction starts to cost
many more latents per cell: the point farthest below the chord from the sparsest to the densest
run, with both axes scaled to [0, 1] (Satopää et al. 2011, "Kneedle"). No ground truth is used.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress
from core.sae.config import TrainConfig, VanillaConfig
from core.sae.train import train_sae

__all__ = ["SweepConfig", "preset_sweep", "sparsity_sweep", "knee_index", "KNEE_RULE"]

KNEE_RULE = ("knee of validation FVU against log10 L0 (Kneedle: farthest below the chord from the sparsest "
             "to the densest run, axes scaled to [0, 1])")


@dataclass(frozen=True)
class SweepConfig:
    """``l1``: strengths to try (``VanillaConfig.l1_scale="input"`` units); ``max_cells``: cells
    the sweep runs use (a seeded subsample); ``epoch_fraction``: their share of the final run's
    epochs (at least 3)."""

    l1: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8)
    max_cells: int = 20_000
    epoch_fraction: float = 0.34

    def __post_init__(self) -> None:
        ok = len(self.l1) >= 3 and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in self.l1)
        if not ok or len(set(self.l1)) != len(self.l1):
            raise InputError(f"the sparsity sweep needs at least 3 distinct positive L1 strengths (got {self.l1!r})",
                             fix="e.g. --sweep-l1 0.03,0.1,0.3,1")
        if not (isinstance(self.max_cells, int) and self.max_cells >= 100):
            raise InputError(f"max_cells must be a whole number ≥ 100 (got {self.max_cells!r})")
        if not 0 < self.epoch_fraction <= 1:
            raise InputError(f"epoch_fraction must be in (0, 1] (got {self.epoch_fraction!r})")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "l1": list(self.l1)}


def preset_sweep(preset: str, config, *, l1: tuple[float, ...] | None = None) -> SweepConfig | None:
    """The sweep a preset asks for: a :class:`SweepConfig` for ``auto`` (``l1``: its strengths),
    None for the others; InputError for strengths without ``auto`` or an architecture without L1."""
    if preset != "auto":
        if l1:
            raise InputError("--sweep-l1 applies only to --preset auto", fix="add --preset auto, or drop --sweep-l1")
        return None
    if not hasattr(config, "l1"):
        raise InputError(f"the auto preset chooses the L1 strength; the {config.arch} architecture has none",
                         fix="use Vanilla or ReLU (--arch vanilla|relu), or another preset with your own k")
    return SweepConfig(l1=tuple(l1)) if l1 else SweepConfig()


def knee_index(l0: np.ndarray, fvu: np.ndarray) -> int:
    """Index of the knee of the frontier given by ``l0`` and ``fvu`` (same length ≥ 3).

    Runs are ordered by L0; x = log10 L0 and y = FVU are scaled to [0, 1]; the knee is the run
    farthest below the chord from the sparsest to the densest run. When FVU hardly changes
    (spread < 0.01) the sparsest run is the knee: more latents buy nothing."""
    l0 = np.asarray(l0, dtype=float)
    fvu = np.asarray(fvu, dtype=float)
    ok = np.isfinite(l0) & np.isfinite(fvu) & (l0 > 0)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        raise InputError("no sweep run gave a usable SAE (every run was dead or failed)",
                         fix="check the embedding, or set --l1 by hand")
    order = idx[np.argsort(l0[idx], kind="stable")]
    x, y = np.log10(l0[order]), fvu[order]
    if idx.size < 3 or np.ptp(y) < 0.01 or np.ptp(x) == 0:
        return int(order[0])
    xs, ys = (x - x.min()) / np.ptp(x), (y - y.min()) / np.ptp(y)
    chord = ys[0] + (ys[-1] - ys[0]) * (xs - xs[0]) / (xs[-1] - xs[0])
    return int(order[int(np.argmax(chord - ys))])


def sparsity_sweep(x: np.ndarray, *, config: VanillaConfig, train: TrainConfig, sweep: SweepConfig,
                   progress: Progress = no_progress, should_stop: ShouldStop = never_stop) -> dict[str, Any]:
    """Train one short SAE per strength on ``x`` (n_cells, d) and choose one.

    Returns ``{"rows": [{"l1", "l0", "l0_fraction", "fvu", "live", "dead_fraction"}, …],
    "chosen_l1", "chosen", "rule", "cells", "epochs", "config"}`` (validation numbers of each run)."""
    if not isinstance(config, VanillaConfig):
        raise InputError(f"the sparsity sweep tunes the L1 strength; the {config.arch} architecture has none",
                         fix="use --arch vanilla or relu with --preset auto, or set --k by hand")
    rng = np.random.default_rng(train.seed)
    cells = np.sort(rng.choice(x.shape[0], sweep.max_cells, replace=False)) if x.shape[0] > sweep.max_cells \
        else np.arange(x.shape[0])
    xs = np.ascontiguousarray(x[cells])
    epochs = max(3, int(round(train.epochs * sweep.epoch_fraction)))
    short = train.replace(epochs=epochs, max_steps=None,
                          min_steps=int(train.min_steps * sweep.epoch_fraction) if train.min_steps else None)
    rows = []
    for i, l1 in enumerate(sweep.l1):
        if should_stop():
            break
        def report(done: float, total: float, message: str, i=i, l1=l1) -> None:
            progress(i + done / max(total, 1), len(sweep.l1) + 1, f"sparsity sweep {i + 1}/{len(sweep.l1)} "
                     f"(L1 {l1:g}): {message}")
        res = train_sae(xs, config=config.replace(l1=float(l1)), train=short, progress=report,
                        should_stop=should_stop)
        f = res.final
        rows.append({"l1": float(l1), "l0": f["val_l0"], "l0_fraction": f["val_l0"] / res.sae.hidden,
                     "fvu": f["val_fvu"], "live": f["val_live"], "dead_fraction": 1 - f["val_live"] / res.sae.hidden})
    if len(rows) < len(sweep.l1):
        raise Cancelled("training cancelled during the sparsity sweep; the analysis was not changed")
    best = knee_index(np.array([r["l0"] for r in rows]), np.array([r["fvu"] for r in rows]))
    return {"rows": rows, "chosen": best, "chosen_l1": rows[best]["l1"], "rule": KNEE_RULE,
            "cells": int(len(cells)), "epochs": epochs, "config": sweep.to_dict()}
