"""Calibration and specificity of annotation, on datasets nobody tuned the defaults on.

For each generated dataset (the planted-program simulator of ``core.demo.data`` with
its own seed, size and effect strength; 17 programs planted from real GO terms):

- **null embedding**: the embedding is pure Gaussian noise (10-d), an SAE is trained with the
  default settings (`featurelens train`) and annotated from observed counts (`featurelens annotate
  --expression observed`): every feature is meaningless, so any reported term is a false one.
  Measured: share of live features with any reported term (target ≤ 5 %), and the self-check's
  null-feature rate.
- **model embedding**: the built-in expression model is fitted (`featurelens fit-model`), the SAE is
  trained on its embedding and annotated from its predicted expression (scored as below).
- **planted embedding**: a 10-d linear mix of the ground-truth program activities X″ and cell-type
  indicators (plus noise) → default SAE → annotation. For each program, the feature whose activation
  correlates best with it: number of reported terms (target ≤ 25), precision = share of them whose
  genes overlap the planted term's (any gene; and ≥ 25 % of the reported term's genes), and whether
  the planted term is among the first 10 (target ≥ 90 % of programs).

Both methods are run on the same analyses (`--method paper` for contrast).
Run: ``python benchmarks/bench_calibration.py [--quick]`` → benchmarks/results/calibration.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "calibration.json"
CLI = [sys.executable, "-m", "core.cli.main"]

DATASETS = [  # (name, n_cells, n_genes, seed, effect, connect_fraction)
    ("sim-a", 6000, 2500, 11, 1.0, 0.8),
    ("sim-b", 8000, 3000, 12, 0.7, 0.6),
    ("sim-c", 5000, 2000, 13, 1.3, 0.9),
]


def run_cli(args):
    """Run ``featurelens ARGS`` in a subprocess; its stdout, or RuntimeError with the output."""
    r = subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r.stdout


def make_data(folder: Path, name, n_cells, n_genes, seed, effect, connect) -> Path:
    from core.demo.data import DemoDataConfig, generate_demo_dataset

    adata = generate_demo_dataset(DemoDataConfig(n_cells=n_cells, n_genes=n_genes, effect=effect,
                                                 connect_fraction=connect), seed=seed)
    rng = np.random.default_rng(seed + 1000)
    adata.obsm["X_noise"] = rng.normal(size=(adata.n_obs, 10)).astype(np.float32)
    truth = np.asarray(adata.obsm["truth_activity"], np.float64)
    types = pd.get_dummies(adata.obs["cell_type"]).to_numpy(np.float64)
    sources = np.hstack([(truth - truth.mean(0)) / truth.std(0), (types - types.mean(0)) / (types.std(0) + 1e-9)])
    mix = rng.normal(size=(sources.shape[1], 10)) / np.sqrt(sources.shape[1])
    adata.obsm["X_planted"] = (sources @ mix + 0.05 * rng.normal(size=(adata.n_obs, 10))).astype(np.float32)
    path = folder / f"{name}.h5ad"
    adata.write_h5ad(path)
    return path


def score(analysis_dir: Path, adata_path: Path, *, planted: bool) -> dict:
    import anndata as ad
    import scipy.sparse as sp

    from core.store.analysis import Analysis
    from core.annotate.reported import ordered, reported
    from core.concepts import load_go
    from core.demo.planted import best_matching_features

    a = Analysis.open(analysis_dir)
    acts = a.read_npz_sparse("activations.npz")
    ann = a.read_parquet("annotations.parquet")
    summary = a.read_json("annotation.json")
    live = int((np.diff(sp.csc_matrix(acts).indptr) > 0).sum())
    rep = ordered(reported(ann))
    per = rep.groupby("feature").size()
    out = {"method": summary.get("method"), "live": live, "features_with_terms": int(per.size),
           "share_live_with_terms": per.size / live if live else 0.0,
           "terms_per_annotated_feature_median": float(per.median()) if per.size else 0.0,
           "null_self_check": [summary.get("null_features_annotated"), summary.get("null_features_tested")],
           "l0": float(np.diff(sp.csr_matrix(acts).indptr).mean())}
    if not planted:
        return out
    adata = ad.read_h5ad(adata_path)
    truth = np.asarray(adata.obsm["truth_activity"])
    progs = pd.DataFrame(adata.uns["ground_truth"]["programs"])
    best, corr = best_matching_features(acts, truth)
    bp = load_go(["BP", "MF"])
    gene_set = {}

    def genes(t):
        if t not in gene_set:
            try:
                gene_set[t] = set(bp.genes_of(t)) & set(adata.var_names)
            except Exception:  # noqa: BLE001 - a term outside BP/MF
                gene_set[t] = set()
        return gene_set[t]

    rows = []
    for k, f in enumerate(best):
        r = rep[rep["feature"] == f]
        want = progs["term_id"].iloc[k]
        pg = genes(want)
        ids = r["term_id"].astype(str).tolist()
        any_overlap = [len(genes(t) & pg) > 0 for t in ids]
        strong = [len(genes(t) & pg) >= 0.25 * max(len(genes(t)), 1) for t in ids]
        rows.append({"program": want, "feature": int(f), "r": float(corr[k]), "n_reported": len(ids),
                     "precision_any": float(np.mean(any_overlap)) if ids else float("nan"),
                     "precision_25": float(np.mean(strong)) if ids else float("nan"),
                     "in_top10": want in ids[:10], "first_terms": "; ".join(r["term_name"].astype(str).head(3))})
    t = pd.DataFrame(rows)
    out.update({"programs": len(t), "planted_in_top10": float(t["in_top10"].mean()),
                "reported_per_matched_median": float(t["n_reported"].median()),
                "reported_per_matched_max": int(t["n_reported"].max()),
                "precision_any_median": float(t["precision_any"].median()),
                "precision_25_median": float(t["precision_25"].median()), "table": rows})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small dataset")
    ap.add_argument("--work", default="/tmp/featurelens-calibration")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    datasets = [("quick", 3000, 1500, 21, 1.0, 0.8)] if args.quick else DATASETS
    results = []
    for spec in datasets:
        t0 = time.time()
        path = make_data(work, *spec)
        run_cli(["fit-model", path, "--key", "X_model", "--overwrite"])
        for emb in ("X_noise", "X_planted", "X_model"):
            out = work / f"{spec[0]}-{emb}"
            shutil.rmtree(out, ignore_errors=True)  # a fresh analysis of the data just generated
            run_cli(["train", path, "--embedding", emb, "--out", out, "--force"])
            expression = "predicted" if emb == "X_model" else "observed"
            for method in ("calibrated", "paper"):
                run_cli(["annotate", out, "--expression", expression, "--method", method, "--force"])
                res = score(out, path, planted=emb != "X_noise")
                res.update({"dataset": spec[0], "embedding": emb, "expression": expression, "cells": spec[1],
                            "genes": spec[2]})
                results.append(res)
                short = {k: v for k, v in res.items() if k != "table"}
                print(json.dumps(short), flush=True)
        print(f"{spec[0]}: {time.time() - t0:.0f} s", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
