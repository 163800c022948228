"""The benchmark suite behind ``featurelens bench``: one function per benchmark, one repetition per process.

    python benchmarks/suite.py run NAME [--quick] [--seed S]     # one repetition, prints a JSON line

``featurelens bench`` (core/cli/bench.py) runs each repetition in a fresh process, takes
its peak memory from the operating system (``os.wait4``), and reports medians. Each function
here returns::

    {"size": "…", "metrics": {key: number}, "show": [[key, label, unit], …],
     "peer": [key, label, unit] | None, "ratio": key | None, "rss_mb": number | None}

``show`` lists the headline metrics; ``peer`` is the same quantity measured in the same run for
the method we compare with (the reference's per-feature annotation, the reference-style SAE
loop, a plain table scan, …); ``ratio`` is the speed-up over it; ``rss_mb`` is the peak
resident memory of our part alone where the peer ran in the same process. A benchmark whose
code is not in this checkout raises :class:`Unavailable` and is reported as "not available".
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_sae_training.py

MARKER = "BENCH-RESULT "
PAPER = {"cells": 56_714, "genes": 13_431, "features": 10_000}


class Unavailable(Exception):
    """The benchmark's code is not in this checkout (yet)."""


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise Unavailable(f"{exc.name or name} is not in this checkout") from exc


def peak_rss_mb() -> float:
    from core.base.resources import peak_rss_mb as own_peak

    return own_peak()  # VmHWM: this process's own peak (ru_maxrss would include the parent's RSS at fork)


def children_peak_rss_mb() -> float:
    """Largest peak of the finished children: an upper bound, since each child's ru_maxrss also
    counts this process's resident size when it was forked."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _fmt_size(**dims) -> str:
    return " × ".join(f"{v:,} {k}" for k, v in dims.items())


# ----------------------------------------------------------------------------- annotation
def annotation_data(cells: int, genes: int, features: int) -> Path:
    """Synthetic paper-like data (bench_annotation.generate), made once per size in a separate process."""
    name = "featurelens_bench_annotation"
    if (cells, genes, features) != (PAPER["cells"], PAPER["genes"], PAPER["features"]):
        name += f"_{cells}x{genes}x{features}"
    folder = Path(os.environ.get("FEATURELENS_BENCH_DATA", tempfile.gettempdir())) / name
    meta = folder / "meta.json"
    if meta.is_file():
        m = json.loads(meta.read_text())
        if (m.get("n_cells"), m.get("n_genes"), m.get("n_features")) == (cells, genes, features):
            return folder
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_annotation.py"), "--step", "generate",
                    "--data-dir", str(folder), "--cells", str(cells), "--genes", str(genes),
                    "--features", str(features)], check=True, stdout=subprocess.DEVNULL)
    return folder


def bench_annotation(*, quick: bool, seed: int) -> dict:
    """Annotate every feature (groups, batched DE, enrichment on GO BP) vs the reference's per-feature loop."""
    ba = _module("bench_annotation")
    size = {"cells": 3_000, "genes": 2_000, "features": 200} if quick else PAPER
    folder = annotation_data(size["cells"], size["genes"], size["features"])
    fast = ba.run_fast(folder, block=100 if quick else 1000, seed=seed)
    rss = peak_rss_mb()
    ref = ba.run_reference(folder, n_features=1 if quick else 2, n_terms_timed=50 if quick else 200, seed=seed)
    per_ref_s = ref["per_feature_s"]
    return {
        "size": _fmt_size(**size) + f", {fast['n_terms']:,} GO BP terms",
        "metrics": {"total_s": fast["total_s"], "per_feature_ms": fast["per_feature_ms"], "cpu_s": fast["cpu_s"],
                    "reference_per_feature_s": per_ref_s,
                    "reference_all_h": ref["all_features_h_extrapolated"],
                    "speedup": per_ref_s * 1000 / fast["per_feature_ms"], "features_tested": fast["n_tested"],
                    "expression_gb": fast["expression_file_gb"]},
        "show": [["total_s", "all features", "s"], ["per_feature_ms", "per feature", "ms"]],
        "peer": ["reference_per_feature_s", "reference method, per feature (extrapolated to all terms)", "s"],
        "ratio": "speedup",
        "rss_mb": rss,
    }


# ----------------------------------------------------------------------------- SAE training
def bench_training(*, quick: bool, seed: int) -> dict:
    """The default SAE trainer at paper scale (20 → 10,000 latents) vs a reference-style loop, a
    published library's trainer (overcomplete, when installed) and the machine's matmul peak
    (benchmarks/bench_training_speed.py)."""
    bs = _module("bench_training_speed")
    penalty = os.environ.get("FEATURELENS_BENCH_LIBRARY_L1")
    r = bs.one_run(quick=quick, seed=seed, threads=int(os.environ.get("FEATURELENS_BENCH_THREADS", "2")),
                   penalty=float(penalty) if penalty else None)
    sz, lib = r["size"], r["library"]
    note = "" if lib.get("available") else f"; library peer skipped: {lib['reason']}"
    return {
        "size": f"{sz['n_cells']:,} cells × {bs.D} dims → {sz['hidden']:,} latents, batch 128{note}",
        "metrics": {**bs.suite_metrics(r), "epoch_s": bs.N_CELLS * 0.9 / r["throughput"]["128"]["ours_samples_per_s"]},
        "show": [["samples_per_s", "default trainer", "samples/s"], ["epoch_s", "one paper-scale epoch", "s"],
                 ["peak_fraction", "of fp32 matmul peak", "fraction"]],
        "peer": ["reference_samples_per_s", "reference-style loop (DataLoader, nn.Linear, autograd, Adam)", "samples/s"],
        "ratio": "speedup",
        "rss_mb": None,
    }


# ----------------------------------------------------------------------------- steering
def bench_steering(*, quick: bool, seed: int) -> dict:  # noqa: ARG001
    """Steer 1,000 cells of a 13,431-gene model, DE and GO enrichment included (benchmarks/bench_steering.py)."""
    bs = _module("bench_steering")
    if not all(hasattr(bs, f) for f in ("build", "measure")):
        raise Unavailable("benchmarks/bench_steering.py has no build()/measure()")
    an_dir = bs.build(Path(tempfile.gettempdir()) / "featurelens-bench-steering")  # cached after the first run
    r = bs.measure(an_dir, 2 if quick else 5)  # this process is fresh: the first call is a cold start
    return {
        "size": f"{r['cells']:,} cells × {r['genes']:,} genes, {r['go_terms_tested']:,} GO BP terms",
        "metrics": {"warm_s": r["warm_median_s"], "cold_s": r["cold_first_call_s"],
                    "nb_glm_s": r["nb_glm_median_s"], "save_s": r["save_run_s"]},
        "show": [["warm_s", "steer + DE + enrichment", "s"], ["cold_s", "first call (loads everything)", "s"]],
        "peer": None, "ratio": None, "rss_mb": r.get("peak_rss_mb"),
    }


# ----------------------------------------------------------------------------- explorer click and search
def bench_click(*, quick: bool, seed: int) -> dict:  # noqa: ARG001
    """Server time of a feature click (recolour 57,000 cells) and of a search, as the Explorer's callbacks run them."""
    bc = _module("bench_click")
    argv = ["--cells", "5000", "--features", "1000", "--clicks", "11", "--repeats", "3"] if quick else []
    with _results_elsewhere(bc):
        out = bc.main(argv)
    c = out["click"]
    return {
        "size": _fmt_size(cells=out["cells"], features=out["features"]),
        "metrics": {"recolour_ms": c["recolour_ms"]["median"], "card_ms": c["card_ms"]["median"],
                    "search_ms": out["search"]["median_of_medians_ms"], "first_load_s": out["first_load_s"]},
        "show": [["recolour_ms", "click: recolour", "ms"], ["card_ms", "feature card", "ms"],
                 ["search_ms", "search + map rings", "ms"]],
        "peer": None, "ratio": None, "rss_mb": None,
    }


QUERIES = ["erythrocyte", "interferon", "T cell", "oxygen", "GO:0006260", "heme", "antigen", "cell cycle",
           "zzz-no-match"]


def bench_search(*, quick: bool, seed: int) -> dict:
    """GO keyword search over every feature's enriched terms vs a plain pandas scan of the same table."""
    import numpy as np
    import pandas as pd

    from core.concepts import load_go
    from core.annotate.search import ConceptIndex

    features = 1_000 if quick else 10_000
    per = 95
    bp = load_go(["BP"]).filter_size(min_size=10, max_size=500)
    rng = np.random.default_rng(seed)
    t = rng.integers(0, bp.n_terms, features * per)
    ann = pd.DataFrame({"feature": np.repeat(np.arange(features), per), "term_id": bp.terms["id"].to_numpy()[t],
                        "term_name": bp.terms["name"].to_numpy()[t], "binom_p": rng.random(t.size) * 0.01,
                        "mwu_p_up": rng.random(t.size)})
    t0 = time.perf_counter()
    index = ConceptIndex(ann)
    build_s = time.perf_counter() - t0
    rss = peak_rss_mb()

    def naive(q: str):  # what a notebook would do: scan every row's name and id
        hit = ann["term_name"].str.contains(q, case=False, regex=False) | (ann["term_id"] == q)
        return ann.loc[hit].groupby("feature")["binom_p"].min().sort_values()

    ours, peer = [], []
    for q in QUERIES:
        for _ in range(3 if quick else 7):
            t0 = time.perf_counter()
            index.search(q)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            naive(q)
            peer.append(time.perf_counter() - t0)
    o, p = 1e3 * statistics.median(ours), 1e3 * statistics.median(peer)
    return {
        "size": f"{features:,} features × {per} terms ({t.size:,} rows), {len(QUERIES)} queries",
        "metrics": {"query_ms": o, "scan_ms": p, "speedup": p / o, "index_build_s": build_s},
        "show": [["query_ms", "per query", "ms"], ["index_build_s", "index built", "s"]],
        "peer": ["scan_ms", "pandas scan of the table", "ms"], "ratio": "speedup", "rss_mb": rss,
    }


# ----------------------------------------------------------------------------- demo start
def bench_demo(*, quick: bool, seed: int) -> dict:  # noqa: ARG001
    """``featurelens demo --build-only`` into a fresh folder (cold), then again (warm: every step cached)."""
    with tempfile.TemporaryDirectory(prefix="featurelens-bench-demo-") as tmp:
        out = Path(tmp) / "demo"
        env = {**os.environ, "FEATURELENS_ANALYSES_DIR": tmp, "FEATURELENS_CACHE_DIR": str(Path(tmp) / "cache")}
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "core.cli.main", "demo", "--build-only", "--out", str(out),
                            "--seed", str(seed)], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        cfg = json.loads((out / "analysis.json").read_text())
        ds = cfg.get("dataset", {})
    return {
        "size": _fmt_size(cells=int(ds.get("n_cells") or 0), genes=int(ds.get("n_genes") or 0)),
        "metrics": {"cold_s": times[0], "warm_s": times[1], "speedup": times[0] / times[1]},
        "show": [["cold_s", "first build", "s"], ["warm_s", "cached rerun", "s"]],
        "peer": None, "ratio": "speedup", "rss_mb": children_peak_rss_mb(),
    }


# ----------------------------------------------------------------------------- memory
def bench_memory(*, quick: bool, seed: int) -> dict:
    """Peak memory of annotation (our engine alone) as the data grow; a line fitted through the sizes."""
    import numpy as np

    sizes = ([(2_000, 1_000, 100), (4_000, 2_000, 100)] if quick else
             [(14_000, 13_431, 2_500), (28_000, 13_431, 5_000), (PAPER["cells"], PAPER["genes"], PAPER["features"])])
    rows = []
    for cells, genes, features in sizes:
        folder = annotation_data(cells, genes, features)
        code = ("import json, sys; sys.path[:0] = [%r, %r]; import bench_annotation as b, suite; "
                "r = b.run_fast(__import__('pathlib').Path(%r), block=%d, seed=%d); "
                "print(json.dumps({'total_s': r['total_s'], 'rss_mb': suite.peak_rss_mb()}))"
                % (str(ROOT), str(ROOT / "benchmarks"), str(folder), 1000, seed))
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise RuntimeError(f"annotation at {cells}×{genes} failed")
        r = json.loads(out.strip().splitlines()[-1])
        rows.append({"cells": cells, "genes": genes, "features": features, "entries_m": cells * genes / 1e6,
                     "expression_gb": cells * genes * 4 / 1e9, "rss_gb": r["rss_mb"] / 1024,
                     "total_s": r["total_s"]})
    x = np.array([r["entries_m"] for r in rows])
    y = np.array([r["rss_gb"] for r in rows])
    slope, icpt = np.polyfit(x, y, 1) if len(rows) > 1 else (y[0] / x[0], 0.0)
    total_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    budget = 0.75 * total_gb
    limit_m = (budget - icpt) / slope if slope > 0 else float("inf")
    metrics = {"rss_gb_largest": rows[-1]["rss_gb"], "gb_per_million_entries": slope, "rss_gb_intercept": icpt,
               "machine_gb": total_gb, "limit_million_entries_75pct": limit_m,
               "limit_cells_at_13431_genes": limit_m * 1e6 / 13_431}
    for r in rows:
        metrics[f"rss_gb_{r['cells']}x{r['genes']}"] = r["rss_gb"]
    largest = rows[-1]
    return {
        "size": ", ".join(f"{r['cells']:,}×{r['genes']:,}" for r in rows) + " cells × genes",
        "metrics": metrics, "rows": rows,
        "show": [["rss_gb_largest", f"annotation peak RSS at {largest['cells']:,}×{largest['genes']:,}", "GB"],
                 ["gb_per_million_entries", "slope", "GB per 10⁶ cells×genes"],
                 ["limit_cells_at_13431_genes", f"cells that fit in 75 % of {total_gb:.0f} GiB (13,431 genes)",
                  "cells"]],
        "peer": None, "ratio": None, "rss_mb": largest["rss_gb"] * 1024,
    }


# ----------------------------------------------------------------------------- planted concepts
def bench_planted(*, quick: bool, seed: int) -> dict:  # noqa: ARG001
    """Planted-concept score of the simulated demo (core.demo.build.run_planted_benchmark)."""
    build = _module("core.demo.build")
    fn = getattr(build, "run_planted_benchmark", None)
    if fn is None:
        raise Unavailable("core.demo.build.run_planted_benchmark is not available")
    t0 = time.perf_counter()
    out = fn(seed=seed)
    wall = time.perf_counter() - t0
    score = next((out[k] for k in ("score", "fraction", "planted_score") if isinstance(out.get(k), (int, float))),
                 None)
    metrics = {"wall_s": wall, **{k: v for k, v in out.items() if isinstance(v, (int, float))
                                  and not isinstance(v, bool)}}
    show = [["wall_s", "build + score", "s"]]
    if score is not None:
        metrics["score"] = float(score)
        show.insert(0, ["score", "planted GO programs recovered", "fraction"])
    return {"size": str(out.get("size") or "simulated demo"), "metrics": metrics, "show": show,
            "peer": None, "ratio": None, "rss_mb": None}


# ----------------------------------------------------------------------------- helpers
class _results_elsewhere:
    """Point a benchmark script's ``ROOT`` (where it writes benchmarks/results/) at a temporary folder,
    so suite runs (often ``--quick``) never overwrite the full-size results it keeps."""

    def __init__(self, module):
        self.module = module

    def __enter__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="featurelens-bench-")
        self.old = getattr(self.module, "ROOT", None)
        (Path(self.tmp.name) / "benchmarks" / "results").mkdir(parents=True)
        self.module.ROOT = Path(self.tmp.name)
        self.old_tempdir = tempfile.tempdir
        tempfile.tempdir = self.tmp.name  # scratch folders the script makes are removed with it
        return self

    def __exit__(self, *exc):
        self.module.ROOT = self.old
        tempfile.tempdir = self.old_tempdir
        self.tmp.cleanup()


BENCHMARKS = {
    "annotation": bench_annotation,
    "training": bench_training,
    "steering": bench_steering,
    "click": bench_click,
    "search": bench_search,
    "demo": bench_demo,
    "memory": bench_memory,
    "planted": bench_planted,
}


def run_one(name: str, *, quick: bool, seed: int) -> dict:
    """One repetition of one benchmark in this process: its result, or ``{"available": False, "reason": …}``."""
    try:
        t0 = time.perf_counter()
        res = BENCHMARKS[name](quick=quick, seed=seed)
        res["wall_s"] = time.perf_counter() - t0
        res["available"] = True
        return res
    except Unavailable as exc:
        return {"available": False, "reason": str(exc)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one repetition of one benchmark; prints a JSON line")
    r.add_argument("name", choices=sorted(BENCHMARKS))
    r.add_argument("--quick", action="store_true")
    r.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    res = run_one(args.name, quick=args.quick, seed=args.seed)
    res["process_peak_rss_mb"] = peak_rss_mb()  # this process's own peak, read before it exits
    print(MARKER + json.dumps(res, default=float), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
