"""The Data & training page without a browser: uploads, the job panel plumbing, the jobs' core
calls, the summary, and the page's callbacks as plain functions."""
from __future__ import annotations

import base64
import os

import numpy as np
import pytest
from dash import no_update

from core.base.errors import InputError
from core.views.data import data_page_data
from core.base.progress import Cancelled


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Empty data and analyses folders for the app (the env vars the app reads)."""
    data, analyses = tmp_path / "data", tmp_path / "analyses"
    data.mkdir()
    analyses.mkdir()
    monkeypatch.setenv("FEATURELENS_DATA_DIR", str(data))
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(analyses))
    return data, analyses


@pytest.fixture
def small_in_data(folders, rng):
    """``small.h5ad`` (150 cells × 40 genes, 3 cell types, 5-d embedding X_emb) in the data folder."""
    from helpers import gen_adata

    path = folders[0] / "small.h5ad"
    gen_adata(n_cells=150, rng=rng).write_h5ad(path)
    return path


def _text(component) -> str:
    return str(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component)


# ----------------------------------------------------------------------------- uploads
def test_upload_valid_h5ad_is_kept_atomically(tmp_path, small_h5ad):
    from core.store.uploads import save_upload

    data = small_h5ad.read_bytes()
    res = save_upload(data, filename="My data (v2).h5ad", folder=tmp_path / "d", max_bytes=10 * len(data))
    assert (res.name, res.source, res.n_cells, res.n_genes, res.reused) == ("My_data_v2.h5ad", "file:My_data_v2.h5ad",
                                                                            60, 40, False)
    assert (tmp_path / "d" / res.name).read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [res.name]  # no temporary left
    again = save_upload(data, filename="My data (v2).h5ad", folder=tmp_path / "d", max_bytes=10 * len(data))
    assert again.reused


@pytest.mark.parametrize("name,payload,message", [
    ("fake.h5ad", b"this is a text file renamed", "not an HDF5/.h5ad file"),
    ("notes.txt", b"\x89HDF\r\n\x1a\n", "is not an .h5ad file"),
    ("empty.h5ad", b"", "is empty"),
    ("truncated.h5ad", b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "could not be read as AnnData"),
])
def test_upload_refuses_bad_files_and_leaves_nothing(tmp_path, name, payload, message):
    from core.store.uploads import save_upload

    folder = tmp_path / "d"
    with pytest.raises(InputError, match=message) as exc:
        save_upload(payload, filename=name, folder=folder, max_bytes=1000)
    assert ".upload-" not in exc.value.message  # the message names the user's file, not the temporary
    assert not folder.exists() or list(folder.iterdir()) == []


def test_upload_size_cap_and_name_confinement(tmp_path, small_h5ad):
    from core.store.uploads import safe_upload_name, save_upload

    data = small_h5ad.read_bytes()
    with pytest.raises(InputError, match="uploads are limited to"):
        save_upload(data, filename="big.h5ad", folder=tmp_path, max_bytes=len(data) - 1)
    assert safe_upload_name("../../etc/evil.h5ad") == "evil.h5ad"
    assert safe_upload_name("C:\\Users\\me\\x y.H5AD") == "x_y.h5ad"
    with pytest.raises(InputError):
        safe_upload_name("...h5ad")


def test_upload_different_file_under_same_name_is_refused(tmp_path, small_h5ad, rng):
    from helpers import gen_adata

    from core.store.uploads import save_upload

    (tmp_path / "x.h5ad").write_bytes(small_h5ad.read_bytes())
    other = tmp_path / "other.h5ad"
    gen_adata(n_cells=30, rng=rng).write_h5ad(other)
    with pytest.raises(InputError, match="a different file named x.h5ad"):
        save_upload(other.read_bytes(), filename="x.h5ad", folder=tmp_path, max_bytes=10**8)
    assert (tmp_path / "x.h5ad").read_bytes() == small_h5ad.read_bytes()


def test_decode_data_url():
    from core.store.uploads import decode_data_url

    assert decode_data_url("data:application/octet-stream;base64," + base64.b64encode(b"abc").decode()) == b"abc"
    for bad in ("", "abc", "data:x;base64,@@@", "data:text/plain,abc"):
        with pytest.raises(InputError):
            decode_data_url(bad)


# ----------------------------------------------------------------------------- job plumbing
def test_job_progress_throttles_and_builds_live_values_only_when_sending():
    from callbacks.jobs import JobProgress

    sent, now, built = [], [0.0], []
    p = JobProgress(sent.append, extras=["idle"], min_interval=1.0, clock=lambda: now[0])
    p(1, 4, "a")                       # first call goes out
    p(2, 4, "b")                       # same instant: throttled
    now[0] = 0.5
    p(3, 4, "c")                       # still within 1 s: throttled
    p.live = lambda: built.append(len(built)) or (f"fig{len(built)}",)
    now[0] = 1.2
    p(3, 4, "d")                       # due
    p(4, 4, "done")                    # final: always sent
    assert sent == [(25.0, "25 %", "a", "idle"), (75.0, "75 %", "d", "fig1"), (100.0, "100 %", "done", "fig2")]
    assert built == [0, 1]
    p(5, 0, "no total")
    assert p.percent == 0.0


def test_run_job_turns_errors_into_alerts_and_keeps_outputs():
    from callbacks.jobs import JobProgress, run_job

    p = JobProgress(None)

    def bad_input(progress, x):
        raise InputError(f"bad {x}", fix="do this")

    def boom(progress):
        raise RuntimeError("kaput")

    def cancelled(progress):
        raise Cancelled("stop")

    alert, a, b = run_job(bad_input, p, ["value"], n_outputs=2)
    assert "bad value" in _text(alert) and "do this" in _text(alert) and "danger" in _text(alert)
    assert a is no_update and b is no_update
    alert, out = run_job(boom, p, [], n_outputs=1)
    assert "unexpected RuntimeError: kaput" in _text(alert) and out is no_update
    alert, out = run_job(cancelled, p, [], n_outputs=1)
    assert "Cancelled" in _text(alert) and "info" in _text(alert)
    assert run_job(lambda progress, x: ("ok", x), p, [3], n_outputs=1) == ("ok", 3)
    with pytest.raises(ValueError, match="returned 1 values for 2 outputs"):
        run_job(lambda progress: ("only",), p, [], n_outputs=1)


def test_job_panel_ids_are_unique_and_do_not_collide():
    from components import ids
    from components.data_page import ANNOTATE, FIT, TRAIN

    derived = FIT.all() + TRAIN.all() + ANNOTATE.all()
    assert len(derived) == len(set(derived)) == 21
    assert not set(derived) & set(ids.all_ids())
    assert all(i.startswith("data-") for i in derived)


# ----------------------------------------------------------------------------- training request
def test_train_request_validates_and_matches_the_cli(folders):
    from core.cli.main import build_parser
    from core.cli.train import sae_request
    from core.views.data import TrainRequest

    for bad, match in [({"analysis": "../x"}, "not a usable analysis name"), ({"arch": "cnn"}, "unknown architecture"),
                       ({"expansion": -1}, "expansion must be a positive number"), ({"epochs": 0}, "epochs must be"),
                       ({"source": ""}, "no dataset chosen")]:
        with pytest.raises(InputError, match=match):
            TrainRequest(**{"source": "shipped:pbmc68k", "analysis": "a", **bad})
    req = TrainRequest(source="shipped:pbmc68k", analysis="a", preset="fast", arch="topk", k=16, l1=0.5, epochs=7,
                       seed=3)
    cli = build_parser().parse_args(["train", "d.h5ad", "--out", "o", "--preset", "fast", "--arch", "topk", "--k", "16",
                                     "--epochs", "7", "--seed", "3"])
    assert req.configs() == sae_request(cli).configs()[:2]
    sae, train = req.configs()
    assert (sae.arch, sae.k, sae.hidden, train.epochs, train.seed) == ("topk", 16, 10_000, 7, 3)


def test_preset_fields_and_size_help():
    from callbacks.data import preset_fields, size_help

    expansion, placeholder, sparsity, label, _help, epochs, preset_help = preset_fields("default", "vanilla")
    assert (expansion, sparsity, label, epochs) == (50.0, 0.2, "L1 weight", 30)
    assert "Good practice" in preset_help
    _e, _p, sparsity, label, help_text, epochs, preset_help = preset_fields("auto", "vanilla")
    assert sparsity is None and "sweep" in help_text and "knee" in preset_help and epochs == 30
    expansion, placeholder, sparsity, label, _help, epochs, preset_help = preset_fields("fast", "topk")
    assert expansion is None and placeholder == "10,000 latents (preset)"
    assert (sparsity, epochs) == (32, 60) and label.startswith("k ")
    assert "no early stopping" in preset_help
    _e, _p, sparsity, label, help_text, _epochs, _h = preset_fields("default", "matryoshka")
    assert sparsity is None and label.startswith("k ") and "Blank: k = the embedding's dimensions" in help_text
    from components.data_page import ARCH_CHOICES
    from core.views.data import ARCHS
    assert [c["value"] for c in ARCH_CHOICES] == list(ARCHS)  # the page offers what the request accepts
    opts = [{"label": "X_pca · 50 dimensions", "value": "X_pca"}]
    assert size_help(16, "X_pca", opts, "default").startswith("→ 800 latents for 50 dimensions")
    assert "10,000 latents" in size_help(None, "X_pca", opts, "paper")
    assert size_help(-2, "X_pca", opts, "default") == "Must be positive."


# ----------------------------------------------------------------------------- sources
def test_source_options(folders, small_in_data):
    from core.views.data_sources import source_options

    pb = source_options("shipped:pbmc68k")
    assert pb.error is None and pb.kind == "shipped" and pb.can_fit
    assert {"key": "X_pca", "dims": 50} in pb.embeddings and pb.default_embedding == "X_pca"
    assert pb.default_cell_type == "bulk_labels" and "louvain" in pb.cell_type_columns
    assert pb.analysis_name == "pbmc68k-X_pca" and (pb.n_cells, pb.n_genes) == (700, 765)
    small = source_options("file:small.h5ad")
    assert small.default_embedding == "X_emb" and small.default_cell_type == "cell_type"
    assert "batch" in small.cell_type_columns and small.analysis_name == "small-X_emb"
    np.save(folders[0] / "emb.npy", np.zeros((5, 3), dtype=np.float32))
    emb = source_options("file:emb.npy")
    assert emb.data_format == "npy" and not emb.can_fit and emb.default_cell_type == "none"
    bad = source_options("file:../../etc/passwd")
    assert "outside the allowed folders" in bad.error and bad.fix
    assert "no dataset" in source_options(None).error


def test_layout_renders_every_control_for_good_and_bad_sources(folders):
    from test_callbacks import component_ids

    from components import data_page, ids

    good = component_ids(data_page.layout(data_page_data("shipped:pbmc68k", query={})))
    bad = data_page.layout(data_page_data("file:missing.h5ad", query={}))
    must = {ids.DATA_PAGE, ids.DATA_EMBEDDING, ids.DATA_SUMMARY, ids.DATA_UPLOAD, data_page.TRAIN.start,
            data_page.TRAIN.cancel, data_page.ANNOTATE.start, data_page.FIT.bar, ids.DATA_TRAIN_LIVE_CHART}
    assert must <= good and must <= component_ids(bad)
    assert "cannot be used" in _text(bad)


# ----------------------------------------------------------------------------- jobs end to end (small data)
class FakeProgress:
    def __init__(self):
        self.calls, self.extras, self.live = [], (), None

    def __call__(self, done, total, message=""):
        self.calls.append((done, total, message))

    def push(self):
        pass


@pytest.mark.slow
def test_train_job_writes_analysis_and_reuses_it(folders, small_in_data):
    from callbacks.data import show_summary, train_job
    from callbacks.jobs import JobProgress, run_job
    from core.store.analysis import Analysis

    args = dict(source="file:small.h5ad", name="small-run", embedding="X_emb", cell_type="auto", decoder="none",
                preset="default", arch="vanilla", expansion=4, sparsity=1e-3, epochs=12, seed=0)
    before = small_in_data.read_bytes()
    progress = FakeProgress()
    alert, summary, options, open_disabled, annotate_disabled = train_job(progress, *args.values())
    assert "Trained small-run" in _text(alert) and "of 20 features live" in _text(alert)
    assert not open_disabled and not annotate_disabled
    assert {"label": "Analysis · small-run", "value": "analysis:small-run"} in options
    a = Analysis.open(folders[1] / "small-run")
    metrics = a.read_json("metrics.json")
    assert len(metrics["history"]) == 12 and a.config["dataset"]["decoder"] == "none"
    live_fig = progress.live()[0]                                   # the live chart has every epoch
    assert len(live_fig.data) == 3 and list(live_fig.data[0].x) == [r["epoch"] for r in metrics["history"]]
    s = metrics["summary"]
    assert f"{s['live']} of 20" in _text(summary) and f"{s['local']} / {s['regional']} / {s['global']}" in _text(summary)
    assert "SAE quality" in _text(summary) and "no decoder" in _text(summary)          # decoder "none"
    assert f"{s['explained_variance']:.3f}" in _text(summary)
    assert small_in_data.read_bytes() == before                     # the data file is never touched
    done = a.config["steps"]["sae"]["completed"]
    alert, *_ = train_job(FakeProgress(), *args.values())           # same settings: reused, not retrained
    assert Analysis.open(a.path).config["steps"]["sae"]["completed"] == done
    body, open_disabled, annotate_disabled = show_summary("small-run")
    assert f"{s['live']} of 20" in _text(body) and not open_disabled and not annotate_disabled
    # an analysis as the source trains into itself, with the data, embedding and decoder it records
    again = ["default", "vanilla", 4, 1e-3, 12, 0]
    alert, *_ = train_job(FakeProgress(), "analysis:small-run", "small-run", None, None, None, *again)
    assert "Trained small-run" in _text(alert)
    assert Analysis.open(a.path).config["steps"]["sae"]["completed"] == done   # same inputs: still reused
    assert Analysis.open(a.path).config["dataset"]["decoder"] == "none"
    alert, *_ = run_job(train_job, JobProgress(None), ["analysis:small-run", "other", None, None, None, *again],
                        n_outputs=4)
    assert "danger" in _text(alert) and "trains into itself" in _text(alert)


def test_train_job_errors_are_alerts_and_write_nothing(folders, small_in_data):
    from callbacks.data import train_job
    from callbacks.jobs import JobProgress, run_job

    cases = [("file:small.h5ad", "x", "X_nope", "not found in .obsm"),
             ("file:../small.h5ad", "x", "X_emb", "outside the allowed folders"),
             ("file:small.h5ad", "bad name!", "X_emb", "not a usable analysis name")]
    for source, name, emb, message in cases:
        alert, *rest = run_job(train_job, JobProgress(None),
                               [source, name, emb, "auto", "auto", "default", "vanilla", 4, 1e-3, 2, 0], n_outputs=4)
        assert message in _text(alert), _text(alert)
        assert all(r is no_update for r in rest)
    alert, *_ = run_job(train_job, JobProgress(None),
                        ["file:small.h5ad", "x", "X_emb", "auto", "auto", "default", "vanilla", 0.01, 1e-3, 2, 0],
                        n_outputs=4)
    assert "hidden" in _text(alert) or "latents" in _text(alert)
    assert list(folders[1].iterdir()) == []   # nothing was created


def test_annotate_job_without_sae_is_an_alert(folders, small_in_data):
    from callbacks.data import annotate_job
    from callbacks.jobs import JobProgress, run_job

    alert, out = run_job(annotate_job, JobProgress(None), ["nothing-here", ["go-bp"], "auto", 90, 100], n_outputs=1)
    assert "not an analysis folder" in _text(alert) and out is no_update
    alert, out = run_job(annotate_job, JobProgress(None), ["nothing-here", [], "auto", 90, 100], n_outputs=1)
    assert "no concept database selected" in _text(alert)


@pytest.mark.slow
def test_fit_model_job_writes_a_copy_and_switches_source(folders, small_in_data):
    from callbacks.data import fit_model_job
    from core.data.load import read_anndata
    from core.views.data_sources import source_options

    before = small_in_data.read_bytes()
    progress = FakeProgress()
    alert, options, value = fit_model_job(progress, "file:small.h5ad", 4, 0)
    assert value == "file:small-featurelens.h5ad" and "X_featurelens" in _text(alert)
    assert {"label": "File · small-featurelens.h5ad", "value": value} in options
    assert small_in_data.read_bytes() == before
    assert read_anndata(folders[0] / "small-featurelens.h5ad").obsm["X_featurelens"].shape == (150, 4)
    opts = source_options(value)
    assert opts.default_embedding == "X_featurelens" and "built-in model's embedding" in opts.fitted_model
    assert any(d["value"] == "model:small-featurelens.featurelens-model" for d in opts.decoders)
    assert progress.calls, "the fit reports progress"
    with pytest.raises(InputError, match="already exists"):
        fit_model_job(FakeProgress(), "file:small.h5ad", 4, 0)
    with pytest.raises(InputError, match="between 2 and 256"):
        fit_model_job(FakeProgress(), "file:small.h5ad", 1, 0)


# ----------------------------------------------------------------------------- summary, upload callback
def test_summary_for_missing_bad_and_trained_analyses(folders):
    from components.data_page import summary_body
    from core.views.data import analysis_overview

    assert "No analysis named “nope” yet" in _text(summary_body(analysis_overview("nope")))
    bad = analysis_overview("../etc")
    assert bad["error"] and "cannot be read" in _text(summary_body(bad))
    ov = {"name": "a", "exists": True, "dataset": "d.h5ad", "embedding": "X", "cell_type": "ct", "decoder": "none",
          "sae": {"arch": "vanilla", "d_in": 20, "hidden": 10000, "live": 9876, "dead_fraction": 0.0124, "l0": 12.345,
                  "fvu": 0.01234, "local": 80, "global": 9796, "elapsed_s": 161.2, "stop_reason": "completed",
                  "device": "cpu", "epochs": 60.0, "best_epoch": 55.0},
          "history": [{"epoch": 1, "val_loss": 1.0, "val_l0": 3.0, "train_dead": 100}],
          "annotation": {"features_annotated": 9800, "annotated_fraction_of_live": 0.9923, "unique_terms": 1234,
                         "terms_per_feature_mean": 95.04, "expression": "observed counts (.X)", "gene_match": "x"},
          "annotation_stale": True}
    text = _text(summary_body(ov))
    for s in ("9,876 of 10,000", "dead 1.2 %", "12.3", "FVU 0.0123", "80 / – / 9,796", "retrain to split them",
              "9,800", "99.2 % of live",
              "1,234 unique terms", "retrained after this annotation", "60 epochs in 161.2 s",
              "best validation loss at epoch 55"):
        assert s in text, s


_QUALITY = {"explained_variance": 0.91835, "cossim": 0.98209, "l2_ratio": 0.81108, "relative_reconstruction_bias": 0.84361,
            "max_decoder_cosine": 0.96257, "median_max_decoder_cosine": 0.88413,
            "validation": {"n_cells": 60, "explained_variance": 0.9138, "cossim": 0.98247, "l2_ratio": 0.80527,
                           "relative_reconstruction_bias": 0.83521},
            "frequency_histogram": {"log10_edges": [-2.0, -1.5, -1.0, -0.5, 0.0], "counts": [0, 3, 9, 4], "dead": 2}}


@pytest.mark.parametrize("fidelity,shown,hidden", [
    ({"n_cells": 60, "loglik_original": -193.24, "loglik_reconstruction": -193.21, "loglik_mean": -259.25,
      "fidelity": 1.0004}, ["1.000 on 60 held-out cells", "embedding -193.2", "mean embedding -259.2"], ["no decoder"]),
    (None, ["no decoder"], ["held-out cells ("]),
    ({"unavailable": "the counts are not integers"}, ["not measured: the counts are not integers"], ["no decoder"]),
    ("absent", [], ["expression fidelity", "no decoder"]),
])
def test_summary_shows_sae_quality_and_fidelity(fidelity, shown, hidden):
    from components.data_page import summary_body

    quality = dict(_QUALITY) if fidelity == "absent" else {**_QUALITY, "fidelity": fidelity}
    ov = {"name": "a", "exists": True, "dataset": "d.h5ad", "embedding": "X", "cell_type": None, "decoder": "automatic",
          "sae": {"arch": "vanilla", "d_in": 4, "hidden": 18, "live": 16, "dead_fraction": 0.11, "l0": 8.6,
                  "fvu": 0.08165, "quality": quality}}
    text = _text(summary_body(ov))
    for s in ["SAE quality", "held-out (60)", "0.918", "0.914", "0.982", "0.811", "0.844", "0.963",
              "median per feature 0.884", "Feature density (2 dead not shown)", *shown]:
        assert s in text, s
    for s in hidden:
        assert s not in text, s
    old = {**ov, "sae": {**ov["sae"], "quality": None}}                # trained before quality was recorded
    assert "SAE quality" not in _text(summary_body(old)) and "16 of 18" in _text(summary_body(old))


def test_feature_density_figure():
    from components.figures import feature_density_figure

    fig = feature_density_figure(_QUALITY["frequency_histogram"])
    assert list(fig.data[0].y) == [0, 3, 9, 4] and list(fig.data[0].x) == [-1.75, -1.25, -0.75, -0.25]
    assert "2 dead" in fig.layout.title.text
    empty = feature_density_figure({"log10_edges": [-1.0, 0.0], "counts": [0], "dead": 5})
    assert not empty.data and "no live features" in str(empty.layout.annotations[0].text)


def test_receive_upload_callback(folders, small_h5ad):
    from callbacks.data import receive_upload

    url = "data:application/octet-stream;base64," + base64.b64encode(small_h5ad.read_bytes()).decode()
    alert, options, value, cleared = receive_upload({"filename": "mine.h5ad", "contents": url})
    assert "Uploaded." in _text(alert) and value == "file:mine.h5ad" and cleared is None
    assert {"label": "File · mine.h5ad", "value": "file:mine.h5ad"} in options
    bad = "data:application/octet-stream;base64," + base64.b64encode(b"hello").decode()
    alert, options, value, _ = receive_upload({"filename": "bad.h5ad", "contents": bad})
    assert "not an HDF5" in _text(alert) and options is no_update and value is no_update
    alert, *_ = receive_upload({"filename": "huge.h5ad", "error": "too_large", "size": 3 * 2**30})
    assert "3,072.0 MB" in _text(alert) and "uploads are limited" in _text(alert)
    assert sorted(os.listdir(folders[0])) == ["mine.h5ad"]


def test_train_sae_on_eval_sees_every_history_row(rng):
    from core.sae import TrainConfig, VanillaConfig, train_sae

    x = rng.normal(size=(200, 6)).astype(np.float32)
    rows = []
    res = train_sae(x, config=VanillaConfig(hidden=12), train=TrainConfig(epochs=4, batch_size=32, patience=None),
                    on_eval=rows.append)
    assert rows == res.history and len(rows) == 4
    rows[0]["val_loss"] = -1.0  # a copy: the caller cannot change the history
    assert res.history[0]["val_loss"] != -1.0


# ----------------------------------------------------------------------------- annotation method
def test_method_control_defaults_to_calibrated_and_lists_the_pipeline_methods(folders):
    from test_callbacks import component_ids

    from components import data_page, ids
    from core.annotate.pipeline import METHODS

    assert [c["value"] for c in data_page.METHOD_CHOICES] == list(METHODS)
    page = data_page.layout(data_page_data("shipped:pbmc68k", query={}))
    assert ids.DATA_ANN_METHOD in component_ids(page)
    control = _find(page, ids.DATA_ANN_METHOD)
    assert control.value == "calibrated" and control.options == data_page.METHOD_CHOICES
    assert "calibrated: FDR-controlled, up-regulated, most specific terms — recommended; paper: the published " \
           "method, reproduces its numbers" in str(page)


def _find(component, component_id):
    """The component with ``component_id`` inside ``component`` (depth first), or None."""
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            found = _find(child, component_id)
            if found is not None:
                return found
    return None


def test_annotate_job_passes_the_method_and_reports_the_null_check(monkeypatch):
    """The job's states end with the method; it reaches AnnotationConfig; the message shows the self-check."""
    import inspect

    import callbacks.data as cb
    from components import ids

    params = list(inspect.signature(cb.annotate_job).parameters)[1:]
    assert [s.component_id for s in cb.ANNOTATE_FORM] == [ids.DATA_ANALYSIS_NAME, ids.DATA_ANN_CONCEPTS,
                                                          ids.DATA_ANN_EXPRESSION, ids.DATA_ANN_PERCENTILE,
                                                          ids.DATA_ANN_NLOW, ids.DATA_ANN_METHOD]
    assert len(params) == len(cb.ANNOTATE_FORM) and params[-1] == "method"
    seen = []
    annotation = {"features_annotated": 40, "unique_terms": 12, "expression": "observed counts (.X)"}

    def fake_annotate_named(name, *, config, progress):
        seen.append((name, config))
        return {"name": name, "exists": True, "sae": {"hidden": 50, "live": 45}, "annotation": annotation}

    monkeypatch.setattr(cb, "annotate_named", fake_annotate_named)
    alert, summary = cb.annotate_job(FakeProgress(), " a ", ["go-bp"], "auto", 90, 30, "paper")
    assert seen[-1][0] == "a" and seen[-1][1].method == "paper" and seen[-1][1].concepts == ("go-bp",)
    assert "40 features annotated with 12 unique terms" in _text(alert) and "method" not in _text(alert)
    cb.annotate_job(FakeProgress(), "a", ["go-bp"], "auto", 90, 30, None)
    assert seen[-1][1].method == "calibrated"                  # a blank control: the default
    annotation.update(method="calibrated", null_features_tested=100, null_features_annotated=1,
                      false_annotation_rate=0.01)
    alert, summary = cb.annotate_job(FakeProgress(), "a", ["go-bp"], "auto", 90, 30, "calibrated")
    assert ("Method: calibrated; null features annotated: 1 of 100 (false annotation rate 1.0 %)."
            in _text(alert))
    assert "Annotation: method: calibrated; null features annotated: 1 of 100" in _text(summary)
    with pytest.raises(InputError, match="unknown annotation method 'best'"):
        cb.annotate_job(FakeProgress(), "a", ["go-bp"], "auto", 90, 30, "best")


@pytest.mark.parametrize("extra,shown,hidden", [
    ({}, [], ["method", "null features"]),                                   # annotated before these were kept
    ({"method": "paper"}, ["method: paper;"], ["null features"]),
    ({"method": "calibrated", "null_features_tested": 100, "null_features_annotated": 0},
     ["method: calibrated; null features annotated: 0 of 100;"], ["false annotation rate"]),
    ({"null_features_tested": 2000, "null_features_annotated": 25, "false_annotation_rate": 0.0125},
     ["null features annotated: 25 of 2,000 (false annotation rate 1.2 %)"], ["method"]),
])
def test_summary_shows_the_method_and_null_check_when_recorded(extra, shown, hidden):
    from components.data_page import summary_body

    ov = {"name": "a", "exists": True, "sae": {"hidden": 50, "live": 45},
          "annotation": {"features_annotated": 40, "unique_terms": 12, "terms_per_feature_mean": 3.0,
                         "expression": "observed counts (.X)", "gene_match": "40/40 genes", **extra}}
    text = _text(summary_body(ov))
    assert "Annotation: " in text and "3.0 terms per annotated feature" in text
    for s in shown:
        assert s in text, s
    line = text[text.index("Annotation: "):]
    for s in hidden:
        assert s not in line, s


@pytest.mark.slow
def test_annotate_job_shows_why_no_gene_matches(folders, small_in_data):
    """Genes named GENE0… match none of GO's: the Annotate job's alert says so, as the CLI does."""
    from callbacks.data import annotate_job
    from callbacks.jobs import JobProgress, run_job
    from core.cli.main import main

    assert main(["train", str(small_in_data), "--embedding", "X_emb", "--out", str(folders[1] / "small-run"),
                 "--hidden", "10", "--epochs", "1"]) == 0
    alert, out = run_job(annotate_job, JobProgress(None), ["small-run", ["go-bp"], "auto", 90, 30, "calibrated"],
                         n_outputs=1)
    text = _text(alert)
    assert "danger" in text and out is no_update
    assert "none of the 40 genes matches a concept in go-bp" in text and "(e.g. GENE0, GENE1, GENE2)" in text
    assert "use human gene symbols, Ensembl or Entrez IDs as var_names" in text


def test_the_three_seed_option_reaches_the_train_request(monkeypatch, folders):
    """The form offers 1 or 3 seeds; the job's last state is that control; 3 → seeds s, s+1, s+2."""
    import inspect

    import callbacks.data as cb
    from components import data_page, ids
    from core.views.data import TrainRequest

    radio = _find(data_page.layout(data_page_data("shipped:pbmc68k", query={})), ids.DATA_SEEDS)
    assert radio is not None and radio.value == 1 and [o["value"] for o in radio.options] == [1, 3]
    params = list(inspect.signature(cb.train_job).parameters)[1:]
    assert len(params) == len(cb.TRAIN_FORM) and params[-1] == "seeds"
    assert [s.component_id for s in cb.TRAIN_FORM[-2:]] == [ids.DATA_SEED, ids.DATA_SEEDS]
    seen = []
    stability = {"median": 0.93, "fraction_stable": 0.61, "n_features": 120, "n_other_seeds": 2, "stable_at": 0.9,
                 "chance_median": 0.55}

    def fake_train(request, *, progress, on_eval):
        seen.append(request)
        return {"name": request.analysis, "exists": True, "sae": {"hidden": 200, "live": 120, "l0": 4.0, "fvu": 0.1},
                "stability": stability if request.seeds > 1 else None, "history": []}

    monkeypatch.setattr(cb, "train_for_source", fake_train)
    form = ["shipped:pbmc68k", "a", "X_pca", "auto", "none", "default", "vanilla", 4, 1e-3, 2, 5]
    alert, *_ = cb.train_job(FakeProgress(), *form, 3)
    assert seen[-1].seeds == 3 and seen[-1].seed_list() == [5, 6, 7]
    assert "Stability across 2 other seeds: median 0.93, 61.0 % of 120 live features ≥ 0.9" in _text(alert)
    alert, *_ = cb.train_job(FakeProgress(), *form, None)       # a blank control: one seed
    assert seen[-1].seeds == 1 and seen[-1].seed_list() is None and "tability" not in _text(alert)
    for bad in (0, 6, 2.5):
        with pytest.raises(InputError, match="seeds must be"):
            TrainRequest(source="shipped:pbmc68k", analysis="a", seeds=bad)


@pytest.mark.slow
def test_train_for_source_with_three_seeds_stores_stability(folders, small_in_data):
    from core.store.analysis import Analysis
    from core.views.data import TrainRequest, train_for_source

    progress = FakeProgress()
    ov = train_for_source(TrainRequest(source="file:small.h5ad", analysis="three", embedding="X_emb", decoder="none",
                                       expansion=4, epochs=3, seed=4, seeds=3), progress=progress)
    assert ov["stability"]["n_other_seeds"] == 2 and 0 < ov["stability"]["median"] <= 1
    messages = [m for _, _, m in progress.calls]
    assert any(m.startswith("seed 4 (1/3)") for m in messages) and any(m.startswith("seed 6 (3/3)") for m in messages)
    a = Analysis.open(folders[1] / "three")
    assert [r["seed"] for r in a.read_json("metrics.json")["robustness"]["per_seed"]] == [4, 5, 6]
    assert "stability" in a.read_parquet("features.parquet")


def test_auto_preset_sweeps_stores_and_shows_the_frontier(folders, small_in_data):
    """The Auto preset: the request carries a sweep (only for L1 architectures), the job stores
    the frontier in metrics.json with the chosen strength, and the summary draws it."""
    from dash import dcc

    from components import ids
    from components.data_page import summary_body
    from core.store.analysis import Analysis
    from core.sae.sweep import SweepConfig
    from core.views.data import TrainRequest, train_for_source

    assert TrainRequest(source="file:small.h5ad", analysis="x", preset="auto").sweep() == SweepConfig()
    assert TrainRequest(source="file:small.h5ad", analysis="x").sweep() is None
    with pytest.raises(InputError, match="chooses the L1 strength"):
        TrainRequest(source="file:small.h5ad", analysis="x", preset="auto", arch="topk").sweep()
    sae, train = TrainRequest(source="file:small.h5ad", analysis="x", preset="auto", l1=0.5, epochs=30).configs()
    assert sae.l1 == 0.2 and train.min_steps == 1500          # the form's own values are no override
    _sae, train = TrainRequest(source="file:small.h5ad", analysis="x", epochs=7).configs()
    assert (train.epochs, train.min_steps) == (7, None)        # a changed epochs is exact, as --epochs
    ov = train_for_source(TrainRequest(source="file:small.h5ad", analysis="auto", embedding="X_emb", decoder="none",
                                       preset="auto", expansion=4, epochs=6))
    sweep = ov["sparsity_sweep"]
    assert len(sweep["rows"]) == len(SweepConfig().l1) and 0 <= sweep["chosen"] < len(sweep["rows"])
    m = Analysis.open(folders[1] / "auto").read_json("metrics.json")
    assert m["training"]["sae"]["l1"] == sweep["chosen_l1"] == m["sparsity_sweep"]["chosen_l1"]
    body = summary_body(ov)
    graphs = [c for c in _walk(body) if isinstance(c, dcc.Graph) and getattr(c, "id", None) == ids.DATA_SWEEP_FRONTIER]
    assert len(graphs) == 1 and len(graphs[0].figure.data) == 2      # the sweep and the chosen knee
    assert f"L1 {sweep['chosen_l1']:g} chosen from {len(sweep['rows'])} short runs" in _text(body)


def _walk(node):
    if isinstance(node, (list, tuple)):
        for child in node:
            yield from _walk(child)
        return
    if node is None or isinstance(node, (str, int, float)):
        return
    yield node
    yield from _walk(getattr(node, "children", None))


# ----------------------------------------------------------------------------- the page's data
def test_data_page_data_carries_the_source_options_and_the_upload_cap(folders, small_in_data, monkeypatch):
    from core.views.data_sources import source_options

    monkeypatch.delenv("FEATURELENS_MAX_UPLOAD_MB", raising=False)
    good = data_page_data("file:small.h5ad", query={"ignored": "1"})
    assert good.source == "file:small.h5ad" and good.options == source_options("file:small.h5ad")
    assert good.options.error is None and good.upload_cap == 500 * 1024 * 1024
    monkeypatch.setenv("FEATURELENS_MAX_UPLOAD_MB", "1.5")
    assert data_page_data("file:small.h5ad").upload_cap == int(1.5 * 1024 * 1024)
    for bad, words in (("file:missing.h5ad", "missing.h5ad"), ("file:../../etc/passwd", "outside the allowed"),
                       (None, "no dataset"), ("sideways:x", "unknown source kind")):
        opts = data_page_data(bad).options
        assert words in opts.error, (bad, opts.error)
