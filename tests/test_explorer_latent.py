"""The Explorer's UMAP view (core.views.latent): the separation score that picks the default view,
the stored UMAP (computed once, atomic), the data's own ``.obsm['X_umap']``, ``.obs`` clusterings,
and the one-line source bar (components.shell)."""
from __future__ import annotations

import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from components import ids, shell
from core.base.errors import InputError
from core.store.analysis import Analysis
from core.views import explorer
from core.views import latent


# ----------------------------------------------------------------------------- the score
def blobs(rng, *, n_per: int = 100, spread: float = 0.3, centres=((0, 0), (5, 0), (0, 5))):
    coords = np.concatenate([rng.normal(c, spread, size=(n_per, 2)) for c in centres])
    labels = np.repeat([f"t{i}" for i in range(len(centres))], n_per)
    return coords, labels


def test_knn_agreement_is_high_for_separated_blobs_and_low_for_mixed(rng):
    coords, labels = blobs(rng)
    mixed, _ = blobs(rng, spread=3.0, centres=((0, 0), (0.5, 0), (0, 0.5)))
    sep = latent.knn_agreement(coords, labels)
    mix = latent.knn_agreement(mixed, labels)
    assert sep > 0.99 and mix < 0.6 and sep > mix


def test_knn_agreement_of_a_random_labelling_is_at_chance(rng):
    coords, labels = blobs(rng, n_per=300)
    shuffled = rng.permutation(labels)
    chance = latent.chance_agreement(shuffled)
    assert chance == pytest.approx(3 * 300 * 299 / (900 * 899))  # Σ n_t (n_t − 1) / (n (n − 1))
    scores = [latent.knn_agreement(coords, rng.permutation(labels)) for _ in range(5)]
    assert abs(np.mean(scores) - chance) < 0.02  # the null: positions say nothing about shuffled labels


def test_knn_agreement_matches_a_brute_force_count(rng):
    coords = rng.normal(size=(60, 2))
    labels = rng.choice(["a", "b", "c"], size=60)
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nb = np.argsort(d, axis=1)[:, :5]
    expected = (labels[nb] == labels[:, None]).mean()
    assert latent.knn_agreement(coords, labels, k=5) == pytest.approx(expected)
    # a subsample of query cells still searches neighbours among all cells
    sub = latent.knn_agreement(coords, labels, k=5, max_cells=30, seed=1)
    q = np.sort(np.random.default_rng(1).choice(60, 30, replace=False))
    assert sub == pytest.approx((labels[nb[q]] == labels[q, None]).mean())


def test_knn_agreement_refuses_bad_input():
    with pytest.raises(InputError, match="do not match"):
        latent.knn_agreement(np.zeros((5, 2)), ["a"] * 4)
    with pytest.raises(InputError, match="NaN"):
        latent.knn_agreement(np.array([[0, 0], [1, np.nan], [2, 2]]), ["a", "b", "a"])


def test_choose_default():
    assert latent.choose_default({"pca": 0.4, "umap": 0.9}, has_umap=True) == "umap"
    assert latent.choose_default({"pca": 0.9, "umap": 0.4}, has_umap=True) == "pca"
    assert latent.choose_default({"pca": 0.5, "umap": 0.5}, has_umap=True) == "pca"  # a tie keeps the PCA
    assert latent.choose_default({"pca": None, "umap": None}, has_umap=True) == "umap"  # no cell types
    assert latent.choose_default({}, has_umap=False) == "pca"
    note = latent.view_note({"label": "UMAP", "default": "umap", "scores": {"pca": 0.42, "umap": 0.91, "chance": 0.1}})
    assert note == "UMAP chosen: kNN cell-type agreement 0.91 vs PCA 0.42 (chance 0.10)"


# ----------------------------------------------------------------------------- the stored views
def write_dataset(path, rng, *, umap: np.ndarray | None = None, leiden: bool = False, n_per: int = 60):
    """An .h5ad: 3 cell types in an 8-d embedding (types apart on dims 0–1 only, noise elsewhere)."""
    n = 3 * n_per
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb[:, :2] += np.repeat([[0, 0], [6, 0], [0, 6]], n_per, axis=0)
    obs = pd.DataFrame({"cell_type": pd.Categorical(np.repeat(["A", "B", "C"], n_per))},
                       index=[f"c{i}" for i in range(n)])
    if leiden:
        obs["leiden"] = pd.Categorical(np.repeat(["0", "1", "2"], n_per))
    a = ad.AnnData(X=rng.poisson(1.0, size=(n, 5)).astype(np.float32), obs=obs)
    a.obsm["X_emb"] = emb
    if umap is not None:
        a.obsm["X_umap"] = umap
    a.write_h5ad(path)
    return a


def open_analysis(tmp_path, h5ad) -> Analysis:
    from core.data.load import load_dataset

    ds = load_dataset(h5ad, embedding="X_emb", cell_type="cell_type")
    return Analysis.open_or_create(tmp_path / "analysis", dataset=ds.source, seed=3)


def fake_umap(calls):
    def run(x, *, seed, **_):
        calls.append(seed)
        return np.asarray(x[:, :2] * 2.0, np.float32), x.shape[0]
    return run


def test_views_are_computed_once_and_reused(tmp_path, rng, monkeypatch):
    h5ad = tmp_path / "d.h5ad"
    write_dataset(h5ad, rng)
    a = open_analysis(tmp_path, h5ad)
    calls = []
    monkeypatch.setattr(latent, "umap_2d", fake_umap(calls))
    assert explorer.stored_latent_views(a) is None
    views = explorer.ensure_latent_views(a)
    assert calls == [3]  # seeded with the analysis seed
    assert views.info["source"] == "computed" and views.label == "UMAP"
    assert a.has(latent.UMAP_FILE) and a.has(explorer.LATENT_FILE)
    mtime = os.stat(a.file(latent.UMAP_FILE)).st_mtime_ns
    again = explorer.ensure_latent_views(Analysis.open(a.path))
    assert calls == [3] and os.stat(a.file(latent.UMAP_FILE)).st_mtime_ns == mtime  # cached: not recomputed
    np.testing.assert_array_equal(again.umap, views.umap)
    s = views.info["scores"]
    pca = np.load(a.file(explorer.LATENT_FILE))
    labels = np.repeat(["A", "B", "C"], 60)
    assert s["pca"] == pytest.approx(latent.knn_agreement(pca, labels, seed=3))
    assert s["chance"] == pytest.approx(3 * 60 * 59 / (180 * 179))
    assert views.default == ("umap" if s["umap"] > s["pca"] else "pca")


def test_views_step_is_atomic(tmp_path, rng, monkeypatch):
    from core.store.analysis import StepWriter

    h5ad = tmp_path / "d.h5ad"
    write_dataset(h5ad, rng)
    a = open_analysis(tmp_path, h5ad)
    monkeypatch.setattr(latent, "umap_2d", fake_umap([]))

    def broken(self, name, df):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(StepWriter, "write_parquet", broken)
    with pytest.raises(Exception, match="space"):
        explorer.ensure_latent_views(a)
    monkeypatch.undo()
    fresh = Analysis.open(a.path)
    assert not fresh.has(latent.UMAP_FILE) and not fresh.has(latent.VIEWS_FILE)
    assert "latent_views" not in fresh.config.get("steps", {}) and explorer.stored_latent_views(fresh) is None


def test_the_datas_own_umap_is_used_and_obs_clusterings_offered(tmp_path, rng, monkeypatch):
    own = rng.normal(size=(180, 2)).astype(np.float32)
    h5ad = tmp_path / "d.h5ad"
    write_dataset(h5ad, rng, umap=own, leiden=True)
    a = open_analysis(tmp_path, h5ad)

    def never(*_, **__):
        raise AssertionError("the data has a UMAP: none is computed")
    monkeypatch.setattr(latent, "umap_2d", never)
    views = explorer.ensure_latent_views(a)
    np.testing.assert_array_equal(views.umap, own)
    assert views.info["source"] == "data" and views.info["obsm_key"] == "X_umap"
    assert views.label == "UMAP (from the data)"
    # random coordinates separate nothing: the PCA (types apart on dims 0–1) is the default
    assert views.default == "pca" and views.info["scores"]["umap"] < views.info["scores"]["pca"]
    assert list(views.groups.columns) == ["leiden"] and views.groups["leiden"].tolist()[:2] == ["0", "0"]
    choices = explorer.latent_choices(views)
    assert choices["options"][1] == {"label": "UMAP (from the data)", "value": "umap"}
    assert choices["value"] == "pca" and choices["groups"] == ["leiden"] and "PCA chosen" in choices["note"]


def test_latent_choices_before_the_umap_is_stored():
    c = explorer.latent_choices(None)
    assert c["value"] == "pca" and c["options"][1]["disabled"] and not c["ready"]


def test_cell_groups_keeps_clusterings_only():
    obs = pd.DataFrame({"leiden": list("0011"), "louvain_r1": list("abab"), "batch": list("xxyy"),
                        "cell_type": list("ABAB"), "leiden_one": list("0000")})
    g = latent.cell_groups(obs, exclude="cell_type")
    assert list(g.columns) == ["leiden", "louvain_r1"]  # one value is no grouping; batch is not a clustering


def test_umap_2d_is_seeded_and_separates_blobs(rng):
    x = np.concatenate([rng.normal(c, 0.5, size=(50, 6)) for c in (0.0, 8.0)]).astype(np.float32)
    labels = np.repeat(["a", "b"], 50)
    one, n_fit = latent.umap_2d(x, seed=0)
    two, _ = latent.umap_2d(x, seed=0)
    assert n_fit == 100 and one.shape == (100, 2) and one.dtype == np.float32
    np.testing.assert_array_equal(one, two)
    assert latent.knn_agreement(one, labels) > 0.95
    sub, n_fit = latent.umap_2d(x, seed=0, max_fit=60)  # a subsample is fitted, the rest transformed
    assert n_fit == 60 and np.isfinite(sub).all() and latent.knn_agreement(sub, labels) > 0.9
    with pytest.raises(InputError, match="≥ 4 cells"):
        latent.umap_2d(x[:3], seed=0)


# ----------------------------------------------------------------------------- the source bar
def test_source_bar_is_one_line_with_details_on_demand():
    summary = {"title": "Analysis demo", "warnings": ["cell type column has 1 type"], "error": None,
               "facts": {"dataset": "d.h5ad", "cells": 10000, "genes": 2500, "embedding": "X_featurelens",
                         "cell types": "cell_type", "steps done": "annotate, train",
                         "live features": "312 of 400 (L0 8.0 per cell)", "annotated features": "200"}}
    assert shell.summary_line(summary) == ["Analysis demo", "10,000 cells", "2,500 genes", "X_featurelens",
                                           "types: cell_type", "312 of 400 features", "annotated"]
    card = shell.source_summary(summary)
    details = card.children[0]
    assert details.id == ids.PICKER_DETAILS and "open" not in details.to_plotly_json()["props"]
    assert "L0 8.0 per cell" in str(details.children[1])  # the whole table, inside the closed details
    assert "1 type" in str(card.children[1])  # a warning stays visible, outside the details
    no_ann = {**summary, "facts": {k: v for k, v in summary["facts"].items() if k != "annotated features"}}
    assert shell.summary_line(no_ann)[-1] == "not annotated"
    bad = shell.source_summary({"title": "x", "facts": {}, "warnings": [], "error": "no such file", "fix": "check"})
    assert "no such file" in str(bad) and "check" in str(bad) and "danger" in str(bad)


# ----------------------------------------------------------------------------- the callbacks
def test_latent_callbacks_compute_the_views_then_switch_to_the_umap(tmp_path_factory, monkeypatch):
    import shutil

    from dash import Patch, no_update

    from callbacks import explorer as cb
    from explore_data import small_analysis_path

    base = tmp_path_factory.mktemp("latent-views")
    shutil.copytree(small_analysis_path(tmp_path_factory), base / "pbmc-views")
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(base))
    src = "analysis:pbmc-views"
    before = explorer.explorer_page_data(src).latent
    assert before["value"] == "pca" and not before["ready"]
    assert cb.request_views(src) == src  # not stored yet: the background job is asked for
    ready = cb.compute_views_job(src, 0)
    assert ready == {"n": 1, "error": None}
    change = cb.view_switch(ready, src)
    options, value, note, colours = change["view"]["options"], change["view"]["value"], change["note"], \
        change["colours"]
    assert cb.view_switch(0, src) is None  # the job has not ended
    assert options[1] == {"label": "UMAP (from the data)", "value": "umap"}  # pbmc68k_reduced has X_umap
    assert colours[-1] == {"label": "louvain", "value": "group:louvain"}  # its clustering joins the colourings
    assert value in ("pca", "umap") and "kNN cell-type agreement" in note
    assert cb.request_views(src) is no_update and explorer.explorer_page_data(src).latent["ready"]
    state = {"feature": 5, "features": [5]}
    pca, meta, _ = cb.update_latent("feature", state, src, None, "pca", triggered=set())
    umap, meta_u, _ = cb.update_latent("feature", state, src, None, "umap", triggered=set())
    assert meta["view"] == "pca" and meta_u["view"] == "umap"
    assert pca.layout.xaxis.title.text.startswith("PC1") and umap.layout.xaxis.title.text == "UMAP1"
    own = ad.read_h5ad(explorer.Analysis.open(base / "pbmc-views").config["dataset"]["path"]).obsm["X_umap"]
    np.testing.assert_allclose(np.asarray(umap.data[0].x, np.float32), own[:, 0])
    assert umap.data[1].name == pca.data[1].name == "feature 5"  # the feature's colouring in both views
    patch, *_ = cb.update_latent("feature", {"feature": 6, "features": [6]}, src, meta_u, "umap",
                                 triggered={ids.EXPLORER_STATE})
    assert isinstance(patch, Patch)  # a click on the UMAP recolours in place
    # the data's own clustering (obs['louvain']) colours the cells like the cell types do
    groups = explorer.stored_latent_views(explorer.Analysis.open(base / "pbmc-views")).groups
    assert list(groups.columns) == ["louvain"] and explorer.explorer_page_data(src).latent["groups"] == ["louvain"]
    by_group, meta_g, _ = cb.update_latent("group:louvain", state, src, None, "umap", triggered=set())
    assert by_group.layout.title.text == "700 cells by louvain" and meta_g["colour_by"] == "group:louvain"
    assert len(by_group.data) == groups["louvain"].nunique() and sum(len(t.x) for t in by_group.data) == 700
    _, _, bad = cb.update_latent("group:nope", state, src, None, "umap", triggered=set())
    assert "no cell grouping 'nope'" in str(bad)
    failed = cb.view_switch({"n": 2, "error": "the dataset is missing"}, src)
    assert failed["view"]["value"] == "pca" and failed["view"]["options"][1]["disabled"] and "missing" in failed["note"]
