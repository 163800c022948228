"""Steering targets: what value a steered feature is set to (docs/method.md §6).

A target is written as text (the CLI, the app and ``SteerConfig`` use the same forms):

==================  ==========================================================================
``max``             the feature's maximum activation over all cells of the data
``xN`` (``x2``)     N × that maximum
``pNN`` (``p99``)   the NNth percentile of its activation over the cells where it fires (> 0)
``mean:TYPE``       its mean activation in cell type TYPE (all cells of the type, zeros included)
``mean:TYPExF``     that mean × F (also ``mean:TYPE*F``), e.g. ``mean:B cellx1.5``
``off``             0: switch the feature off (negative steering)
a number            that absolute activation (≥ 0), e.g. ``3.5``
==================  ==========================================================================
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from core.base.errors import InputError

__all__ = ["Target", "parse_target", "resolve_targets", "feature_activation_stats", "TARGET_HELP"]

TARGET_HELP = ("max | xN (N × max, e.g. x2) | pNN (percentile over firing cells, e.g. p99) | "
               "mean:TYPE[xF] (a cell type's mean × F) | off | a number")
_FIX = f"write the target as one of: {TARGET_HELP}"


@dataclass(frozen=True)
class Target:
    """A parsed target. ``kind``: "max" (factor × max), "percentile", "mean", "value" or "off"."""

    kind: str
    factor: float = 1.0          # max and mean: multiplier
    percentile: float = 0.0      # percentile: in (0, 100]
    value: float = 0.0           # value: absolute activation
    cell_type: str | None = None  # mean: which cell type
    text: str = ""               # the spec as written (normalised)

    @property
    def label(self) -> str:
        return self.text


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def parse_target(spec) -> Target:
    """Parse one target spec (text or number); raises InputError naming the accepted forms."""
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, bool):
        raise InputError(f"invalid steering target {spec!r}", fix=_FIX)
    if isinstance(spec, (int, float, np.integer, np.floating)):
        return _value_target(float(spec), repr(float(spec)))
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"invalid steering target {spec!r}", fix=_FIX)
    text = spec.strip()
    low = text.lower()
    if low == "max":
        return Target("max", factor=1.0, text="max")
    if low in ("off", "zero"):
        return Target("off", value=0.0, text="off")
    m = re.fullmatch(r"x\s*([0-9.eE+-]+)", low)
    if m:
        return _multiple_target(m.group(1), text)
    m = re.fullmatch(r"p\s*([0-9.eE+-]+)", low)
    if m:
        return _percentile_target(m.group(1), text)
    if low.startswith("mean:"):
        return _mean_target(text)
    v = _number(text)
    if v is not None:
        return _value_target(v, text)
    raise InputError(f"invalid steering target {text!r}", fix=_FIX)


def _multiple_target(number: str, text: str) -> Target:
    """``xN``: N × the feature's maximum."""
    f = _number(number)
    if f is None or f <= 0:
        raise InputError(f"invalid multiple {text!r}: the factor must be a positive number", fix="e.g. x2")
    return Target("max", factor=f, text=f"x{f:g}")


def _percentile_target(number: str, text: str) -> Target:
    """``pNN``: the NNth percentile over the cells where the feature fires."""
    q = _number(number)
    if q is None or not 0 < q <= 100:
        raise InputError(f"invalid percentile target {text!r}: the percentile must lie in (0, 100]",
                         fix="e.g. p99")
    return Target("percentile", percentile=q, text=f"p{q:g}")


def _mean_target(text: str) -> Target:
    """``mean:TYPE`` or ``mean:TYPExF`` / ``mean:TYPE*F``: a cell type's mean × F."""
    body = text[5:].strip()
    m = re.fullmatch(r"(.+?)\s*[x*]\s*([0-9.eE+-]+)", body)
    cell_type, factor = body, 1.0
    if m and _number(m.group(2)) is not None:
        cell_type, factor = m.group(1).strip(), float(m.group(2))
    if not cell_type:
        raise InputError(f"invalid target {text!r}: no cell type after 'mean:'", fix="e.g. mean:B cellx1.5")
    if factor <= 0:
        raise InputError(f"invalid target {text!r}: the factor must be positive", fix="e.g. mean:B cellx1.5")
    # keep the whole text as a fallback name: a cell type may itself end in "x<digits>"
    return Target("mean", factor=factor, cell_type=cell_type, text=f"mean:{body}")


def _value_target(v: float, text: str) -> Target:
    if not math.isfinite(v):
        raise InputError(f"invalid steering target {text!r}: not a finite number", fix=_FIX)
    if v < 0:
        raise InputError(f"steering target {v:g} is negative; SAE activations are ≥ 0",
                         fix="use 'off' (0) to switch a feature off")
    if v == 0:
        return Target("off", value=0.0, text="off")
    return Target("value", value=v, text=repr(v))  # repr round-trips the float exactly


def feature_activation_stats(activations_csc, feature: int) -> np.ndarray:
    """The non-zero activations of ``feature`` over all cells (a view on the CSC data)."""
    a, b = activations_csc.indptr[feature], activations_csc.indptr[feature + 1]
    return activations_csc.data[a:b]


def resolve_targets(targets: list[Target], features: list[int], *, activations_csc, cell_types=None) -> np.ndarray:
    """Target value of each feature, float32 (k,).

    ``activations_csc``: all cells × features (CSC); ``cell_types``: per-cell labels of the same
    cells (for ``mean:`` targets). Raises InputError for an unknown cell type, or a target that
    depends on the data when the feature never fires there.
    """
    n_cells = activations_csc.shape[0]
    out = np.zeros(len(features), np.float64)
    for i, (t, f) in enumerate(zip(targets, features)):
        active = feature_activation_stats(activations_csc, f)
        if t.kind == "max":
            out[i] = t.factor * float(active.max()) if active.size else 0.0
        elif t.kind == "percentile":
            out[i] = float(np.percentile(active.astype(np.float64), t.percentile)) if active.size else 0.0
        elif t.kind == "mean":
            mask, factor = _mean_selection(cell_types, t, n_cells)
            col = np.zeros(n_cells)
            rows = activations_csc.indices[activations_csc.indptr[f]:activations_csc.indptr[f + 1]]
            col[rows] = active
            out[i] = factor * float(col[mask].mean())
        elif t.kind == "value":
            out[i] = t.value
        else:  # off
            out[i] = 0.0
    return out.astype(np.float32)


def _mean_selection(cell_types, t: Target, n_cells: int) -> tuple[np.ndarray, float]:
    """Cells of the target's cell type and the factor. A type literally named like "TYPE x2" wins
    over reading "x2" as a factor."""
    if cell_types is None:
        raise InputError(f"target {t.text!r} needs cell types, and the analysis's data has no cell-type column",
                         fix="use max, xN, pNN, off or a number as the target")
    labels = np.asarray(cell_types).astype(str)
    if labels.shape[0] != n_cells:
        raise InputError(f"{labels.shape[0]} cell-type labels for {n_cells} cells")
    known = sorted(set(labels.tolist()))
    whole = t.text[5:].strip()
    if whole in known:
        return labels == whole, 1.0
    if t.cell_type in known:
        return labels == t.cell_type, t.factor
    raise InputError(f"unknown cell type {t.cell_type!r} in target {t.text!r}",
                     fix=f"choose one of: {', '.join(known[:30])}")
