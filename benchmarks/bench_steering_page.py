"""Steering page latency on the PBMC demo analysis, as the app runs it.

    python benchmarks/bench_steering_page.py [--analysis DIR] [--repeats 5]

Times the functions of :mod:`components.steering_page` and :mod:`callbacks.steering` exactly as
Dash calls them:

- **layout** — the page for ``?feature=…`` (analysis checks, the feature and cell-type choices);
- **job** — :func:`callbacks.steering.run_steering`, the background job (steer, store the run,
  store the latent axes), each in a process forked from this one as Dash's DiskcacheManager
  does: every job loads the SAE, decoder, data and GO again (the server holds none of them);
- **show** — :func:`callbacks.steering.show_run` (read the run back, latent shift, volcano,
  terms, nearest-type shift) plus the JSON encoding Dash does of its output.

Experiments: one feature to its maximum in the CD19+ B cells, and the 10 CD14+ monocyte-local
features × 2 in the same cells (which moves 19 of 95 B cells nearest to the monocytes). Without
``--analysis`` the demo is built (``featurelens demo --build-only``, pbmc68k) into a temporary
folder. Writes ``benchmarks/results/steering_page.json``.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")


def _median(xs):
    return round(statistics.median(xs), 3)


def _child(queue, fn, args):
    t = time.perf_counter()
    try:
        _, shown = fn(lambda *a: None, *args)
        queue.put((time.perf_counter() - t, shown))
    except Exception as exc:  # noqa: BLE001
        queue.put((None, repr(exc)))


def _forked(fn, *args):
    """(seconds, result) of ``fn(progress, *args)`` in a forked process, as a Dash background job."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    seconds, shown = queue.get(timeout=600)
    proc.join()
    if seconds is None:
        raise RuntimeError(shown)
    return seconds, shown


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--analysis", type=Path, help="a built pbmc68k demo analysis folder")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    tmp = None
    if args.analysis is None:
        tmp = tempfile.TemporaryDirectory()
        from core.demo.build import build_demo

        args.analysis = Path(tmp.name) / "analyses" / "demo-pbmc68k"
        build_demo(args.analysis, dataset="pbmc68k", seed=0)
    path = args.analysis.resolve()
    os.environ["FEATURELENS_ANALYSES_DIR"] = str(path.parent)
    source = f"analysis:{path.name}"

    import dash
    import pandas as pd
    from plotly.io.json import to_json_plotly

    dash.Dash(__name__)  # the callbacks register against an app
    import callbacks.steering as cb
    from components.steering_page import layout
    from core.store.analysis import Analysis

    feats = pd.read_parquet(path / "features.parquet")
    mono = feats[(feats["locality"] == "local") & (feats["top_cell_type"] == "CD14+ Monocyte")]["feature"]
    experiments = {"1 feature, max": ([int(mono.iloc[2])], "factor", 1.0),
                   "10 features, x2": ([int(f) for f in mono.head(10)], "factor", 2.0)}
    out: dict = {"analysis": str(path), "cells": int(Analysis.open(path).config["dataset"]["n_cells"]),
                 "genes": int(Analysis.open(path).config["dataset"]["n_genes"]), "repeats": args.repeats,
                 "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "load_average": list(os.getloadavg())}, "experiments": {}}
    query = {"feature": ",".join(map(str, experiments["10 features, x2"][0]))}
    t = time.perf_counter()
    layout(source=source, query=query)
    out["layout_first_s"] = round(time.perf_counter() - t, 3)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        layout(source=source, query=query)
        times.append(time.perf_counter() - t)
    out["layout_median_s"] = _median(times)

    for name, (features, kind, factor) in experiments.items():
        job, show, res = [], [], None
        for i in range(args.repeats):
            # a slightly different multiple each time, so that every run is computed and stored anew
            seconds, shown = _forked(cb.run_steering, source, features, "types", ["CD19+ B"], [], kind,
                                     factor + 0.001 * i, 99, True, "paired-log")
            job.append(seconds)
            t = time.perf_counter()
            outputs = cb.show_run(shown, source)
            to_json_plotly([o.to_plotly_json() if hasattr(o, "to_plotly_json") else o for o in outputs])
            show.append(time.perf_counter() - t)
            res = shown
        s = Analysis.open(path).read_json(f"steering/{res['run_id']}/run.json")["summary"]
        out["experiments"][name] = {
            "features": features, "cells": s["n_cells"], "n_up": s["n_up"], "n_down": s["n_down"],
            "cells_moved_type": s.get("cells_moved_type"), "top_up_terms": s["top_up_terms"][:3],
            "job_s": [round(x, 3) for x in job], "job_median_s": _median(job),
            "show_s": [round(x, 3) for x in show], "show_median_s": _median(show)}
    out["machine"]["load_average_end"] = list(os.getloadavg())
    dest = ROOT / "benchmarks" / "results" / "steering_page.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return out


if __name__ == "__main__":
    main()
