"""How long the Simulation lab's "Generate + run recovery" takes (core.views.simulation.run_simlab), by step.

Each repeat runs into a fresh temporary folder (a stored run would be reused). Writes
benchmarks/results/simlab.json.

    python benchmarks/bench_simlab.py [--repeats 3] [--cells 2000,600]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cells", default="2000,600")
    args = ap.parse_args()
    from core.views.simulation import SimLabConfig, run_simlab

    import torch

    results = []
    for n in [int(c) for c in args.cells.split(",")]:
        runs = []
        for i in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                run = run_simlab(SimLabConfig(n_cells=n), root=tmp)
                wall = time.perf_counter() - t0
            runs.append({"wall_s": wall, **{f"{k}_s": v for k, v in run.elapsed_s.items()},
                         "sae_best_r": {str(v): round(float(x), 3) for v, x in run.best_r["sae"].items()}})
            print(json.dumps({"cells": n, "repeat": i, **runs[-1]}))
        keys = [k for k in runs[0] if k.endswith("_s")]
        results.append({"cells": n, "genes": 10, "sae_epochs": 30, "ae_epochs": 40, "repeats": args.repeats,
                        **{f"median_{k}": round(statistics.median(r[k] for r in runs), 2) for k in keys},
                        "sae_best_r_first": runs[0]["sae_best_r"]})
    out = ROOT / "benchmarks" / "results" / "simlab.json"
    out.write_text(json.dumps({"benchmark": "simlab", "torch_threads": torch.get_num_threads(),
                               "cpus": os.cpu_count(), "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
