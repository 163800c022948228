"""Callbacks of the Explorer: each reads its inputs, makes one call into :mod:`core.views.explorer`, and
formats the result. Every function takes plain values and can be called without a browser; the
``triggered`` keyword (default: read from Dash's callback context) says which inputs changed.

A feature click only changes ``EXPLORER_STATE``; the latent view then receives a ``dash.Patch``
with the coloured trace alone (typed arrays of the active cells), the concept map a Patch of its
two overlay traces, and the card re-renders. Errors show in place, as alerts.

The URL follows the view (:func:`write_url`; each change is a browser-history entry) and the view
follows the URL when the browser goes back or forward (:func:`follow_url`): the page remembers the
last address it wrote (``EXPLORER_URL_WRITTEN``), so it reacts only to addresses it did not write.
A lasso's cells can be carried to the Steering page (:func:`carry_cells`, ``ids.STORE_CELLS``).
"""
from __future__ import annotations

import logging
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import ALL, Input, Output, Patch, State, callback, ctx, dcc, html, no_update, set_props

from components import ids
from components.explorer_page import PLACEHOLDERS, latent_colours, selection_chips
from components.feature_card import (card_header, confounder_section, de_rows, down_note, stability_line, term_link,
                                     terms_note, terms_rows)
from components.figures import (activation_histogram_figure, cell_type_heatmap_figure, cell_type_profile_figure,
                                concept_map_figure, heatmap_shapes,
                                empty_figure, highlight_trace, latent_active_trace, latent_figure, map_groups,
                                selected_cells, selected_trace, volcano_figure)
from components.job_panel import exception_alert
from components.steering_page import MAX_CARRIED_CELLS
from core.views import explorer
from core.store.catalog import analysis_source_path
from core.base.errors import FeatureLensError, InputError

log = logging.getLogger(__name__)

MAX_SELECTED = 200      # features a box selection on the map may hold
MAX_HITS = 500          # search hits highlighted on the map
MAX_RESULTS = 50        # rows of the search results table
GENE_INDEX_INLINE = 5e7  # build the gene index inside the search callback below cells × features (else a job)
MAX_HEATMAP = 300       # features on the cell type × feature heatmap (the strongest)


# ----------------------------------------------------------------------------- helpers
def load(source: str | None) -> explorer.ExplorerData:
    """The cached Explorer data of an ``analysis:NAME`` source."""
    return explorer.explorer_data(analysis_source_path(source))


def error_alert(exc: Exception, *, what: str = "") -> dbc.Alert:
    """An in-place alert for ``exc``: the message and its fix, or 'unexpected' with the error text."""
    if not isinstance(exc, FeatureLensError):
        log.exception("explorer callback failed")
    return exception_alert(exc, what=what)


def triggered_ids() -> set:
    """IDs (strings, or dicts' ``type``) of the inputs that fired the running callback; empty outside one."""
    try:
        props = ctx.triggered_prop_ids
    except Exception:  # noqa: BLE001 - not inside a callback
        return set()
    out = set()
    for key, cid in props.items():
        out.add(cid.get("type") if isinstance(cid, dict) else cid)
        out.add(key)
    return out


def _features(state: dict | None) -> list[int]:
    state = state or {}
    feats = [int(f) for f in state.get("features") or []]
    if not feats and state.get("feature") is not None:
        feats = [int(state["feature"])]
    return feats


# ----------------------------------------------------------------------------- concept map
def update_map(colour_by, hits, state, source, meta, *, triggered=None):
    """Concept map figure (full, or a Patch of its overlay traces), meta, alert."""
    triggered = triggered_ids() if triggered is None else triggered
    colour_by = colour_by or "category"
    try:
        data = load(source)
        if data.concept_map is None or data.concept_map.empty:
            return (empty_figure("no concept map yet", height=460), None,
                    dbc.Alert("This analysis is not annotated yet, so it has no concept map. Annotate it on the "
                              "Data & training page (or `featurelens annotate`); the latent space and the "
                              "feature card work meanwhile.", color="info", className="py-2 mb-2"))
        cmap = data.concept_map
        selected = _features(state)
        fresh = meta and meta.get("source") == source and meta.get("colour_by") == colour_by
        changed = triggered & {ids.EXPLORER_HITS, ids.EXPLORER_STATE}
        if fresh and changed and not triggered & {ids.EXPLORER_MAP_COLOUR, ids.EXPLORER_SOURCE}:
            patch, k = Patch(), int(meta["overlay"])
            if ids.EXPLORER_HITS in changed:
                patch["data"][k] = highlight_trace(cmap, hits or []).to_plotly_json()
            if ids.EXPLORER_STATE in changed:
                patch["data"][k + 1] = selected_trace(cmap, selected).to_plotly_json()
            return patch, no_update, no_update
        fig = concept_map_figure(cmap, colour_by=colour_by, highlight=hits or [], selected=selected,
                                 uirevision=source)
        return fig, {"source": source, "colour_by": colour_by, "overlay": len(map_groups(cmap, colour_by))}, None
    except Exception as exc:  # noqa: BLE001 - shown in place
        return empty_figure("the concept map could not be drawn", height=460), None, error_alert(exc)


# ----------------------------------------------------------------------------- latent space
def _colour_title(data, feats: list[int], n_active: int) -> tuple[str, str]:
    if not feats:
        return "activation", "no feature selected: click one on the concept map or in the search results"
    label = f"feature {feats[0]}" if len(feats) == 1 else f"Σ {len(feats)} features"
    pct = 100 * n_active / max(data.n_cells, 1)
    return label, f"{label}: active in {n_active:,} of {data.n_cells:,} cells ({pct:.1f}%)"


def _cell_labels(data, lat, colour_by: str) -> tuple[np.ndarray, list[str], str]:
    """Labels, their order, and the title word of a colouring by cell type or by a cell group."""
    if colour_by.startswith("group:"):
        views, name = data.views(), colour_by.partition(":")[2]
        if views is None or name not in views.groups:
            raise InputError(f"this analysis has no cell grouping {name!r}", fix="colour by cell type")
        labels = views.groups[name].astype(str).to_numpy(object)
        return labels, sorted(pd.unique(labels), key=lambda t: (len(t), t)), name
    return lat.labels, lat.types, "cell type"


def update_latent(colour_by, state, source, meta, view=None, *, triggered=None):
    """Latent view figure (full, or a Patch of the coloured trace), meta, alert. ``view``: "pca" or
    "umap" (:meth:`core.views.explorer.ExplorerData.latent_view`)."""
    triggered = triggered_ids() if triggered is None else triggered
    colour_by, view = colour_by or "feature", view or "pca"
    try:
        data = load(source)
        feats = _features(state)
        missing = [f for f in feats if not 0 <= f < data.n_features]
        feats = [f for f in feats if 0 <= f < data.n_features]
        alert = dbc.Alert(f"Feature {missing[0]} does not exist (this SAE has features 0–{data.n_features - 1}).",
                          color="warning", className="py-2 mb-2") if missing else None
        fresh = meta and meta.get("source") == source and meta.get("colour_by") == colour_by and \
            meta.get("view", "pca") == view
        only_state = triggered and triggered <= {ids.EXPLORER_STATE, f"{ids.EXPLORER_STATE}.data"}
        if fresh and only_state and colour_by != "feature":
            return no_update, no_update, no_update
        lat = data.latent_view(view)
        cells, values = explorer.feature_cells(data.acts, feats) if feats else (None, None)
        label, title = _colour_title(data, feats, 0 if cells is None else cells.size)
        if fresh and only_state:
            patch = Patch()
            none = np.empty(0, np.int64)  # no feature left selected (e.g. back to before the first click)
            patch["data"][1] = latent_active_trace(lat.coords, lat.labels, none if cells is None else cells,
                                                   none.astype(np.float32) if values is None else values, label=label)
            patch["layout"]["title"]["text"] = title
            return patch, no_update, alert
        labels, types = lat.labels, lat.types
        if colour_by != "feature":
            labels, types, word = _cell_labels(data, lat, colour_by)
            title = f"{data.n_cells:,} cells by {word}"
        fig = latent_figure(lat.coords, labels=labels, types=types, names=lat.cell_names,
                            colour_by="feature" if colour_by == "feature" else "celltype", cells=cells, values=values,
                            label=label, title=title, explained=lat.explained, uirevision=f"{source}:{lat.view}",
                            axes=lat.axes)
        return fig, {"source": source, "colour_by": colour_by, "view": lat.view}, alert
    except Exception as exc:  # noqa: BLE001
        return empty_figure("the latent space could not be drawn", height=460), None, error_alert(exc)


def update_latent_view(colour_by, state, source, view, meta):
    """:func:`update_latent` in the order Dash passes its inputs (the view switch is an input)."""
    return update_latent(colour_by, state, source, meta, view)


def request_views(source):
    """The source whose UMAP the background job should compute (no_update when it is stored)."""
    try:
        return no_update if load(source).views() is not None else source
    except FeatureLensError:
        return no_update  # the panels show why the analysis cannot be read


def compute_views_job(source, ready):
    """Background job: the step ``latent_views`` (UMAP, default view) of ``source``; bumps the ready
    counter, with the error's text when it failed."""
    n = int(ready.get("n", 0)) + 1 if isinstance(ready, dict) else 1
    if not source:
        return no_update
    try:
        explorer.ensure_latent_views(load(source).analysis)
        return {"n": n, "error": None}
    except FeatureLensError as exc:
        return {"n": n, "error": exc.message}


def view_switch(ready, source) -> dict | None:
    """What the job's end changes (None before it ended): ``note``, the switch's ``view`` props
    (options, value: the default view) and the ``colours`` options (the data's clusterings came with
    the views; None to leave them)."""
    if not isinstance(ready, dict):
        return None
    if ready.get("error"):
        note = f"no UMAP: {ready['error']}"
        return {"note": note, "colours": None, "view": {"value": "pca", "options": [
            {"label": "PCA", "value": "pca"}, {"label": "UMAP (failed)", "value": "umap", "disabled": True}]}}
    try:
        choices = explorer.latent_choices(load(source).views())
    except FeatureLensError as exc:
        return {"note": f"no UMAP: {exc.message}", "view": None, "colours": None}
    return {"note": choices["note"], "view": {"options": choices["options"], "value": choices["value"]},
            "colours": [{"label": label, "value": value} for label, value in latent_colours(choices["groups"])]}


def show_views(ready, source):
    """:func:`view_switch` on the page: the note (and its title) as outputs, the switch and the
    colourings through ``set_props``. As declared outputs they would put the job upstream of the
    latent view, and Dash would hold the view's first drawing until the job had ended."""
    change = view_switch(ready, source)
    if change is None:
        return no_update, no_update
    if change["view"] is not None:
        set_props(ids.EXPLORER_LATENT_VIEW, change["view"])
    if change["colours"] is not None:
        set_props(ids.EXPLORER_LATENT_COLOUR, {"options": change["colours"]})
    return change["note"], change["note"]


# ----------------------------------------------------------------------------- search
def run_search(query, mode, source, _genes_ready=None):
    """Results rows, suggestions (datalist options), hits (feature numbers), status, build-box style."""
    hidden, shown = {"display": "none"}, {"display": "block"}
    mode = mode or "concept"
    q = (query or "").strip()
    try:
        data = load(source)
        if mode == "gene" and data.gene_index() is None:
            if data.n_cells * data.n_features <= GENE_INDEX_INLINE:
                explorer.build_top_genes(data.analysis)
            else:
                msg = ("Gene search needs the top DE genes of every feature (one pass of DE over all "
                       "features, a few minutes at this size). Build it once; it is saved in the analysis.")
                return [], [], [], msg, shown
        if not q:
            return [], [], [], "", hidden
        res = explorer.search_features(data, q, mode=mode, limit=MAX_RESULTS)
        hits = explorer.search_hits(data, q, mode=mode, limit=MAX_HITS).tolist()
        options = [html.Option(value=s) for s in explorer.suggestions(data, q, mode=mode)]
        if res.empty:
            what = {"concept": "has a matching GO term", "gene": "has this gene among its top DE genes",
                    "feature": "matches"}[mode]
            return [], options, [], f"No feature {what} for “{q}”.", hidden
        order = {"concept": "by best p-value of the matching terms", "gene": "by the gene's rank",
                 "feature": "as typed"}[mode]
        listed = f"; the best {len(res)} are listed" if len(hits) > len(res) else ""
        status = (f"{len(hits)}{'+' if len(hits) >= MAX_HITS else ''} feature{'s' if len(hits) != 1 else ''} match "
                  f"“{q}”, ranked {order}{listed}; rings mark them on the concept map. Click a row to open one.")
        return explore_records(res), options, hits, status, hidden
    except Exception as exc:  # noqa: BLE001
        return [], [], [], error_alert(exc, what="Search:"), hidden


def explore_records(df: pd.DataFrame) -> list[dict]:
    out = df.astype(object).where(pd.notna(df), None)
    return out.to_dict("records")


def search_placeholder(mode):
    return PLACEHOLDERS.get(mode or "concept", PLACEHOLDERS["concept"])


def build_gene_index(set_progress, n_clicks, source, ready):
    """Background job: build ``top_genes.parquet`` with a progress bar; bumps the ready counter."""
    if not n_clicks:
        return no_update
    data = load(source)
    explorer.build_top_genes(data.analysis, progress=lambda done, total, msg: set_progress(100 * done / max(total, 1)))
    set_progress(100.0)
    return int(ready or 0) + 1


# ----------------------------------------------------------------------------- selection
def _feature_of_cell_click(cell) -> int | None:
    if not cell:
        return None
    row = cell.get("rowId")
    if row is None:
        return None
    try:
        return int(row)
    except (TypeError, ValueError):
        return None


def select_features(map_click, map_selected, result_cell, lookup_cell, _chip_clicks, state, *, triggered=None):
    """The new selection ``{"feature", "features"}`` from whichever input fired."""
    triggered = triggered_ids() if triggered is None else triggered
    state = dict(state or {})
    feats = _features(state)
    if f"{ids.EXPLORER_MAP}.selectedData" in triggered and map_selected and map_selected.get("points"):
        chosen = []
        for p in map_selected["points"]:
            f = p.get("customdata")
            if f is not None and int(f) not in chosen:
                chosen.append(int(f))
        if chosen:
            chosen = chosen[:MAX_SELECTED]
            primary = state.get("feature") if state.get("feature") in chosen else chosen[0]
            return {"feature": primary, "features": chosen}
    if f"{ids.EXPLORER_MAP}.clickData" in triggered and map_click and map_click.get("points"):
        f = map_click["points"][0].get("customdata")
        if f is not None:
            return {"feature": int(f), "features": [int(f)]}
    for grid_id, cell in ((ids.SEARCH_RESULTS, result_cell), (ids.EXPLORER_LOOKUP_FEATURES, lookup_cell)):
        if grid_id in triggered:
            f = _feature_of_cell_click(cell)
            if f is not None:
                return {"feature": f, "features": [f]}
    if "explorer-pick" in triggered:
        try:
            picked = ctx.triggered_id
            if picked and ctx.triggered[0].get("value"):
                f = int(picked["index"])
                return {"feature": f, "features": feats if f in feats else [f]}
        except Exception:  # noqa: BLE001 - not inside a callback
            pass
    return no_update


def show_selection(state):
    feats = _features(state)
    return selection_chips(feats, (state or {}).get("feature"))


# ----------------------------------------------------------------------------- feature card
def render_card(state, source):
    """Header, alert, histogram, profile, export-DE disabled, body style (hidden until a feature is
    chosen). The terms grid is :func:`render_terms`."""
    feature = (state or {}).get("feature")
    blank = empty_figure()
    hidden, shown = {"display": "none"}, {"display": "block"}
    if feature is None:
        return (no_update, None, blank, blank, True, hidden)
    try:
        data = load(source)
        summary = explorer.feature_summary(data, feature)
        cells, values = explorer.feature_cells(data.acts, [summary["feature"]])
        hist = explorer.activation_histogram(values, n_cells=data.n_cells)
        hist_fig = activation_histogram_figure(
            hist, title=f"{hist['n_active']:,} cells active · {hist['n_zero']:,} off", height=None)
        try:
            lat = data.latent()
            profile = explorer.cell_type_profile(cells, values, lat.codes, lat.types)
            prof_fig = cell_type_profile_figure(profile, title="mean activation by cell type (± SE; red = "
                                                               "significantly higher)", height=None)
        except FeatureLensError as exc:
            prof_fig = empty_figure(f"no cell-type profile: {exc.message}")
        return card_header(summary, source=source), None, hist_fig, prof_fig, False, shown
    except Exception as exc:  # noqa: BLE001
        return no_update, error_alert(exc, what=f"Feature {feature}:"), blank, blank, True, hidden


def render_terms(state, show_all, source):
    """Term rows, term note, export-terms disabled: the feature's reported terms, or every nominal
    row with its status when ``show_all`` is on."""
    feature = (state or {}).get("feature")
    if feature is None:
        return [], "", True
    try:
        data = load(source)
        terms = explorer.feature_terms(data.annotations, data.check_feature(feature), show_all=bool(show_all))
        note = terms_note(terms, show_all=bool(show_all), annotated=data.annotations is not None)
        return terms_rows(terms), note, terms.empty
    except Exception as exc:  # noqa: BLE001
        msg = exc.message if isinstance(exc, FeatureLensError) else f"unexpected error: {exc}"
        if not isinstance(exc, FeatureLensError):
            log.exception("terms of feature %s failed", feature)
        return [], f"no terms: {msg}", True


def render_down_terms(state, source):
    """Rows and note of the down-terms grid (terms of the genes down in the high cells)."""
    feature = (state or {}).get("feature")
    if feature is None:
        return [], ""
    try:
        data = load(source)
        q_max = explorer.annotation_settings(data.analysis)["fdr"]
        terms = explorer.feature_down_terms(data.annotations, data.check_feature(feature), q_max=q_max)
        return terms_rows(terms) if terms is not None else [], down_note(terms, annotated=data.annotations is not None)
    except Exception as exc:  # noqa: BLE001
        if not isinstance(exc, FeatureLensError):
            log.exception("down terms of feature %s failed", feature)
        return [], f"no terms: {exc.message if isinstance(exc, FeatureLensError) else exc}"


def render_checks(state, source):
    """Stability across seeds and the technical-variable flags of the selected feature."""
    feature = (state or {}).get("feature")
    if feature is None:
        return None, None
    try:
        data = load(source)
        summary = explorer.feature_summary(data, feature)
        return stability_line(summary), confounder_section(explorer.feature_confounders(data, summary["feature"]))
    except Exception as exc:  # noqa: BLE001
        return None, error_alert(exc, what=f"Feature {feature}:")


def render_de(state, source):
    """Volcano figure, DE rows, DE note."""
    feature = (state or {}).get("feature")
    if feature is None:
        return empty_figure(), [], ""
    try:
        data = load(source)
        de = data.de_table(feature)
        n_sig = int(de["significant"].sum())
        fig = volcano_figure(de, title=f"feature {int(feature)}: {n_sig} significant of {len(de):,} genes",
                             height=None)
        note = f"{n_sig} significant genes; the table lists them first (up to {min(len(de), 300)} rows)"
        return fig, de_rows(de), note
    except Exception as exc:  # noqa: BLE001
        msg = exc.message if isinstance(exc, FeatureLensError) else f"unexpected error: {exc}"
        if not isinstance(exc, FeatureLensError):
            log.exception("DE of feature %s failed", feature)
        return empty_figure(f"no DE table: {msg}"), [], ""


def export_terms(n_clicks, state, source, show_all=False):
    """The terms the grid lists (reported, or every nominal row), with all statistics, as CSV."""
    feature = (state or {}).get("feature")
    if not n_clicks or feature is None:
        return no_update
    terms = explorer.feature_terms(load(source).annotations, feature, show_all=bool(show_all))
    return dcc.send_data_frame(terms.to_csv, f"feature{int(feature)}_terms.csv", index=False)


def export_de(n_clicks, state, source):
    feature = (state or {}).get("feature")
    if not n_clicks or feature is None:
        return no_update
    de = load(source).de_table(feature)
    return dcc.send_data_frame(de.to_csv, f"feature{int(feature)}_de.csv", index=False)


# ----------------------------------------------------------------------------- heatmap
def update_heatmap(source, state, *, triggered=None):
    """The cell type × feature heatmap (the selected feature framed), alert. A selection change
    alone sends a Patch of the frame (the layout's shapes), not the figure."""
    triggered = triggered_ids() if triggered is None else triggered
    try:
        heat = explorer.heatmap_data(load(source), max_features=MAX_HEATMAP)
        selected = (state or {}).get("feature")
        if triggered and triggered <= {ids.EXPLORER_STATE, f"{ids.EXPLORER_STATE}.data"}:
            patch = Patch()
            patch["layout"]["shapes"] = heatmap_shapes(heat, selected=selected)
            return patch, no_update
        return cell_type_heatmap_figure(heat, selected=selected), None
    except Exception as exc:  # noqa: BLE001
        return empty_figure("the heatmap could not be drawn", height=300), error_alert(exc, what="Heatmap:")


def heatmap_click(click, source):
    """A click on the heatmap. On a cell (or a locality square): open that feature (read from the
    point's column, ``x``). On the cell-type strip (trace 1): that type's features in the search
    results, ringed on the map. Outputs: state, result rows, search status, hits."""
    points = (click or {}).get("points") or []
    if not points:
        return no_update, no_update, no_update, no_update
    p = points[0]
    try:
        data = load(source)
        if p.get("curveNumber") != 1:
            feats = explorer.heatmap_data(data, max_features=MAX_HEATMAP).features
            j = int(round(float(p.get("x"))))
            if not 0 <= j < feats.size:
                return no_update, no_update, no_update, no_update
            return {"feature": int(feats[j]), "features": [int(feats[j])]}, no_update, no_update, no_update
        cell_type = str(p.get("y"))
        res = explorer.cell_type_features(data, cell_type, limit=MAX_RESULTS)
    except Exception as exc:  # noqa: BLE001
        return no_update, [], error_alert(exc, what="Heatmap:"), []
    status = (f"{len(res)} feature{'s' if len(res) != 1 else ''} with top cell type {cell_type}, highest mean "
              "activation there first; rings mark them on the concept map. Click a row to open one.")
    return no_update, explore_records(res), status, res["feature"].tolist()


# ----------------------------------------------------------------------------- reverse lookup
def lookup_cells(selected, source):
    """Reverse lookup of a lasso selection: feature rows, concept rows, status."""
    if selected is None:  # the figure was redrawn (e.g. coloured by cell type): keep the last lookup
        return no_update, no_update, no_update
    cells = selected_cells(selected)
    if not cells:
        return [], [], "Draw a lasso around cells in the latent space."
    try:
        data = load(source)
        feats, terms = explorer.reverse_lookup(data, cells)
        lat = data.latent()
        counts = pd.Series(lat.labels[cells]).value_counts()
        kinds = ", ".join(f"{n} {t}" for t, n in counts.head(3).items()) + (" …" if len(counts) > 3 else "")
        n_sig = int(feats["significant"].sum())
        status = (f"{len(cells):,} cells selected ({kinds}). {n_sig} of the top {len(feats)} features are "
                  "significantly higher inside (z > 1.96); the concepts are those of the significant features. "
                  "Click a feature to open it.")
        terms = terms.copy()
        terms.insert(0, "term", [term_link(t, n) for t, n in zip(terms["term_id"], terms["term_name"])])
        return explore_records(feats), explore_records(terms), status
    except Exception as exc:  # noqa: BLE001
        return [], [], error_alert(exc, what="Reverse lookup:")


# ----------------------------------------------------------------------------- lasso → Steering page
def store_cells(selected):
    """The lasso's cells for the page store: ``{"n": N, "cells": [...]}`` (cells None above
    :data:`MAX_CARRIED_CELLS`), None when nothing is lassoed."""
    if selected is None:  # the figure was redrawn: the lasso stays
        return no_update
    cells = selected_cells(selected)
    if not cells:
        return None
    return {"n": len(cells), "cells": cells if len(cells) <= MAX_CARRIED_CELLS else None}


def steer_cells_button(lasso, state):
    """Box style, button label, button disabled, note of "Steer in these N cells →"."""
    if not lasso or not lasso.get("n"):
        return {"display": "none"}, no_update, True, ""
    n, feature = int(lasso["n"]), (state or {}).get("feature")
    what = f"Steer feature {int(feature)} in these {n:,} cells →" if feature is not None else \
        f"Steer in these {n:,} cells →"
    if lasso.get("cells") is None:
        return ({"display": "block"}, what, True,
                f"At most {MAX_CARRIED_CELLS:,} cells can be taken to the Steering page (it steers at most that "
                "many); lasso fewer cells, or steer whole cell types there.")
    note = "opens the Steering page with these cells chosen" + \
        (f" and feature {int(feature)}" if feature is not None else "; choose the features there")
    return {"display": "block"}, what, False, note


def carry_cells(n_clicks, lasso, state, source):
    """The button's click: the cells into ``ids.STORE_CELLS`` (session storage) and the Steering page's
    address ``/steering?source=…[&feature=F]&cells=explorer``."""
    if not n_clicks or not lasso or not lasso.get("cells"):
        return no_update, no_update, no_update
    params = {"source": source}
    feature = (state or {}).get("feature")
    if feature is not None:
        params["feature"] = str(int(feature))
    params["cells"] = "explorer"
    cells = [int(c) for c in lasso["cells"]]
    return {"source": source, "cells": cells, "n": len(cells)}, "/steering", "?" + urlencode(params)


# ----------------------------------------------------------------------------- URL
def state_query(search: str | None, *, source, state, query, mode) -> str:
    """The URL query for this view: ``source``, ``feature``, ``q`` and ``mode`` (other keys kept)."""
    from callbacks.shell import parse_query

    params = parse_query(search)
    for key in ("feature", "q", "mode"):
        params.pop(key, None)
    if source:
        params["source"] = source
    feature = (state or {}).get("feature")
    if feature is not None:
        params["feature"] = str(int(feature))
    if (query or "").strip():
        params["q"] = query.strip()
    if mode and mode != "concept":
        params["mode"] = mode
    return "?" + urlencode(params) if params else ""


def write_url(state, query, mode, source, search):
    """The new URL search for this view, or no_update when the address already says the same (in any
    order or encoding: going back to a hand-written link must not push a rewritten copy of it)."""
    from callbacks.shell import parse_query

    new = state_query(search, source=source, state=state, query=query, mode=mode)
    return no_update if parse_query(new) == parse_query(search) else new


def write_url_and_remember(state, query, mode, source, search):
    """:func:`write_url`, and the address written (so that :func:`follow_url` can ignore it)."""
    new = write_url(state, query, mode, source, search)
    return new, new


def follow_url(search, pathname, written, source, state, query, mode):
    """Back/forward: an address this page did not write → the selection, search and mode it holds,
    and that address as the last one seen. Outputs: state, search query, mode, written."""
    if (pathname or "").strip("/").split("/")[0] != "explorer" or (search or "") == (written or ""):
        return no_update, no_update, no_update, no_update
    from callbacks.shell import parse_query

    params = parse_query(search)
    if params.get("source") and params["source"] != source:
        return no_update, no_update, no_update, no_update  # another analysis: the shell renders the page anew
    wanted, _ = explorer.initial_state(params)
    new_state = no_update if wanted["feature"] == (state or {}).get("feature") else wanted
    q = params.get("q", "")
    new_query = no_update if q.strip() == (query or "").strip() else q
    m = params.get("mode", "concept")
    m = m if m in PLACEHOLDERS else "concept"
    new_mode = no_update if m == (mode or "concept") else m
    return new_state, new_query, new_mode, search


# ----------------------------------------------------------------------------- wiring
callback(Output(ids.EXPLORER_MAP, "figure"), Output(ids.EXPLORER_MAP_META, "data"),
         Output(ids.EXPLORER_MAP_ALERT, "children"),
         Input(ids.EXPLORER_MAP_COLOUR, "value"), Input(ids.EXPLORER_HITS, "data"), Input(ids.EXPLORER_STATE, "data"),
         Input(ids.EXPLORER_SOURCE, "data"), State(ids.EXPLORER_MAP_META, "data"))(update_map)
callback(Output(ids.EXPLORER_LATENT, "figure"), Output(ids.EXPLORER_LATENT_META, "data"),
         Output(ids.EXPLORER_LATENT_ALERT, "children"),
         Input(ids.EXPLORER_LATENT_COLOUR, "value"), Input(ids.EXPLORER_STATE, "data"),
         Input(ids.EXPLORER_SOURCE, "data"), Input(ids.EXPLORER_LATENT_VIEW, "value"),
         State(ids.EXPLORER_LATENT_META, "data"))(update_latent_view)
callback(Output(ids.EXPLORER_VIEWS_NEEDED, "data"), Input(ids.EXPLORER_SOURCE, "data"))(request_views)
callback(Output(ids.EXPLORER_VIEWS_READY, "data"), Input(ids.EXPLORER_VIEWS_NEEDED, "data"),
         State(ids.EXPLORER_VIEWS_READY, "data"), background=True, prevent_initial_call=True)(compute_views_job)
callback(Output(ids.EXPLORER_LATENT_VIEW_NOTE, "children"), Output(ids.EXPLORER_LATENT_VIEW_NOTE, "title"),
         Input(ids.EXPLORER_VIEWS_READY, "data"), State(ids.EXPLORER_SOURCE, "data"),
         prevent_initial_call=True)(show_views)
callback(Output(ids.SEARCH_RESULTS, "rowData"), Output(ids.SEARCH_SUGGESTIONS, "children"),
         Output(ids.EXPLORER_HITS, "data"), Output(ids.SEARCH_STATUS, "children"),
         Output(ids.SEARCH_BUILD_BOX, "style"),
         Input(ids.SEARCH_INPUT, "value"), Input(ids.SEARCH_MODE, "value"), Input(ids.EXPLORER_SOURCE, "data"),
         Input(ids.SEARCH_GENES_READY, "data"))(run_search)
callback(Output(ids.SEARCH_INPUT, "placeholder"), Input(ids.SEARCH_MODE, "value"))(search_placeholder)
callback(Output(ids.SEARCH_GENES_READY, "data"), Input(ids.SEARCH_BUILD_GENES, "n_clicks"),
         State(ids.EXPLORER_SOURCE, "data"), State(ids.SEARCH_GENES_READY, "data"),
         background=True, progress=[Output(ids.SEARCH_BUILD_PROGRESS, "value")],
         running=[(Output(ids.SEARCH_BUILD_GENES, "disabled"), True, False)],
         prevent_initial_call=True)(build_gene_index)
callback(Output(ids.EXPLORER_STATE, "data"),
         Input(ids.EXPLORER_MAP, "clickData"), Input(ids.EXPLORER_MAP, "selectedData"),
         Input(ids.SEARCH_RESULTS, "cellClicked"), Input(ids.EXPLORER_LOOKUP_FEATURES, "cellClicked"),
         Input(ids.explorer_pick(0) | {"index": ALL}, "n_clicks"), State(ids.EXPLORER_STATE, "data"),
         prevent_initial_call=True)(select_features)
callback(Output(ids.EXPLORER_SELECTION, "children"), Input(ids.EXPLORER_STATE, "data"))(show_selection)
callback(Output(ids.CARD_HEADER, "children"), Output(ids.CARD_ALERT, "children"),
         Output(ids.CARD_HISTOGRAM, "figure"), Output(ids.CARD_PROFILE, "figure"),
         Output(ids.CARD_EXPORT_DE, "disabled"), Output(ids.CARD_BODY, "style"),
         Input(ids.EXPLORER_STATE, "data"), State(ids.EXPLORER_SOURCE, "data"))(render_card)
callback(Output(ids.CARD_TERMS, "rowData"), Output(ids.CARD_TERMS_NOTE, "children"),
         Output(ids.CARD_EXPORT_TERMS, "disabled"),
         Input(ids.EXPLORER_STATE, "data"), Input(ids.CARD_TERMS_ALL, "value"),
         State(ids.EXPLORER_SOURCE, "data"))(render_terms)
callback(Output(ids.CARD_DOWN_TERMS, "rowData"), Output(ids.CARD_DOWN_NOTE, "children"),
         Input(ids.EXPLORER_STATE, "data"), State(ids.EXPLORER_SOURCE, "data"))(render_down_terms)
callback(Output(ids.CARD_STABILITY_SECTION, "children"), Output(ids.CARD_CONFOUNDERS, "children"),
         Input(ids.EXPLORER_STATE, "data"), State(ids.EXPLORER_SOURCE, "data"))(render_checks)
callback(Output(ids.EXPLORER_HEATMAP, "figure"), Output(ids.EXPLORER_HEATMAP_ALERT, "children"),
         Input(ids.EXPLORER_SOURCE, "data"), Input(ids.EXPLORER_STATE, "data"))(update_heatmap)
callback(Output(ids.EXPLORER_STATE, "data", allow_duplicate=True),
         Output(ids.SEARCH_RESULTS, "rowData", allow_duplicate=True),
         Output(ids.SEARCH_STATUS, "children", allow_duplicate=True),
         Output(ids.EXPLORER_HITS, "data", allow_duplicate=True),
         Input(ids.EXPLORER_HEATMAP, "clickData"), State(ids.EXPLORER_SOURCE, "data"),
         prevent_initial_call=True)(heatmap_click)
callback(Output(ids.CARD_VOLCANO, "figure"), Output(ids.CARD_DE, "rowData"), Output(ids.CARD_DE_NOTE, "children"),
         Input(ids.EXPLORER_STATE, "data"), State(ids.EXPLORER_SOURCE, "data"))(render_de)
callback(Output(ids.CARD_DOWNLOAD, "data"), Input(ids.CARD_EXPORT_TERMS, "n_clicks"),
         State(ids.EXPLORER_STATE, "data"), State(ids.EXPLORER_SOURCE, "data"), State(ids.CARD_TERMS_ALL, "value"),
         prevent_initial_call=True)(export_terms)
callback(Output(ids.CARD_DOWNLOAD, "data", allow_duplicate=True), Input(ids.CARD_EXPORT_DE, "n_clicks"),
         State(ids.EXPLORER_STATE, "data"), State(ids.EXPLORER_SOURCE, "data"), prevent_initial_call=True)(export_de)
callback(Output(ids.EXPLORER_LOOKUP_FEATURES, "rowData"), Output(ids.EXPLORER_LOOKUP_TERMS, "rowData"),
         Output(ids.EXPLORER_LOOKUP_STATUS, "children"),
         Input(ids.EXPLORER_LATENT, "selectedData"), State(ids.EXPLORER_SOURCE, "data"),
         prevent_initial_call=True)(lookup_cells)
callback(Output(ids.URL, "search", allow_duplicate=True), Output(ids.EXPLORER_URL_WRITTEN, "data"),
         Input(ids.EXPLORER_STATE, "data"), Input(ids.SEARCH_INPUT, "value"), Input(ids.SEARCH_MODE, "value"),
         State(ids.EXPLORER_SOURCE, "data"), State(ids.URL, "search"),
         prevent_initial_call=True)(write_url_and_remember)
callback(Output(ids.EXPLORER_STATE, "data", allow_duplicate=True), Output(ids.SEARCH_INPUT, "value"),
         Output(ids.SEARCH_MODE, "value"), Output(ids.EXPLORER_URL_WRITTEN, "data", allow_duplicate=True),
         Input(ids.URL, "search"), State(ids.URL, "pathname"), State(ids.EXPLORER_URL_WRITTEN, "data"),
         State(ids.EXPLORER_SOURCE, "data"), State(ids.EXPLORER_STATE, "data"), State(ids.SEARCH_INPUT, "value"),
         State(ids.SEARCH_MODE, "value"), prevent_initial_call=True)(follow_url)
callback(Output(ids.EXPLORER_CELLS, "data"), Input(ids.EXPLORER_LATENT, "selectedData"),
         prevent_initial_call=True)(store_cells)
callback(Output(ids.EXPLORER_STEER_CELLS_BOX, "style"), Output(ids.EXPLORER_STEER_CELLS, "children"),
         Output(ids.EXPLORER_STEER_CELLS, "disabled"), Output(ids.EXPLORER_STEER_CELLS_NOTE, "children"),
         Input(ids.EXPLORER_CELLS, "data"), Input(ids.EXPLORER_STATE, "data"))(steer_cells_button)
callback(Output(ids.STORE_CELLS, "data"), Output(ids.URL, "pathname"),
         Output(ids.URL, "search", allow_duplicate=True),
         Input(ids.EXPLORER_STEER_CELLS, "n_clicks"), State(ids.EXPLORER_CELLS, "data"),
         State(ids.EXPLORER_STATE, "data"), State(ids.EXPLORER_SOURCE, "data"),
         prevent_initial_call=True)(carry_cells)
