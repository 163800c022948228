"""The demo analysis: the default (simulated data → model → SAE → annotation → planted score) and
the real PBMC option; both are reused on the second run."""
from __future__ import annotations

import subprocess
import sys

import pytest

from core.store.analysis import Analysis
from core.demo.build import build_demo, default_demo_path, demo_settings
from core.base.errors import InputError

pytestmark = pytest.mark.slow


def _stamps(path):
    a = Analysis.open(path)
    return ({n: r["completed"] for n, r in a.config["steps"].items()},
            {p.name: p.stat().st_mtime_ns for p in a.path.iterdir() if p.is_file()})


def test_default_demo_is_the_simulated_dataset(demo_analysis):
    a = Analysis.open(demo_analysis)
    cfg = a.config
    assert cfg["dataset"]["demo"] == "simulated" and "shipped" not in cfg["dataset"]
    assert cfg["dataset"]["n_cells"] == 10_000 and cfg["dataset"]["n_genes"] == 2_500
    assert cfg["dataset"]["cell_type"] == "cell_type"
    assert {"sae", "predicted_expression", "annotate", "planted"} <= set(cfg["steps"])
    for name in ("sae.pt", "sae.json", "metrics.json", "features.parquet", "activations.npz",
                 "annotations.parquet", "concept_map.parquet", "planted_score.json"):
        assert a.has(name), name
    ann_cfg = cfg["steps"]["annotate"]["inputs"]["config"]
    assert ann_cfg["percentile"] == 99.0 and ann_cfg["n_low"] == 1000       # the paper's defaults
    metrics = a.read_json("metrics.json")["summary"]
    assert metrics["live"] > 0 and metrics["local"] + metrics["regional"] + metrics["global"] == metrics["live"]
    summary = a.read_json("annotation.json")
    assert summary["expression"].startswith("predicted") and summary["features_annotated"] > 0.8 * metrics["live"]
    groups = a.read_parquet("annotation_groups.parquet")
    assert (groups.loc[groups["reason"] == "", "n_low"] == 1000).all()
    planted = a.read_json("planted_score.json")
    assert planted["n_programs"] >= 10 and 0 <= planted["score"] <= 1
    # the model was fitted with the batch covariate
    model = (a.path / "data" / "simulated-haematopoiesis.featurelens-model")
    assert model.is_dir()


def test_second_build_reuses_every_step(demo_analysis):
    steps, mtimes = _stamps(demo_analysis)
    calls = []
    build_demo(demo_analysis, seed=0, progress=lambda d, t, m: calls.append((d, t, m)))
    assert calls[-1][0] == calls[-1][1] and all(d <= t for d, t, _ in calls)
    assert _stamps(demo_analysis) == (steps, mtimes)


def test_cli_demo_build_only_on_the_cached_analysis(demo_analysis):
    proc = subprocess.run([sys.executable, "-m", "core.cli", "demo", "--build-only", "--out", str(demo_analysis)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "demo analysis ready" in proc.stdout and "planted GO programs recovered" in proc.stdout


def test_settings_and_paths():
    sim, pbmc = demo_settings("simulated"), demo_settings("pbmc68k")
    assert sim.annotation.percentile == 99.0 and sim.annotation.n_low == 1000 and sim.batch_key == "batch"
    assert pbmc.annotation.percentile == 90.0 and pbmc.data is None
    assert default_demo_path().name == "demo" and default_demo_path("pbmc68k").name == "demo-pbmc68k"
    with pytest.raises(InputError):
        demo_settings("nope")
    with pytest.raises(InputError):
        default_demo_path("nope")


def test_pbmc_demo_option_builds_and_is_cached(tmp_path):
    a = build_demo(tmp_path / "demo-pbmc68k", dataset="pbmc68k", seed=0)
    cfg = Analysis.open(a.path).config
    assert cfg["dataset"]["shipped"] == cfg["dataset"]["demo"] == "pbmc68k" and cfg["dataset"]["n_cells"] == 700
    assert {"sae", "predicted_expression", "annotate"} <= set(cfg["steps"]) and "planted" not in cfg["steps"]
    assert a.read_json("annotation.json")["features_annotated"] > 0
    before = _stamps(a.path)
    build_demo(tmp_path / "demo-pbmc68k", dataset="pbmc68k", seed=0)
    assert _stamps(a.path) == before
