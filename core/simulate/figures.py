"""Pure figure builders for the simulation experiments: ``result -> plotly Figure``.

Used by ``featurelens simulate experiment`` (``figures.html``) and by the app's simulation
page; notebooks can call them too."""
from __future__ import annotations

import plotly.graph_objects as go


__all__ = ["superposition_figure", "sweep_figure", "recovery_figure", "structure_figure", "FIGURES"]

_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=420)


def superposition_figure(result) -> go.Figure:
    """Heatmap: mean R² of each variable (columns) from each autoencoder's latent (rows)."""
    wide = result.mean_r2()
    fig = go.Figure(go.Heatmap(z=wide.to_numpy(), x=list(wide.columns), y=list(wide.index), zmin=0, zmax=1,
                               colorscale="Viridis", colorbar=dict(title="R²"),
                               text=wide.round(2).to_numpy(), texttemplate="%{text}"))
    fig.update_layout(title="Superposition: R² of each variable from the latent (validation cells)",
                      xaxis_title="variable (nearest to the counts first)", yaxis_title="autoencoder", **_LAYOUT)
    return fig


def sweep_figure(result) -> go.Figure:
    """Scatter: reconstruction (FVU) against sparsity (L0) for every SAE, by architecture;
    hover shows the settings and the best correlation with X″."""
    runs = result.runs
    fig = go.Figure()
    key = "r[X'']" if "r[X'']" in runs else None
    for arch, grp in runs.groupby("arch", sort=False):
        custom = grp[key].round(3) if key else None
        fig.add_trace(go.Scatter(
            x=grp["l0"], y=grp["fvu"], mode="markers", name=str(arch), text=grp["run"], customdata=custom,
            hovertemplate="%{text}<br>L0 %{x:.2f}<br>FVU %{y:.3g}" + ("<br>best r X″ %{customdata}" if key else "")
            + "<extra></extra>"))
    fig.update_layout(title="SAE sweep: reconstruction vs sparsity", xaxis_title="L0 (latents firing per cell)",
                      yaxis_title="FVU", yaxis_type="log", **_LAYOUT)
    return fig


def recovery_figure(result) -> go.Figure:
    """Grouped bars: mean best |r| per variable for the SAE and each baseline; a dashed line at
    the paper's 0.9."""
    wide = result.means()
    fig = go.Figure()
    for method, row in wide.iterrows():
        fig.add_trace(go.Bar(x=list(row.index), y=row.to_numpy(), name=str(method)))
    fig.add_hline(y=result.config.target, line_dash="dash", annotation_text=f"paper: ≥ {result.config.target}")
    fig.update_layout(barmode="group", title="Variable recovery: best |Pearson r| with any latent / component",
                      xaxis_title="variable", yaxis_title="mean best |r|", yaxis_range=[0, 1.05], **_LAYOUT)
    return fig


def structure_figure(result) -> go.Figure:
    """Lines over the percentile threshold: mean coverage of matched programs, the coverage
    expected by chance, the fraction of programs matched; the paper's 75–95 % band."""
    bp = result.by_percentile
    fig = go.Figure()
    fig.add_hrect(y0=0.75, y1=0.95, fillcolor="lightgrey", opacity=0.4, line_width=0,
                  annotation_text="paper: 75–95 %", annotation_position="top left")
    fig.add_trace(go.Scatter(x=bp["percentile"], y=bp["mean_coverage"], mode="lines+markers",
                             name="mean coverage of M (matched programs)"))
    fig.add_trace(go.Scatter(x=bp["percentile"], y=bp["chance_coverage"], mode="lines+markers",
                             name="coverage expected by chance", line_dash="dot"))
    fig.add_trace(go.Scatter(x=bp["percentile"], y=bp["programs_matched_fraction"], mode="lines+markers",
                             name="fraction of X″ programs matched"))
    fig.update_layout(title="Structure recovery: SAE pseudo-connectivity vs M",
                      xaxis_title="cosine-similarity percentile used as threshold", yaxis_title="fraction",
                      yaxis_range=[0, 1.05], **_LAYOUT)
    return fig


FIGURES = {"superposition": superposition_figure, "sweep": sweep_figure, "recovery": recovery_figure,
           "structure": structure_figure}
