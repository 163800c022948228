"""Per-feature reproducibility across seeds: how well each feature of the kept SAE is found again
by SAEs trained with other seeds.

For feature ``f`` of the kept SAE (unit decoder direction ``d_f``) and another seed ``s`` with
live features ``G_s``, the best-matched cosine is ``c_s(f) = max_{g ∈ G_s} cos(d_f, d_g)``.
``stability(f)`` is the mean of ``c_s(f)`` over the other seeds and ``stability_min(f)`` the
minimum. The mean is the per-feature form of the "fraction of features shared across seeds"
(Paulo & Belrose 2025; SAEBench): averaged over the kept SAE's live features and thresholded,
it gives that fraction; with two other seeds the minimum is one noisy draw, kept as a stricter
second column. Dead features of the kept SAE get NaN; a seed without live features adds nothing.

Cosines are computed in float32 blocks of ``block_rows`` rows, so 10,000 × 10,000 latents
never hold more than ``block_rows × n_other`` cosines at once.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["best_match_cosine", "feature_stability", "stability_summary", "chance_best_cosine", "seed_stability",
           "describe_stability",
           "STABILITY_COLUMNS", "STABLE_AT", "UNSTABLE_BELOW"]

STABILITY_COLUMNS = ("stability", "stability_min", "stability_seeds")
STABLE_AT = 0.9       # the summary's "fraction with stability ≥ 0.9" (the robustness report's match threshold)
UNSTABLE_BELOW = 0.7  # the Explorer's "may be a seed artefact" hint (Paulo & Belrose's sharing threshold)


def _unit32(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"directions must be a 2-d (n, d) array (got shape {w.shape})")
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), np.float32(1e-12))


def best_match_cosine(dirs: np.ndarray, others: np.ndarray, *, block_rows: int = 2048) -> np.ndarray:
    """``max_j cos(dirs[i], others[j])`` for every row of ``dirs`` (n, d) against ``others`` (m, d):
    float64 (n,), NaN for every row when ``others`` is empty. Rows are normalised here."""
    a, b = _unit32(dirs), _unit32(others)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"directions of different widths: {a.shape[1]} and {b.shape[1]}")
    out = np.full(a.shape[0], np.nan)
    if b.shape[0] == 0:
        return out
    bt = np.ascontiguousarray(b.T)
    for start in range(0, a.shape[0], max(int(block_rows), 1)):
        block = a[start:start + block_rows] @ bt                      # (rows, m) float32
        out[start:start + block.shape[0]] = np.minimum(block.max(axis=1), 1.0)
    return out


def feature_stability(dirs: np.ndarray, live: np.ndarray, others: Sequence[np.ndarray], *,
                      block_rows: int = 2048) -> pd.DataFrame:
    """Stability of each feature of the kept SAE, one row per feature (hidden rows).

    ``dirs``: (hidden, d) decoder directions of the kept SAE; ``live``: bool (hidden,);
    ``others``: the other seeds' decoder directions of their *live* features, each (m_s, d).
    Columns :data:`STABILITY_COLUMNS`: ``stability`` (mean over the other seeds of the best
    cosine), ``stability_min`` (their minimum) and ``stability_seeds`` (how many seeds entered).
    """
    live = np.asarray(live, dtype=bool)
    dirs = np.asarray(dirs)
    if live.shape != (dirs.shape[0],):
        raise ValueError(f"live has shape {live.shape}, expected ({dirs.shape[0]},)")
    best = np.full((len(others), dirs.shape[0]), np.nan)
    for i, other in enumerate(others):
        best[i, live] = best_match_cosine(dirs[live], other, block_rows=block_rows)
    seen = np.isfinite(best)
    n = seen.sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.where(n > 0, np.where(seen, best, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
        low = np.where(n > 0, np.where(seen, best, np.inf).min(axis=0, initial=np.inf), np.nan)
    return pd.DataFrame({"stability": mean, "stability_min": low, "stability_seeds": n.astype(np.int64)})


def chance_best_cosine(d: int, m: int, *, q: float = 0.5) -> float:
    """Quantile ``q`` of the best cosine of a random unit vector in ``d`` dimensions against ``m``
    independent random unit vectors: what stability an unrelated SAE of ``m`` live features gives.

    The cosine of two random unit vectors satisfies ``(1 + c) / 2 ~ Beta((d−1)/2, (d−1)/2)``, so
    the maximum of ``m`` of them has CDF ``F(c)^m``."""
    if d < 2 or m < 1:
        return float("nan")
    a = (d - 1) / 2.0
    return float(2.0 * stats.beta.ppf(q ** (1.0 / m), a, a) - 1.0)


def stability_summary(table: pd.DataFrame, *, d: int, other_live: Sequence[int]) -> dict[str, Any]:
    """Summary of :func:`feature_stability` over the features with a score (the kept SAE's live
    ones): ``median``, ``fraction_stable`` (≥ :data:`STABLE_AT`), ``fraction_unstable`` (<
    :data:`UNSTABLE_BELOW`), ``n_features``, ``n_other_seeds`` and ``chance_median`` (the median
    best cosine random directions would give, :func:`chance_best_cosine`, for the smallest other
    live count)."""
    s = table["stability"].to_numpy(dtype=float)
    s = s[np.isfinite(s)]
    live_counts = [int(m) for m in other_live if m > 0]
    return {
        "definition": "mean over the other seeds of the best-matched decoder cosine",
        "n_features": int(s.size),
        "n_other_seeds": len(live_counts),
        "median": float(np.median(s)) if s.size else None,
        "fraction_stable": float((s >= STABLE_AT).mean()) if s.size else None,
        "stable_at": STABLE_AT,
        "fraction_unstable": float((s < UNSTABLE_BELOW).mean()) if s.size else None,
        "unstable_below": UNSTABLE_BELOW,
        "chance_median": chance_best_cosine(d, min(live_counts)) if live_counts else None,
    }


def seed_stability(saes: Sequence[Any], live: Sequence[np.ndarray], *,
                   block_rows: int = 2048) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(table, summary)`` for SAEs trained with different seeds; the first is the kept one.

    ``saes``: :class:`~core.sae.models.SparseAutoencoder` objects (their ``feature_directions``);
    ``live``: each one's bool (hidden,) live mask. ``table``: :func:`feature_stability` of the
    first SAE; ``summary``: :func:`stability_summary`."""
    dirs = [sae.feature_directions().cpu().float().numpy() for sae in saes]
    masks = [np.asarray(m, dtype=bool) for m in live]
    others = [d[m] for d, m in zip(dirs[1:], masks[1:])]
    table = feature_stability(dirs[0], masks[0], others, block_rows=block_rows)
    return table, stability_summary(table, d=dirs[0].shape[1], other_live=[len(o) for o in others])


def describe_stability(summary: dict[str, Any] | None) -> str:
    """One line for people from :func:`stability_summary` (``""`` when there is none)."""
    if not summary or summary.get("median") is None:
        return ""
    n = summary["n_other_seeds"]
    chance = summary.get("chance_median")
    return (f"stability across {n} other seed{'s' if n != 1 else ''}: median {summary['median']:.2f}, "
            f"{100 * summary['fraction_stable']:.1f} % of {summary['n_features']:,} live features ≥ "
            f"{summary['stable_at']:g}" + (f" (random directions: {chance:.2f})" if chance is not None else ""))
