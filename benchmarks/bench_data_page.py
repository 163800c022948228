"""Data & training page: render time, live-chart cost, and what the job plumbing adds to training.

    python benchmarks/bench_data_page.py [--repeats 5]

1. the page's layout for the shipped PBMC data (reads the file's metadata, builds every control);
2. the live training chart for 30 / 300 / 1,000 evaluations;
3. one small SAE (PBMC X_pca, 200 latents, 60 epochs) trained three ways: the core call alone,
   through the page's job function with progress written to a Diskcache store the way Dash's
   background manager does (0.3 s throttle, live chart), and the same with the chart redrawn at
   every evaluation (what the throttle avoids).
Writes ``benchmarks/results/data_page.json``; quotes medians.
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


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-page-"))
    os.environ["FEATURELENS_ANALYSES_DIR"] = str(tmp / "analyses")
    os.environ["FEATURELENS_DATA_DIR"] = str(tmp / "data")
    (tmp / "data").mkdir()

    import diskcache

    from callbacks.data import train_job
    from callbacks.jobs import JobProgress
    from components import data_page
    from components.training_chart import training_figure
    from core.views.data import TrainRequest, data_page_data, train_for_source

    out: dict = {"machine": f"{os.cpu_count()} CPUs", "load_1min": os.getloadavg()[0]}
    def page():  # what the router does: the page's data, then its layout
        return data_page.layout(data_page_data("shipped:pbmc68k", query={}))

    page()
    out["layout_ms"] = 1000 * _median_time(page, args.repeats)
    out["chart_ms"] = {}
    for n in (30, 300, 1000):
        rows = [{"epoch": i, "val_loss": 1 / i, "val_l0": 10.0, "train_dead": 3} for i in range(1, n + 1)]
        out["chart_ms"][n] = 1000 * _median_time(lambda r=rows: training_figure(r, hidden=200), args.repeats)

    form = dict(embedding="X_pca", cell_type="auto", decoder="auto", preset="default", arch="vanilla", expansion=4,
                sparsity=1e-3, epochs=60, seed=0)
    cache = diskcache.Cache(str(tmp / "cache"))
    counter = iter(range(10**6))

    def core_only():
        req = TrainRequest(source="shipped:pbmc68k", analysis=f"core-{next(counter)}", embedding="X_pca",
                           preset="default", arch="vanilla", expansion=4, l1=1e-3, epochs=60)
        train_for_source(req)

    def through_job(throttle: float):
        sent = []

        def set_progress(value):
            cache.set("progress", value)
            sent.append(1)

        progress = JobProgress(set_progress, extras=[None], min_interval=throttle)
        train_job(progress, "shipped:pbmc68k", f"job-{next(counter)}", *form.values())
        return len(sent)

    core_only()  # warm-up (imports, numba)
    out["train_core_s"] = _median_time(core_only, 3)
    out["train_job_s"] = _median_time(lambda: through_job(0.3), 3)
    out["train_job_unthrottled_s"] = _median_time(lambda: through_job(0.0), 3)
    out["progress_messages_throttled"] = through_job(0.3)
    out["overhead_pct"] = 100 * (out["train_job_s"] / out["train_core_s"] - 1)
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "data_page.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
