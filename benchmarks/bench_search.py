"""Keyword search latency over a paper-sized annotation table (target: ≤ 50 ms over 10,000 features).

    python benchmarks/bench_search.py [--features 10000] [--terms-per-feature 95] [--repeats 21]

Annotation rows are synthetic but use real GO BP term ids and names (the shipped file), so the
term-name haystack is the real one. Prints the median and 90th percentile per query.
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

QUERIES = ["erythrocyte", "interferon", "T cell", "oxygen", "GO:0006260", "heme", "antigen", "cell cycle",
           "zzz-no-match"]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--features", type=int, default=10_000)
    p.add_argument("--terms-per-feature", type=int, default=95)
    p.add_argument("--repeats", type=int, default=21)
    args = p.parse_args(argv)
    from core.concepts import load_go
    from core.annotate.search import ConceptIndex

    bp = load_go(["BP"]).filter_size(min_size=10, max_size=500)
    rng = np.random.default_rng(0)
    n = args.features * args.terms_per_feature
    t = rng.integers(0, bp.n_terms, n)
    ann = pd.DataFrame({"feature": np.repeat(np.arange(args.features), args.terms_per_feature),
                        "term_id": bp.terms["id"].to_numpy()[t], "term_name": bp.terms["name"].to_numpy()[t],
                        "binom_p": rng.random(n) * 0.01, "mwu_p_up": rng.random(n)})
    t0 = time.perf_counter()
    index = ConceptIndex(ann)
    build = time.perf_counter() - t0
    results = {}
    for q in QUERIES:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = index.search(q)
            times.append(time.perf_counter() - t0)
        results[q] = {"median_ms": 1e3 * statistics.median(times),
                      "p90_ms": 1e3 * float(np.percentile(times, 90)), "features_found": int(len(res))}
    out = {"features": args.features, "rows": n, "unique_terms": int(ann["term_id"].nunique()),
           "index_build_s": build, "queries": results,
           "median_of_medians_ms": statistics.median(r["median_ms"] for r in results.values())}
    print(f"{n:,} annotation rows, {out['unique_terms']:,} unique GO BP terms, index built in {build:.2f} s")
    print(f"{'query':<16}{'median ms':>10}{'p90 ms':>9}{'found':>7}")
    for q, r in results.items():
        print(f"{q:<16}{r['median_ms']:>10.1f}{r['p90_ms']:>9.1f}{r['features_found']:>7}")
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "search.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
