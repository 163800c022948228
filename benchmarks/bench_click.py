"""Explorer latency at paper scale: a feature click and a search, as the Dash callbacks run them.

    python benchmarks/bench_click.py [--cells 57000] [--features 10000] [--density 0.02] [--clicks 41]

Builds a synthetic analysis folder (sparse activations cells × features with ~``density``
of cells active per feature plus a few dense features, a concept map, 95 enriched terms per
feature with real GO BP names, a latent view, a gene index) and times the callback functions of
:mod:`callbacks.explorer` exactly as Dash calls them:

- **click** — ``update_latent`` (the Patch recolouring the latent view), ``update_map`` (the
  Patch moving the selection star) and ``render_card`` for the newly selected feature; server
  time = the functions plus the JSON encoding Dash does of their output (``plotly.io.json``);
- **search** — ``run_search`` for GO keywords and genes (results, suggestions and hits) and
  the ``update_map`` Patch that rings the hits.

Targets: click ≤ 150 ms of server time for 57,000 cells; search ≤ 50 ms. Writes
``benchmarks/results/explorer_click.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERIES = ["erythrocyte", "interferon", "T cell", "oxygen", "GO:0006260", "heme", "antigen", "cell cycle",
           "zzz-no-match"]


def build(folder: Path, *, n_cells: int, n_features: int, density: float, n_dense: int, terms_per_feature: int,
          seed: int = 0, dataset: dict | None = None) -> str:
    """A synthetic analysis ``folder/analyses/bench`` with every file the Explorer reads. ``dataset``:
    the analysis's dataset reference (default: a placeholder without a file, so no DE tables)."""
    from core.store.analysis import Analysis
    from core.concepts import load_go
    from core.views.explorer import CELLS_FILE, LATENT_FILE, LATENT_INFO_FILE, TOP_GENES_FILE, latent_inputs

    rng = np.random.default_rng(seed)
    path = folder / "analyses" / "bench"
    a = Analysis.create(path, dataset=dataset or {"path": "synthetic", "sha256": "0" * 64, "format": "h5ad",
                                                  "embedding": "X_synthetic", "cell_type": "cell_type",
                                                  "n_cells": n_cells, "n_genes": 13_000}, seed=seed)
    # activations: each feature active in a random ~density of cells (log-normal spread), a few dense ones
    per = np.clip(rng.lognormal(np.log(density * n_cells), 0.8, n_features).astype(np.int64), 1, n_cells)
    per[:n_dense] = np.linspace(0.5, 1.0, n_dense) * n_cells
    rows = np.concatenate([rng.choice(n_cells, k, replace=False) for k in per])
    cols = np.repeat(np.arange(n_features), per)
    vals = rng.gamma(2.0, 0.5, rows.size).astype(np.float32)
    acts = sp.csr_matrix((vals, (rows, cols)), shape=(n_cells, n_features), dtype=np.float32)
    types = np.array([f"type {i}" for i in range(12)])
    labels = types[rng.integers(0, types.size, n_cells)]
    features = pd.DataFrame({"feature": np.arange(n_features), "live": True, "n_cells": per,
                             "frequency": per / n_cells, "max_activation": vals.max(), "mean_active": 1.0,
                             "locality": np.where(rng.random(n_features) < 0.3, "local", "global"),
                             "top_cell_type": types[rng.integers(0, types.size, n_features)],
                             "significant_types": "", "redundant": False})
    bp = load_go(["BP"]).filter_size(min_size=10, max_size=500)
    n = n_features * terms_per_feature
    t = rng.integers(0, bp.n_terms, n)
    ann = pd.DataFrame({"feature": np.repeat(np.arange(n_features), terms_per_feature),
                        "term_id": bp.terms["id"].to_numpy()[t], "term_name": bp.terms["name"].to_numpy()[t],
                        "namespace": "BP", "hits": 5, "n_term_genes": 50, "binom_p": rng.random(n) * 0.01,
                        "binom_q": rng.random(n) * 0.05, "mwu_p_up": rng.random(n)})
    cats = np.array(["biological regulation", "cellular process", "metabolic process", "immune system process",
                     "developmental process", "response to stimulus", "localization", "signaling"])
    cmap = pd.DataFrame({"feature": np.arange(n_features), "x": rng.normal(size=n_features).astype(np.float32) * 20,
                         "y": rng.normal(size=n_features).astype(np.float32) * 20, "n_terms": terms_per_feature,
                         "category": cats[rng.integers(0, cats.size, n_features)]})
    genes = np.array([f"GENE{i}" for i in range(13_000)])
    top = pd.DataFrame({"feature": np.repeat(np.arange(n_features), 20), "rank": np.tile(np.arange(1, 21), n_features),
                        "gene": genes[rng.integers(0, genes.size, n_features * 20)],
                        "fold_change": rng.random(n_features * 20) * 10 + 2, "t": rng.random(n_features * 20) * 20,
                        "q": rng.random(n_features * 20) * 1e-6})
    with a.step("sae", inputs={"synthetic": seed}) as w:
        w.write_npz_sparse("activations.npz", acts)
        w.write_parquet("features.parquet", features)
    with a.step("annotate", inputs={"synthetic": seed}) as w:
        w.write_parquet("annotations.parquet", ann)
        w.write_parquet("concept_map.parquet", cmap)
    with a.step("latent", inputs=latent_inputs(a)) as w:
        np.save(w.path(LATENT_FILE), rng.normal(size=(n_cells, 2)).astype(np.float32), allow_pickle=False)
        w.write_parquet(CELLS_FILE, pd.DataFrame({"cell": [f"cell{i}" for i in range(n_cells)],
                                                  "cell_type": pd.Categorical(labels)}))
        w.write_json(LATENT_INFO_FILE, {"method": "pca", "explained_variance_ratio": [0.2, 0.1]})
    with a.step("top_genes", inputs={"synthetic": seed}) as w:
        w.write_parquet(TOP_GENES_FILE, top)
    return "analysis:bench"


CPU_MS: list[float] = []  # thread CPU time of every timed call (function + JSON), see main()


def timed(fn, *args, **kwargs):
    """``(output, function ms, JSON-encoding ms, JSON bytes)``; wall-clock times."""
    from plotly.io.json import to_json_plotly

    c0 = time.thread_time()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    t1 = time.perf_counter()
    payload = to_json_plotly(out)
    t2 = time.perf_counter()
    CPU_MS.append(1e3 * (time.thread_time() - c0))
    return out, 1e3 * (t1 - t0), 1e3 * (t2 - t1), len(payload)


def summary(values) -> dict:
    return {"median": statistics.median(values), "p90": float(np.percentile(values, 90)), "max": max(values)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=57_000)
    p.add_argument("--features", type=int, default=10_000)
    p.add_argument("--density", type=float, default=0.02)
    p.add_argument("--dense", type=int, default=5, help="features active in 50–100 %% of cells")
    p.add_argument("--terms-per-feature", type=int, default=95)
    p.add_argument("--clicks", type=int, default=41)
    p.add_argument("--repeats", type=int, default=11, help="repeats per search query")
    p.add_argument("--folder", type=Path, help="build the synthetic analysis here (reused if it is there)")
    args = p.parse_args(argv)

    tmp = args.folder or Path(tempfile.mkdtemp(prefix="bench-click-"))
    os.environ["FEATURELENS_ANALYSES_DIR"] = str(tmp / "analyses")
    t0 = time.perf_counter()
    if (tmp / "analyses" / "bench" / "analysis.json").is_file():
        source = "analysis:bench"
    else:
        source = build(tmp, n_cells=args.cells, n_features=args.features, density=args.density,
                       n_dense=args.dense, terms_per_feature=args.terms_per_feature)
    build_s = time.perf_counter() - t0

    import callbacks.explorer as cb
    from components import ids

    t0 = time.perf_counter()
    data = cb.load(source)
    data.latent()
    data.gene_index()
    load_s = time.perf_counter() - t0
    # the figures as the page first draws them
    fig, latent_ms, latent_json_ms, latent_bytes = timed(cb.update_latent, "feature", {"feature": None}, source, None,
                                                         triggered=set())
    meta_latent = fig[1]
    fig, map_ms, map_json_ms, map_bytes = timed(cb.update_map, "category", [], {"feature": None}, source, None,
                                                triggered=set())
    meta_map = fig[1]

    rng = np.random.default_rng(1)
    feats = rng.choice(np.arange(args.dense, args.features), args.clicks, replace=False).tolist()
    feats[: min(args.dense, len(feats))] = list(range(min(args.dense, len(feats))))  # include the dense ones
    rows = []
    state_trigger = {ids.EXPLORER_STATE, f"{ids.EXPLORER_STATE}.data"}
    for f in feats:
        state = {"feature": int(f), "features": [int(f)]}
        _, lat_ms, lat_json, lat_bytes = timed(cb.update_latent, "feature", state, source, meta_latent,
                                               triggered=state_trigger)
        _, m_ms, m_json, m_bytes = timed(cb.update_map, "category", [], state, source, meta_map,
                                         triggered=state_trigger)
        recolour_cpu = sum(CPU_MS[-2:])
        _, c_ms, c_json, c_bytes = timed(cb.render_card, state, source)
        rows.append({"feature": int(f), "active_cells": int(data.acts.indptr[f + 1] - data.acts.indptr[f]),
                     "latent_ms": lat_ms, "latent_json_ms": lat_json, "latent_bytes": lat_bytes,
                     "map_ms": m_ms + m_json, "card_ms": c_ms + c_json, "card_bytes": c_bytes,
                     "recolour_cpu_ms": recolour_cpu, "card_cpu_ms": CPU_MS[-1]})
    df = pd.DataFrame(rows)
    df["recolour_ms"] = df["latent_ms"] + df["latent_json_ms"] + df["map_ms"]
    dense = df[df["active_cells"] > args.cells // 2]

    searches = {}
    for mode, queries in (("concept", QUERIES), ("gene", ["GENE1", "GENE42", "GENE12999", "NOPE"])):
        for q in queries:
            times, cpu, hits = [], [], []
            for _ in range(args.repeats):
                if data.concepts is not None:
                    data.concepts._cache.clear()  # every repeat is a fresh query (as typing makes them)
                out, s_ms, s_json, _ = timed(cb.run_search, q, mode, source)
                _, h_ms, h_json, _ = timed(cb.update_map, "category", out[2], {"feature": None}, source, meta_map,
                                           triggered={ids.EXPLORER_HITS})
                times.append(s_ms + s_json + h_ms + h_json)
                cpu.append(sum(CPU_MS[-2:]))
                hits = out[2]
            searches[f"{mode}:{q}"] = {"median_ms": statistics.median(times), "median_cpu_ms": statistics.median(cpu),
                                       "features_found": len(hits)}

    out = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "cells": args.cells, "features": args.features, "nnz": int(data.acts.nnz), "density": args.density,
        "build_s": build_s, "first_load_s": load_s,
        "first_draw": {"latent_ms": latent_ms + latent_json_ms, "latent_bytes": latent_bytes,
                       "map_ms": map_ms + map_json_ms, "map_bytes": map_bytes},
        "load_average_1min": os.getloadavg()[0],
        "click": {"n": len(df), "recolour_ms": summary(df["recolour_ms"]),
                  "recolour_cpu_ms": summary(df["recolour_cpu_ms"]), "card_cpu_ms": summary(df["card_cpu_ms"]),
                  "latent_patch_ms": summary(df["latent_ms"] + df["latent_json_ms"]),
                  "latent_patch_bytes_median": float(df["latent_bytes"].median()),
                  "map_patch_ms": summary(df["map_ms"]), "card_ms": summary(df["card_ms"]),
                  "dense_features": {"n": len(dense), "active_cells_min": int(dense["active_cells"].min())
                                     if len(dense) else 0,
                                     "recolour_ms": summary(dense["recolour_ms"]) if len(dense) else None,
                                     "recolour_cpu_ms": summary(dense["recolour_cpu_ms"]) if len(dense) else None,
                                     "latent_bytes_max": int(dense["latent_bytes"].max()) if len(dense) else 0},
                  "active_cells_median": float(df["active_cells"].median())},
        "search": {"queries": searches, "median_of_medians_ms": statistics.median(
            s["median_ms"] for s in searches.values()), "median_of_medians_cpu_ms": statistics.median(
            s["median_cpu_ms"] for s in searches.values())},
        "targets": {"click_ms": 150, "search_ms": 50},
    }
    c = out["click"]
    print(f"{args.cells:,} cells × {args.features:,} features, {out['nnz']:,} non-zeros; built in {build_s:.1f} s, "
          f"first load {load_s:.2f} s")
    print(f"first draw: latent {out['first_draw']['latent_ms']:.0f} ms ({latent_bytes / 1e6:.1f} MB), "
          f"map {out['first_draw']['map_ms']:.0f} ms ({map_bytes / 1e6:.1f} MB)")
    print(f"click (n={c['n']}, median {c['active_cells_median']:.0f} active cells): recolour median "
          f"{c['recolour_ms']['median']:.1f} ms (p90 {c['recolour_ms']['p90']:.1f}, max {c['recolour_ms']['max']:.1f}); "
          f"latent patch {c['latent_patch_ms']['median']:.1f} ms, map patch {c['map_patch_ms']['median']:.1f} ms, "
          f"card {c['card_ms']['median']:.1f} ms; thread CPU: recolour {c['recolour_cpu_ms']['median']:.1f} ms, "
          f"card {c['card_cpu_ms']['median']:.1f} ms")
    if c["dense_features"]["recolour_ms"]:
        d = c["dense_features"]
        print(f"dense features (≥ {d['active_cells_min']:,} cells): recolour median {d['recolour_ms']['median']:.1f} ms, "
              f"max {d['recolour_ms']['max']:.1f} ms (thread CPU median {d['recolour_cpu_ms']['median']:.1f}, max "
              f"{d['recolour_cpu_ms']['max']:.1f} ms), patch ≤ {d['latent_bytes_max'] / 1e6:.2f} MB")
    for k, v in searches.items():
        print(f"search {k:<22} {v['median_ms']:6.1f} ms (CPU {v['median_cpu_ms']:5.1f} ms)  "
              f"({v['features_found']} hits)")
    print(f"search median of medians {out['search']['median_of_medians_ms']:.1f} ms "
          f"(CPU {out['search']['median_of_medians_cpu_ms']:.1f} ms); load average {out['load_average_1min']:.1f}")
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "explorer_click.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
