"""The Steering page as plain functions (no browser): layout and its alerts, the form → SteerConfig,
the background job, showing a stored run (summary, latent shift, volcano, terms, nearest-type
shift, history, CSV), a failed job leaving everything as it was, and the figure builders."""
from __future__ import annotations

import io
import json
import shutil

import anndata
import numpy as np
import pandas as pd
import pytest
from dash import no_update
from dash.exceptions import PreventUpdate

import callbacks.steering as cb
from callbacks.jobs import JobProgress, run_job
from components import figures, ids, steering_page
from core.views import explorer
from core.store.analysis import Analysis
from core.base.errors import InputError
from core.steer import list_experiments, list_steering_runs, load_experiment, load_steering_run
from core.views import steering as views_steering
from core.views.steering import (AXES_FILE, AXES_STEP, cell_type_choices, feature_choices, latent_axes, steerability,
                                 steering_page_data)
from steer_data import PLANTED_TERM
from steer_page_data import build_steerable

SOURCE = "analysis:planted"


def text_of(component) -> str:
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component,
                      ensure_ascii=False, default=lambda o: o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o))


def find(component, cid):
    """The component with id ``cid`` inside a layout tree (None if absent)."""
    if getattr(component, "id", None) == cid:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            hit = find(child, cid)
            if hit is not None:
                return hit
    return None


@pytest.fixture(scope="module")
def analyses(tmp_path_factory):
    """An analyses folder with the steerable analysis ``planted``, one without a decoder, one untrained."""
    base = tmp_path_factory.mktemp("steer-page")
    root = base / "analyses"
    root.mkdir()
    built = build_steerable(base / "build")
    shutil.copytree(built, root / "planted")
    nodec = build_steerable(base / "nodec", decoder=False, n_per_type=20, n_genes=60)
    shutil.copytree(nodec, root / "nodecoder")
    shutil.copytree(built, root / "untrained")
    for name in ("sae.pt", "activations.npz", "features.parquet"):
        (root / "untrained" / name).unlink()
    mp = pytest.MonkeyPatch()
    mp.setenv("FEATURELENS_ANALYSES_DIR", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def ran(analyses):
    """The job run once: feature 0 to its maximum in the cells of type a."""
    sent = []
    progress = JobProgress(sent.append, min_interval=0.0)
    alert, shown = cb.run_steering(progress, SOURCE, [0], "types", ["a"], [], "max", 2, 99, True, "paired-log")
    return alert, shown, sent


# ----------------------------------------------------------------------------- layout
def test_steering_ids_are_unique_and_registered():
    steer_ids = [v for k, v in vars(ids).items() if k.startswith("STEER_") and isinstance(v, str)]
    assert len(steer_ids) >= 25 and all(v.startswith("steer-") for v in steer_ids)
    every = ids.all_ids() + steering_page.RUN.all()
    grid_fields = [c["field"] for c in steering_page.TERM_COLUMNS]
    assert {"term_link", "binom_q", "mwu_q"} <= set(grid_fields)
    assert len(every) == len(set(every))


@pytest.mark.parametrize("source, title, words", [
    (None, "No analysis chosen.", "Pick an analysis"),
    ("shipped:pbmc68k", "Steering works on analyses.", "fit the built-in model"),
    ("analysis:nodecoder", "This analysis cannot be steered.", "steering needs the model's decoder"),
    ("analysis:untrained", "This analysis cannot be steered.", "no trained SAE"),
    ("analysis:nothere", "This analysis cannot be opened.", "not an analysis folder"),
    ("analysis:../../etc", "This analysis cannot be opened.", ""),
])
def test_layout_explains_what_to_do_when_it_cannot_steer(analyses, source, title, words):
    page = steering_page.layout(steering_page_data(source, query={}))
    alert = find(page, ids.STEER_ALERT)
    assert alert is not None and find(page, ids.STEER_FEATURES) is None
    assert title in text_of(alert) and words in text_of(alert)


def test_layout_preselects_the_linked_feature_and_offers_cell_types(analyses):
    page = steering_page.layout(steering_page_data(SOURCE, query={"feature": "1", "run": "f1-abc"}))
    dropdown = find(page, ids.STEER_FEATURES)
    assert dropdown.value == [1]
    values = [o["value"] for o in dropdown.options]
    assert values[0] == 1 and sorted(values) == list(range(8))  # the 8 live features; 8 and 9 are dead
    assert dropdown.options[0]["label"] == "1 · top cell type c"  # not annotated: the top cell type
    assert [o["value"] for o in find(page, ids.STEER_CELL_TYPES).options] == ["a", "b", "c"]
    assert find(page, ids.STEER_SHOWN).data == {"run_id": "f1-abc", "features": [1]}
    assert find(page, ids.STEER_ERROR_TERM).value is True
    assert find(page, steering_page.RUN.start) is not None and find(page, ids.STEER_HISTORY) is not None


def test_layout_warns_about_unusable_linked_features(analyses):
    page = steering_page.layout(steering_page_data(SOURCE, query={"feature": "x,9,2"}))
    assert find(page, ids.STEER_FEATURES).value == [2]
    text = text_of(find(page, ids.STEER_ALERT))
    assert "'x', which is not a feature number" in text and "Feature 9 is not a live feature" in text


def test_feature_choices_use_the_best_term_when_annotated(analyses, tmp_path):
    folder = tmp_path / "annotated"
    shutil.copytree(analyses / "planted", folder)
    a = Analysis.open(folder)
    ann = pd.DataFrame({"feature": [0, 0, 3], "term_id": ["GO:1", "GO:2", "GO:3"],
                        "term_name": ["second best", "oxygen transport", "other"], "binom_p": [1e-3, 1e-9, 0.5]})
    with a.step("annotate", inputs={"x": 1}) as w:
        w.write_parquet("annotations.parquet", ann)
    ch = feature_choices(a).set_index("feature")
    assert ch.loc[0, "label"] == "0 · oxygen transport" and ch.loc[3, "label"] == "3 · other"
    assert ch.loc[1, "label"] == "1 · top cell type c"
    assert cell_type_choices(a) == ["a", "b", "c"] and steerability(a) is None


# ----------------------------------------------------------------------------- the form
def test_form_values_become_a_steering_config():
    req = cb.steering_request([3, "5"], "types", ["a", "b"], [], "factor", 2.5, 99, False, "nb-glm")
    feats, cells, cfg = req.features, req.cells, req.config
    assert feats == (3, 5) and cells == "cell_type=a,b" and req.cells_label == "cell_type=a,b"
    assert cfg.target == "x2.5" and cfg.error_term is False and cfg.test == "nb-glm" and cfg.save_expression is False
    req = cb.steering_request([1], "lasso", [], [7, 3, 3], "percentile", 2, 90, True, None)
    cells, cfg = req.cells, req.config
    assert cells == (3, 7) and req.cells_label == "lasso: 2 cells" and cfg.target == "p90" and cfg.test == "paired-log"
    req = cb.steering_request([1], "all", None, None, "off", None, None, None, "paired-log")
    cells, cfg = req.cells, req.config
    assert cells == "all" and cfg.target == "off" and cfg.error_term is True


@pytest.mark.parametrize("args, message", [
    (([], "types", ["a"], [], "max"), "no feature chosen"),
    ((list(range(11)), "types", ["a"], [], "max"), "at most 10"),
    (([1], "types", [], [], "max"), "no cell type chosen"),
    (([1], "lasso", [], [], "max"), "no cells lassoed"),
    ((["x"], "all", [], [], "max"), "not a feature number"),
    (([1], "all", [], [], "sideways"), "unknown target"),
])
def test_bad_form_values_say_what_to_fix(args, message):
    with pytest.raises(InputError, match=message) as err:
        cb.steering_request(*args, 2, 99, True, "paired-log")
    assert err.value.fix


def test_target_and_cell_controls():
    factor, pct, mean, value, help_text = cb.target_controls("factor")
    assert factor == cb.SHOWN and pct == mean == value == cb.HIDDEN and "multiple" in help_text
    factor, pct, mean, value, _ = cb.target_controls("percentile")
    assert factor == mean == value == cb.HIDDEN and pct == cb.SHOWN
    factor, pct, mean, value, help_text = cb.target_controls("mean")
    assert mean == cb.SHOWN and factor == pct == value == cb.HIDDEN and "cell type" in help_text
    assert cb.target_controls("value")[3] == cb.SHOWN
    assert cb.target_controls("off")[-1].startswith("Each steered feature is switched off")
    assert cb.cell_controls("lasso", [1, 2, 3], [])[1] == "3 cells lassoed in the latent view."
    assert "Draw a lasso" in cb.cell_controls("lasso", [], [])[1]
    assert cb.cell_controls("types", [], ["a", "b"]) == (cb.SHOWN, "Cells of: a, b.")
    assert cb.cell_controls("all", [], [])[0] == cb.HIDDEN


def test_lasso_store_keeps_cell_indices_of_every_trace():
    sel = {"points": [{"customdata": 5}, {"customdata": 2}, {"customdata": 5}, {"x": 1}, {"customdata": "b"}]}
    assert cb.store_lasso(sel) == [2, 5]
    assert cb.store_lasso(None) == [] and cb.store_lasso({"points": []}) == []


def test_feature_search_by_number_and_by_label(analyses):
    opts = cb.feature_options("1", [4], SOURCE)
    assert [o["value"] for o in opts] == [4, 1]
    opts = cb.feature_options("cell type a", [], SOURCE)
    assert {o["value"] for o in opts} == {3, 4, 6, 7}  # top cell type a
    with pytest.raises(PreventUpdate):
        cb.feature_options("", [], SOURCE)


# ----------------------------------------------------------------------------- the job and its result
def test_job_steers_stores_the_run_and_reports_progress(analyses, ran):
    alert, shown, sent = ran
    assert "Done." in text_of(alert) and shown["run_id"].startswith("f0-") and shown["features"] == [0]
    a = Analysis.open(analyses / "planted")
    runs = list_steering_runs(a)
    assert runs["run_id"].tolist() == [shown["run_id"]] and runs["cells"].iloc[0] == "cell_type=a"
    res = load_steering_run(a, shown["run_id"])
    assert res.n_cells == 80 and res.expression_normal is None  # the app stores no per-cell expression
    percents = [s[0] for s in sent]
    assert percents == sorted(percents) and percents[-1] == 100.0 and len(percents) >= 7
    assert any("paired DE" in s[2] for s in sent)
    assert AXES_STEP in a.config["steps"] and a.has(AXES_FILE)  # the job stored the latent view's axes


def test_showing_the_run(analyses, ran):
    _, shown, _ = ran
    (summary, latent, volcano, changes, changes_note, shift, moves, up, up_note, down, down_note,
     export_disabled) = cb.show_run(shown, SOURCE)
    text = text_of(summary)
    assert "Feature 0 → max" in text and "in 80 cells" in text and "cell_type=a" in text and "oxygen transport" in text
    assert export_disabled is False
    # volcano: the planted genes are the red 'up' points
    names = [t.name for t in volcano.data]
    assert any(n.startswith("up (") for n in names) and "steered vs normal" in volcano.layout.xaxis.title.text
    # largest changes: the planted genes lead the 'up' rows, and no note as genes did change
    assert changes[0]["arrow"] == "▲" and changes[0]["passes"] == "yes" and changes_note is None
    assert changes[0]["log2fc"] == max(r["log2fc"] for r in changes) and len(changes) <= 20
    # terms: the planted term first, linked to AmiGO
    assert up[0]["term_id"] == PLANTED_TERM
    assert up[0]["term_link"] == f"[{PLANTED_TERM}](https://amigo.geneontology.org/amigo/term/{PLANTED_TERM})"
    assert "terms" in up_note and isinstance(down, list) and down_note
    # nearest type: type-a cells now sit nearest type b
    assert moves[0]["from"] == "a" and moves[0]["to"] == "b" and moves[0]["cells"] > 60
    bars = {t.name: dict(zip(t.y, t.x)) for t in shift.data}
    assert bars["normal"]["a"] > 70 and bars["steered"]["b"] > 60
    # latent view: normal positions are the cells' own points; steered ones moved right along PC1-ish
    data = explorer.explorer_data(analyses / "planted")
    lat = data.latent()
    res = load_steering_run(Analysis.open(analyses / "planted"), shown["run_id"])
    traces = {t.name.split(" (")[0]: t for t in latent.data}
    normal, steered = traces["normal"], traces["steered"]
    np.testing.assert_allclose(np.c_[normal.x, normal.y], lat.coords[res.cells], atol=1e-4)
    assert list(normal.customdata) == res.cells.tolist() == list(steered.customdata)
    moved = np.hypot(np.asarray(steered.x) - np.asarray(normal.x), np.asarray(steered.y) - np.asarray(normal.y))
    assert (moved > 0.5).mean() > 0.9
    assert "shift" in traces  # 80 cells ≤ 300: arrows


def test_latent_axes_reproduce_the_stored_view(analyses):
    a = Analysis.open(analyses / "planted")
    axes = latent_axes(a)
    emb = np.asarray(anndata.read_h5ad(a.config["dataset"]["path"]).obsm["X_emb"])
    coords = np.load(a.file(explorer.LATENT_FILE))
    np.testing.assert_allclose(axes.project(emb), coords, atol=1e-4)
    with pytest.raises(InputError):
        axes.project(np.zeros((3, 2)))


def test_history_lists_runs_and_a_click_shows_one(analyses, ran):
    _, shown, _ = ran
    rows, note = cb.history_rows(shown, SOURCE)
    assert rows[0]["run_id"] == shown["run_id"] and rows[0]["error_term"] == "on" and "1 run stored" in note
    cell = {"rowIndex": 0, "colId": "features", "rowId": shown["run_id"], "value": "0"}
    (picked, feats, options, mode, types, target, factor, pct, mean_type, mean_factor, value, error_term,
     test) = cb.pick_history(cell, rows, SOURCE)
    assert picked["run_id"] == shown["run_id"] and picked["features"] == [0]
    # the form takes the run's settings, so it can be changed and run again
    assert feats == [0] and [o["value"] for o in options] == [0] and (mode, types) == ("types", ["a"])
    assert (target, error_term, test) == ("max", True, "paired-log")
    with pytest.raises(PreventUpdate):
        cb.pick_history(None, rows, SOURCE)


def test_reloading_a_run_link_restores_its_form(analyses, ran):
    _, shown, _ = ran
    page = steering_page.layout(steering_page_data(SOURCE, query={"run": shown["run_id"]}))
    assert find(page, ids.STEER_FEATURES).value == [0] and find(page, ids.STEER_CELL_TYPES).value == ["a"]
    assert find(page, ids.STEER_SHOWN).data["run_id"] == shown["run_id"]
    a = Analysis.open(analyses / "planted")
    form = views_steering.run_form(a, shown["run_id"], types=["a", "b", "c"])
    assert form["target"] == "max" and form["cell_mode"] == "types"
    assert views_steering.run_form(a, "f0-nothere", types=[]) is None


def test_without_a_run_id_the_newest_run_of_the_features_is_shown(analyses, ran):
    _, shown, _ = ran
    a = Analysis.open(analyses / "planted")
    assert cb.pick_run(a, {"run_id": None, "features": [0]}) == shown["run_id"]
    assert cb.pick_run(a, {"run_id": None, "features": []}) == shown["run_id"]
    assert cb.pick_run(a, {"run_id": None, "features": [5]}) is None
    out = cb.show_run({"run_id": None, "features": [5]}, SOURCE)
    assert out[0] == "No run yet." and out[-1] is True and len(out[1].data) == 3  # cells by type a, b, c


def test_unknown_run_is_an_alert_not_a_crash(analyses):
    out = cb.show_run({"run_id": "f0-nothere"}, SOURCE)
    assert "no steering run 'f0-nothere'" in text_of(out[0]) and out[-1] is True


def test_de_csv_export_has_every_gene(analyses, ran):
    _, shown, _ = ran
    sent = cb.export_de(1, shown, SOURCE)
    df = pd.read_csv(io.StringIO(sent["content"]))
    assert sent["filename"] == f"steering_{shown['run_id']}_de.csv" and len(df) == 500
    assert {"gene", "log2fc", "qvalue", "significant", "direction"} <= set(df.columns)
    with pytest.raises(PreventUpdate):
        cb.export_de(0, shown, SOURCE)


def test_url_names_the_run_shown():
    url = cb.write_url({"run_id": "f0-abc", "features": [0, 4]}, SOURCE, "?source=analysis%3Aplanted&x=1")
    assert url == "?source=analysis%3Aplanted&x=1&feature=0%2C4&run=f0-abc"
    assert cb.write_url({"run_id": None, "features": []}, SOURCE, "?source=analysis%3Aplanted") is no_update


def test_a_failed_job_shows_an_alert_and_changes_nothing(analyses, ran):
    before = list_steering_runs(Analysis.open(analyses / "planted"))
    progress = JobProgress(None)
    out = run_job(cb.run_steering, progress, [SOURCE, [8], "types", ["a"], [], "max", 2, 99, True, "paired-log"],
                  n_outputs=1)
    assert "feature 8 is dead" in text_of(out[0]) and out[1] is no_update
    out = run_job(cb.run_steering, progress, ["analysis:nodecoder", [0], "all", [], [], "max", 2, 99, True, "nb-glm"],
                  n_outputs=1)
    assert "steering needs the model's decoder" in text_of(out[0]) and out[1] is no_update
    after = list_steering_runs(Analysis.open(analyses / "planted"))
    pd.testing.assert_frame_equal(before, after)


# ----------------------------------------------------------------------------- figures
def test_latent_shift_figure_draws_arrows_only_for_few_cells():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(400, 2)).astype(np.float32)
    labels = np.repeat(["x", "y"], 200)
    cells = np.arange(350)
    before, after = coords[cells], coords[cells] + 1
    fig = figures.latent_shift_figure(coords, labels=labels, types=["x", "y"], cells=cells, before=before, after=after)
    assert [t.name.split(" (")[0] for t in fig.data] == ["other cells", "cell-type centres", "normal", "steered"]
    fig = figures.latent_shift_figure(coords, labels=labels, types=["x", "y"], cells=cells[:10], before=before[:10],
                                      after=after[:10])
    arrows = next(t for t in fig.data if t.name == "shift")
    assert len(arrows.x) == 30 and np.isnan(arrows.x[2]) and arrows.x[1] == pytest.approx(after[0, 0])
    np.testing.assert_allclose(fig.data[1].x, [coords[:200, 0].mean(), coords[200:, 0].mean()], rtol=1e-5)


def test_nearest_type_figure_leaves_out_types_nobody_is_near():
    cs = pd.DataFrame({"cell_type": ["a", "b", "c"], "mean_distance_before": [1.0, 2, 3],
                       "mean_distance_after": [2.0, 1, 3], "change": [1.0, -1, 0],
                       "nearest_before": [10, 0, 0], "nearest_after": [2, 8, 0]})
    fig = figures.nearest_type_figure(cs)
    assert [t.name for t in fig.data] == ["normal", "steered"]
    assert dict(zip(fig.data[0].y, fig.data[0].x)) == {"a": 10, "b": 0}
    assert dict(zip(fig.data[1].y, fig.data[1].x)) == {"a": 2, "b": 8}
    empty = figures.nearest_type_figure(cs.head(0))
    assert not empty.data and "not available" in empty.layout.annotations[0].text


def test_a_lassoed_run_with_a_multiple_round_trips(analyses, ran):
    alert, shown = cb.run_steering(JobProgress(None), SOURCE, [1], "lasso", [], [5, 3, 4], "factor", 3, 99, False,
                                   "paired-log")
    a = Analysis.open(analyses / "planted")
    res = load_steering_run(a, shown["run_id"])
    assert res.cells.tolist() == [3, 4, 5] and res.info["cells"] == "lasso: 3 cells"
    assert res.config.target == "x3" and res.config.error_term is False
    form = views_steering.run_form(a, shown["run_id"], types=["a", "b", "c"])
    assert (form["target"], form["factor"], form["error_term"]) == ("factor", 3.0, False)
    assert "cell_mode" not in form  # lassoed cells are not restored
    rows, _ = cb.history_rows(shown, SOURCE)
    assert [r["run_id"] for r in rows][:1] == [shown["run_id"]] and len(rows) == 2  # newest first


def test_steerability_finds_the_decoder_without_loading_it(analyses, tmp_path):
    """The page's check reads no weights (the server must not run torch; see core.views.steering)."""
    folder = tmp_path / "a"
    shutil.copytree(analyses / "planted", folder)
    cfg = json.loads((folder / "analysis.json").read_text())
    model = tmp_path / "m.featurelens-model"
    model.mkdir()
    (model / "model.json").write_text("{}")  # a model folder whose weights would not even load
    for ref, expected in ((str(model), None), ("gone.pt", "does not exist"), ("none", "needs the model's decoder")):
        cfg["settings"] = {"decoder": ref}
        (folder / "analysis.json").write_text(json.dumps(cfg))
        problem = steerability(Analysis.open(folder))
        assert (problem is None) if expected is None else (expected in problem[0] and problem[1])


# ----------------------------------------------------------------------------- cell-type mean target, history
def test_form_writes_the_cell_type_mean_and_value_targets():
    cfg = cb.steering_request([0], "all", [], [], "mean", 2, 99, True, "paired-log", "b", 1.5, None).config
    assert cfg.target == "mean:bx1.5"
    t = cfg.targets[0]
    assert (t.kind, t.cell_type, t.factor) == ("mean", "b", 1.5)
    cfg = cb.steering_request([0], "all", [], [], "mean", 2, 99, True, "paired-log", "CD14+ Mono", "2", None).config
    assert cfg.target == "mean:CD14+ Monox2" and cfg.targets[0].cell_type == "CD14+ Mono"
    cfg = cb.steering_request([0], "all", [], [], "value", 2, 99, True, "paired-log", None, None, 2.5).config
    assert cfg.targets[0].kind == "value" and cfg.targets[0].value == 2.5


@pytest.mark.parametrize("mean_type, mean_factor, value, kind, message", [
    (None, 1.5, None, "mean", "no cell type chosen for the cell-type mean"),
    ("a", 0, None, "mean", "must be a positive number"),
    ("a", None, None, "mean", "no factor of the cell-type mean given"),
    (None, None, None, "value", "no activation value given"),
    (None, None, -1, "value", "negative"),
])
def test_bad_mean_and_value_targets_say_what_to_fix(mean_type, mean_factor, value, kind, message):
    with pytest.raises(InputError, match=message) as err:
        cb.steering_request([0], "all", [], [], kind, 2, 99, True, "paired-log", mean_type, mean_factor, value)
    assert err.value.fix


@pytest.mark.parametrize("kind, extra, expected", [
    ("max", {}, {"target": "max"}),
    ("off", {}, {"target": "off"}),
    ("factor", {"factor": 2.5}, {"target": "factor", "factor": 2.5}),
    ("percentile", {"percentile": 90}, {"target": "percentile", "percentile": 90.0}),
    ("mean", {"mean_type": "b", "mean_factor": 1.5}, {"target": "mean", "mean_type": "b", "mean_factor": 1.5}),
    ("mean", {"mean_type": "bx2", "mean_factor": 1.0}, {"target": "mean", "mean_type": "bx2", "mean_factor": 1.0}),
    ("mean", {"mean_type": "bx2", "mean_factor": 3}, {"target": "mean", "mean_type": "bx2", "mean_factor": 3.0}),
    ("value", {"value": 0.75}, {"target": "value", "value": 0.75}),
])
def test_the_form_reads_back_every_target_it_writes(kind, extra, expected):
    """form → target text (stored with the run) → form: the same controls."""
    args = {"factor": 2, "percentile": 99, "mean_type": None, "mean_factor": None, "value": None, **extra}
    cfg = cb.steering_request([0], "all", [], [], kind, args["factor"], args["percentile"], True, "paired-log",
                              args["mean_type"], args["mean_factor"], args["value"]).config
    assert views_steering.target_form(cfg.target, types=["a", "b", "bx2"]) == expected


def test_target_form_leaves_what_it_cannot_write():
    assert views_steering.target_form(["max", "off"], types=[]) == {}      # one target per feature
    assert views_steering.target_form("mean:zx1.5", types=["a"]) == {}     # a cell type no longer there
    assert views_steering.target_form("sideways", types=[]) == {}


def test_a_cell_type_mean_run_round_trips_through_the_history(analyses, ran):
    alert, shown = cb.run_steering(JobProgress(None), SOURCE, [0], "types", ["a"], [], "mean", 2, 99, True,
                                   "paired-log", "b", 1.5, None)
    assert "Done." in text_of(alert)
    a = Analysis.open(analyses / "planted")
    res = load_steering_run(a, shown["run_id"])
    # the target is 1.5 × feature 0's mean activation over every type-b cell (zeros included)
    acts = a.read_npz_sparse("activations.npz").tocsc()[:, 0].toarray().ravel()
    labels = anndata.read_h5ad(a.config["dataset"]["path"]).obs["cell_type"].astype(str).to_numpy()
    assert res.target_labels == ["mean:bx1.5"]
    assert res.targets[0] == pytest.approx(1.5 * acts[labels == "b"].mean(), rel=1e-5)
    assert "mean:bx1.5" in text_of(cb.summary_line(res))
    # a click on its history row puts the cell-type mean back into the form
    rows, _ = cb.history_rows(shown, SOURCE)
    out = cb.pick_history({"rowId": shown["run_id"]}, rows, SOURCE)
    picked, feats, _, mode, types, target, _, _, mean_type, mean_factor, _, _, _ = out
    assert picked["run_id"] == shown["run_id"] and feats == [0] and (mode, types) == ("types", ["a"])
    assert (target, mean_type, mean_factor) == ("mean", "b", 1.5)
    # so does a reload of its link
    page = steering_page.layout(steering_page_data(SOURCE, query={"run": shown["run_id"]}))
    assert find(page, ids.STEER_TARGET).value == "mean" and find(page, ids.STEER_MEAN_TYPE).value == "b"
    assert find(page, ids.STEER_MEAN_FACTOR).value == 1.5
    assert find(page, ids.STEER_MEAN_BOX).style == {"display": "block"}


# ----------------------------------------------------------------------------- cells carried from the Explorer
def test_cells_carried_from_the_explorer_are_a_cell_choice(analyses):
    store = {"source": SOURCE, "cells": [9, 2, 5], "n": 3}
    page = steering_page.layout(steering_page_data(SOURCE, query={"feature": "2", "cells": "explorer"}))
    assert find(page, ids.STEER_CELL_MODE).value == "explorer"
    options = find(page, ids.STEER_CELL_MODE).options
    labelled = cb.cell_mode_options(SOURCE, store, options)
    assert {"label": "the 3 cells selected in the Explorer", "value": "explorer"} in labelled
    assert [o["value"] for o in labelled] == [o["value"] for o in options]
    other = cb.cell_mode_options(SOURCE, {**store, "source": "analysis:other"}, options)
    assert next(o for o in other if o["value"] == "explorer")["disabled"] is True
    assert cb.cell_controls("explorer", [], [], store, SOURCE) == (cb.HIDDEN, "The 3 cells lassoed in the "
                                                                             "Explorer's latent space.")
    assert "No cells were carried" in cb.cell_controls("explorer", [], [], None, SOURCE)[1]
    req = cb.steering_request([2], "explorer", [], [1], "max", 2, 99, True, "paired-log", carried=store["cells"])
    assert req.cells == (2, 5, 9) and req.cells_label == "Explorer selection: 3 cells"
    with pytest.raises(InputError, match="no cells were carried from the Explorer"):
        cb.steering_request([2], "explorer", [], [1], "max", 2, 99, True, "paired-log", carried=None)


def test_a_run_on_cells_carried_from_the_explorer(analyses, ran):
    store = {"source": SOURCE, "cells": [12, 10, 11, 40], "n": 4}
    alert, shown = cb.run_steering(JobProgress(None), SOURCE, [2], "explorer", [], [], "max", 2, 99, True,
                                   "paired-log", None, 1.5, None, store)
    res = load_steering_run(Analysis.open(analyses / "planted"), shown["run_id"])
    assert res.cells.tolist() == [10, 11, 12, 40] and res.info["cells"] == "Explorer selection: 4 cells"
    assert "in 4 cells" in text_of(cb.summary_line(res))
    # its link keeps the carried cells as the choice; a link to a run on cell types shows those
    page = steering_page.layout(steering_page_data(SOURCE, query={"run": shown["run_id"], "cells": "explorer"}))
    assert find(page, ids.STEER_CELL_MODE).value == "explorer"
    _, first, _ = ran
    page = steering_page.layout(steering_page_data(SOURCE, query={"run": first["run_id"], "cells": "explorer"}))
    assert find(page, ids.STEER_CELL_MODE).value == "types" and find(page, ids.STEER_CELL_TYPES).value == ["a"]
    # the cells of another analysis are not used
    out = run_job(cb.run_steering, JobProgress(None), [SOURCE, [2], "explorer", [], [], "max", 2, 99, True,
                                                       "paired-log", None, 1.5, None,
                                                       {**store, "source": "analysis:other"}], n_outputs=1)
    assert "no cells were carried from the Explorer" in text_of(out[0]) and out[1] is no_update


# ----------------------------------------------------------------------------- largest changes
def _de(log2fc, *, q=None, significant=None) -> pd.DataFrame:
    n = len(log2fc)
    return pd.DataFrame({"gene": [f"g{i}" for i in range(n)], "mean_normal": np.arange(n, dtype=float),
                         "mean_steered": np.arange(n, dtype=float) + 1, "log2fc": log2fc, "stat": 0.0,
                         "pvalue": 0.5, "qvalue": q if q is not None else np.full(n, 0.5),
                         "significant": significant if significant is not None else np.zeros(n, bool),
                         "direction": "none"})


def test_largest_changes_lists_the_top_up_then_the_top_down():
    from core.views.steering import CHANGE_COLUMNS, largest_changes

    rng = np.random.default_rng(0)
    fc = rng.normal(0, 0.3, 50)
    fc[[3, 7]] = [0.0, np.nan]
    de = _de(fc)
    out = largest_changes(de, n=10)
    assert list(out.columns) == CHANGE_COLUMNS and len(out) == 20
    up, down = out[out["direction"] == "up"], out[out["direction"] == "down"]
    assert out["direction"].tolist() == ["up"] * 10 + ["down"] * 10
    expected_up = de.dropna().query("log2fc > 0").nlargest(10, "log2fc")["gene"].tolist()
    expected_down = de.dropna().query("log2fc < 0").nsmallest(10, "log2fc")["gene"].tolist()
    assert up["gene"].tolist() == expected_up and down["gene"].tolist() == expected_down
    assert not {"g3", "g7"} & set(out["gene"])  # no change, no value: not listed
    row = out.iloc[0]
    src = de.set_index("gene").loc[row["gene"]]
    assert (row["mean_normal"], row["mean_steered"], row["qvalue"]) == (src["mean_normal"], src["mean_steered"], 0.5)
    # fewer genes than n on a side; ties broken by q
    small = largest_changes(_de([1.0, 1.0, -2.0], q=[0.2, 0.1, 0.3]), n=10)
    assert small["gene"].tolist() == ["g1", "g0", "g2"] and small["direction"].tolist() == ["up", "up", "down"]
    assert largest_changes(_de([0.5, -0.5]), n=0).empty
    with pytest.raises(InputError, match="no column 'qvalue'"):
        largest_changes(de.drop(columns="qvalue"))


def test_a_run_where_no_gene_passes_lists_the_largest_changes_with_a_note(analyses, ran, monkeypatch):
    _, shown, _ = ran
    real = cb.load_steering_run

    def quiet(analysis, run_id):
        res = real(analysis, run_id)
        res.de = res.de.assign(significant=False, direction="none", log2fc=res.de["log2fc"] / 10)
        return res

    monkeypatch.setattr(cb, "load_steering_run", quiet)
    _, _, volcano, changes, note, *_ = cb.show_run(shown, SOURCE)
    assert "0 of 500 genes changed" in volcano.layout.title.text
    assert len(changes) == 20 and {r["passes"] for r in changes} == {"no"}
    assert [r["arrow"] for r in changes] == ["▲"] * 10 + ["▼"] * 10
    text = text_of(note)
    assert "No gene changed 2-fold (q < 0.05)" in text and "Mann–Whitney" in text
    # nothing moved at all: nothing to list, and the note says so
    assert "changed at all" in text_of(cb.changes_note(0, n_listed=0, alpha=0.05, min_abs_log2fc=1))
    assert cb.changes_note(3, n_listed=20, alpha=0.05, min_abs_log2fc=1) is None


# ----------------------------------------------------------------------------- the page's data
@pytest.mark.parametrize("source, title, level", [
    (None, "No analysis chosen.", "info"),
    ("shipped:pbmc68k", "Steering works on analyses.", "info"),
    ("analysis:nodecoder", "This analysis cannot be steered.", "warning"),
    ("analysis:untrained", "This analysis cannot be steered.", "warning"),
    ("analysis:nothere", "This analysis cannot be opened.", "danger"),
    ("analysis:../../etc", "This analysis cannot be opened.", "danger"),
    ("sideways:x", "This analysis cannot be opened.", "danger"),
])
def test_steering_page_data_returns_the_problem_and_raises_nothing(analyses, source, title, level):
    d = views_steering.steering_page_data(source, query={"feature": "1", "run": "f1-abc"})
    assert (d.source, d.problem.title, d.problem.level) == (source, title, level)
    assert d.offered is None and d.form is None and d.features == () and d.run is None


def test_steering_page_data_of_a_damaged_or_dead_sae(analyses):
    for name in ("dead", "damaged"):
        shutil.copytree(analyses / "planted", analyses / name)
    try:
        feats = pd.read_parquet(analyses / "dead" / "features.parquet").assign(live=False)
        feats.to_parquet(analyses / "dead" / "features.parquet")
        dead = views_steering.steering_page_data("analysis:dead").problem
        assert (dead.title, dead.level) == ("Nothing to steer.", "warning") and "no live feature" in dead.text
        (analyses / "damaged" / "features.parquet").write_bytes(b"not a parquet file")
        damaged = views_steering.steering_page_data("analysis:damaged").problem
        assert (damaged.title, damaged.level) == ("This analysis cannot be opened.", "danger")
        assert "features table cannot be read" in damaged.text
    finally:
        for name in ("dead", "damaged"):
            shutil.rmtree(analyses / name)


def test_steering_page_data_of_a_good_source(analyses):
    d = views_steering.steering_page_data(SOURCE, query={"feature": "x,9,2", "run": " f2-gone "})
    assert d.problem is None and d.source == SOURCE and d.n_live == 8 and d.types == ("a", "b", "c")
    assert d.features == (2,) and d.run == "f2-gone"
    assert d.offered["feature"].tolist() == [2, 0, 1, 3, 4, 5, 6, 7]  # the chosen first, then by feature
    assert d.offered.columns.tolist() == ["feature", "label"] and d.offered["label"].iloc[0].startswith("2 · ")
    assert d.form == {**views_steering.FORM_DEFAULTS, "features": [2], "cell_mode": "types"}
    assert d.warnings == ("The link asks for feature 'x', which is not a feature number; it is ignored.",
                          "Feature 9 is not a live feature of this SAE, so it cannot be steered; choose another.")
    carried = views_steering.steering_page_data(SOURCE, query={"cells": "explorer"})
    assert carried.form["cell_mode"] == "explorer" and carried.features == () and carried.warnings == ()
    plain = views_steering.steering_page_data(SOURCE)  # no query: the defaults
    assert (plain.form, plain.features, plain.run, plain.warnings) == \
        ({**views_steering.FORM_DEFAULTS, "cell_mode": "types"}, (), None, ())


def test_steering_page_data_restores_a_stored_run(analyses, ran):
    _, shown, _ = ran
    d = views_steering.steering_page_data(SOURCE, query={"run": shown["run_id"], "cells": "explorer"})
    stored = views_steering.run_form(Analysis.open(analyses / "planted"), shown["run_id"], types=["a", "b", "c"])
    assert d.run == shown["run_id"] and d.features == (0,) and d.form == stored
    assert (d.form["cell_mode"], d.form["cell_types"], d.form["target"]) == ("types", ["a"], "max")


# ----------------------------------------------------------------------------- experiment, toward, compare
@pytest.fixture(scope="module")
def swept(analyses):
    """The experiment job run once: feature 0 in the cells of type a at 0.5, 1, 2, 4 with 2 controls each."""
    sent = []
    progress = JobProgress(sent.append, min_interval=0.0)
    alert, shown, tab = cb.run_sweep(progress, SOURCE, [0], "types", ["a"], [], True, "paired-log", "0.5, 1, 2, 4", 2,
                                     PLANTED_TERM)
    return alert, shown, tab, sent


def test_new_steering_ids_are_unique_and_the_job_panels_do_not_clash():
    every = ids.all_ids() + steering_page.RUN.all() + steering_page.EXPERIMENT.all() + \
        steering_page.TOWARD_RANK.all() + steering_page.TOWARD_RUN.all()
    assert len(every) == len(set(every))
    assert {ids.STEER_EXP_VERDICTS, ids.STEER_TOWARD_TABLE, ids.STEER_CMP_TERMS} <= set(ids.all_ids())


def test_the_mode_in_the_link_opens_the_experiment(analyses):
    data = steering_page_data(SOURCE, query={"feature": "0", "mode": "experiment"})
    assert data.mode == "experiment" and data.features == (0,) and not data.warnings
    page = steering_page.layout(data)
    assert find(page, ids.STEER_MODE).value == "experiment"
    assert find(page, ids.STEER_TARGET_SECTION).style == {"display": "none"}
    assert find(page, ids.STEER_EXP_BOX).style == {"display": "block"}
    assert find(page, ids.STEER_EXP_STRENGTHS).value == "0.5, 1, 2, 4" and find(page, ids.STEER_EXP_CONTROLS).value == 2
    assert find(page, ids.STEER_LOWER_TABS).active_tab == "experiment"
    order = [getattr(c, "id", None) for c in page.children]  # the experiment's results come first
    assert order.index(ids.STEER_LOWER_TABS) < order.index(ids.STEER_RESULTS)
    plain = steering_page_data(SOURCE, query={"feature": "0"})
    assert plain.mode == "run" and find(steering_page.layout(plain), ids.STEER_MODE).value == "run"
    order = [getattr(c, "id", None) for c in steering_page.layout(plain).children]
    assert order.index(ids.STEER_RESULTS) < order.index(ids.STEER_LOWER_TABS)
    bad = steering_page_data(SOURCE, query={"feature": "0", "mode": "sweeep"})
    assert bad.mode == "run" and any("mode 'sweeep'" in w for w in bad.warnings)
    assert find(steering_page.layout(steering_page_data(SOURCE, query={"mode": "compare"})),
                ids.STEER_LOWER_TABS).active_tab == "compare"
    assert cb.mode_controls("experiment") == (cb.HIDDEN, cb.HIDDEN, cb.SHOWN, cb.SHOWN)
    assert cb.mode_controls("run") == (cb.SHOWN, cb.SHOWN, cb.HIDDEN, cb.HIDDEN)


def test_the_card_offers_the_experiment():
    from components.feature_card import steer_href

    assert steer_href("analysis:planted", 3, mode="experiment") == \
        "/steering?source=analysis%3Aplanted&feature=3&mode=experiment"
    assert "mode" not in steer_href("analysis:planted", 3)
    from components.feature_card import card_header

    header = card_header({"feature": 3, "n_cells": 10, "frequency": 0.1, "max_activation": 1.0, "n_terms": 0,
                          "locality": "local"}, source="analysis:planted")
    assert find(header, ids.CARD_STEER).href == steer_href("analysis:planted", 3)
    assert find(header, ids.CARD_STEER_EXPERIMENT).href == steer_href("analysis:planted", 3, mode="experiment")


def test_experiment_request_from_the_form():
    req = cb.steering_request([0], "types", ["a"], [], "max", 2, 99, False, "paired-log")
    exp = views_steering.experiment_request(req, strengths="1, 4, x2", controls="3")
    assert exp.feature == 0 and exp.cells == "cell_type=a" and exp.strengths == (0.0, 1.0, 2.0, 4.0)
    assert exp.controls == 3 and exp.reference == 1.0 and exp.config.error_term is False


@pytest.mark.parametrize("features, strengths, controls, message, fix", [
    ([0, 1], "1,2", 2, "sweeps one feature; 2 are chosen", "keep one feature"),
    ([0], "1, two", 2, "invalid sweep strength 'two'", "0.5,1,2,4"),
    ([0], "", 2, "no sweep strength", "0.5,1,2,4"),
    ([0], "-1", 2, "≥ 0", "0.5,1,2,4"),
    ([0], "1,2", 1.5, "whole number", "e.g. 2"),
    ([0], "1,2", None, "no number of controls", "e.g. 2"),
    ([0], "1,2", 50, "from 0 to 10", "e.g. 2"),
])
def test_bad_experiment_settings_say_what_to_fix(features, strengths, controls, message, fix):
    req = cb.steering_request(features, "types", ["a"], [], "max", 2, 99, True, "paired-log")
    with pytest.raises(InputError) as err:
        views_steering.experiment_request(req, strengths=strengths, controls=controls)
    assert message in err.value.message and fix in (err.value.fix or "")


def test_experiment_job_stores_one_experiment_and_reports_progress(analyses, swept):
    alert, shown, tab, sent = swept
    text = text_of(alert)
    assert "Done." in text and "9 runs in 80 cells" in text and "terms specific" in text, text
    assert tab == "experiment" and shown["experiment_id"].startswith("x0-")
    stored = list_experiments(Analysis.open(analyses / "planted"))
    assert stored["experiment_id"].tolist() == [shown["experiment_id"]]
    percents = [m[0] for m in sent]
    assert percents == sorted(percents) and percents[-1] == 100 and len(set(percents)) >= 5
    assert any("control: random direction 2" in m[2] for m in sent)


def test_showing_the_experiment_plots_and_verdicts(analyses, swept):
    _, shown, _, _ = swept
    summary, changed, terms, toward, rows = cb.show_experiment(shown, SOURCE)
    line = text_of(summary)
    assert "Feature 0 in 80 cells (cell_type=a)" in line and "off, 0.5×, 1×, 2×, 4×" in line
    assert "2 random directions" in line and "0 of 1 hypotheses" in line
    assert "only 7 random features or directions" in line and "too few live features" in line  # an 8-feature SAE
    res = load_experiment(Analysis.open(analyses / "planted"), shown["experiment_id"])
    # changed genes: the feature's line over the five strengths, the 4 controls at 1×
    assert list(changed.data[0].x) == ["0", "0.5", "1", "2", "4"]
    assert list(changed.data[0].y) == res.dose_response()["n_changed"].tolist()
    assert [len(t.x) for t in changed.data[1:]] == [2, 2] and set(changed.data[1].x) == {"1"}
    # terms: the first line is the best up term, its controls' scores beside it
    best = res.verdicts[res.verdicts["direction"] == "up"].sort_values("score", ascending=False, kind="stable").iloc[0]
    assert terms.data[0].name == best["term_name"][:40] and terms.data[0].y[2] == pytest.approx(best["score"])
    ctrl = res.terms[(res.terms["term_id"] == best["term_id"]) & res.terms["kind"].str.startswith("control")]
    assert max(terms.data[1].y) == pytest.approx(ctrl["score"].max())
    assert [t.name for t in toward.data if t.showlegend is not False] == ["a", "b", "c"]
    # the verdict table: oxygen transport, the hypothesis, beats all 50 random directions (p = 1/51) and
    # every other feature; with 7 of them its p against features is 1/8, so it cannot be called specific
    ox = next(r for r in rows if r["term_id"] == PLANTED_TERM and r["direction"] == "up")
    assert ox["family"] == "hypothesis" and ox["effect"] > max(ox["null_feature_max"], ox["null_direction_max"])
    assert ox["p_direction"] == pytest.approx(1 / 51, abs=1e-4) and ox["p_feature"] == pytest.approx(1 / 8)
    assert ox["verdict"] == "not above control"
    assert len(rows) == len(res.verdicts) and all(r["verdict"] in ("specific", "not above control") for r in rows)


def test_stored_experiments_are_listed_and_reopen(analyses, swept):
    _, shown, _, _ = swept
    rows, note = cb.experiment_history({}, SOURCE)
    assert [r["experiment_id"] for r in rows] == [shown["experiment_id"]] and "1 experiment stored" in note
    assert rows[0]["strengths"] == "0,0.5,1,2,4" and rows[0]["when"]
    picked = cb.pick_experiment_row({"rowId": shown["experiment_id"]})
    assert picked["experiment_id"] == shown["experiment_id"]
    with pytest.raises(PreventUpdate):
        cb.pick_experiment_row({})
    # the newest experiment is shown without an id; an unknown id is an alert, not a crash
    assert "Feature 0" in text_of(cb.show_experiment({}, SOURCE)[0])
    alert = cb.show_experiment({"experiment_id": "x9-nothere"}, SOURCE)[0]
    assert "no steering experiment 'x9-nothere'" in text_of(alert)


def test_a_failed_experiment_job_changes_nothing(analyses, swept):
    out = run_job(cb.run_sweep, JobProgress(None), (SOURCE, [0, 1], "types", ["a"], [], True, "paired-log",
                                                    "1,2", 2), n_outputs=2)
    assert "sweeps one feature" in text_of(out[0]) and "Fix:" in text_of(out[0])
    assert out[1:] == (no_update, no_update)
    assert len(list_experiments(Analysis.open(analyses / "planted"))) == 1


def test_dose_response_figure_builders_on_a_planted_table():
    c = pd.DataFrame({"run": ["feature-off", "feature-x1", "feature-x2", "control-feature-3", "control-direction-1"],
                      "kind": ["feature", "feature", "feature", "control-feature", "control-direction"],
                      "strength": [0.0, 1.0, 2.0, 1.0, 1.0], "feature": [7, 7, 7, 3, -1],
                      "n_changed": [0, 40, 90, 5, 2], "toward[a]": [0.0, 0.5, 1.0, 0.1, -0.1],
                      "toward[b]": [0.0, -0.2, -0.4, 0.0, 0.0]})
    fig = figures.dose_response_figure(c)
    assert fig.data[0].name == "feature 7" and list(fig.data[0].y) == [0, 40, 90]
    assert [t.name for t in fig.data[1:]] == ["control: similar feature (1)", "control: random direction (1)"]
    assert fig.data[1].marker.symbol == "diamond-open" and fig.data[2].marker.symbol == "x"
    tow = figures.toward_dose_figure(c)
    assert [t.name for t in tow.data] == ["a", "a: controls", "b", "b: controls"]
    assert list(tow.data[0].y) == [0.0, 0.5, 1.0] and list(tow.data[1].y) == [0.1, -0.1]
    terms = pd.DataFrame({"run": c["run"].repeat(2).to_numpy(), "kind": c["kind"].repeat(2).to_numpy(),
                          "strength": c["strength"].repeat(2).to_numpy(), "direction": "up",
                          "term_id": ["T1", "T2"] * 5, "term_name": ["one", "two"] * 5,
                          "score": [0, 0, 5, 1, 9, 2, 1, 1, 0.5, 3]})
    tf = figures.term_dose_figure(terms, wanted=[("up", "T2"), ("up", "T1")])
    assert [t.name for t in tf.data] == ["two", "two: controls", "one", "one: controls"]
    assert list(tf.data[0].y) == [0, 1, 2] and list(tf.data[1].y) == [1, 3]
    assert tf.data[0].line.color == tf.data[1].marker.color
    assert "no experiment" in figures.dose_response_figure(c.head(0)).layout.annotations[0].text
    assert "no enriched" in figures.term_dose_figure(terms, wanted=[]).layout.annotations[0].text
    assert "no cell types" in figures.toward_dose_figure(c[["run", "kind", "strength"]]).layout.annotations[0].text
    shift = pd.DataFrame({"cell_type": ["a", "b"], "toward_a": [0.5, -0.1], "toward_b": [0.0, 0.2]})
    cs = figures.compare_shift_figure(shift, label_a="1×", label_b="4×")
    assert [t.name for t in cs.data] == ["1×", "4×"] and list(cs.data[1].x) == [0.0, 0.2]


@pytest.mark.parametrize("a, b, message", [(None, "b", "no cell type chosen for the cells"),
                                           ("a", "", "no target cell type"), ("a", "a", "already of type 'a'")])
def test_bad_toward_choices_say_what_to_fix(a, b, message):
    with pytest.raises(InputError) as err:
        views_steering.toward_choice(a, b)
    assert message in err.value.message and err.value.fix


def test_toward_ranks_then_steers_the_best(analyses, ran):
    alert, rows, note = cb.rank_toward_job(JobProgress(None), SOURCE, "a", "b")
    assert "Ranked." in text_of(alert) and rows[0]["rank"] == 1 and rows[0]["feature"] == 0
    assert len(rows) <= 20 and rows[0]["change"] < 0 and "best: feature 0" in note
    before = len(list_steering_runs(Analysis.open(analyses / "planted")))
    alert, shown, rows2, _ = cb.run_toward_job(JobProgress(None), SOURCE, "a", "b")
    assert "Feature 0 steered in 80 cells of a" in text_of(alert) and shown["features"] == [0]
    # feature 0 to its maximum in the cells of a is the run of the `ran` fixture: stored once, shown again
    runs = list_steering_runs(Analysis.open(analyses / "planted"))
    assert shown["run_id"] == ran[1]["run_id"] and len(runs) == before and rows2 == rows
    assert text_of(cb.show_run(shown, SOURCE)[0]).count("Feature 0 → max") == 1
    out = run_job(cb.run_toward_job, JobProgress(None), (SOURCE, "a", None), n_outputs=3)
    assert "no target cell type" in text_of(out[0]) and out[1:] == (no_update,) * 3


def test_compare_two_runs_of_an_experiment(analyses, swept, ran):
    _, shown, _, _ = swept
    a_opts, b_opts = cb.compare_options({}, shown, SOURCE)
    values = [o["value"] for o in a_opts]
    eid = shown["experiment_id"]
    assert f"run:{ran[1]['run_id']}" in values and f"exp:{eid}:feature-x1" in values
    assert f"exp:{eid}:control-direction-2" in values and a_opts == b_opts
    label = next(o["label"] for o in a_opts if o["value"] == f"exp:{eid}:feature-x4")
    assert label == f"experiment {eid} · feature 0 at 4×"
    alert, va, vb, rows, shift = cb.compare_runs(f"exp:{eid}:feature-x1", f"exp:{eid}:control-direction-1", SOURCE)
    assert alert is None and va.layout.title.text.startswith("A: ") and "control-direction-1" in vb.layout.title.text
    res = load_experiment(Analysis.open(analyses / "planted"), eid)
    ox = next(r for r in rows if r["term_id"] == PLANTED_TERM and r["direction"] == "up")
    verdict = res.verdicts.set_index(["direction", "term_id"]).loc[("up", PLANTED_TERM)]
    assert ox["score_a"] == pytest.approx(verdict["score"], abs=0.01) and ox["score_b"] < ox["score_a"]
    assert ox["difference"] == pytest.approx(ox["score_a"] - ox["score_b"], abs=0.02)
    assert [t.name for t in shift.data] == ["A", "B"] and set(shift.data[0].y) == {"a", "b", "c"}
    toward_b = -res.runs["feature-x1"].centroid_summary().set_index("cell_type").loc["b", "change"]
    assert dict(zip(shift.data[0].y, shift.data[0].x))["b"] == pytest.approx(toward_b)


def test_compare_needs_two_known_runs(analyses, ran):
    alert, *rest = cb.compare_runs(None, f"run:{ran[1]['run_id']}", SOURCE)
    assert "Choose two stored runs" in text_of(alert) and rest == [no_update] * 4
    alert, *rest = cb.compare_runs(f"run:{ran[1]['run_id']}", "exp:x0-nothere:feature-x1", SOURCE)
    assert "no steering experiment 'x0-nothere'" in text_of(alert) and rest == [no_update] * 4
    with pytest.raises(InputError, match="not a stored run"):
        views_steering.load_any_run(Analysis.open(analyses / "planted"), "bogus")


def test_compare_terms_and_shift_of_planted_runs():
    class Run:
        def __init__(self, up, types):
            self.enrichment_up, self.enrichment_down = up, up.head(0)
            self._cs = pd.DataFrame({"cell_type": types, "change": [-0.5, 0.25][:len(types)]})

        def centroid_summary(self):
            return self._cs

    def table(ids_, p):
        return pd.DataFrame({"term_id": ids_, "term_name": [f"name {t}" for t in ids_], "hits": 5, "expected": 1.0,
                             "binom_p": p, "binom_q": p, "mwu_p": 1.0, "mwu_q": 1.0})

    a, b = Run(table(["T1", "T2"], [1e-10, 1e-3]), ["a", "b"]), Run(table(["T2", "T3"], [1e-2, 1e-5]), ["a"])
    out = views_steering.compare_terms(a, b)
    assert out["term_id"].tolist() == ["T1", "T3", "T2"]
    assert out["score_a"].tolist() == pytest.approx([10, 0, 3]) and out["score_b"].tolist() == pytest.approx([0, 5, 2])
    assert out["difference"].tolist() == pytest.approx([10, -5, 1])
    sh = views_steering.compare_shift(a, b).set_index("cell_type")
    assert sh.loc["a"].tolist() == [0.5, 0.5] and sh.loc["b"].tolist() == [-0.25, 0.0]
