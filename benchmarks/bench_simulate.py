"""Benchmark of the simulation lab: generator speed and the small recovery experiment.

Steps (medians over ``--repeat`` runs, one CPU thread for torch unless ``--threads``):

1. ``small_generate``: ``simulate(SmallSimConfig())`` (5,000 cells × 10 genes).
2. ``small_recovery``: the whole small recovery experiment (reference autoencoder on the
   counts + Vanilla SAE + PCA/ICA/SVD baselines), with the recovered r of X″ and Y per run —
   the app's simulation page runs this interactively (target ≲ 30 s on one core).
3. ``large_generate``: ``simulate(LargeSimConfig())`` at its default size (10,000 cells ×
   20,000 genes), with its count realism (zeros, median library size, genes per cell).

Run: ``python benchmarks/bench_simulate.py`` (writes benchmarks/results/simulate.json);
``--quick`` uses one repetition and 2,000 large cells.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

RESULTS = ROOT / "benchmarks" / "results" / "simulate.json"
XPP = "X''"


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from core.simulate import LargeSimConfig, SmallSimConfig, data_summary, simulate
    from core.simulate.experiments import run_recovery

    repeat = 1 if args.quick else args.repeat
    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "load_avg": [round(x, 2) for x in os.getloadavg()],
                                 "torch": torch.__version__, "threads": args.threads},
                     "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "repeat": repeat, "steps": {}}

    times = [_timed(lambda s=s: simulate(SmallSimConfig(), seed=s))[0] for s in range(repeat)]
    results["steps"]["small_generate"] = {"size": "5,000 cells × 10 genes", "median_s": statistics.median(times),
                                          "runs_s": times}

    runs, rs = [], []
    for s in range(repeat):
        adata = simulate(SmallSimConfig(), seed=s)
        t, rec = _timed(lambda: run_recovery(adata, seed=s))
        sae = rec.means().loc["sae"]
        runs.append(t)
        rs.append({"seed": s, XPP: round(float(sae[XPP]), 4), "Y": round(float(sae["Y"]), 4),
                   "X": round(float(sae["X"]), 4)})
        print(f"small recovery seed {s}: {t:.1f} s, r(X'') {rs[-1][XPP]:.3f}", flush=True)
    results["steps"]["small_recovery"] = {"size": "5,000 cells × 10 genes; AE + SAE (40 latents) + 4 baselines",
                                          "median_s": statistics.median(runs), "runs_s": runs, "recovery": rs}

    cells = 2000 if args.quick else 10_000
    t, adata = _timed(lambda: simulate(LargeSimConfig(n_cells=cells), seed=0))
    results["steps"]["large_generate"] = {"size": f"{cells:,} cells × 20,000 genes", "median_s": t, "runs_s": [t],
                                          "data": data_summary(adata)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    for name, step in results["steps"].items():
        print(f"{name:16s} {step['size']:55s} median {step['median_s']:.2f} s")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
