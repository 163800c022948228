"""Steering-experiment speed at the paper's gene count: a 5-strength sweep with matched controls.

The analysis of ``benchmarks/bench_steering.py`` (10,000 synthetic cells × 13,431 genes, the
built-in NB model of that size, a 10,000-latent SAE; built once into ``--workdir`` and reused).
Timed (median of ``--repeats``, in a fresh process after one warm-up experiment, as in the app
where the analysis's inputs and GO terms stay in memory): ``run_experiment`` of one feature in
the 1,000 cells of ``type_3`` at off, 0.5×, 1×, 2×, 4× its maximum with ``--controls`` control runs
of each kind (random similar-frequency feature, random direction) at 1× — every run with the
paired log test over 13,431 genes, BH, GO BP enrichment of the up and down genes, centroid
shift, and the per-term verdicts. For scale, one plain ``steer()`` run in the same process.

    python benchmarks/bench_steer_experiment.py [--repeats 3] [--controls 2] [--workdir /tmp/featurelens-bench-steering]

Writes benchmarks/results/steer_experiment.json (other --controls: steer_experiment_controls<N>.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results" / "steer_experiment.json"
STRENGTHS = (0.5, 1.0, 2.0, 4.0)  # + off: 5 strengths


def measure(an_dir: Path, repeats: int, controls: int) -> dict:
    import numpy as np

    from core.base.resources import peak_rss_mb
    from core.steer import SteerConfig, SteerExperiment, run_experiment, steer
    from core.store.analysis import Analysis

    a = Analysis.open(an_dir)
    fired = np.diff(a.read_npz_sparse("activations.npz").tocsc().indptr)
    f = int(np.argsort(fired)[len(fired) // 2])  # the feature bench_steering.py steers (median firing count)
    exp = SteerExperiment(feature=f, cells="cell_type=type_3", strengths=STRENGTHS, controls=controls, seed=0)
    t0 = time.perf_counter()
    run_experiment(a, exp)
    cold = time.perf_counter() - t0
    times, cpu, stages = [], [], {}
    res = None
    for _ in range(repeats):
        marks = []
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_experiment(a, exp, progress=lambda d, t, m: marks.append((time.perf_counter(), m)))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        for (t1, name), (t2, _) in zip(marks, marks[1:]):
            stages.setdefault(name, []).append(t2 - t1)
    single = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        steer(a, features=[f], cells="cell_type=type_3", config=SteerConfig(target="max"))
        single.append(time.perf_counter() - t0)
    med = statistics.median
    v = res.verdicts
    return {"cells": int(res.info["n_cells"]), "genes": len(res.reference_run().genes), "feature": f,
            "strengths": list(exp.strengths), "controls_per_kind": controls, "runs": len(res.runs),
            "go_terms_tested": res.info["concept_terms_tested"], "control_features": res.info["control_features"],
            "n_changed": res.conditions.set_index("run")["n_changed"].to_dict(),
            "n_terms_judged": int(len(v)), "n_specific": int((v["verdict"] == "specific").sum()),
            "cold_first_call_s": cold, "experiment_s": times, "experiment_median_s": med(times),
            "cpu_median_s": med(cpu), "stage_median_s": {k: med(x) for k, x in stages.items()},
            "single_steer_s": single, "single_steer_median_s": med(single),
            "load_average": list(os.getloadavg()), "peak_rss_mb": peak_rss_mb()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--controls", type=int, default=2, help="control runs of each kind (2)")
    p.add_argument("--workdir", default="/tmp/featurelens-bench-steering")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.repeats, args.controls)))
        return {}
    from bench_steering import build

    an_dir = build(Path(args.workdir))
    out = subprocess.run([sys.executable, __file__, "--measure", str(an_dir), "--repeats", str(args.repeats),
                          "--controls", str(args.controls)], check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    r["target_s"] = 10.0
    path = RESULTS if args.controls == 2 else RESULTS.with_name(f"steer_experiment_controls{args.controls}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=2) + "\n")
    print(f"experiment: {r['cells']:,} cells × {r['genes']:,} genes, {len(r['strengths'])} strengths + "
          f"{2 * r['controls_per_kind']} control runs ({r['runs']} runs): median {r['experiment_median_s']:.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in r['experiment_s'])}; target ≤ 10 s); CPU {r['cpu_median_s']:.2f} s")
    print(f"one steer() run: median {r['single_steer_median_s']:.2f} s; cold first experiment "
          f"{r['cold_first_call_s']:.2f} s; load average {r['load_average']}; peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"verdicts: {r['n_specific']} specific of {r['n_terms_judged']} terms; changed genes {r['n_changed']}")
    return r


if __name__ == "__main__":
    main()
