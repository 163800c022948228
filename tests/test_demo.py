"""The demo analysis builds once and is reused."""
from __future__ import annotations

from core.analysis import Analysis
from core.demo import build_demo


def test_demo_builds_and_is_cached(tmp_path):
    calls = []
    a = build_demo(tmp_path / "demo", seed=0, progress=lambda d, t, m: calls.append((d, t, m)))
    assert calls[-1][0] == calls[-1][1]
    cfg = Analysis.open(a.path).config
    assert cfg["dataset"]["shipped"] == "pbmc68k" and cfg["dataset"]["n_cells"] == 700
    stamps = {name: rec["completed"] for name, rec in cfg["steps"].items()}
    mtimes = {p.name: p.stat().st_mtime_ns for p in a.path.iterdir()}
    assert stamps

    b = build_demo(tmp_path / "demo", seed=0)
    assert {n: r["completed"] for n, r in Analysis.open(b.path).config["steps"].items()} == stamps
    assert {p.name: p.stat().st_mtime_ns for p in b.path.iterdir()} == mtimes
