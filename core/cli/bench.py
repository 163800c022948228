"""`featurelens bench`: run the benchmark suite (benchmarks/suite.py) and print medians.

Every repetition of every benchmark runs in a fresh process, so each has its own peak memory
(read from the operating system with ``os.wait4``) and nothing is warm from the one before.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HELP = "Run the benchmark suite and print medians (with the ratio to the reference method where one exists)."
DESCRIPTION = """Run the benchmark suite; print the median of repeated runs as a markdown table.

benchmarks (default: all):
  annotation  annotate every feature at paper scale (56,714 cells × 13,431 genes × 10,000 features)
              vs the reference's per-feature method (timed on a few features, extrapolated)
  training    default SAE trainer (20 → 10,000 latents) vs a reference-style loop and a library; % of matmul peak
  steering    a steering experiment (benchmarks/bench_steering.py)
  click       Explorer server time: a feature click recolouring 57,000 cells, a search
  search      GO keyword search over 10,000 features vs a pandas scan of the same table
  demo        `featurelens demo --build-only`: first build (cold) and cached rerun (warm)
  memory      peak memory of annotation at growing sizes, and the size that fits this machine
  planted     planted-concept score of the simulated demo

examples:
  featurelens bench                          # everything, 3 runs each (the annotation alone ~15 min on 2 cores)
  featurelens bench search training --repeat 5
  featurelens bench all --quick              # small sizes, about a minute: checks that all of it works

Results go to benchmarks/results/suite.json (suite-quick.json with --quick) unless --out is given."""

NAMES = ("annotation", "training", "steering", "click", "search", "demo", "memory", "planted")
MARKER = "BENCH-RESULT "


def configure(parser) -> None:
    parser.add_argument("which", nargs="*", default=["all"], metavar="NAME",
                        help="all, or any of: " + ", ".join(NAMES))
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="runs per benchmark (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not for quoting)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", metavar="FILE.json", help="where to write the results (default: benchmarks/results/)")
    parser.add_argument("--timeout", type=float, default=7200, metavar="S", help="limit per run in seconds")


def run(args) -> int:
    from core.base.errors import InputError
    from core.base.paths import REPO_ROOT

    names = list(NAMES) if "all" in args.which else list(dict.fromkeys(args.which))
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise InputError(f"no benchmark named {', '.join(map(repr, unknown))}", fix=f"choose from: all, {', '.join(NAMES)}")
    if args.repeat < 1:
        raise InputError(f"--repeat must be at least 1 (got {args.repeat})")
    suite = REPO_ROOT / "benchmarks" / "suite.py"
    if not suite.is_file():
        raise InputError(f"the benchmark suite {suite} is missing", fix="run `featurelens bench` from a source checkout")
    out = Path(args.out) if args.out else REPO_ROOT / "benchmarks" / "results" / (
        "suite-quick.json" if args.quick else "suite.json")
    result = run_suite(names, suite=suite, repeat=args.repeat, quick=args.quick, seed=args.seed,
                       timeout=args.timeout, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(markdown(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text()) if out.is_file() else {}
    if old.get("quick") == result["quick"]:  # keep rows of benchmarks not run this time
        result["benchmarks"] = {**{k: v for k, v in old.get("benchmarks", {}).items() if k not in names},
                                **result["benchmarks"]}
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=float) + "\n")
    os.replace(tmp, out)
    print(f"\nresults: {out}", file=sys.stderr)
    return 1 if any(b.get("status") == "failed" for b in result["benchmarks"].values()) else 0


# ----------------------------------------------------------------------------- running
def run_suite(names: list[str], *, suite: Path, repeat: int, quick: bool, seed: int, timeout: float,
              log=lambda msg: None) -> dict:
    """Run each benchmark ``repeat`` times; medians per metric, the ratio's median, the largest peak memory."""
    benches = {}
    for name in names:
        runs = []
        for i in range(repeat):
            log(f"{name}: run {i + 1}/{repeat} …")
            r = run_child_measured(suite, name, quick=quick, seed=seed, timeout=timeout)
            if not r.get("available", True):
                log(f"{name}: not available ({r.get('reason')})")
                break
            if r.get("error"):
                log(f"{name}: failed ({r['error']})")
                runs.append(r)
                break
            runs.append(r)
        benches[name] = summarise(runs)
        log(f"{name}: {one_line(name, benches[name])}")
    return {"machine": machine(), "when": _dt.datetime.now().isoformat(timespec="seconds"), "quick": quick,
            "repeat": repeat, "seed": seed, "benchmarks": benches}


def run_child_measured(suite: Path, name: str, *, quick: bool, seed: int, timeout: float) -> dict:
    """One repetition in a fresh process: the suite's JSON plus the process's peak RSS (``os.wait4``)."""
    cmd = [sys.executable, str(suite), "run", name, "--seed", str(seed)] + (["--quick"] if quick else [])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=suite.parents[1], env=env, stdout=out, stderr=err, text=True)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(MARKER)), None)
    if proc.returncode != 0 or line is None:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        why = f"killed after {timeout:.0f} s" if proc.returncode == -9 else f"exit code {proc.returncode}: {tail}"
        return {"available": True, "error": why}
    res = json.loads(line[len(MARKER):])
    # the child's own VmHWM; wait4's ru_maxrss would also count this process's size at the fork
    res.setdefault("process_peak_rss_mb", usage.ru_maxrss / 1024)
    return res


def _median(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def summarise(runs: list[dict]) -> dict:
    if not runs:
        return {"status": "not available"}
    if runs[-1].get("error"):
        return {"status": "failed", "error": runs[-1]["error"], "runs": runs}
    keys = {k for r in runs for k in r.get("metrics", {})}
    first = runs[0]
    rss = [r.get("rss_mb") or r.get("process_peak_rss_mb") for r in runs]
    return {
        "status": "ok", "n_runs": len(runs), "size": first.get("size"), "show": first.get("show", []),
        "peer": first.get("peer"), "ratio": first.get("ratio"),
        "median": {k: _median([r["metrics"].get(k) for r in runs]) for k in sorted(keys)},
        "peak_rss_mb": max(v for v in rss if v is not None) if any(v is not None for v in rss) else None,
        "wall_s": _median([r.get("wall_s") for r in runs]),
        "runs": [{k: r.get(k) for k in ("metrics", "rss_mb", "process_peak_rss_mb", "wall_s", "rows") if k in r}
                 for r in runs],
    }


def machine() -> dict:
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    except (ValueError, OSError):
        mem_gb = None
    import numpy
    import torch

    return {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "memory_gib": round(mem_gb, 1) if mem_gb else None,
            "python": platform.python_version(), "numpy": numpy.__version__, "torch": torch.__version__,
            "cuda": bool(torch.cuda.is_available()), "load_avg": [round(x, 2) for x in os.getloadavg()]}


# ----------------------------------------------------------------------------- formatting
def fmt(value, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s" and value >= 3 * 3600:
        return f"{value / 3600:,.0f} h"
    if unit == "s" and value >= 300:
        return f"{value / 60:,.1f} min"
    if unit == "fraction":
        return f"{value:.2f}"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}" if unit and unit != "cells" else (f"{text} cells" if unit == "cells" else text)


def _result_text(b: dict) -> str:
    m = b["median"]
    return "; ".join(f"{label} {fmt(m.get(key), unit)}" for key, label, unit in b["show"])


def _peer_text(b: dict) -> str:
    if not b.get("peer"):
        return "—"
    key, label, unit = b["peer"]
    return f"{label}: {fmt(b['median'].get(key), unit)}"


def _ratio_text(b: dict) -> str:
    r = b["median"].get(b["ratio"]) if b.get("ratio") else None
    return "—" if r is None else f"**{r:,.0f}×**" if r >= 100 else f"**{r:.2f}×**"


def one_line(name: str, b: dict) -> str:
    if b["status"] != "ok":
        return b["status"] + (f": {b['error']}" if b.get("error") else "")
    ratio = "" if _ratio_text(b) == "—" else f"; ratio {_ratio_text(b).strip('*')}"
    rss = f"; peak RSS {b['peak_rss_mb'] / 1024:.2f} GB" if b.get("peak_rss_mb") else ""
    return f"median of {b['n_runs']}: {_result_text(b)}" + (
        f"; {_peer_text(b)}" if b.get("peer") else "") + ratio + rss


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Machine: {m['cpus']} CPU cores, {m['memory_gib']} GiB, {m['cpu']}, {m['platform']}; torch {m['torch']}"
        f"{', CUDA' if m['cuda'] else ', no GPU'}; load average {m['load_avg'][0]} at the end. "
        f"{'QUICK sizes (smoke run). ' if result['quick'] else ''}Medians over the runs counted in the "
        "last column, each run in a fresh process; the peer is measured in the same runs.",
        "",
        "| benchmark | size | ours (median) | peer, same runs | ratio | peak RSS | runs |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for name, b in result["benchmarks"].items():
        if b["status"] != "ok":
            lines.append(f"| {name} | — | {b['status']}{': ' + b['error'] if b.get('error') else ''} | — | — | — | 0 |")
            continue
        rss = f"{b['peak_rss_mb'] / 1024:.2f} GB" if b.get("peak_rss_mb") else "—"
        lines.append(f"| {name} | {b['size']} | {_result_text(b)} | {_peer_text(b)} | {_ratio_text(b)} | {rss} | "
                     f"{b['n_runs']} |")
    return "\n".join(lines)
