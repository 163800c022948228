"""Seed robustness (paper Table S6): train one SAE per seed, compare what they learn.

Per seed: live and dead counts, L0, reconstruction (and, once feature characterisation
exists, local/regional/global counts through the ``characterise`` hook). Per pair of seeds: how many
live features match — optimal one-to-one matching of decoder directions by cosine
(:func:`scipy.optimize.linear_sum_assignment`), counting pairs with cosine ≥ 0.9.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from core.base.errors import InputError
from core.sae.config import SAEConfig, TrainConfig
from core.sae.data import as_matrix
from core.sae.encode import encode_activations
from core.sae.metrics import sae_metrics
from core.sae.models import SparseAutoencoder
from core.sae.train import TrainResult, train_sae

__all__ = ["RobustnessReport", "match_features", "robustness_report", "train_seeds", "seed_robustness",
           "parse_seeds"]

Characterise = Callable[[SparseAutoencoder, Any], dict[str, Any]]
SEED_COLUMNS = ("seed", "live", "dead", "l0", "mse", "fvu", "redundant", "val_loss", "n_local", "n_regional",
                "n_global")


@dataclass
class RobustnessReport:
    """``per_seed``: one row per seed (:data:`SEED_COLUMNS`; ``n_local``/``n_regional``/``n_global``
    stay empty until a ``characterise`` hook fills them). ``pairs``: one row per pair of seeds
    (``matched`` live features with cosine ≥ ``threshold``, as a fraction of the smaller live
    count, and their mean cosine). ``summary``: mean, standard deviation and coefficient of
    variation of the live count and L0 across seeds, and the mean matched fraction."""

    per_seed: pd.DataFrame
    pairs: pd.DataFrame
    summary: dict[str, Any]
    threshold: float = 0.9
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "per_seed": _records(self.per_seed),
            "pairs": _records(self.pairs),
            "summary": self.summary,
            "notes": list(self.notes),
        }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for rec in df.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and np.isnan(v) else
                        v.item() if isinstance(v, np.generic) else v) for k, v in rec.items()})
    return out


def parse_seeds(text: str) -> list[int]:
    """``"0,42,9307"`` -> ``[0, 42, 9307]``; InputError for anything else or duplicates."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip() != ""]
    except ValueError:
        raise InputError(f"--seeds must be comma-separated integers (got {text!r})", fix="e.g. --seeds 0,42,9307") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds must list distinct non-negative integers (got {text!r})", fix="e.g. --seeds 0,42,9307")
    return seeds


def match_features(dirs_a: np.ndarray, dirs_b: np.ndarray, *, threshold: float = 0.9) -> pd.DataFrame:
    """Optimal one-to-one matching of two sets of feature directions (n_a, d), (n_b, d) that
    maximises the total cosine. Returns the matched pairs ``(a, b, cosine)`` with cosine ≥
    ``threshold``, best first."""
    a = _unit(dirs_a)
    b = _unit(dirs_b)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return pd.DataFrame({"a": np.zeros(0, int), "b": np.zeros(0, int), "cosine": np.zeros(0)})
    cos = a @ b.T
    rows, cols = linear_sum_assignment(cos, maximize=True)
    keep = cos[rows, cols] >= threshold
    out = pd.DataFrame({"a": rows[keep], "b": cols[keep], "cosine": cos[rows, cols][keep]})
    return out.sort_values("cosine", ascending=False, ignore_index=True)


def _unit(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def train_seeds(data: Any, *, config: SAEConfig, train: TrainConfig, seeds: Sequence[int],
                progress: Callable[[float, float, str], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_eval: Callable[[dict], None] | None = None) -> list[TrainResult]:
    """Train one SAE per seed (same data and configs, ``train.seed`` replaced). Progress messages
    name the seed (``"seed 42 (2/3): …"``); ``on_eval`` follows the first (kept) seed's evaluations."""
    x = as_matrix(data)
    results = []
    for i, seed in enumerate(seeds):
        def sub(done: float, total: float, message: str, _i: int = i, _s: int = seed) -> None:
            if progress is not None:
                progress(_i * total + done, len(seeds) * total, f"seed {_s} ({_i + 1}/{len(seeds)}): {message}")

        results.append(train_sae(x, config=config, train=train.replace(seed=int(seed)), progress=sub,
                                 should_stop=should_stop, on_eval=on_eval if i == 0 else None))
        if results[-1].stop_reason == "should_stop":
            break
    return results


def robustness_report(
    saes: dict[int, SparseAutoencoder],
    data: Any,
    *,
    metrics: dict[int, tuple[dict[str, Any], pd.DataFrame]] | None = None,
    val_loss: dict[int, float] | None = None,
    characterise: Characterise | None = None,
    threshold: float = 0.9,
) -> RobustnessReport:
    """Compare SAEs trained with different seeds on the same ``data``.

    ``metrics``: already computed :func:`~core.sae.metrics.sae_metrics` results per seed,
    ``(summary, features)`` (computed here otherwise). ``characterise(sae, activations) -> {"n_local", "n_regional",
    "n_global"}`` fills those columns (feature characterisation is a later step)."""
    x = as_matrix(data)
    rows, live_dirs, notes = [], {}, []
    for seed, sae in saes.items():
        given = (metrics or {}).get(seed)
        acts = encode_activations(sae, x) if given is None or characterise is not None else None
        m, table = given if given is not None else sae_metrics(sae, x, activations=acts)
        live = table["live"].to_numpy(dtype=bool)
        extra = characterise(sae, acts) if characterise is not None else {}
        rows.append({
            "seed": int(seed), "live": int(m["live"]), "dead": int(m["dead"]), "l0": float(m["l0"]),
            "mse": float(m["mse"]), "fvu": float(m["fvu"]), "redundant": int(m["redundant"]),
            "val_loss": float((val_loss or {}).get(seed, np.nan)),
            "n_local": extra.get("n_local"), "n_regional": extra.get("n_regional"), "n_global": extra.get("n_global"),
        })
        live_dirs[seed] = sae.feature_directions().cpu().numpy()[live]
    if characterise is None:
        notes.append("n_local / n_regional / n_global: filled in once features are characterised by cell type")
    per_seed = pd.DataFrame(rows, columns=list(SEED_COLUMNS))
    pair_rows = []
    for sa, sb in combinations(list(saes), 2):
        matched = match_features(live_dirs[sa], live_dirs[sb], threshold=threshold)
        smaller = min(len(live_dirs[sa]), len(live_dirs[sb]))
        pair_rows.append({
            "seed_a": int(sa), "seed_b": int(sb), "live_a": len(live_dirs[sa]), "live_b": len(live_dirs[sb]),
            "matched": len(matched), "matched_fraction": len(matched) / smaller if smaller else np.nan,
            "mean_cosine": float(matched["cosine"].mean()) if len(matched) else np.nan,
        })
    pairs = pd.DataFrame(pair_rows, columns=["seed_a", "seed_b", "live_a", "live_b", "matched",
                                             "matched_fraction", "mean_cosine"])
    summary = {"n_seeds": len(saes)}
    for col in ("live", "l0"):
        vals = per_seed[col].to_numpy(dtype=float)
        mean, std = float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        summary[col] = {"mean": mean, "std": std, "cv": std / mean if mean else None,
                        "min": float(vals.min()), "max": float(vals.max())}
    summary["matched_fraction_mean"] = float(pairs["matched_fraction"].mean()) if len(pairs) else None
    return RobustnessReport(per_seed=per_seed, pairs=pairs, summary=summary, threshold=threshold, notes=notes)


def seed_robustness(
    data: Any,
    *,
    config: SAEConfig,
    train: TrainConfig,
    seeds: Sequence[int] = (0, 42, 9307),
    characterise: Characterise | None = None,
    threshold: float = 0.9,
    progress: Callable[[float, float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[RobustnessReport, list[TrainResult]]:
    """Train one SAE per seed and compare them: ``(report, results)``."""
    if len(seeds) < 2:
        raise InputError("seed robustness needs at least two seeds", fix="e.g. --seeds 0,42,9307")
    x = as_matrix(data)
    results = train_seeds(x, config=config, train=train, seeds=seeds, progress=progress, should_stop=should_stop)
    saes = {r.train_config.seed: r.sae for r in results}
    val = {r.train_config.seed: r.final.get("val_loss", np.nan) for r in results}
    return robustness_report(saes, x, val_loss=val, characterise=characterise, threshold=threshold), results
