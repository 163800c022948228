"""How far steered cells move towards other cell types in the latent space.

Each cell type's centroid is the mean embedding of its cells (all cells of the data). For every
steered cell: the Euclidean distance to each centroid before and after steering, and the
nearest type before and after.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["centroid_shift", "centroid_summary"]


def _distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Euclidean distances (n, T) between rows of ``x`` (n, d) and ``centroids`` (T, d), float64."""
    x = np.asarray(x, np.float64)
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    return np.sqrt(np.maximum(d2, 0.0))


def centroid_shift(before: np.ndarray, after: np.ndarray, *, cell_index: np.ndarray, cell_names,
                   cell_types=None, centroids: tuple[list[str], np.ndarray] | None = None) -> pd.DataFrame:
    """One row per steered cell: ``cell``, ``cell_index``, ``cell_type``, ``shift`` (‖after − before‖),
    ``nearest_before``, ``nearest_after``, ``moved`` and, per type T, ``distance_before[T]`` and
    ``distance_after[T]``. ``centroids``: (names, (T, d)); None gives only the identity columns and shift."""
    df = pd.DataFrame({"cell": pd.Index([str(c) for c in cell_names]), "cell_index": np.asarray(cell_index, np.int64)})
    if cell_types is not None:
        df["cell_type"] = np.asarray(cell_types).astype(str)
    df["shift"] = np.sqrt(((np.asarray(after, np.float64) - np.asarray(before, np.float64)) ** 2).sum(1))
    if centroids is None:
        return df
    names, c = centroids
    d0, d1 = _distances(before, c), _distances(after, c)
    names_arr = np.asarray(names, dtype=object)
    df["nearest_before"] = names_arr[d0.argmin(1)]
    df["nearest_after"] = names_arr[d1.argmin(1)]
    df["moved"] = df["nearest_before"] != df["nearest_after"]
    extra = {}
    for j, t in enumerate(names):
        extra[f"distance_before[{t}]"] = d0[:, j]
    for j, t in enumerate(names):
        extra[f"distance_after[{t}]"] = d1[:, j]
    return pd.concat([df, pd.DataFrame(extra, index=df.index)], axis=1)


def centroid_summary(shift: pd.DataFrame) -> pd.DataFrame:
    """Per cell type: mean distance of the steered cells to its centroid before and after, the
    change (negative = moved closer), and how many cells have it as their nearest type before
    and after. Empty without centroids."""
    names = [c[len("distance_before["):-1] for c in shift.columns if c.startswith("distance_before[")]
    if not names:
        return pd.DataFrame(columns=["cell_type", "mean_distance_before", "mean_distance_after", "change",
                                     "nearest_before", "nearest_after"])
    before = np.array([shift[f"distance_before[{t}]"].mean() for t in names])
    after = np.array([shift[f"distance_after[{t}]"].mean() for t in names])
    nb = shift["nearest_before"].value_counts()
    na = shift["nearest_after"].value_counts()
    return pd.DataFrame({"cell_type": names, "mean_distance_before": before, "mean_distance_after": after,
                         "change": after - before,
                         "nearest_before": [int(nb.get(t, 0)) for t in names],
                         "nearest_after": [int(na.get(t, 0)) for t in names]}).sort_values(
        "change", kind="stable").reset_index(drop=True)
