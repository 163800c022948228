"""The demo analysis builds end to end (model → SAE → annotation) and is reused on the second run."""
from __future__ import annotations

import pytest

from core.analysis import Analysis
from core.demo import build_demo

pytestmark = pytest.mark.slow


def test_demo_builds_and_is_cached(tmp_path):
    calls = []
    a = build_demo(tmp_path / "demo", seed=0, progress=lambda d, t, m: calls.append((d, t, m)))
    assert calls[-1][0] == calls[-1][1] and all(d <= t for d, t, _ in calls)
    cfg = Analysis.open(a.path).config
    assert cfg["dataset"]["shipped"] == "pbmc68k" and cfg["dataset"]["n_cells"] == 700
    assert {"sae", "predicted_expression", "annotate"} <= set(cfg["steps"])
    for name in ("sae.pt", "sae.json", "metrics.json", "features.parquet", "activations.npz",
                 "annotations.parquet", "concept_map.parquet"):
        assert a.has(name), name
    metrics = a.read_json("metrics.json")["summary"]
    assert metrics["live"] > 0 and metrics["local"] + metrics["global"] == metrics["live"]
    summary = a.read_json("annotation.json")
    assert summary["expression"].startswith("predicted") and summary["features_annotated"] > 0
    stamps = {name: rec["completed"] for name, rec in cfg["steps"].items()}
    mtimes = {p.name: p.stat().st_mtime_ns for p in a.path.iterdir() if p.is_file()}

    b = build_demo(tmp_path / "demo", seed=0)
    assert {n: r["completed"] for n, r in Analysis.open(b.path).config["steps"].items()} == stamps
    assert {p.name: p.stat().st_mtime_ns for p in b.path.iterdir() if p.is_file()} == mtimes
