"""Pure plotly figure builders: data in, ``go.Figure`` out (no Dash, no file access).

Used by the Explorer (concept map, latent space, feature card) and reusable by the steering and
compare pages (``volcano_figure``, ``cell_type_profile_figure``) and from notebooks. Large numeric
arrays are sent as typed arrays (base64), which plotly.js decodes; :func:`typed_array` does the same
for ``dash.Patch`` updates, which would otherwise be written out as JSON number lists. ``customdata``
stays a plain list: ``dcc.Graph`` reads it from the figure to fill ``clickData``/``selectedData``
and does not decode typed arrays there.
"""
from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = [
    "CATEGORY_PALETTE", "LOCALITY_COLOURS", "typed_array", "empty_figure", "map_groups", "concept_map_figure",
    "highlight_trace", "selected_trace", "selected_cells", "latent_figure", "latent_active_trace", "activation_histogram_figure",
    "cell_type_profile_figure", "volcano_figure", "feature_density_figure", "marker_sizes",
    "cell_type_heatmap_figure", "heatmap_shapes", "trajectory_figure"]

CATEGORY_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                    "#e6550d", "#31a354", "#756bb1", "#636363", "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c")
LOCALITY_COLOURS = {"local": "#d62728", "regional": "#ff7f0e", "global": "#1f77b4", "dead": "#bbbbbb",
                    "unknown": "#7f7f7f"}
LOCALITY_ORDER = tuple(LOCALITY_COLOURS)  # legend order of the concept map coloured by locality
BACKGROUND_CELL = "#d9d9d9"
ACTIVATION_SCALE = "Viridis"
_DTYPES = {np.dtype("float32"): "f4", np.dtype("float64"): "f8", np.dtype("int32"): "i4",
           np.dtype("int16"): "i2", np.dtype("int8"): "i1", np.dtype("uint8"): "u1"}
_MARGIN = dict(l=10, r=10, t=40, b=10)
_GRID = "#e9ecef"
#: A light template (white, thin grid). Plotly's built-in templates cost ~15–40 ms per figure to copy
#: and validate; this one ~2 ms, which matters for callbacks that answer a click.
TEMPLATE = go.layout.Template(layout=dict(
    paper_bgcolor="white", plot_bgcolor="white", font=dict(color="#2a3f5f"), hoverlabel=dict(align="left"),
    xaxis=dict(gridcolor=_GRID, linecolor=_GRID, zerolinecolor=_GRID, automargin=True),
    yaxis=dict(gridcolor=_GRID, linecolor=_GRID, zerolinecolor=_GRID, automargin=True),
    colorway=list(("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"))))


def new_figure(data=None) -> go.Figure:
    """``go.Figure`` with the light :data:`TEMPLATE` (instead of plotly's default template)."""
    return go.Figure(data=data, layout={"template": TEMPLATE})


def typed_array(values, dtype: str = "float32") -> dict:
    """``{"dtype", "bdata"}``: a numpy array as a plotly.js typed array (compact, fast to encode)."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=dtype))
    code = _DTYPES[arr.dtype]
    out = {"dtype": code, "bdata": base64.b64encode(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).decode()}
    if arr.ndim > 1:
        out["shape"] = ",".join(map(str, arr.shape))
    return out


def empty_figure(message: str = "", *, height: int | None = None) -> go.Figure:
    """A blank figure carrying ``message`` in its middle (for 'nothing to show yet' and errors)."""
    fig = new_figure()
    fig.update_layout(xaxis=dict(visible=False), yaxis=dict(visible=False),
                      margin=_MARGIN, height=height,
                      annotations=[dict(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                                        font=dict(size=14, color="#6c757d"))] if message else [])
    return fig


def marker_sizes(frequency: np.ndarray) -> np.ndarray:
    """Concept-map marker sizes (px), 5 to 18 by the square root of each feature's firing frequency."""
    f = np.nan_to_num(np.asarray(frequency, np.float64), nan=0.0)
    top = f.max() if f.size and f.max() > 0 else 1.0
    return 5.0 + 13.0 * np.sqrt(f / top)


def map_groups(cmap: pd.DataFrame, colour_by: str) -> list[str]:
    """The groups (one trace each) of the concept map coloured by ``category`` or ``locality``:
    categories most frequent first; localities in a fixed order."""
    if colour_by == "locality":
        present = set(cmap["locality"].astype(str))
        return [g for g in LOCALITY_ORDER if g in present]
    return cmap["category"].astype(str).value_counts(sort=True).index.tolist()


def _map_hover(df: pd.DataFrame) -> list[str]:
    return [f"<b>feature {f}</b><br>{c} · {loc}<br>{n} terms · active in {100 * fr:.1f}% of cells<br>{t}"
            for f, c, loc, n, fr, t in zip(df["feature"], df["category"], df["locality"], df["n_terms"],
                                           np.nan_to_num(df["frequency"].to_numpy(float)), df["top_terms"])]


def concept_map_figure(cmap: pd.DataFrame, *, colour_by: str = "category", highlight=(), selected=(),
                       uirevision=None, height: int = 460) -> go.Figure:
    """The concept map: one point per annotated feature at (x, y), coloured by its GO ``category``
    (or ``locality``), sized by activation frequency; hover shows the feature's facts.

    ``cmap`` columns: feature, x, y, category, n_terms, frequency, locality, top_terms. Traces: one
    per group (:func:`map_groups`), then the search highlight, then the selected features (so
    they can be patched at indices ``len(groups)`` and ``len(groups) + 1``). Every point's
    ``customdata`` is its feature number."""
    groups = map_groups(cmap, colour_by)
    key = cmap["locality" if colour_by == "locality" else "category"].astype(str).to_numpy()
    fig = new_figure()
    for i, g in enumerate(groups):
        df = cmap.loc[key == g]
        colour = LOCALITY_COLOURS.get(g, "#7f7f7f") if colour_by == "locality" else \
            CATEGORY_PALETTE[i % len(CATEGORY_PALETTE)]
        fig.add_trace(go.Scattergl(
            x=df["x"].to_numpy(np.float32), y=df["y"].to_numpy(np.float32), mode="markers", name=f"{g} ({len(df)})",
            customdata=df["feature"].astype(int).tolist(), text=_map_hover(df), hovertemplate="%{text}<extra></extra>",
            marker=dict(size=marker_sizes(df["frequency"]), color=colour, opacity=0.8,
                        line=dict(width=0.5, color="white"))))
    fig.add_trace(highlight_trace(cmap, highlight))
    fig.add_trace(selected_trace(cmap, selected))
    fig.update_layout(height=height, margin=_MARGIN, dragmode="select",
                      clickmode="event", uirevision=uirevision, hovermode="closest",
                      legend=dict(font=dict(size=10), itemsizing="constant", orientation="v"),
                      xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def _overlay(cmap: pd.DataFrame, features, **kwargs) -> go.Scattergl:
    feats = np.asarray(list(features), dtype=np.int64)
    df = cmap.loc[np.isin(cmap["feature"].to_numpy(), feats)]
    # no hover of their own: hover and clicks go to the feature's point underneath
    return go.Scattergl(x=df["x"].to_numpy(np.float32), y=df["y"].to_numpy(np.float32), mode="markers",
                        customdata=df["feature"].astype(int).tolist(), hoverinfo="skip", **kwargs)


def highlight_trace(cmap: pd.DataFrame, features) -> go.Scattergl:
    """Rings around the features that match the search."""
    n = len(list(features))
    return _overlay(cmap, features, name=f"search hits ({n})", showlegend=n > 0,
                    marker=dict(size=15, symbol="circle-open", color="#111111", line=dict(width=2.5)))


def selected_trace(cmap: pd.DataFrame, features) -> go.Scattergl:
    """Stars on the selected features."""
    n = len(list(features))
    return _overlay(cmap, features, name="selected", showlegend=n > 0,
                    marker=dict(size=18, symbol="star", color="#ffd60a", line=dict(width=1.5, color="#111111")))


def _cell_marker_size(n_cells: int) -> int:
    return 7 if n_cells <= 2_000 else 5 if n_cells <= 20_000 else 3


def latent_active_trace(coords: np.ndarray, labels: np.ndarray, cells: np.ndarray, values: np.ndarray, *,
                        label: str) -> dict:
    """The coloured trace of the latent view as a plain dict of typed arrays (for a figure or a
    ``dash.Patch``): the active ``cells`` (sorted ascending, so the highest draw on top) at their
    coordinates, coloured by ``values``; hover shows the cell type and the value."""
    n = coords.shape[0]
    cells = np.asarray(cells, np.int64)
    vmax = float(values.max()) if values.size else 1.0
    return {
        "type": "scattergl", "mode": "markers", "name": label, "showlegend": False,
        "x": typed_array(coords[cells, 0]), "y": typed_array(coords[cells, 1]),
        # customdata may be a typed array here: lasso selections read cells from trace 0 (every cell)
        "customdata": typed_array(cells, "int32"), "text": labels[cells].tolist(),
        "hovertemplate": "%{text} · cell %{customdata}<br>" + label + ": %{marker.color:.3g}<extra></extra>",
        "marker": {"size": _cell_marker_size(n) + 1, "color": typed_array(values), "colorscale": ACTIVATION_SCALE,
                   "cmin": 0.0, "cmax": vmax if vmax > 0 else 1.0, "showscale": True,
                   "colorbar": {"title": {"text": label, "side": "right"}, "thickness": 12}},
    }


def selected_cells(selected: dict | None) -> list[int]:
    """The cells (sorted) of a ``dcc.Graph`` ``selectedData`` on a :func:`latent_figure`: each point's
    ``customdata``, or its ``pointIndex`` on trace 0 of the ``"feature"`` colouring (every cell, in order)."""
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    cells = set()
    for p in (selected or {}).get("points") or []:
        if number(p.get("customdata")):
            cells.add(int(p["customdata"]))
        elif p.get("curveNumber") == 0 and p.get("customdata") is None and number(p.get("pointIndex")):
            cells.add(int(p["pointIndex"]))
    return sorted(cells)


def latent_figure(coords: np.ndarray, *, labels: np.ndarray, types: list[str], names: np.ndarray | None = None,
                  colour_by: str = "feature", cells: np.ndarray | None = None, values: np.ndarray | None = None,
                  label: str = "activation", title: str = "", explained=None, uirevision=None,
                  height: int = 460, axes: tuple[str, str] = ("PC1", "PC2")) -> go.Figure:
    """The latent space (PCA of the embedding, or a UMAP: ``axes`` names the axes), one point per cell,
    WebGL; ``explained`` (variance ratio per axis) is added to the axis titles.

    ``colour_by="feature"``: trace 0 = every cell in grey (point index = cell index), trace 1 =
    the active ``cells`` coloured by ``values`` (:func:`latent_active_trace`, highest on top).
    ``colour_by="celltype"``: one trace per cell type. A lasso selection maps back to cells through
    each point's ``customdata`` (its cell index), or on trace 0 of ``"feature"`` through its point
    index (:func:`selected_cells`)."""
    n = coords.shape[0]
    size = _cell_marker_size(n)
    names = np.asarray(names if names is not None else np.arange(n)).astype(str)
    hover = np.char.add(np.char.add(np.asarray(labels).astype(str), "<br>"), names)  # vectorised: 57,000 cells in ms
    fig = new_figure()
    if colour_by == "celltype":
        codes = pd.Categorical(labels, categories=types).codes
        for i, t in enumerate(types):
            idx = np.flatnonzero(codes == i)
            fig.add_trace(go.Scattergl(
                x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=f"{t} ({idx.size})",
                customdata=idx.tolist(), text=hover[idx], hovertemplate="%{text}<extra></extra>",
                marker=dict(size=size, color=CATEGORY_PALETTE[i % len(CATEGORY_PALETTE)], opacity=0.85)))
    else:  # no customdata on trace 0: a point's index is its cell (the lasso reads pointIndex there)
        fig.add_trace(go.Scattergl(
            x=coords[:, 0], y=coords[:, 1], mode="markers", name="all cells", showlegend=False,
            text=hover, hovertemplate="%{text}<br>off<extra></extra>",
            marker=dict(size=size, color=BACKGROUND_CELL)))
        cells = np.zeros(0, np.int64) if cells is None else cells
        values = np.zeros(0, np.float32) if values is None else values
        fig.add_trace(latent_active_trace(coords, labels, cells, values, label=label))
    ev = list(explained) if explained is not None else []
    ax = [axes[i] + (f" ({100 * ev[i]:.0f}%)" if i < len(ev) and ev[i] else "") for i in range(2)]
    fig.update_layout(height=height, margin=_MARGIN, dragmode="lasso", hovermode="closest",
                      title=dict(text=title, font=dict(size=13), x=0.01, y=0.98), uirevision=uirevision,
                      legend=dict(font=dict(size=10), itemsizing="constant"),
                      xaxis=dict(title=ax[0], zeroline=False, showticklabels=False),
                      yaxis=dict(title=ax[1], zeroline=False, showticklabels=False))
    return fig


def activation_histogram_figure(hist: dict, *, title: str = "", height: int | None = 260) -> go.Figure:
    """Bars of a feature's non-zero activations (``core.views.explorer.activation_histogram`` output)."""
    edges = np.asarray(hist["edges"], np.float64)
    counts = np.asarray(hist["counts"])
    if counts.size == 0:
        return empty_figure("this feature is never active", height=height)
    fig = new_figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color="#3b6ea8",
                           hovertemplate="activation %{x:.3g}<br>%{y} cells<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=40, r=10, t=40, b=40),
                      title=dict(text=title, font=dict(size=13)), bargap=0.02,
                      xaxis_title="activation (cells where it is on)", yaxis_title="cells")
    return fig


def feature_density_figure(hist: dict, *, title: str = "Feature density", height: int | None = 200) -> go.Figure:
    """Bars of live features per log10 firing frequency (``core.sae.metrics.frequency_histogram`` output);
    the dead features are counted in the title."""
    edges = np.asarray(hist.get("log10_edges") or [], np.float64)
    counts = np.asarray(hist.get("counts") or [])
    if counts.size == 0 or counts.sum() == 0:
        return empty_figure("no live features", height=height)
    dead = int(hist.get("dead") or 0)
    fig = new_figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color="#3b6ea8",
                           customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                           hovertemplate="fires in 10^%{customdata[0]:.2f}–10^%{customdata[1]:.2f} of cells"
                                         "<br>%{y} features<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=40, r=10, t=34, b=40), bargap=0.05,
                      title=dict(text=f"{title} ({dead:,} dead not shown)" if dead else title, font=dict(size=13)),
                      xaxis_title="log10 fraction of cells where the feature fires", yaxis_title="features")
    return fig


def sparsity_frontier_figure(sweep: dict, *, height: int | None = 220) -> go.Figure:
    """The auto preset's sweep (``metrics["sparsity_sweep"]``): validation FVU against L0 per
    cell (log axis), one point per L1 strength, the chosen knee highlighted."""
    rows = sweep.get("rows") or []
    if not rows:
        return empty_figure("no sweep", height=height)
    l0 = [r["l0"] for r in rows]
    fvu = [r["fvu"] for r in rows]
    chosen = sweep.get("chosen")
    fig = new_figure(go.Scatter(x=l0, y=fvu, mode="lines+markers+text", text=[f"L1 {r['l1']:g}" for r in rows],
                                textposition="top right", marker=dict(size=7, color="#3b6ea8"),
                                line=dict(color="#9aa5b1"), name="sweep",
                                hovertemplate="L1 %{text}<br>L0 %{x:.1f}<br>FVU %{y:.3f}<extra></extra>"))
    if chosen is not None and 0 <= chosen < len(rows):
        fig.add_trace(go.Scatter(x=[l0[chosen]], y=[fvu[chosen]], mode="markers", name="chosen (knee)",
                                 marker=dict(size=13, color="#d62728", symbol="star"),
                                 hovertemplate="chosen: L1 %{text}<extra></extra>", text=[f"{rows[chosen]['l1']:g}"]))
    fig.update_layout(height=height, margin=dict(l=40, r=10, t=34, b=40), showlegend=False,
                      title=dict(text="Sparsity sweep: reconstruction against latents per cell", font=dict(size=13)),
                      xaxis=dict(type="log", title="L0 (active latents per cell, log)"), yaxis_title="FVU")
    return fig


def cell_type_profile_figure(profile: pd.DataFrame, *, title: str = "", height: int | None = 260) -> go.Figure:
    """Mean activation per cell type (± standard error), significantly higher types highlighted.

    ``profile`` columns: cell_type, n, mean, se, frac_active, significant."""
    df = profile.sort_values("mean", ascending=True, kind="stable")
    colours = np.where(df["significant"].to_numpy(bool), "#d62728", "#9aa5b1")
    fig = new_figure(go.Bar(
        x=df["mean"], y=df["cell_type"].astype(str), orientation="h", marker_color=colours,
        error_x=dict(type="data", array=np.nan_to_num(df["se"].to_numpy(float)), thickness=1, width=2),
        customdata=np.c_[df["n"], 100 * df["frac_active"]].tolist(),
        hovertemplate="%{y}<br>mean %{x:.3g}<br>%{customdata[0]:d} cells, %{customdata[1]:.0f}% active"
                      "<extra></extra>"))
    fig.update_layout(height=None if height is None else max(height, 28 * len(df) + 80),
                      margin=dict(l=10, r=10, t=40, b=40), title=dict(text=title, font=dict(size=13)),
                      xaxis_title="mean activation", yaxis=dict(automargin=True, tickfont=dict(size=11)))
    return fig


VOLCANO_BACKGROUND = 2_000  # non-significant genes a volcano draws at most


def volcano_figure(de: pd.DataFrame, *, fold_col: str = "log2_fold_change", q_col: str = "q",
                   significant_col: str = "significant", label_col: str = "gene", n_labels: int = 10,
                   title: str = "", height: int | None = 380, max_background: int = VOLCANO_BACKGROUND) -> go.Figure:
    """Volcano plot: log2 fold change vs −log10 q; significant genes up (red) / down (blue), the
    ``n_labels`` most significant labelled. Works for any table with these columns (DE of a
    feature, steering shifts). Every significant gene is drawn; of the others at most
    ``max_background`` (the most extreme by q and by fold change, then an even sample of the rest;
    the legend gives both counts): a 13,000-gene volcano sends 250 kB instead of 640 kB. WebGL above
    5,000 genes."""
    if de.empty:
        return empty_figure("no genes", height=height)
    lfc = np.clip(np.nan_to_num(de[fold_col].to_numpy(float)), -12, 12)
    q = de[q_col].to_numpy(float)
    y = -np.log10(np.clip(np.nan_to_num(q, nan=1.0), 1e-300, 1.0))
    sig = de[significant_col].to_numpy(bool) if significant_col in de else np.zeros(len(de), bool)
    names = de[label_col].astype(str).to_numpy()
    rest = np.flatnonzero(~sig)
    drawn = _volcano_background(rest, lfc, y, max_background)
    up, down = np.flatnonzero(sig & (lfc > 0)), np.flatnonzero(sig & (lfc <= 0))
    shown = f"{rest.size:,}; {drawn.size:,} drawn" if drawn.size < rest.size else f"{rest.size}"
    fig = new_figure()
    for idx, label, colour in ((drawn, f"not significant ({shown})", "#b0b0b0"), (up, f"up ({up.size})", "#d62728"),
                               (down, f"down ({down.size})", "#1f77b4")):
        if idx.size:
            trace = go.Scattergl if len(de) > 5_000 else go.Scatter
            fig.add_trace(trace(x=lfc[idx], y=y[idx], mode="markers", name=label, text=names[idx],
                                marker=dict(size=6, color=colour, opacity=0.8),
                                hovertemplate="%{text}<br>log2 FC %{x:.2f}<br>−log10 q %{y:.1f}<extra></extra>"))
    top = np.flatnonzero(sig)
    top = top[np.argsort(-y[top], kind="stable")][:n_labels]
    for i in top:
        fig.add_annotation(x=lfc[i], y=y[i], text=names[i], showarrow=False, yshift=9, font=dict(size=10))
    fig.update_layout(height=height, margin=dict(l=40, r=10, t=40, b=40),
                      title=dict(text=title, font=dict(size=13)), xaxis_title="log2 fold change (high vs low cells)",
                      yaxis_title="−log10 q", legend=dict(font=dict(size=10)))
    return fig


def _volcano_background(rest: np.ndarray, lfc: np.ndarray, y: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of the non-significant genes ``rest`` (positions, ascending): the tenth most
    extreme by −log10 q and by |log2 FC| each, then evenly spaced ones of the others."""
    if rest.size <= limit:
        return rest
    tail = max(1, limit // 10)
    extreme = np.union1d(rest[np.argsort(-y[rest], kind="stable")[:tail]],
                         rest[np.argsort(-np.abs(lfc[rest]), kind="stable")[:tail]])
    others = np.setdiff1d(rest, extreme, assume_unique=True)
    step = others[np.linspace(0, others.size - 1, max(0, limit - extreme.size)).astype(np.int64)] if others.size else others
    return np.union1d(extreme, step)


# ----------------------------------------------------------------------------- steering (added by the steering page)
STEERED_COLOUR = "#d62728"
NORMAL_COLOUR = "#6c757d"
ARROW_MAX_CELLS = 300


def latent_shift_figure(coords: np.ndarray, *, labels: np.ndarray, types: list[str], cells: np.ndarray,
                        before: np.ndarray, after: np.ndarray, arrows: bool | None = None, title: str = "",
                        uirevision=None, height: int = 460) -> go.Figure:
    """Steered cells in the latent view: every cell in light grey (trace 0, point index = cell index),
    the cell-type centroids labelled, the steered ``cells`` at their normal position ``before``
    (n, 2) in grey and at their steered position ``after`` (n, 2) in red, joined by arrows when
    ``arrows`` (default: ≤ :data:`ARROW_MAX_CELLS` cells). Every cell point's ``customdata`` is
    its cell index, so a lasso selection maps back to cells."""
    n_all = coords.shape[0]
    cells = np.asarray(cells, np.int64)
    before, after = np.asarray(before, np.float32), np.asarray(after, np.float32)
    size = _cell_marker_size(n_all)
    labels = np.asarray(labels, dtype=object)
    fig = new_figure()
    fig.add_trace(go.Scattergl(
        x=coords[:, 0], y=coords[:, 1], mode="markers", name=f"other cells ({n_all - cells.size:,})",
        customdata=list(range(n_all)), text=labels.tolist(), hovertemplate="%{text} · cell %{customdata}<extra></extra>",
        marker=dict(size=size, color="#e3e3e3")))
    codes = pd.Categorical(labels, categories=types).codes
    cx = [float(coords[codes == i, 0].mean()) if (codes == i).any() else np.nan for i in range(len(types))]
    cy = [float(coords[codes == i, 1].mean()) if (codes == i).any() else np.nan for i in range(len(types))]
    fig.add_trace(go.Scatter(
        x=cx, y=cy, mode="markers+text", name="cell-type centres", text=list(types), textposition="top center",
        textfont=dict(size=10, color="#343a40"), hovertemplate="centre of %{text}<extra></extra>",
        marker=dict(symbol="x-thin", size=11, line=dict(width=2, color="#343a40"))))
    hover = [f"{t} · cell {c}" for t, c in zip(labels[cells], cells)]
    if arrows is None:
        arrows = cells.size <= ARROW_MAX_CELLS
    if arrows and cells.size:
        xs = np.column_stack([before[:, 0], after[:, 0], np.full(cells.size, np.nan)]).ravel()
        ys = np.column_stack([before[:, 1], after[:, 1], np.full(cells.size, np.nan)]).ravel()
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers", name="shift", hoverinfo="skip", showlegend=False,
            line=dict(width=1, color="rgba(214,39,40,0.45)"),
            marker=dict(symbol=np.tile(["circle", "arrow", "circle"], cells.size).tolist(), angleref="previous",
                        size=np.tile([0, 9, 0], cells.size).tolist(), color="rgba(214,39,40,0.8)")))
    scatter = go.Scatter if cells.size <= 5_000 else go.Scattergl
    fig.add_trace(scatter(
        x=before[:, 0], y=before[:, 1], mode="markers", name=f"normal ({cells.size:,})", customdata=cells.tolist(),
        text=hover, hovertemplate="%{text}<br>normal<extra></extra>",
        marker=dict(size=size, color=NORMAL_COLOUR, opacity=0.8)))
    fig.add_trace(scatter(
        x=after[:, 0], y=after[:, 1], mode="markers", name=f"steered ({cells.size:,})", customdata=cells.tolist(),
        text=hover, hovertemplate="%{text}<br>steered<extra></extra>",
        marker=dict(size=size + 1, color=STEERED_COLOUR, opacity=0.85, line=dict(width=0.5, color="white"))))
    fig.update_layout(height=height, margin=_MARGIN, dragmode="lasso", hovermode="closest",
                      title=dict(text=title, font=dict(size=13), x=0.01, y=0.98), uirevision=uirevision,
                      legend=dict(font=dict(size=10), itemsizing="constant", orientation="h", y=-0.02,
                                  yanchor="top"),
                      xaxis=dict(title="PC1", zeroline=False, showticklabels=False),
                      yaxis=dict(title="PC2", zeroline=False, showticklabels=False))
    return fig


def nearest_type_figure(summary: pd.DataFrame, *, title: str = "", height: int | None = None) -> go.Figure:
    """How many steered cells have each cell type as their nearest centre, before (grey) and after
    (red) steering (``core.steer.centroid_summary`` output: cell_type, nearest_before,
    nearest_after, mean_distance_before, mean_distance_after, change). Types no cell is nearest
    to, before or after, are left out."""
    if summary is None or summary.empty:
        return empty_figure("no cell types: nearest-type shift not available", height=height or 240)
    df = summary[(summary["nearest_before"] > 0) | (summary["nearest_after"] > 0)]
    df = df.sort_values(["nearest_after", "nearest_before"], ascending=True, kind="stable")
    custom = np.c_[df["mean_distance_before"].to_numpy(float), df["mean_distance_after"].to_numpy(float)].tolist()
    fig = new_figure()
    for col, name, colour in (("nearest_before", "normal", NORMAL_COLOUR), ("nearest_after", "steered", STEERED_COLOUR)):
        fig.add_trace(go.Bar(
            x=df[col], y=df["cell_type"].astype(str), orientation="h", name=name, marker_color=colour,
            customdata=custom,
            hovertemplate="%{y}: %{x} cells nearest (" + name + ")<br>mean distance to its centre "
                          "%{customdata[0]:.3g} → %{customdata[1]:.3g}<extra></extra>"))
    fig.update_layout(barmode="group", bargap=0.3, height=height or min(580, 140 + 44 * len(df)),
                      margin=dict(l=10, r=10, t=60, b=40),
                      title=dict(text=title, font=dict(size=13), x=0.01), xaxis_title="cells nearest to the type's centre",
                      yaxis=dict(automargin=True, tickfont=dict(size=11)),
                      legend=dict(font=dict(size=10), orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right"))
    return fig


# ----------------------------------------------------------------------------- compare and simulation pages
WHERE_COLOURS = {"both": "#6f42c1", "only A": "#1f77b4", "only B": "#ff7f0e"}
METHOD_COLOURS = {"sae": "#d62728", "pca": "#1f77b4", "ica": "#2ca02c", "svd": "#9467bd", "latent": "#7f7f7f"}


def concept_count_figure(terms: pd.DataFrame, *, label_a: str = "A", label_b: str = "B", title: str = "",
                         height: int = 420) -> go.Figure:
    """Per term, how many features of A (x) and of B (y) carry it (``core.views.compare.term_counts``
    output: term_id, term_name, features_a, features_b, where), coloured by shared / only A / only
    B, with the line y = x. Points are jittered by ≤ 0.3 (seeded) so equal counts stay visible."""
    if terms is None or terms.empty:
        return empty_figure("no terms to compare", height=height)
    rng = np.random.default_rng(0)
    fig = new_figure()
    top = float(max(terms["features_a"].max(), terms["features_b"].max(), 1))
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="same count", hoverinfo="skip",
                             line=dict(color="#adb5bd", dash="dash", width=1)))
    for where in ("both", "only A", "only B"):
        df = terms[terms["where"] == where]
        if df.empty:
            continue
        n = len(df)
        jx, jy = rng.uniform(-0.3, 0.3, n), rng.uniform(-0.3, 0.3, n)
        name = {"both": "in both", "only A": f"only in {label_a}", "only B": f"only in {label_b}"}[where]
        scatter = go.Scatter if n <= 5_000 else go.Scattergl
        fig.add_trace(scatter(
            x=typed_array(df["features_a"].to_numpy() + jx), y=typed_array(df["features_b"].to_numpy() + jy),
            mode="markers", name=f"{name} ({n:,})",
            text=(df["term_name"].astype(str) + " (" + df["term_id"].astype(str) + ")<br>" + label_a + ": "
                  + df["features_a"].astype(str) + " features · " + label_b + ": " + df["features_b"].astype(str)
                  + " features").tolist(),
            hovertemplate="%{text}<extra></extra>",
            marker=dict(size=6, color=WHERE_COLOURS[where], opacity=0.55, line=dict(width=0))))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40 if title else 30, b=10), hovermode="closest",
                      title=dict(text=title, font=dict(size=13), x=0.01),
                      xaxis=dict(title=f"features carrying the term in {label_a}", rangemode="tozero"),
                      yaxis=dict(title=f"features carrying the term in {label_b}", rangemode="tozero"),
                      legend=dict(font=dict(size=10), orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right"))
    return fig


def recovery_bars_figure(best_r: pd.DataFrame, *, target: float | None = 0.9, labels: dict | None = None,
                         title: str = "", height: int = 380) -> go.Figure:
    """Grouped bars: per variable (rows of ``best_r``), the mean best |Pearson r| of each method
    (columns), with a dashed line at the paper's ``target``."""
    if best_r is None or best_r.empty:
        return empty_figure("no recovery results", height=height)
    labels = labels or {}
    variables = [str(v).replace("''", "″") for v in best_r.index]
    fig = new_figure()
    for method in best_r.columns:
        values = best_r[method].to_numpy(float)
        fig.add_trace(go.Bar(x=variables, y=values, name=labels.get(method, str(method)),
                             marker_color=METHOD_COLOURS.get(method), text=[f"{v:.2f}" for v in values],
                             textposition="outside", textfont=dict(size=9),
                             hovertemplate="%{x}: %{y:.3f}<extra>" + labels.get(method, str(method)) + "</extra>"))
    if target is not None:  # a dashed line, named in the legend (a text label would sit on the bars)
        fig.add_hline(y=target, line_dash="dash", line_color="#495057", line_width=1)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"paper: ≥ {target:g}",
                                 line=dict(color="#495057", dash="dash", width=1), hoverinfo="skip"))
    fig.update_layout(barmode="group", height=height, margin=dict(l=10, r=10, t=40, b=10),
                      title=dict(text=title, font=dict(size=13), x=0.01),
                      xaxis_title="ground-truth variable (nearest to the counts first)",
                      yaxis=dict(title="mean best |Pearson r|", range=[0, 1.1]),
                      legend=dict(font=dict(size=10), orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right"))
    return fig


# ----------------------------------------------------------------------------- steering experiments
CONTROL_SYMBOLS = {"control-feature": "diamond-open", "control-direction": "x"}
CONTROL_NAMES = {"control-feature": "control: similar feature", "control-direction": "control: random direction"}
SERIES_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
                  "#bcbd22", "#7f7f7f"]


def _dose_layout(fig: go.Figure, *, title: str, y_title: str, height: int | None) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=50, r=10, t=40, b=40), title=dict(text=title, font=dict(size=13)),
                      xaxis=dict(title="strength (× the feature's maximum; 0 = off)", type="category"),
                      yaxis_title=y_title, legend=dict(font=dict(size=10)), hovermode="closest")
    return fig


def dose_response_figure(conditions: pd.DataFrame, *, column: str = "n_changed", title: str = "",
                         y_title: str = "changed genes", height: int | None = 300) -> go.Figure:
    """One value of an experiment's runs against strength: the feature's sweep as a line (rows of
    ``conditions`` with kind "feature"), each control run as a marker at the strength it matches
    (kinds "control-feature", "control-direction"). ``conditions``: columns run, kind, strength,
    feature and ``column`` (:attr:`core.steer.ExperimentResult.conditions`)."""
    if conditions is None or conditions.empty or column not in conditions:
        return empty_figure("no experiment shown", height=height)
    feat = conditions[conditions["kind"] == "feature"].sort_values("strength")
    fig = new_figure()
    fig.add_trace(go.Scatter(x=[f"{s:g}" for s in feat["strength"]], y=feat[column], mode="lines+markers",
                             name=f"feature {int(feat['feature'].iloc[0])}" if len(feat) else "feature",
                             line=dict(color=STEERED_COLOUR, width=2), customdata=feat["run"],
                             hovertemplate="%{customdata}: %{y}<extra></extra>"))
    for kind, name in CONTROL_NAMES.items():
        ctrl = conditions[conditions["kind"] == kind]
        if len(ctrl):
            fig.add_trace(go.Scatter(x=[f"{s:g}" for s in ctrl["strength"]], y=ctrl[column], mode="markers",
                                     name=f"{name} ({len(ctrl)})", customdata=ctrl["run"],
                                     marker=dict(symbol=CONTROL_SYMBOLS[kind], size=11, color=NORMAL_COLOUR),
                                     hovertemplate="%{customdata}: %{y}<extra></extra>"))
    return _dose_layout(fig, title=title, y_title=y_title, height=height)


def term_dose_figure(terms: pd.DataFrame, *, wanted, title: str = "", height: int | None = 300) -> go.Figure:
    """The score (−log10 p) of each ``wanted`` (direction, term_id) against strength: one coloured
    line per term for the feature's sweep, the controls' scores of that term as open markers of its
    colour at the strength they match. ``terms``: the long score table (run, kind, strength,
    direction, term_id, term_name, score) of :attr:`core.steer.ExperimentResult.terms`."""
    if terms is None or terms.empty or not len(wanted):
        return empty_figure("no enriched up-regulated term to follow", height=height)
    fig = new_figure()
    for i, (direction, term_id) in enumerate(wanted):
        rows = terms[(terms["direction"] == direction) & (terms["term_id"] == term_id)]
        if rows.empty:
            continue
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        name = str(rows["term_name"].iloc[0])[:40]
        feat = rows[rows["kind"] == "feature"].sort_values("strength")
        fig.add_trace(go.Scatter(x=[f"{s:g}" for s in feat["strength"]], y=feat["score"], mode="lines+markers",
                                 name=name, legendgroup=term_id, line=dict(color=colour, width=2),
                                 hovertemplate=name + "<br>%{y:.1f}<extra></extra>"))
        ctrl = rows[rows["kind"] != "feature"]
        if len(ctrl):
            fig.add_trace(go.Scatter(
                x=[f"{s:g}" for s in ctrl["strength"]], y=ctrl["score"], mode="markers", name=f"{name}: controls",
                legendgroup=term_id, showlegend=False, customdata=ctrl["run"],
                marker=dict(symbol=[CONTROL_SYMBOLS.get(k, "circle-open") for k in ctrl["kind"]], size=10,
                            color=colour), hovertemplate=name + " · %{customdata}<br>%{y:.1f}<extra></extra>"))
    return _dose_layout(fig, title=title, y_title="term score (−log10 p)", height=height)


def toward_dose_figure(conditions: pd.DataFrame, *, title: str = "", height: int | None = 300) -> go.Figure:
    """How much closer the cells came to each cell type's centroid (the ``toward[T]`` columns of
    :attr:`core.steer.ExperimentResult.conditions`; > 0 = closer) against strength: one line per
    type for the feature's sweep, the controls as markers of the type's colour."""
    cols = [c for c in (conditions.columns if conditions is not None else []) if c.startswith("toward[")]
    if not cols:
        return empty_figure("no cell types: the shift toward each type is not available", height=height)
    fig = new_figure()
    feat = conditions[conditions["kind"] == "feature"].sort_values("strength")
    ctrl = conditions[conditions["kind"] != "feature"]
    for i, col in enumerate(cols):
        colour, name = SERIES_COLOURS[i % len(SERIES_COLOURS)], col[len("toward["):-1]
        fig.add_trace(go.Scatter(x=[f"{s:g}" for s in feat["strength"]], y=feat[col], mode="lines+markers",
                                 name=name, legendgroup=name, line=dict(color=colour, width=2),
                                 hovertemplate=f"toward {name}: " + "%{y:.3g}<extra></extra>"))
        if len(ctrl):
            fig.add_trace(go.Scatter(
                x=[f"{s:g}" for s in ctrl["strength"]], y=ctrl[col], mode="markers", legendgroup=name,
                showlegend=False, customdata=ctrl["run"], name=f"{name}: controls",
                marker=dict(symbol=[CONTROL_SYMBOLS.get(k, "circle-open") for k in ctrl["kind"]], size=10,
                            color=colour), hovertemplate=f"toward {name} · " + "%{customdata}: %{y:.3g}<extra></extra>"))
    return _dose_layout(fig, title=title, y_title="closer to the type's centre (mean distance)", height=height)


def compare_shift_figure(shift: pd.DataFrame, *, label_a: str = "A", label_b: str = "B", title: str = "",
                         height: int | None = None) -> go.Figure:
    """Two runs' shift toward each cell type side by side (``shift``: cell_type, toward_a, toward_b;
    > 0 = the run's cells came closer to that type's centre), as grouped horizontal bars."""
    if shift is None or shift.empty:
        return empty_figure("no cell types: the shift toward each type is not available", height=height or 240)
    fig = new_figure()
    for col, name, colour in (("toward_a", label_a, STEERED_COLOUR), ("toward_b", label_b, "#1f77b4")):
        fig.add_trace(go.Bar(x=shift[col], y=shift["cell_type"].astype(str), orientation="h", name=name,
                             marker_color=colour, hovertemplate="%{y}: %{x:.3g} closer (" + name + ")<extra></extra>"))
    fig.update_layout(barmode="group", bargap=0.3, height=height or min(520, 140 + 44 * len(shift)),
                      margin=dict(l=10, r=10, t=60, b=40), title=dict(text=title, font=dict(size=13), x=0.01),
                      xaxis_title="closer to the type's centre (mean distance; < 0 = further)",
                      yaxis=dict(automargin=True), legend=dict(font=dict(size=10), orientation="h", y=1.0,
                                                               yanchor="bottom", x=1, xanchor="right"))
    return fig


HEATMAP_SCALE = "Blues"


def cell_type_heatmap_figure(heat, *, selected: int | None = None, height: int | None = None) -> go.Figure:
    """Cell type × feature heatmap of ``heat`` (:class:`core.views.explorer.HeatmapData`): mean
    activation per cell type, each feature (column) scaled to its peak, features grouped by their
    top cell type (thin lines between groups), locality marked by a strip of squares on top, and a
    clickable strip of the cell types on the left.

    Traces: 0 the heatmap (``customdata`` = [feature, mean] per cell), 1 the cell-type strip (``customdata``
    = cell type), then one locality trace per locality present (``customdata`` = feature)."""
    types = [str(t) for t in heat.types]
    n = int(heat.n_shown)
    if n == 0:
        return empty_figure("no live features to show", height=height)
    means = np.asarray(heat.means, np.float64)
    peak = means.max(axis=0)
    z = np.divide(means, peak, out=np.zeros_like(means), where=peak > 0)
    x = np.arange(n)
    feats = np.asarray(heat.features, np.int64)
    custom = np.stack([np.tile(feats, (len(types), 1)), np.round(means, 4)], axis=-1).tolist()
    traces = [go.Heatmap(z=z.astype(np.float32), x=x, y=types, customdata=custom, colorscale=HEATMAP_SCALE, zmin=0,
                         zmax=1, name="mean activation",
                         hovertemplate="feature %{customdata[0]} · %{y}<br>mean %{customdata[1]:.3g} "
                                       "(%{z:.0%} of its peak)<extra></extra>",
                         colorbar=dict(title=dict(text="share of<br>peak", side="top"), thickness=10, len=0.6)),
              go.Heatmap(z=[[i] for i in range(len(types))], x=[0], y=types, customdata=[[t] for t in types],
                         xaxis="x2", yaxis="y", colorscale=[[0, "#e9ecef"], [1, "#ced4da"]], showscale=False,
                         hovertemplate="%{customdata}: click to list its features<extra></extra>",
                         name="cell types")]
    loc = np.asarray(heat.locality, dtype=object)
    for name in LOCALITY_ORDER:
        m = loc == name
        if m.any():
            traces.append(go.Scatter(x=x[m], y=np.zeros(int(m.sum())), yaxis="y2", mode="markers", name=name,
                                     marker=dict(symbol="square", size=7, color=LOCALITY_COLOURS[name]),
                                     customdata=feats[m].tolist(),
                                     hovertemplate="feature %{customdata} · " + name + "<extra></extra>"))
    fig = new_figure(traces)
    more = f"the {n:,} strongest of {heat.n_live:,} live features" if n < heat.n_live else f"all {n:,} live features"
    fig.update_layout(
        height=height if height is not None else 30 * len(types) + 150, margin=dict(l=10, r=10, t=50, b=30),
        title=dict(text=f"Mean activation per cell type · {more}, grouped by top cell type", font=dict(size=13)),
        xaxis=dict(domain=[0.045, 1], showticklabels=False, showgrid=False, title="features (click one to open it)"),
        xaxis2=dict(domain=[0, 0.035], showticklabels=False, showgrid=False, fixedrange=True),
        yaxis=dict(domain=[0, 0.9], anchor="x2", autorange="reversed", showgrid=False, tickfont=dict(size=11)),
        yaxis2=dict(domain=[0.92, 1], anchor="x", visible=False, fixedrange=True, range=[-1, 1]),
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1, xanchor="right", title=dict(text="locality")),
        shapes=heatmap_shapes(heat, selected=selected), clickmode="event")
    return fig


def heatmap_shapes(heat, *, selected: int | None = None) -> list[dict]:
    """Lines between the top-cell-type groups of :func:`cell_type_heatmap_figure`, and a red frame
    around the ``selected`` feature's column when it is shown."""
    n, top = int(heat.n_shown), heat.top_type
    shapes = [dict(type="line", x0=i - 0.5, x1=i - 0.5, y0=0, y1=0.9, xref="x", yref="paper",
                   line=dict(width=1, color="#495057")) for i in range(1, n) if top[i] != top[i - 1]]
    hit = np.flatnonzero(np.asarray(heat.features) == int(selected)) if selected is not None else ()
    if len(hit):
        j = int(hit[0])
        shapes.append(dict(type="rect", x0=j - 0.5, x1=j + 0.5, y0=0, y1=0.9, xref="x", yref="paper",
                           line=dict(width=2, color="#d62728")))
    return shapes


def trajectory_figure(stages, mean, se, *, n_cells=None, title: str = "", height: int | None = 320) -> go.Figure:
    """Mean activation of one feature at each stage of a lineage (± standard error), stages in order.

    ``stages``: k names; ``mean``, ``se``: k values each; ``n_cells``: k counts for the hover, or None."""
    stages = [str(s) for s in stages]
    mean = np.asarray(mean, float)
    se = np.nan_to_num(np.asarray(se, float))
    n = [None] * len(stages) if n_cells is None else list(n_cells)
    fig = new_figure(go.Scatter(
        x=stages, y=mean, mode="lines+markers", line=dict(color="#d62728", width=2), marker=dict(size=8),
        error_y=dict(type="data", array=se, thickness=1, width=4), customdata=[[s, c] for s, c in zip(se, n)],
        hovertemplate="%{x}<br>mean %{y:.3g} ± %{customdata[0]:.2g}" + ("" if n_cells is None else
                                                                         "<br>%{customdata[1]} cells")
                      + "<extra></extra>", name="mean activation"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=40), title=dict(text=title, font=dict(size=13)),
                      xaxis=dict(title="stage (first → last)", type="category", categoryorder="array",
                                 categoryarray=stages),
                      yaxis=dict(title="mean activation (± SE)", rangemode="tozero"), showlegend=False)
    return fig
