"""`featurelens bench`: the suite runs end to end, reports medians and ratios, tolerates missing benchmarks."""
from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

from core.cli.main import main
from core.cli.bench import NAMES, fmt, markdown, run_suite, summarise


def _bench_module(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _suite_module():
    return _bench_module("bench_suite", "suite.py")


def test_cli_names_match_the_suite_registry():
    assert set(NAMES) == set(_suite_module().BENCHMARKS)


def test_bench_cli_end_to_end(tmp_path):
    out = tmp_path / "suite.json"
    proc = subprocess.run([sys.executable, "-m", "core.cli", "bench", "search", "--quick", "--repeat", "2",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| benchmark | size | ours (median) | peer, same runs | ratio | peak RSS | runs |" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| search |"))
    assert "pandas scan of the table" in row and "×" in row and row.rstrip().endswith("| 2 |")
    assert "search: run 2/2" in proc.stderr
    res = json.loads(out.read_text())
    b = res["benchmarks"]["search"]
    assert res["quick"] is True and res["machine"]["cpus"] >= 1 and b["status"] == "ok" and b["n_runs"] == 2
    runs = [r["metrics"] for r in b["runs"]]
    for key in ("query_ms", "scan_ms", "speedup"):
        assert b["median"][key] == pytest.approx(statistics.median(r[key] for r in runs))
    assert all(r["speedup"] == pytest.approx(r["scan_ms"] / r["query_ms"]) for r in runs)  # same-run ratio
    assert b["median"]["query_ms"] > 0 and 50 < b["peak_rss_mb"] < 4000


FAKE_SUITE = textwrap.dedent('''
    import json, sys
    name = sys.argv[2]
    if name == "steering":
        print("BENCH-RESULT " + json.dumps({"available": False, "reason": "bench_steering.py is not there"}))
    elif name == "click":
        sys.exit("boom: the benchmark crashed")
    else:
        n = float(open(__file__ + ".count", "a+").tell() + 1)
        open(__file__ + ".count", "a").write("x")
        print("BENCH-RESULT " + json.dumps({"available": True, "size": "tiny", "rss_mb": None, "wall_s": 0.1,
              "metrics": {"t_ms": 10 * n, "peer_ms": 40 * n, "speedup": 4.0},
              "show": [["t_ms", "per query", "ms"]], "peer": ["peer_ms", "scan", "ms"], "ratio": "speedup"}))
''')


def test_missing_and_failing_benchmarks_are_rows_not_crashes(tmp_path):
    suite = tmp_path / "benchmarks" / "suite.py"
    suite.parent.mkdir()
    suite.write_text(FAKE_SUITE)
    logs = []
    res = run_suite(["steering", "click", "search"], suite=suite, repeat=3, quick=True, seed=0, timeout=60,
                    log=logs.append)
    b = res["benchmarks"]
    assert b["steering"] == {"status": "not available"}
    assert b["click"]["status"] == "failed" and "boom: the benchmark crashed" in b["click"]["error"]
    s = b["search"]
    assert s["status"] == "ok" and s["n_runs"] == 3 and s["median"]["t_ms"] == 20 and s["median"]["peer_ms"] == 80
    assert s["peak_rss_mb"] > 1  # from os.wait4 when the benchmark does not report its own
    table = markdown(res)
    assert "| steering | — | not available |" in table and "| click | — | failed: " in table
    assert "| search | tiny | per query 20.0 ms | scan: 80.0 ms | **4.00×** |" in table
    assert any("steering: not available" in m for m in logs)


def test_bad_arguments_exit_2(capsys):
    assert main(["bench", "nope"]) == 2
    assert "no benchmark named 'nope'" in capsys.readouterr().err
    assert main(["bench", "search", "--repeat", "0"]) == 2


def test_number_formatting_and_summary():
    assert fmt(400_000, "s") == "111 h" and fmt(161.2, "s") == "161 s" and fmt(600, "s") == "10.0 min"
    assert fmt(0.0123, "ms") == "0.0123 ms" and fmt(20_436.4, "samples/s") == "20,436 samples/s"
    assert fmt(None, "s") == "—" and fmt(0.8, "fraction") == "0.80"
    assert summarise([]) == {"status": "not available"}
    runs = [{"metrics": {"a": v}, "rss_mb": r, "show": [], "size": "x"} for v, r in ((1, 10), (5, 30), (2, 20))]
    s = summarise(runs)
    assert s["median"]["a"] == 2 and s["peak_rss_mb"] == 30 and s["n_runs"] == 3


# ----------------------------------------------------------------------------- training speed (issue 14)
def _speed_module():
    return _bench_module("bench_training_speed", "bench_training_speed.py")


def test_step_flop_count_matches_torch_flop_counter():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from core.sae import VanillaConfig
    from core.sae.registry import build_sae

    bs = _speed_module()
    sae = build_sae(VanillaConfig(hidden=300), d_in=7, seed=0)
    with FlopCounterMode(display=False) as fc:
        sae.fast_grads_(torch.randn(16, 7))
    assert fc.get_total_flops() == bs.flops_per_step(16, 7, 300) == 10 * 16 * 7 * 300
    # overcomplete's mse_l1 sums |z| over the batch; ours averages Σ z‖d‖/√d over cells
    assert bs.equivalent_penalty(0.2, 128, 20) == pytest.approx(0.2 / (128 * 20 ** 0.5))


def test_training_speed_quick_through_the_cli(tmp_path, monkeypatch):
    out = tmp_path / "suite.json"
    proc = subprocess.run([sys.executable, "-m", "core.cli", "bench", "training", "--quick", "--repeat", "1",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| training |"))
    assert "reference-style loop (DataLoader" in row and "×" in row
    b = json.loads(out.read_text())["benchmarks"]["training"]
    m = b["runs"][0]["metrics"]
    assert b["status"] == "ok" and m["speedup"] == pytest.approx(m["samples_per_s"] / m["reference_samples_per_s"])
    assert 0 < m["peak_fraction"] < 1 and m["peak_gflops"] > 0 and 0 <= m["ours_fvu"] and m["ours_l0"] > 0
    has_library = _speed_module().load_library() is not None
    assert ("library_fvu" in m) == has_library
    assert has_library or "library peer skipped: overcomplete is not installed" in b["size"]


def test_missing_library_is_skipped_with_a_message(monkeypatch):
    bs = _speed_module()
    monkeypatch.setattr(bs.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setitem(sys.modules, "overcomplete", None)  # a plain import fails too
    assert bs.load_library() is None
