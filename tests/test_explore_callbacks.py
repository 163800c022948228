"""Explorer callbacks and figure builders as plain functions (no browser)."""
from __future__ import annotations

import base64
import dataclasses
import io
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from dash import Patch, html, no_update
from plotly.io.json import to_json_plotly

import callbacks.explorer as cb
from components import explorer_page, feature_card, figures, ids
from core.views import explorer
from explore_data import small_analysis_path

SOURCE = "analysis:pbmc-small"
STATE = {ids.EXPLORER_STATE, f"{ids.EXPLORER_STATE}.data"}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = small_analysis_path(tmp_path_factory)
    mp = pytest.MonkeyPatch()
    mp.setenv("FEATURELENS_ANALYSES_DIR", str(path.parent))
    yield SOURCE
    mp.undo()


@pytest.fixture(scope="module")
def data(source):
    return cb.load(source)


def decode(spec) -> np.ndarray:
    """A plotly typed-array spec (or a plain list) back to numpy."""
    if isinstance(spec, dict) and "bdata" in spec:
        return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype(spec["dtype"]).newbyteorder("<"))
    return np.asarray(spec)


def operations(patch: Patch) -> dict:
    return {tuple(op["location"]): op["params"]["value"] for op in patch.to_plotly_json()["operations"]}


def text_of(component) -> str:
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component,
                      default=lambda o: o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o))


# ----------------------------------------------------------------------------- figures
def test_typed_array_round_trip():
    for arr, dt in ((np.array([0.5, -2.0, 3.25]), "float32"), (np.array([1, 70000, 3]), "int32")):
        np.testing.assert_array_equal(decode(figures.typed_array(arr, dt)), arr.astype(dt))
    assert figures.typed_array(np.zeros((2, 3)))["shape"] == "2,3"


def test_concept_map_figure_groups_overlays_and_customdata(data):
    cmap = data.concept_map
    a, b, c = sorted(cmap["feature"].tolist())[:3]          # features on the map
    fig = figures.concept_map_figure(cmap, colour_by="category", highlight=[a, b], selected=[c])
    groups = figures.map_groups(cmap, "category")
    assert len(fig.data) == len(groups) + 2
    assert sum(len(t.x) for t in fig.data[:len(groups)]) == len(cmap)
    feats = np.concatenate([decode(t.customdata) for t in fig.data[:len(groups)]])
    assert sorted(feats.tolist()) == sorted(cmap["feature"].tolist())
    assert sorted(decode(fig.data[-2].customdata).tolist()) == [a, b] and fig.data[-2].hoverinfo == "skip"
    assert decode(fig.data[-1].customdata).tolist() == [c]
    # customdata stays a JSON list: dcc.Graph reads clickData/selectedData customdata from the figure as is
    assert all(isinstance(t["customdata"], list) for t in fig.to_plotly_json()["data"])
    # biggest category first; sizes grow with frequency
    counts = cmap["category"].value_counts()
    assert groups[0] == counts.index[0] and fig.data[0].name.startswith(groups[0])
    loc = figures.concept_map_figure(cmap, colour_by="locality")
    assert {t.name.split(" (")[0] for t in loc.data[:-2]} == set(cmap["locality"])
    sizes = figures.marker_sizes(np.array([0.0, 0.25, 1.0]))
    assert sizes[0] < sizes[1] < sizes[2]


def test_latent_figure_draws_high_activations_last(data):
    lat = data.latent()
    cells, values = explorer.feature_cells(data.acts, 5)
    fig = figures.latent_figure(lat.coords, labels=lat.labels, types=lat.types, cells=cells, values=values,
                                label="feature 5")
    assert len(fig.data) == 2 and len(decode(fig.data[0].x)) == data.n_cells
    col = decode(fig.data[1].marker.color)
    assert np.all(np.diff(col) >= 0) and col[-1] == values.max()
    idx = decode(fig.data[1].customdata)
    np.testing.assert_array_equal(decode(fig.data[1].x), lat.coords[idx, 0])
    assert list(fig.data[1].text) == list(lat.labels[idx])
    # trace 0 (every cell, in order) carries no customdata: the lasso reads its point index
    assert fig.data[0].customdata is None and len(fig.data[0].text) == data.n_cells
    lasso = {"points": [{"curveNumber": 0, "pointIndex": 7}, {"curveNumber": 0, "pointIndex": 3},
                        {"curveNumber": 1, "pointIndex": 0, "customdata": int(idx[0])},
                        {"curveNumber": 0, "pointIndex": True}]}
    assert figures.selected_cells(lasso) == sorted({3, 7, int(idx[0])})
    assert figures.selected_cells(None) == []
    by_type = figures.latent_figure(lat.coords, labels=lat.labels, types=lat.types, colour_by="celltype")
    assert len(by_type.data) == len(lat.types)
    assert sum(len(decode(t.customdata)) for t in by_type.data) == data.n_cells
    assert all(isinstance(t["customdata"], list) for t in by_type.to_plotly_json()["data"])


def test_volcano_profile_histogram_figures():
    de = pd.DataFrame({"gene": list("abcdef"), "log2_fold_change": [3.0, -2.0, 0.1, 5.0, -0.2, 1.0],
                       "q": [1e-10, 1e-8, 0.5, 0.0, 0.9, 1e-3], "significant": [True, True, False, True, False, False]})
    fig = figures.volcano_figure(de, n_labels=2)
    names = {t.name.split(" (")[0]: len(t.x) for t in fig.data}
    assert names == {"not significant": 3, "up": 2, "down": 1}
    assert [a.text for a in fig.layout.annotations] == ["d", "a"]  # q = 0 is drawn at 300, not infinity
    assert max(max(t.y) for t in fig.data) == 300
    # 13,000 genes: every significant one drawn, of the others the most extreme and an even sample
    rng = np.random.default_rng(3)
    big = pd.DataFrame({"gene": [f"g{i}" for i in range(13_000)], "log2_fold_change": rng.normal(size=13_000),
                        "q": rng.uniform(0.06, 1, 13_000), "significant": False})
    big.loc[:299, "significant"], big.loc[:299, "q"] = True, 1e-6
    big.loc[5000, "q"], big.loc[6000, "log2_fold_change"] = 0.051, 40.0  # the most extreme non-significant
    fig = figures.volcano_figure(big)
    grey, *coloured = fig.data
    assert grey.name == "not significant (12,700; 2,000 drawn)" and len(grey.x) == 2_000
    assert sum(len(t.x) for t in coloured) == 300 and {"g5000", "g6000"} <= set(grey.text)
    assert all(t.type == "scattergl" for t in fig.data)  # WebGL above 5,000 genes
    prof = pd.DataFrame({"cell_type": ["x", "y"], "n": [3, 4], "mean": [0.5, 1.0], "se": [0.1, np.nan],
                         "frac_active": [0.5, 1.0], "significant": [False, True]})
    bar = figures.cell_type_profile_figure(prof).data[0]
    assert list(bar.y) == ["x", "y"] and list(bar.marker.color) == ["#9aa5b1", "#d62728"]
    hist = figures.activation_histogram_figure({"edges": np.array([0, 1, 2.0]), "counts": np.array([3, 1])})
    assert list(hist.data[0].y) == [3, 1]
    assert isinstance(figures.activation_histogram_figure({"edges": np.zeros(1), "counts": np.zeros(0)}), go.Figure)


# ----------------------------------------------------------------------------- layout
def test_layout_messages_in_place(source, tmp_path_factory):
    def alert(src, query=None):
        return text_of(explorer_page.layout(explorer.explorer_page_data(src, query=query or {})))

    assert "No analysis chosen" in alert(None)
    assert "The Explorer shows analyses" in alert("shipped:pbmc68k")
    assert "cannot be opened" in alert("analysis:nope") and "danger" in alert("analysis:nope")
    assert "outside the allowed" in alert("analysis:../../etc")
    page = explorer_page.layout(explorer.explorer_page_data(source, query={"feature": "12", "q": "antigen",
                                                                           "mode": "gene"}))
    found = text_of(page)
    for cid in (ids.EXPLORER_MAP, ids.EXPLORER_LATENT, ids.SEARCH_INPUT, ids.CARD_TERMS, ids.EXPLORER_STATE):
        assert cid in found
    state = explorer.initial_state({"feature": "12"})[0]
    assert state == {"feature": 12, "features": [12]}
    warn = text_of(explorer_page.layout(explorer.explorer_page_data(source, query={"feature": "abc", "mode": "zzz"})))
    assert "not a feature number" in warn and "Unknown search mode" in warn


# ----------------------------------------------------------------------------- map and latent
def test_update_map_full_then_patches_only_the_overlays(source, data):
    fig, meta, alert = cb.update_map("category", [], {"feature": None}, source, None, triggered=set())
    k = len(figures.map_groups(data.concept_map, "category"))
    assert alert is None and meta == {"source": source, "colour_by": "category", "overlay": k}
    assert len(fig.data) == k + 2
    a, b = sorted(data.concept_map["feature"].tolist())[:2]   # features on the map
    patch, m2, a2 = cb.update_map("category", [a, b], {"feature": a}, source, meta, triggered={ids.EXPLORER_HITS})
    assert isinstance(patch, Patch) and m2 is no_update and a2 is no_update
    ops = operations(patch)
    assert list(ops) == [("data", k)]
    assert sorted(decode(ops[("data", k)]["customdata"]).tolist()) == [a, b]
    ops = operations(cb.update_map("category", [a, b], {"feature": a}, source, meta, triggered=STATE)[0])
    assert list(ops) == [("data", k + 1)] and decode(ops[("data", k + 1)]["customdata"]).tolist() == [a]
    # colour change or another source: a full figure again
    full, meta2, _ = cb.update_map("locality", [], {}, source, meta, triggered={ids.EXPLORER_MAP_COLOUR})
    assert isinstance(full, go.Figure) and meta2["colour_by"] == "locality"


def test_update_latent_patch_recolours_the_active_cells(source, data):
    fig, meta, alert = cb.update_latent("feature", {"feature": None}, source, None, triggered=set())
    assert alert is None and len(fig.data) == 2 and "no feature selected" in fig.layout.title.text
    patch, *_ = cb.update_latent("feature", {"feature": 5, "features": [5]}, source, meta, triggered=STATE)
    ops = operations(patch)
    trace = ops[("data", 1)]
    cells, values = explorer.feature_cells(data.acts, 5)
    np.testing.assert_array_equal(decode(trace["customdata"]), cells)
    np.testing.assert_array_equal(decode(trace["marker"]["color"]), values)
    np.testing.assert_array_equal(decode(trace["x"]), data.latent().coords[cells, 0])
    assert ops[("layout", "title", "text")].startswith(f"feature 5: active in {cells.size} of 700")
    # several features: the sum
    ops = operations(cb.update_latent("feature", {"feature": 3, "features": [3, 5]}, source, meta,
                                      triggered=STATE)[0])
    assert "Σ 2 features" in ops[("layout", "title", "text")]
    # no feature any more (browser back to before the first click): the coloured trace empties
    patch, _, alert = cb.update_latent("feature", {"feature": None, "features": []}, source, meta, triggered=STATE)
    ops = operations(patch)
    assert alert is None and decode(ops[("data", 1)]["customdata"]).size == 0
    assert ops[("layout", "title", "text")].startswith("no feature selected")
    # the patch is small: typed arrays, not JSON number lists
    assert len(to_json_plotly(patch)) < 60 * cells.size + 2000
    # cell-type view: a selection does not touch it
    ct, meta_ct, _ = cb.update_latent("celltype", {"feature": 5}, source, meta, triggered={ids.EXPLORER_LATENT_COLOUR})
    assert len(ct.data) == len(data.latent().types)
    assert cb.update_latent("celltype", {"feature": 6}, source, meta_ct, triggered=STATE) == (no_update,) * 3


def test_figure_callbacks_show_errors_in_place(source):
    fig, meta, alert = cb.update_latent("feature", {}, "analysis:missing", None, triggered=set())
    assert meta is None and "not an analysis folder" in text_of(alert)
    fig, meta, alert = cb.update_map("category", [], {}, "shipped:pbmc68k", None, triggered=set())
    assert meta is None and "is not an analysis" in text_of(alert)
    header, alert, *_ , style = cb.render_card({"feature": 9999}, source)
    assert "does not exist" in text_of(alert) and style == {"display": "none"}
    vol, rows, note = cb.render_de({"feature": 9999}, source)
    assert rows == [] and "does not exist" in vol.layout.annotations[0].text


# ----------------------------------------------------------------------------- search and selection
def test_run_search_concept_gene_and_feature(source, data):
    rows, options, hits, status, box = cb.run_search("antigen processing", "concept", source)
    ref = explorer.search_features(data, "antigen processing", limit=cb.MAX_RESULTS)
    assert [r["feature"] for r in rows] == ref["feature"].tolist()
    assert set(hits) >= {r["feature"] for r in rows} and "match “antigen processing”" in status
    assert all(isinstance(o, html.Option) for o in options) and options
    json.dumps(rows)  # JSON-able (no NaN objects)
    rows, options, hits, status, box = cb.run_search("CD79A", "gene", source)  # builds the gene index inline
    assert rows and box == {"display": "none"} and data.analysis.has(explorer.TOP_GENES_FILE)
    rows, _, hits, status, _ = cb.run_search("3, 5", "feature", source)
    assert hits == [3, 5] and [r["feature"] for r in rows] == [3, 5]
    rows, _, hits, status, _ = cb.run_search("abc", "feature", source)
    assert rows == [] and hits == [] and "not a feature number" in text_of(status)
    rows, _, hits, status, _ = cb.run_search("zzzz-nothing", "concept", source)
    assert rows == [] and "No feature has a matching GO term" in status
    assert cb.run_search("", "concept", source)[:4] == ([], [], [], "")


def test_gene_index_job_is_offered_for_large_analyses(source, monkeypatch, data):
    monkeypatch.setattr(cb, "GENE_INDEX_INLINE", 0)
    monkeypatch.setattr(data, "gene_index", lambda: None)
    rows, _, _, status, box = cb.run_search("CD79A", "gene", source)
    assert rows == [] and box == {"display": "block"} and "Build it once" in status
    progress = []
    assert cb.build_gene_index(progress.append, 1, source, 2) == 3
    assert progress and progress[-1] == pytest.approx(100.0)


def test_select_features_from_every_input():
    state = {"feature": None, "features": []}
    click = {"points": [{"customdata": 12, "curveNumber": 0}]}
    assert cb.select_features(click, None, None, None, [], state,
                              triggered={f"{ids.EXPLORER_MAP}.clickData"}) == {"feature": 12, "features": [12]}
    box = {"points": [{"customdata": 4}, {"customdata": 9}, {"customdata": 4}]}
    assert cb.select_features(None, box, None, None, [], state,
                              triggered={f"{ids.EXPLORER_MAP}.selectedData"}) == {"feature": 4, "features": [4, 9]}
    # a box keeps the current feature when it is inside the box
    assert cb.select_features(None, box, None, None, [], {"feature": 9, "features": [9]},
                              triggered={f"{ids.EXPLORER_MAP}.selectedData"})["feature"] == 9
    assert cb.select_features(None, None, {"rowId": "33", "colId": "match"}, None, [], state,
                              triggered={ids.SEARCH_RESULTS}) == {"feature": 33, "features": [33]}
    assert cb.select_features(None, None, None, {"rowId": "8"}, [], state,
                              triggered={ids.EXPLORER_LOOKUP_FEATURES}) == {"feature": 8, "features": [8]}
    assert cb.select_features(None, {"points": []}, None, None, [], state,
                              triggered={f"{ids.EXPLORER_MAP}.selectedData"}) is no_update
    chips = explorer_page.selection_chips([4, 9], 4)
    assert "explorer-pick" in text_of(html.Div(chips)) and explorer_page.selection_chips([4], 4) == []


# ----------------------------------------------------------------------------- card, exports, lookup
def test_render_card_fills_every_part(source, data):
    header, alert, hist, prof, no_de_export, style = cb.render_card({"feature": 5, "features": [5]}, source)
    assert alert is None and style == {"display": "block"} and not no_de_export
    text = text_of(header)
    assert "Feature 5" in text and data.features.loc[5, "locality"] in text
    assert "/steering?source=analysis%3Apbmc-small&feature=5" in text
    rows, note, no_terms_export = cb.render_terms({"feature": 5, "features": [5]}, False, source)
    terms = explorer.feature_terms(data.annotations, 5)
    assert len(rows) == len(terms) == int(note.split()[0]) and no_terms_export == terms.empty
    assert rows[0]["term"].startswith("[") and "QuickGO/term/GO:" in rows[0]["term"]
    assert sum(hist.data[0].y) == data.acts.indptr[6] - data.acts.indptr[5]
    assert len(prof.data[0].y) == len(data.latent().types)
    json.dumps(rows)
    blank = cb.render_card({"feature": None}, source)
    assert blank[0] is no_update and blank[-1] == {"display": "none"}
    assert cb.render_terms({"feature": None}, False, source) == ([], "", True)
    rows, note, disabled = cb.render_terms({"feature": 9999}, False, source)
    assert rows == [] and disabled and "does not exist" in note


def test_render_de_and_exports(source, data):
    fig, rows, note = cb.render_de({"feature": 7}, source)
    de = data.de_table(7)
    n_sig = int(de["significant"].sum())
    assert f"{n_sig} significant" in note and len(rows) == min(len(de), feature_card.DE_ROWS)
    assert [r["significant"] for r in rows[:n_sig]] == ["yes"] * n_sig
    json.dumps(rows)
    out = cb.export_de(1, {"feature": 7}, source)
    got = pd.read_csv(io.StringIO(out["content"]))
    assert out["filename"] == "feature7_de.csv" and len(got) == len(de)
    np.testing.assert_allclose(got["q"], de["q"], rtol=1e-9)
    out = cb.export_terms(1, {"feature": 7}, source)
    got = pd.read_csv(io.StringIO(out["content"]))
    assert out["filename"] == "feature7_terms.csv" and len(got) == len(explorer.feature_terms(data.annotations, 7))
    assert {"binom_p", "fold_enrichment", "term_name", "status"} <= set(got.columns)
    every = pd.read_csv(io.StringIO(cb.export_terms(1, {"feature": 7}, source, True)["content"]))
    assert len(every) == (data.annotations["feature"] == 7).sum()
    assert cb.export_terms(None, {"feature": 7}, source) is no_update


def test_lookup_cells_from_a_lasso(source, data):
    lat = data.latent()
    cells = np.flatnonzero(lat.labels == "CD19+ B")
    sel = {"points": [{"customdata": int(c), "curveNumber": 0} for c in cells]}
    feats, terms, status = cb.lookup_cells(sel, source)
    ref = explorer.reverse_lookup(data, cells)[0]
    assert [r["feature"] for r in feats] == ref["feature"].tolist()
    assert f"{cells.size} cells selected ({cells.size} CD19+ B)" in status
    assert all("](" in t["term"] or "`" in t["term"] for t in terms)
    json.dumps(feats), json.dumps(terms)
    assert cb.lookup_cells(None, source) == (no_update,) * 3
    assert cb.lookup_cells({"points": []}, source)[2].startswith("Draw a lasso")
    assert "select at least" in text_of(cb.lookup_cells({"points": [{"customdata": 1}]}, source)[2])


# ----------------------------------------------------------------------------- URL
def test_state_in_the_url_round_trips():
    q = cb.state_query("?source=analysis%3Aa&other=1", source="analysis:a", state={"feature": 12},
                       query=" B cell ", mode="concept")
    from callbacks.shell import parse_query

    assert parse_query(q) == {"source": "analysis:a", "other": "1", "feature": "12", "q": "B cell"}
    q2 = cb.state_query(q, source="analysis:a", state={"feature": None}, query="", mode="gene")
    assert parse_query(q2) == {"source": "analysis:a", "other": "1", "mode": "gene"}
    assert cb.write_url({"feature": 12}, "B cell", "concept", "analysis:a", q) is no_update
    state, _ = explorer.initial_state(parse_query(q))
    assert state["feature"] == 12


def test_back_and_forward_restore_the_view_the_url_holds():
    """An address the page did not write (browser back/forward) sets the selection, search and mode;
    one it wrote itself, another page's or another analysis's changes nothing."""
    src = "analysis:a"
    a = cb.state_query("", source=src, state={"feature": 4}, query="", mode="concept")
    b = cb.state_query(a, source=src, state={"feature": 6}, query="", mode="concept")
    assert cb.write_url_and_remember({"feature": 6}, "", "concept", src, a) == (b, b)  # remembered as written
    assert cb.write_url_and_remember({"feature": 6}, "", "concept", src, b) == (no_update, no_update)
    nothing = (no_update,) * 4
    # the page's own address: nothing to do
    assert cb.follow_url(b, "/explorer", b, src, {"feature": 6, "features": [6]}, "", "concept") == nothing
    # back: feature 4 again (and the address as seen); forward: feature 6
    assert cb.follow_url(a, "/explorer", b, src, {"feature": 6, "features": [6]}, "", "concept") == \
        ({"feature": 4, "features": [4]}, no_update, no_update, a)
    assert cb.follow_url(b, "/explorer", a, src, {"feature": 4, "features": [4]}, "", "concept") == \
        ({"feature": 6, "features": [6]}, no_update, no_update, b)
    # a box selection whose highlighted feature the address names is kept
    assert cb.follow_url(a, "/explorer", b, src, {"feature": 4, "features": [4, 9]}, "", "concept")[0] is no_update
    # the search and its mode come back too; no feature clears the selection
    c = cb.state_query(a, source=src, state={"feature": None}, query="CD79A", mode="gene")
    assert cb.follow_url(c, "/explorer", a, src, {"feature": 4, "features": [4]}, "", "concept") == \
        ({"feature": None, "features": []}, "CD79A", "gene", c)
    # another page, or another analysis (the shell renders that one anew): left alone
    assert cb.follow_url(a, "/steering", b, src, {"feature": 6}, "", "concept") == nothing
    other = cb.state_query("", source="analysis:b", state={"feature": 1}, query="", mode="concept")
    assert cb.follow_url(other, "/explorer", b, src, {"feature": 6}, "", "concept") == nothing


# ----------------------------------------------------------------------------- lasso → Steering page
def test_lassoed_cells_are_carried_to_the_steering_page():
    from components.steering_page import MAX_CARRIED_CELLS

    sel = {"points": [{"customdata": 7}, {"customdata": 3}, {"customdata": 7}, {"x": 1}]}
    lasso = cb.store_cells(sel)
    assert lasso == {"n": 2, "cells": [3, 7]}
    assert cb.store_cells(None) is no_update and cb.store_cells({"points": []}) is None
    style, label, disabled, note = cb.steer_cells_button(lasso, {"feature": 12, "features": [12]})
    assert style == {"display": "block"} and label == "Steer feature 12 in these 2 cells →" and disabled is False
    assert "feature 12" in note
    assert cb.steer_cells_button(lasso, {"feature": None})[1] == "Steer in these 2 cells →"
    assert cb.steer_cells_button(None, {})[0] == {"display": "none"}
    # the click: the cells into the app's session store, and the Steering page's address
    store, path, search = cb.carry_cells(1, lasso, {"feature": 12}, "analysis:a")
    assert store == {"source": "analysis:a", "cells": [3, 7], "n": 2} and path == "/steering"
    assert search == "?source=analysis%3Aa&feature=12&cells=explorer"
    assert cb.carry_cells(None, lasso, {}, "analysis:a") == (no_update,) * 3
    # above the cap: not carried, and the button says why
    big = cb.store_cells({"points": [{"customdata": i} for i in range(MAX_CARRIED_CELLS + 1)]})
    assert big == {"n": MAX_CARRIED_CELLS + 1, "cells": None}
    _, label, disabled, note = cb.steer_cells_button(big, {})
    assert disabled is True and f"At most {MAX_CARRIED_CELLS:,} cells" in note and "5,001 cells" in label
    assert cb.carry_cells(1, big, {}, "analysis:a") == (no_update,) * 3
    json.dumps(cb.store_cells({"points": [{"customdata": i} for i in range(MAX_CARRIED_CELLS)]}))


def test_an_analysis_without_annotation_still_explores(source, tmp_path_factory, monkeypatch):
    import shutil

    src = small_analysis_path(tmp_path_factory)
    root = tmp_path_factory.mktemp("plain-analyses")
    shutil.copytree(src, root / "plain")
    for name in ("annotations.parquet", "concept_map.parquet"):
        (root / "plain" / name).unlink()
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(root))
    plain = "analysis:plain"
    fig, meta, alert = cb.update_map("category", [], {}, plain, None, triggered=set())
    assert meta is None and "not annotated yet" in text_of(alert)
    rows, _, hits, status, _ = cb.run_search("immune", "concept", plain)
    assert rows == [] and "no annotation yet" in text_of(status)
    fig, meta, alert = cb.update_latent("feature", {"feature": 2}, plain, None, triggered=set())
    assert alert is None and "feature 2: active in" in fig.layout.title.text
    out = cb.render_card({"feature": 2}, plain)
    assert out[1] is None and out[-1] == {"display": "block"}
    rows, note, disabled = cb.render_terms({"feature": 2}, True, plain)
    assert rows == [] and "not annotated" in note and disabled


def _calibrate(ann: pd.DataFrame) -> pd.DataFrame:
    """The new contract on an old table: per feature, its 3 best rows reported, the 4th explained by
    the best one, the 5th of the down genes, the rest nominal only."""
    from core.annotate.reported import ordered

    ann = ordered(ann).reset_index(drop=True)
    rank = ann.groupby("feature").cumcount().to_numpy()
    best = ann.groupby("feature")["term_id"].transform("first").astype(str).to_numpy()
    return ann.assign(reported=rank < 3, redundant_with=np.where(rank == 3, best, ""),
                      de_direction=np.where(rank == 4, "down", "up"))


def test_the_explorer_shows_reported_terms_and_the_switch_every_row(tmp_path_factory, monkeypatch):
    import shutil

    from core.views.steering import feature_choices

    src = small_analysis_path(tmp_path_factory)
    root = tmp_path_factory.mktemp("calibrated-analyses")
    shutil.copytree(src, root / "cal")
    ann = _calibrate(pd.read_parquet(root / "cal" / "annotations.parquet"))
    ann.to_parquet(root / "cal" / "annotations.parquet")
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(root))
    cal = "analysis:cal"
    data = cb.load(cal)
    f = int(ann.groupby("feature").size().idxmax())
    mine = ann[ann["feature"] == f]
    assert len(mine) > 5
    rows, note, _ = cb.render_terms({"feature": f}, False, cal)
    assert [r["term_id"] for r in rows] == mine["term_id"].head(3).astype(str).tolist()
    assert note.startswith("3 reported terms") and {r["status"] for r in rows} == {"reported"}
    assert explorer.feature_summary(data, f)["n_terms"] == 3 and "3 reported terms" in text_of(
        cb.render_card({"feature": f}, cal)[0])
    rows, note, _ = cb.render_terms({"feature": f}, True, cal)
    assert len(rows) == len(mine) and note.startswith(f"{len(mine)} nominal rows, 3 reported")
    status = [r["status"] for r in rows]
    best_name = mine["term_name"].iloc[0]
    assert status[:3] == ["reported"] * 3 and f"explained by {best_name}" in status
    assert "down in high cells" in status and "nominal only" in status
    assert {r["de_direction"] for r in rows} == {"up", "down"}
    csv = pd.read_csv(io.StringIO(cb.export_terms(1, {"feature": f}, cal, False)["content"]))
    assert len(csv) == 3 and csv["reported"].all()
    assert len(pd.read_csv(io.StringIO(cb.export_terms(1, {"feature": f}, cal, True)["content"]))) == len(mine)
    # the map's top terms and the steering page's labels are reported terms
    cmap = data.concept_map.set_index("feature")
    rep = ann[ann["reported"]]
    assert cmap.loc[f, "top_terms"] == "; ".join(mine["term_name"].head(2))
    choices = feature_choices(data.analysis).set_index("feature")
    assert choices.loc[f, "top_term"] == best_name
    assert set(choices["top_term"]) - {""} <= set(rep["term_name"])
    # search: reported and explained rows are found, the others are not
    findable = ann[ann["reported"] | (ann["redundant_with"] != "")]
    hidden = sorted(set(ann["term_id"].astype(str)) - set(findable["term_id"].astype(str)))
    assert hidden
    res = explorer.search_features(data, hidden[0], mode="concept")
    assert res.empty
    explained = ann.loc[ann["redundant_with"] != ""].iloc[0]
    hits = explorer.search_hits(data, str(explained["term_id"]))
    assert int(explained["feature"]) in hits.tolist()
    assert set(hits.tolist()) == set(findable.loc[findable["term_id"] == explained["term_id"], "feature"])
    # reverse lookup: concepts of the reported rows only
    lat = data.latent()
    cells = np.flatnonzero(lat.labels == lat.types[0])
    feats, terms = explorer.reverse_lookup(data, cells)
    if len(terms):
        assert set(terms["term_id"]) <= set(rep["term_id"].astype(str))


def test_the_card_shows_stability_across_seeds(tmp_path_factory, monkeypatch, data):
    """One seed: "train with 3 seeds to measure". Several: the value, its seed count, a tooltip,
    and a warning below 0.7 (the values are set by hand here; tests/test_sae_stability.py checks
    what training writes)."""
    import shutil

    one = text_of(cb.render_checks({"feature": 0}, SOURCE)[0])
    assert "train with 3 seeds to measure" in one and "stable across seeds:" not in one
    assert explorer.feature_summary(data, 0)["stability_measured"] is False
    src = small_analysis_path(tmp_path_factory)
    root = tmp_path_factory.mktemp("stability-analyses")
    shutil.copytree(src, root / "seeds")
    feats = pd.read_parquet(root / "seeds" / "features.parquet")
    live = np.flatnonzero(feats["live"].to_numpy(bool))
    stable, shaky = int(live[0]), int(live[1])
    value = np.full(len(feats), np.nan)
    value[live] = 0.8
    value[[stable, shaky]] = [0.973, 0.41]
    feats = feats.assign(stability=value, stability_min=value - 0.02,
                         stability_seeds=np.where(np.isfinite(value), 2, 0))
    feats.to_parquet(root / "seeds" / "features.parquet")
    m = json.loads((root / "seeds" / "metrics.json").read_text())
    m["robustness"] = {"stability": {"median": 0.8, "chance_median": 0.55, "unstable_below": 0.7}}
    (root / "seeds" / "metrics.json").write_text(json.dumps(m))
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(root))
    s = explorer.feature_summary(cb.load("analysis:seeds"), stable)
    assert (s["stability"], s["stability_seeds"], s["stability_chance"]) == (pytest.approx(0.973), 2, 0.55)
    line = feature_card.stability_line(s)
    assert line.id == ids.CARD_STABILITY
    text = text_of(cb.render_checks({"feature": stable}, "analysis:seeds")[0])
    assert "stable across seeds: 0.97 (best-matched decoder cosine in 2 other seeds)" in text
    assert "seed artefact" not in text and "random directions would score about 0.55" in line.title
    assert "lowest 0.95" in line.title
    text = text_of(cb.render_checks({"feature": shaky}, "analysis:seeds")[0])
    assert "stable across seeds: 0.41" in text and "may be a seed artefact" in text
    dead = feature_card.stability_line({"stability_measured": True, "stability": None, "stability_seeds": 0})
    assert "a dead feature" in text_of(dead)   # NaN: the kept SAE's dead features


def test_locality_legend_and_card_for_regional_and_old_tables():
    """Regional features get their own colour, legend entry and badge; a table written before
    regional features existed (local / global / dead only) still draws and renders."""
    def cmap(localities):
        n = len(localities)
        return pd.DataFrame({"feature": range(n), "x": np.arange(n, dtype=float), "y": np.zeros(n),
                             "category": ["c"] * n, "n_terms": [1] * n, "frequency": [0.1] * n,
                             "locality": localities, "top_terms": [""] * n})

    new = cmap(["global", "dead", "regional", "local", "regional"])
    assert figures.map_groups(new, "locality") == ["local", "regional", "global", "dead"]
    fig = figures.concept_map_figure(new, colour_by="locality")
    assert fig.data[1].name == "regional (2)" and fig.data[1].marker.color == figures.LOCALITY_COLOURS["regional"]
    assert len(set(figures.LOCALITY_COLOURS.values())) == len(figures.LOCALITY_COLOURS)
    old = cmap(["global", "local", "dead"])
    assert figures.map_groups(old, "locality") == ["local", "global", "dead"]
    assert len(figures.concept_map_figure(old, colour_by="locality").data) == 3 + 2
    base = {"feature": 3, "n_cells": 10, "frequency": 0.1, "max_activation": 1.0, "n_terms": 0, "category": None,
            "redundant": False}
    regional = feature_card.card_header({**base, "locality": "regional", "significant_types": ["B", "Mono"]},
                                        source=SOURCE)
    badge = regional.children[0].children[1]
    assert badge.children == "regional" and badge.color == "warning" and "regional = in a few" in badge.title
    assert "higher in 2 cell types" in text_of(regional)
    local = feature_card.card_header({**base, "locality": "local", "significant_types": ["B"]}, source=SOURCE)
    assert local.children[0].children[1].color == "danger" and "B" in text_of(local)


# ----------------------------------------------------------------------------- the page's data
def test_explorer_page_data_returns_each_problem_and_raises_nothing(source, tmp_path, monkeypatch):
    from core.store.analysis import Analysis

    def problem(src):
        p = explorer.explorer_page_data(src, query={"feature": "3"}).problem
        return None if p is None else (p.title, p.level)

    assert problem(None) == ("No analysis chosen.", "info")
    assert problem("") == ("No analysis chosen.", "info")
    assert problem("shipped:pbmc68k") == ("The Explorer shows analyses.", "info")
    assert "shipped:pbmc68k is a dataset" in explorer.explorer_page_data("shipped:pbmc68k").problem.text
    assert problem("analysis:nope") == ("This analysis cannot be opened.", "danger")
    escape = explorer.explorer_page_data("analysis:../../etc").problem
    assert escape.level == "danger" and "outside the allowed" in escape.text
    assert problem("sideways:x") == ("This analysis cannot be opened.", "danger")
    assert problem(source) is None
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(tmp_path))
    Analysis.create(tmp_path / "untrained", dataset={"path": "d.h5ad"})
    assert problem("analysis:untrained") == ("This analysis has no SAE yet.", "warning")
    bare = explorer.explorer_page_data("analysis:untrained", query={"feature": "3", "q": "x"})
    assert bare.state is None and bare.warnings == () and bare.query == ""  # nothing but the problem


def test_explorer_page_data_of_a_good_source_reads_the_link(source):
    d = explorer.explorer_page_data(source, query={"feature": "12", "q": "antigen", "mode": "gene"})
    assert (d.source, d.problem, d.state, d.query, d.mode, d.warnings) == \
        (source, None, {"feature": 12, "features": [12]}, "antigen", "gene", ())
    d = explorer.explorer_page_data(source, query={"feature": "-1", "mode": "zzz"})
    assert d.state == {"feature": None, "features": []} and d.mode == "concept"
    assert d.warnings == ("The link asks for feature '-1', which is not a feature number; it is ignored.",
                          "Unknown search mode 'zzz' in the link; searching GO terms.")
    assert explorer.explorer_page_data(source) == explorer.explorer_page_data(source, query={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.mode = "gene"


# ----------------------------------------------------------------------------- card order, checks, heatmap (issue 16)
def _ids_in(component) -> list[str]:
    """Every string id in a component tree, depth first (document order)."""
    out = []
    cid = getattr(component, "id", None)
    if isinstance(cid, str):
        out.append(cid)
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            out.extend(_ids_in(child))
    return out


def test_card_sections_lead_with_up_terms_then_down_stability_confounders():
    order = feature_card.CARD_SECTIONS
    assert order[:4] == (ids.CARD_UP_SECTION, ids.CARD_DOWN_SECTION, ids.CARD_STABILITY_SECTION,
                         ids.CARD_CONFOUNDERS)
    found = _ids_in(feature_card.card_layout())
    assert [i for i in found if i in order] == list(order)
    # the grids sit in their sections, in that order: up terms, down terms, … DE table last
    pos = {i: found.index(i) for i in (ids.CARD_TERMS, ids.CARD_DOWN_TERMS, ids.CARD_HISTOGRAM, ids.CARD_DE)}
    assert pos[ids.CARD_TERMS] < pos[ids.CARD_DOWN_TERMS] < found.index(ids.CARD_CONFOUNDERS) \
        < pos[ids.CARD_HISTOGRAM] < pos[ids.CARD_DE]


def _text(component) -> str:
    """:func:`text_of` with non-ASCII characters kept (≥, η²)."""
    return json.dumps(component.to_plotly_json(), ensure_ascii=False,
                      default=lambda o: o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o))


def test_confounder_section_table_warning_and_note():
    rows = [{"variable": "library_size", "label": "library size", "statistic": "r", "value": 0.81, "threshold": 0.5,
             "flag": True},
            {"variable": "batch", "label": "batch", "statistic": "η²", "value": 0.02, "threshold": 0.25,
             "flag": False}]
    conf = {"feature": 3, "rows": rows, "tracks": "library_size", "tracks_label": "library size",
            "rule": explorer.confounder_rule()}
    sec = feature_card.confounder_section(conf)
    text = _text(sec)
    assert "Mostly tracks library size: may be technical" in text and "card-technical-alert" in text
    table = next(c for c in sec.children if getattr(c, "id", None) == "card-confounder-table")
    assert table.title == explorer.confounder_rule() and "|r| ≥ 0.5" in table.title
    assert "0.81" in text and "0.02" in text and "|r| ≥ 0.5" in text and "η² ≥ 0.25" in text
    calm = text_of(feature_card.confounder_section({**conf, "tracks": "", "tracks_label": ""}))
    assert "may be technical" not in calm and "card-confounder-table" in calm
    assert "not checked for this analysis" in text_of(feature_card.confounder_section(None))
    base = {"feature": 3, "n_cells": 10, "frequency": 0.1, "max_activation": 1.0, "n_terms": 0, "category": None,
            "locality": "global", "significant_types": []}
    assert "may be technical" in text_of(feature_card.card_header({**base, "tracks": "library_size",
                                                                   "tracks_label": "library size"}, source=SOURCE))
    assert "may be technical" not in text_of(feature_card.card_header({**base, "tracks": ""}, source=SOURCE))


def test_render_checks_and_down_terms_of_the_analysis(source, data):
    stability, conf = cb.render_checks({"feature": 5}, source)
    assert stability.id == ids.CARD_STABILITY and "train with 3 seeds" in text_of(stability)
    assert "card-confounder-table" in text_of(conf) and "library size" in text_of(conf)
    assert cb.render_checks({"feature": None}, source) == (None, None)
    assert "does not exist" in text_of(cb.render_checks({"feature": 9999}, source)[1])
    rows, note = cb.render_down_terms({"feature": 5}, source)
    down = explorer.feature_down_terms(data.annotations, 5)
    assert len(rows) == len(down) and (note.startswith(f"{len(down)} at FDR") or note == "none at FDR 5 %")
    assert cb.render_down_terms({"feature": None}, source) == ([], "")


def _heat(types=("a", "b", "c")):
    means = np.array([[2.0, 1.0, 0.0, 0.1], [0.5, 4.0, 3.0, 0.0], [0.0, 0.0, 1.5, 0.2]], np.float32)
    return explorer.HeatmapData(means=means, types=list(types), features=np.array([7, 2, 9, 4]),
                                top_type=np.array(["a", "b", "b", "c"], dtype=object),
                                locality=np.array(["local", "regional", "local", "global"], dtype=object),
                                n_live=10, n_shown=4)


def test_cell_type_heatmap_figure():
    heat = _heat()
    fig = figures.cell_type_heatmap_figure(heat, selected=9)
    hm, strip = fig.data[0], fig.data[1]
    z = np.asarray(hm.z, float)
    np.testing.assert_allclose(z.max(axis=0), 1.0)                       # each feature scaled to its peak
    np.testing.assert_allclose(z[:, 1], heat.means[:, 1] / 4.0, rtol=1e-6)
    assert list(hm.y) == ["a", "b", "c"] and [c[0] for c in hm.customdata[0]] == [7, 2, 9, 4]
    assert hm.customdata[1][1][1] == pytest.approx(4.0)
    assert list(strip.customdata) == [["a"], ["b"], ["c"]] and strip.xaxis == "x2"
    locs = {t.name: list(t.customdata) for t in fig.data[2:]}
    assert locs == {"local": [7, 9], "regional": [2], "global": [4]}
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert sorted(s.x0 for s in lines) == [0.5, 2.5]                     # between the a | b b | c groups
    frame = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(frame) == 1 and frame[0].x0 == 1.5                        # feature 9 is column 2
    assert "the 4 strongest of 10 live features" in fig.layout.title.text
    assert len(figures.heatmap_shapes(heat, selected=123)) == 2
    assert "no live features" in figures.cell_type_heatmap_figure(
        dataclasses.replace(heat, n_shown=0, features=np.zeros(0, int))).layout.annotations[0].text
    assert len(to_json_plotly(fig)) < 20_000


def test_update_heatmap_full_then_patch_and_clicks(source, data):
    fig, alert = cb.update_heatmap(source, None, triggered={ids.EXPLORER_SOURCE})
    assert alert is None and isinstance(fig, go.Figure)
    heat = explorer.heatmap_data(data, max_features=cb.MAX_HEATMAP)
    assert [c[0] for c in fig.data[0].customdata[0]] == heat.features.tolist()
    assert len(to_json_plotly(fig)) < 400_000                           # small browser payload
    patch, _ = cb.update_heatmap(source, {"feature": int(heat.features[3])}, triggered=STATE)
    shapes = operations(patch)[("layout", "shapes")]
    assert isinstance(patch, Patch) and shapes[-1]["type"] == "rect" and shapes[-1]["x0"] == 2.5
    # a cell opens its feature
    state, *rest = cb.heatmap_click({"points": [{"curveNumber": 0, "x": 3, "y": heat.types[0]}]}, source)
    assert state == {"feature": int(heat.features[3]), "features": [int(heat.features[3])]}
    assert rest == [no_update] * 3
    assert cb.heatmap_click({"points": [{"curveNumber": 2, "x": 0}]}, source)[0]["feature"] == int(heat.features[0])
    # a cell type lists its features in the search results, ringed on the map
    t = heat.top_type[0]
    state, rows, status, hits = cb.heatmap_click({"points": [{"curveNumber": 1, "x": 0, "y": t}]}, source)
    assert state is no_update and rows and [r["feature"] for r in rows] == hits
    assert f"top cell type {t}" in status and (data.features.loc[hits, "top_cell_type"] == t).all()
    assert cb.heatmap_click(None, source) == (no_update,) * 4
    _, rows, alert, hits = cb.heatmap_click({"points": [{"curveNumber": 1, "y": "nope"}]}, source)
    assert rows == [] and hits == [] and "not a cell type" in text_of(alert)
