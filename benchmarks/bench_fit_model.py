"""Built-in expression model fit time on demo-sized data (target: well under a minute).

    python benchmarks/bench_fit_model.py [--cells 10000] [--genes 2000] [--threads 1 2]

Synthetic NB counts: 12 cell states through a 10-d program space, per-gene dispersion, realistic
library sizes. Prints wall time, epochs, held-out NB log-likelihood vs the per-gene baseline.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_counts(n_cells: int, n_genes: int, *, seed: int = 0):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    states = rng.normal(size=(12, 10))
    loadings = rng.gamma(0.3, 1.0, size=(10, n_genes))
    cell_state = rng.integers(0, 12, n_cells)
    programs = np.exp(states[cell_state] + 0.3 * rng.normal(size=(n_cells, 10)))
    rate = programs @ loadings
    rate /= rate.sum(1, keepdims=True)
    lib = rng.lognormal(np.log(3000), 0.5, n_cells)
    mu = rate * lib[:, None]
    theta = rng.gamma(2.0, 1.0, n_genes)
    counts = rng.poisson(rng.gamma(theta, mu / theta))
    return sp.csr_matrix(counts.astype(np.float32))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cells", type=int, default=10_000)
    p.add_argument("--genes", type=int, default=2_000)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)
    from core.model import ModelConfig, fit_expression_model

    X = synthetic_counts(args.cells, args.genes)
    runs = []
    for threads in args.threads:
        t0 = time.perf_counter()
        fitted = fit_expression_model(X, config=ModelConfig(seed=0), threads=threads)
        wall = time.perf_counter() - t0
        m = fitted.metrics
        runs.append({"threads": threads, "wall_s": wall, "metrics": {k: v for k, v in m.items()
                                                                     if isinstance(v, (int, float, str))}})
        print(f"{args.cells} × {args.genes}, {threads} thread(s): {wall:.1f} s; "
              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)))
    out = {"cells": args.cells, "genes": args.genes, "runs": runs}
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / f"fit_model_{args.cells}x{args.genes}.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    return out


if __name__ == "__main__":
    main()
