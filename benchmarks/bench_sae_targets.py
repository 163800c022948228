"""Can issue 14's four SAE targets hold together? The planted solution scored as an SAE.

For each of the 12 embeddings of ``bench_sae_defaults`` the ground truth is itself a sparse code:
one latent per planted variable (atom, program, cell type), its value the planted activity, and a
decoder that reconstructs the embedding from it. Scored as the default SAE would be (50 × d
latents, the latents beyond the planted ones never firing):

- L0 = planted variables non-zero per cell (mean), as a share of the latents;
- dead = latents that never fire: all but the planted variables;
- FVU = what the best linear decoder from the planted code leaves (least squares, centred);
- best single-latent |r| = 1 by construction.

A code meets L0 ≤ 5 % and dead ≤ 20 % with ``n`` latents only when ``n ≥ 20 · L0`` and
``n ≤ 1.25 · (latents that fire)``. For the planted code that needs ``planted ≥ 16 · L0`` at
*some* dictionary size; the table gives both bounds.

Run: ``python benchmarks/bench_sae_targets.py [--cache DIR]`` → benchmarks/results/sae_targets.json
and a markdown table on stdout (``--cache``: as ``bench_sae_defaults``; the fitted-model embeddings
take minutes to make).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results" / "sae_targets.json"


def planted_as_sae(x: np.ndarray, codes: np.ndarray, *, hidden: int, targets: dict) -> dict:
    """The planted code ``codes`` (cells, planted) of embedding ``x`` (cells, d) scored as an SAE
    of ``hidden`` latents, with the dictionary sizes at which it would meet the L0 and dead targets."""
    codes = codes[:, codes.std(0) > 0]
    fires = np.abs(codes) > 0
    planted, l0 = int(fires.any(0).sum()), float(fires.sum(1).mean())
    xc, tc = x - x.mean(0), codes - codes.mean(0)
    coef, *_ = np.linalg.lstsq(tc, xc, rcond=None)
    fvu = float(((xc - tc @ coef) ** 2).sum() / (xc ** 2).sum())
    fewest = int(np.ceil(l0 / targets["l0_fraction"]))               # L0 ≤ 5 % needs at least this many latents
    most = int(np.floor(planted / (1 - targets["dead_fraction"])))  # dead ≤ 20 % allows at most this many
    return {"d": int(x.shape[1]), "cells": int(x.shape[0]), "hidden": hidden, "planted": planted, "l0": l0,
            "l0_fraction": l0 / hidden, "dead_fraction": 1 - planted / hidden, "fvu": fvu, "median_best_r": 1.0,
            "fewest_latents_for_l0": fewest, "most_latents_for_dead": most, "both_possible": fewest <= most}


def table(rows: list[dict]) -> str:
    lines = ["| embedding | d | latents (default) | planted variables | L0 per cell | L0, % of latents | dead % "
             "| FVU (linear) | L0 target needs ≥ | dead target allows ≤ | both at some size |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['embedding']} | {r['d']} | {r['hidden']:,} | {r['planted']} | {r['l0']:.1f} "
                     f"| {100 * r['l0_fraction']:.2f} | {100 * r['dead_fraction']:.0f} | {r['fvu']:.3f} "
                     f"| {r['fewest_latents_for_l0']} | {r['most_latents_for_dead']} "
                     f"| {'yes' if r['both_possible'] else 'no'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, metavar="DIR", help="as bench_sae_defaults --cache")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from bench_sae_defaults import TARGETS, simulator_cases, synthetic_cases

    from core.sae import preset

    sae, _ = preset("default")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = list(synthetic_cases(False)) + list(simulator_cases(Path(tmp), False, True, cache=args.cache))
        for name, make in cases:
            x, truth, _ = make()
            x = np.asarray(x, np.float64)
            rows.append({"embedding": name, **planted_as_sae(x, np.asarray(truth, np.float64),
                                                             hidden=sae.hidden_size(x.shape[1]), targets=TARGETS)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    part = args.out.with_suffix(".tmp")
    part.write_text(json.dumps({"targets": TARGETS, "rows": rows}, indent=1))
    part.replace(args.out)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
