"""The SAE training chart: validation loss, L0 and dead fraction per evaluation (pure figure builder).

Built as a plain figure dict (three side-by-side axes) rather than with ``make_subplots``: it is
redrawn live while an SAE trains, and the dict is ~20× cheaper to build.
"""
from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

__all__ = ["training_figure", "empty_training_figure", "PANELS"]

PANELS = (("validation loss", "#1f77b4"), ("L0 (latents per cell)", "#2ca02c"), ("dead latents (%)", "#d62728"))
_DOMAINS = ((0.0, 0.28), (0.36, 0.64), (0.72, 1.0))
# plotly_white's look, set directly (a named template is deep-copied on every figure: slow)
_STYLE = {"paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"color": "#2a3f5f"}}
_AXIS = {"gridcolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "linecolor": "#EBF0F8", "automargin": True}


def empty_training_figure(message: str = "waiting for the first epoch…") -> go.Figure:
    return go.Figure({
        "data": [],
        "layout": {"height": 140, "margin": {"l": 10, "r": 10, "t": 10, "b": 10}, **_STYLE,
                   "xaxis": {"visible": False}, "yaxis": {"visible": False},
                   "annotations": [{"text": message, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper",
                                    "yref": "paper", "font": {"color": "#6c757d"}}]},
    })


def training_figure(history: Sequence[dict], *, hidden: int | None, height: int = 300) -> go.Figure:
    """Three panels over epochs from ``history`` rows (``epoch``, ``val_loss``, ``val_l0``,
    ``train_dead``): loss (log scale), L0, and the percentage of ``hidden`` latents that did not
    fire during the last pass over the training cells (empty when ``hidden`` is unknown)."""
    rows = [r for r in history if r.get("epoch") is not None]
    if not rows:
        return empty_training_figure()
    epochs = [r["epoch"] for r in rows]
    dead = [100.0 * r["train_dead"] / hidden if hidden and r.get("train_dead") is not None else None for r in rows]
    series = ([r.get("val_loss") for r in rows], [r.get("val_l0") for r in rows], dead)
    mode = "lines+markers" if len(rows) < 40 else "lines"
    data, layout = [], {
        "height": height, "showlegend": False, "uirevision": "training", **_STYLE,
        "margin": {"l": 50, "r": 20, "t": 40, "b": 45}, "annotations": [],
    }
    for i, ((title, color), ys, (lo, hi)) in enumerate(zip(PANELS, series, _DOMAINS), start=1):
        suffix = "" if i == 1 else str(i)
        data.append({"type": "scatter", "x": epochs, "y": ys, "mode": mode, "name": title,
                     "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "line": {"color": color, "width": 2},
                     "marker": {"size": 4}, "hovertemplate": "epoch %{x:g}<br>%{y:.4g}<extra>" + title + "</extra>"})
        layout[f"xaxis{suffix}"] = {"domain": [lo, hi], "anchor": f"y{suffix}", "title": {"text": "epoch"}, **_AXIS}
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}", **_AXIS}
        layout["annotations"].append({"text": title, "x": (lo + hi) / 2, "y": 1.0, "xref": "paper", "yref": "paper",
                                      "xanchor": "center", "yanchor": "bottom", "showarrow": False,
                                      "font": {"size": 13}})
    layout["yaxis"]["type"] = "log"
    layout["yaxis2"]["rangemode"] = "tozero"
    layout["yaxis3"]["range"] = [0, max(5.0, max((d for d in dead if d is not None), default=0.0) * 1.1)]
    return go.Figure({"data": data, "layout": layout})
