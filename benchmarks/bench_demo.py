"""The default demo: dataset generation, the first `featurelens demo` build, every later start,
and the planted-concept score (targets: generation ≤ 30 s, first build ≲ 90 s, later starts a
few seconds, score ≥ 0.8).

    python benchmarks/bench_demo.py [--repeats 3] [--seed 0]

Generation is timed in-process (median of ``--repeats``). The build runs
``featurelens demo --build-only`` in a fresh process on an empty folder (once: it takes the
longest), with the per-stage times from its progress; the cached start is the same command again
(median of ``--repeats``). Writes benchmarks/results/demo.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def time_generation(repeats: int, seed: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (process time) seconds of ``generate_demo_dataset`` per repeat."""
    from core.demo.data import generate_demo_dataset

    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        generate_demo_dataset(seed=seed)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def time_build(out: Path, seed: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one ``featurelens demo --build-only`` process.

    On a shared machine the CPU time is the better estimate of the wall time on an idle one:
    the model fit and the SAE run on one thread, annotation on numba threads."""
    import resource

    time_build.started = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "core.cli.main", "demo", "--build-only", "--out", str(out),
                           "--seed", str(seed)], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stage_times(out: Path, started: float, wall: float) -> dict:
    """Seconds per stage of the first build, from analysis.json's stamps (1 s resolution): process
    start → analysis created (imports, simulation, model fit) → sae → annotate (predicted
    expression + annotation + concept map) → planted; and the model's own fit time."""
    import datetime as dt

    from core.store.analysis import Analysis

    a = Analysis.open(out)
    model = json.loads((out / "data" / "simulated-haematopoiesis.featurelens-model" / "model.json").read_text())

    def ts(s):
        return dt.datetime.fromisoformat(s).timestamp()

    steps = a.config["steps"]
    marks = [("data_and_model", ts(a.config["created"])), ("sae", ts(steps["sae"]["completed"])),
             ("annotate", ts(steps["annotate"]["completed"])), ("planted", ts(steps["planted"]["completed"]))]
    out_s, prev = {}, started
    for name, t in marks:
        out_s[name] = round(t - prev, 1)
        prev = t
    out_s["exit"] = round(started + wall - prev, 1)
    return {"stage_seconds": out_s, "model_fit_seconds": model["metrics"]["fit_seconds"],
            "model_epochs": model["metrics"]["epochs_run"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    gen, gen_cpu = time_generation(args.repeats, args.seed)
    print(f"generation: median {statistics.median(gen):.1f} s wall, {statistics.median(gen_cpu):.1f} s CPU")
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        out = Path(tmp) / "demo"
        first, first_cpu = time_build(out, args.seed)
        started = time_build.started
        print(f"first build: {first:.1f} s wall, {first_cpu:.1f} s CPU")
        runs = [time_build(out, args.seed) for _ in range(args.repeats)]
        cached, cached_cpu = [w for w, _ in runs], [c for _, c in runs]
        print(f"cached start: median {statistics.median(cached):.1f} s wall, {statistics.median(cached_cpu):.1f} s CPU")
        from core.store.analysis import Analysis

        a = Analysis.open(out)
        planted = a.read_json("planted_score.json")
        metrics = a.read_json("metrics.json")["summary"]
        ann = a.read_json("annotation.json")
        stages = stage_times(out, started, first)
    result = {
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": load_before,
                    "load_average_at_end": os.getloadavg()},
        "generation_seconds": gen, "generation_cpu_seconds": gen_cpu, "generation_median_s": statistics.median(gen),
        "first_build_seconds": first, "first_build_cpu_seconds": first_cpu, "cached_start_seconds": cached,
        "cached_start_cpu_seconds": cached_cpu, "cached_start_median_s": statistics.median(cached), **stages,
        "sae": {k: metrics[k] for k in ("hidden", "live", "dead", "l0", "fvu", "local", "global") if k in metrics},
        "annotation": {k: ann[k] for k in ("features_annotated", "unique_terms", "terms_per_feature_mean",
                                            "terms_per_feature_min", "terms_per_feature_max") if k in ann},
        "planted": {k: planted[k] for k in ("score", "score_with_relatives", "n_found", "n_programs", "top")},
        "planted_programs": [{k: r[k] for k in ("program", "term_id", "term_name", "scope", "cell_types",
                                                 "best_feature", "correlation", "rank", "found")}
                             for r in planted["programs"]],
    }
    print(f"planted-concept score: {planted['n_found']}/{planted['n_programs']} = {planted['score']:.2f}")
    path = ROOT / "benchmarks" / "results" / "demo.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
