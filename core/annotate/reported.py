"""Which rows of ``annotations.parquet`` are a feature's concepts.

``annotations.parquet`` keeps every nominal pair with all its statistics; the boolean column
``reported`` marks the pairs the tool stands behind (calibrated method: up-regulated genes,
FDR 5 %, most specific terms; paper method: every kept pair). ``redundant_with`` names the
more specific reported term that explains an ancestor ("" if none): such rows are not
reported but stay findable by search. Tables written before these columns existed count every
row as reported.
"""
from __future__ import annotations

import pandas as pd

__all__ = ["reported", "findable", "is_reported", "is_findable", "headline_p", "ordered"]


def is_reported(annotations: pd.DataFrame) -> pd.Series:
    """Bool per row: the pair is one of its feature's concepts."""
    if "reported" not in annotations:
        return pd.Series(True, index=annotations.index)
    return annotations["reported"].astype(bool)


def is_findable(annotations: pd.DataFrame) -> pd.Series:
    """Bool per row: reported, or an up-regulated term explained by a reported one (search finds both)."""
    mask = is_reported(annotations)
    if "redundant_with" in annotations:
        explained = annotations["redundant_with"].astype(str) != ""
        if "de_direction" in annotations:
            explained &= annotations["de_direction"].astype(str) != "down"
        mask = mask | explained
    return mask


def reported(annotations: pd.DataFrame) -> pd.DataFrame:
    """The reported rows only (a copy-free view when nothing is filtered out)."""
    mask = is_reported(annotations)
    return annotations if bool(mask.all()) else annotations[mask.to_numpy()]


def findable(annotations: pd.DataFrame) -> pd.DataFrame:
    """Reported rows plus the ancestors they explain."""
    mask = is_findable(annotations)
    return annotations if bool(mask.all()) else annotations[mask.to_numpy()]


def headline_p(annotations: pd.DataFrame) -> pd.Series:
    """The p-value a row is ranked by within its feature: ``hyper_p`` (calibrated method, the
    over-representation test of the up-regulated genes) where present, else ``binom_p`` (paper)."""
    col = "hyper_p" if "hyper_p" in annotations else "binom_p"
    return annotations[col].astype(float)


def ordered(annotations: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by feature, then by :func:`headline_p` (most significant first)."""
    key = headline_p(annotations)
    return annotations.assign(_p=key.to_numpy()).sort_values(["feature", "_p"], kind="stable").drop(columns="_p")
