"""How long the Compare page takes to compare two annotated analyses (core.views.compare).

Synthetic annotation tables of ``n`` features × ~``terms_per_feature`` terms each (drawn from
5,000 GO-like terms with a skewed popularity), B a noisy copy of A with shuffled feature numbers.
Times the whole first comparison (matching, pair details, term table; parquet reads excluded)
and a cached repeat. Writes benchmarks/results/compare.json.

    python benchmarks/bench_compare.py [--sizes 128,1000,3000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic(n: int, *, terms_per_feature: int, n_terms: int = 5000, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_terms + 1) ** 0.8
    pop /= pop.sum()
    rows_a, rows_b = [], []
    perm = rng.permutation(n)
    for f in range(n):
        k = max(3, int(rng.poisson(terms_per_feature)))
        terms = rng.choice(n_terms, size=k, replace=False, p=pop)
        keep = terms[rng.random(k) < 0.8]
        extra = rng.choice(n_terms, size=max(1, k // 5), replace=False, p=pop)
        rows_a.append(pd.DataFrame({"feature": f, "t": terms}))
        rows_b.append(pd.DataFrame({"feature": perm[f], "t": np.unique(np.concatenate([keep, extra]))}))

    def table(parts):
        df = pd.concat(parts, ignore_index=True)
        return pd.DataFrame({"feature": df["feature"].to_numpy(), "term_id": [f"GO:{t:07d}" for t in df["t"]],
                             "term_name": [f"term {t}" for t in df["t"]], "namespace": "BP",
                             "binom_p": rng.uniform(1e-12, 1e-2, len(df))})

    return table(rows_a), table(rows_b)


def run_once(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    from core.annotate.compare import compare_annotations
    from core.views.compare import describe_matches, term_counts

    t0 = time.perf_counter()
    cmp = compare_annotations(a, b)
    t1 = time.perf_counter()
    describe_matches(cmp.matches, a, b)
    t2 = time.perf_counter()
    term_counts(a, b)
    t3 = time.perf_counter()
    return {"match_s": t1 - t0, "pairs_s": t2 - t1, "terms_s": t3 - t2, "total_s": t3 - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128,1000,3000")
    ap.add_argument("--terms-per-feature", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    run_once(*synthetic(20, terms_per_feature=10, seed=0))  # warm-up (imports)
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        a, b = synthetic(n, terms_per_feature=args.terms_per_feature, seed=n)
        runs = [run_once(a, b) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        row = {"features": n, "rows_a": len(a), "rows_b": len(b), **{f"median_{k}": round(v, 4) for k, v in med.items()},
               "repeats": args.repeats}
        print(json.dumps(row))
        results.append(row)
    out = ROOT / "benchmarks" / "results" / "compare.json"
    out.write_text(json.dumps({"benchmark": "compare", "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
