"""Explorer speed in a real browser at paper scale (57,000 cells × 10,000 features).

    python benchmarks/bench_explorer_browser.py [--workdir DIR] [--loads 6] [--clicks 21]

Builds the synthetic analysis of :mod:`bench_click` (reused from ``--workdir`` when it is there)
plus what the card's volcano needs — a counts .h5ad (cells × 13,000 genes, ~3 % non-zero) as the
analysis's dataset, its observed-counts copies (by gene and by cell) made once, as annotation
makes them — and a stored ``latent_views`` step (so no UMAP job runs during the measurement).
Serves the app as ``featurelens serve`` does (waitress, ``python -m core.cli serve``) and drives the system Chromium with Playwright, timing in the page
with ``performance.now()``:

- **first Explorer paint** — navigation to ``/explorer?source=analysis:bench`` (a fresh browser
  context each time: empty cache) until the concept map and the latent view have drawn their
  points; the first load, which reads the analysis into the server's memory, is reported apart;
- **click → complete card** — pointer-down on a row of the search results until the card shows
  ``Feature N``, its up-terms rows (changed) and its volcano (``feature N: …``); the latent
  recolour is timed too;
- **search-as-you-type** — a GO keyword typed key by key (60 ms apart) into the search box, from
  the last key until the results status names the full query.

Bytes received per action and the split of each action into server wait (request start → first
byte of the slowest callback response), transfer and browser work come from the page's Resource
Timing entries. Targets: click ≤ 300 ms, first paint ≤ 2 s, search ≤ 150 ms (medians). Writes
``benchmarks/results/explorer_browser.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_click import QUERIES, build  # noqa: E402

CHROMIUM = os.environ.get("FEATURELENS_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SOURCE = "analysis:bench"
LATENT = "#explorer-latent-graph .js-plotly-plot"
MAP = "#explorer-map-graph .js-plotly-plot"
VOLCANO = "#card-volcano-graph .js-plotly-plot"
TERMS = "#card-terms-grid .ag-center-cols-container"
ROWS = "#search-results-grid .ag-center-cols-container .ag-row"
CLICK_QUERY = "process"  # matches many features: 50 result rows to click
TARGETS = {"click_ms": 300, "first_paint_ms": 2000, "search_ms": 150}


# ----------------------------------------------------------------------------- the analysis
def write_counts(path: Path, *, n_cells: int, n_genes: int, density: float, seed: int = 1) -> None:
    """A counts .h5ad (CSR float32, ~``density`` non-zero) with a cell_type column and a 20-d embedding."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    per = rng.binomial(n_genes, density, n_cells)
    rows = np.repeat(np.arange(n_cells), per)
    cols = rng.integers(0, n_genes, rows.size)
    x = sp.csr_matrix((rng.poisson(2.0, rows.size).astype(np.float32) + 1, (rows, cols)), shape=(n_cells, n_genes))
    x.sum_duplicates()
    types = np.array([f"type {i}" for i in range(12)])
    obs = pd.DataFrame({"cell_type": pd.Categorical(types[rng.integers(0, 12, n_cells)])},
                       index=[f"cell{i}" for i in range(n_cells)])
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"GENE{i}" for i in range(n_genes)]))
    adata.obsm["X_synthetic"] = rng.normal(size=(n_cells, 20)).astype(np.float32)
    adata.write_h5ad(path)


def prepare(workdir: Path, args) -> Path:
    """The analysis folder (built unless ``workdir`` holds it), its counts copy and views made."""
    from core.annotate.expression import observed_rows, resolve_expression
    from core.data.load import file_sha256
    from core.store.analysis import Analysis
    from core.views import latent as latent_views
    from core.views.explorer import latent_views_inputs

    folder = workdir / "analyses" / "bench"
    if not (folder / "analysis.json").is_file():
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        counts = workdir / "data" / "counts.h5ad"
        t0 = time.perf_counter()
        write_counts(counts, n_cells=args.cells, n_genes=args.genes, density=args.gene_density)
        dataset = {"path": str(counts), "sha256": file_sha256(counts), "format": "h5ad", "embedding": "X_synthetic",
                   "cell_type": "cell_type", "n_cells": args.cells, "n_genes": args.genes}
        build(workdir, n_cells=args.cells, n_features=args.features, density=args.density, n_dense=args.dense,
              terms_per_feature=args.terms_per_feature, dataset=dataset)
        print(f"built the analysis in {time.perf_counter() - t0:.0f} s", flush=True)
    a = Analysis.open(folder)
    inputs = latent_views_inputs(a)
    if latent_views.read_views(a, inputs=inputs) is None:
        rng = np.random.default_rng(2)
        latent_views.write_views(a, inputs=inputs, umap=rng.normal(size=(args.cells, 2)).astype(np.float32),
                                 info={"source": "computed", "label": "UMAP", "default": "pca", "scores": {}},
                                 groups=__import__("pandas").DataFrame(index=range(args.cells)))
    t0 = time.perf_counter()
    resolve_expression(a, mode="observed")  # the observed-counts copy, made once (as annotation does)
    observed_rows(a)  # and its by-cell copy for the cards (as annotation makes it)
    print(f"observed counts ready in {time.perf_counter() - t0:.1f} s", flush=True)
    return folder


# ----------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    """``python -m core.cli serve`` (waitress) on a free port, with ``workdir``'s folders."""
    port = free_port()
    env = {**os.environ, "FEATURELENS_ANALYSES_DIR": str(workdir / "analyses"),
           "FEATURELENS_DATA_DIR": str(workdir / "data"), "FEATURELENS_CACHE_DIR": str(workdir / "cache"),
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"app did not start:\n{(workdir / 'server.log').read_text()}") from None
            time.sleep(0.3)


# ----------------------------------------------------------------------------- in the page
NET_JS = """(t0) => {
  const rs = performance.getEntriesByType('resource').filter(e => e.startTime >= t0 - 1);
  const dash = rs.filter(e => e.name.includes('_dash-update-component'));
  const nav = performance.getEntriesByType('navigation')[0];
  const bytes = rs.reduce((s, e) => s + (e.transferSize || e.encodedBodySize || 0), 0)
              + (t0 < 1 && nav ? (nav.transferSize || 0) : 0);
  const body = dash.reduce((s, e) => s + (e.decodedBodySize || 0), 0);
  const last = dash.reduce((m, e) => Math.max(m, e.responseEnd), 0);
  const wait = dash.reduce((m, e) => Math.max(m, e.responseStart - e.startTime), 0);
  const transfer = dash.reduce((m, e) => Math.max(m, e.responseEnd - e.responseStart), 0);
  const biggest = dash.reduce((m, e) => Math.max(m, e.decodedBodySize || 0), 0);
  return {n_requests: rs.length, n_callbacks: dash.length, bytes, callback_bytes: body, biggest_callback_bytes: biggest,
          last_response_ms: last ? last - t0 : null, slowest_wait_ms: wait, slowest_transfer_ms: transfer};
}"""

PAINTED_JS = f"""() => {{
  const drawn = sel => {{ const gd = document.querySelector(sel);
    return gd && gd._fullData && gd._fullData.some(t => t.visible !== false && t._length > 0); }};
  return drawn('{MAP}') && drawn('{LATENT}') ? performance.now() : false; }}"""

CARD_JS = f"""([f, oldTerms]) => {{
  const title = document.querySelector('#card-title');
  const terms = document.querySelector('{TERMS}');
  const v = document.querySelector('{VOLCANO}');
  const ok = title && title.textContent.trim() === 'Feature ' + f && terms && terms.querySelector('.ag-row')
    && terms.innerText !== oldTerms && v && v.layout && ((v.layout.title || {{}}).text || '').startsWith('feature ' + f + ':')
    && v._fullData && v._fullData.some(t => t._length > 0);
  return ok ? performance.now() : false; }}"""

LATENT_JS = f"""(f) => {{ const gd = document.querySelector('{LATENT}');
  return gd && ((gd.layout.title || {{}}).text || '').startsWith('feature ' + f + ':') ? performance.now() : false; }}"""

MARK_JS = """() => { performance.setResourceTimingBufferSize(100000);
  if (!window.__mark) { window.__mark = true;
    document.addEventListener('pointerdown', () => { window.__t0 = performance.now(); }, true);
    document.addEventListener('keydown', () => { window.__key = performance.now(); }, true); } }"""


def first_paint(browser, url: str) -> dict:
    """One load in a fresh context: ms from navigation start to both graphs drawn, and the bytes."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.goto(url, wait_until="commit")
    painted = page.wait_for_function(PAINTED_JS, polling="raf", timeout=120_000).json_value()
    out = {"paint_ms": painted, **page.evaluate(NET_JS, 0)}
    out["dom_content_loaded_ms"] = page.evaluate(
        "() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
    ctx.close()
    return out


def click_row(page, i: int) -> dict:
    """Click result row ``i``: ms to the complete card and to the latent recolour, and the network split."""
    row = page.locator(f"{ROWS}[row-index='{i}']")
    row.scroll_into_view_if_needed()
    feature = int(row.locator("[col-id=feature]").inner_text().strip())
    old_terms = page.evaluate(f"() => (document.querySelector('{TERMS}') || {{}}).innerText || ''")
    page.evaluate("() => { window.__t0 = null; }")
    row.locator("[col-id=match]").click()
    done = page.wait_for_function(CARD_JS, arg=[feature, old_terms], polling="raf", timeout=60_000).json_value()
    recoloured = page.wait_for_function(LATENT_JS, arg=feature, polling="raf", timeout=60_000).json_value()
    t0 = page.evaluate("window.__t0")
    page.wait_for_timeout(300)  # let the click's last callbacks (URL, heatmap frame) land before counting bytes
    net = page.evaluate(NET_JS, t0)
    return {"feature": feature, "card_ms": done - t0, "latent_ms": recoloured - t0, **net,
            "last_response_ms": net["last_response_ms"]}


def type_query(page, q: str) -> dict:
    """Clear the box, type ``q`` key by key; ms from the last key to the status naming ``q``."""
    box = page.locator("#search-query-input")
    box.fill("")
    page.wait_for_function("() => !document.querySelector('#search-results-status').innerText.includes('“')",
                           timeout=30_000)
    page.wait_for_timeout(400)
    box.click()
    t_first = page.evaluate("performance.now()")
    box.press_sequentially(q, delay=60)
    t_last = page.evaluate("window.__key")
    try:
        done = page.wait_for_function(
            """(q) => document.querySelector('#search-results-status').innerText.includes('“' + q + '”')
                      ? performance.now() : false""", arg=q, polling="raf", timeout=30_000).json_value()
    except PlaywrightTimeout:
        return {"query": q, "search_ms": None, "error": "no status for the query in 30 s",
                "status": page.locator("#search-results-status").inner_text(), "value": box.input_value()}
    page.wait_for_timeout(200)
    net = page.evaluate(NET_JS, t_first)
    return {"query": q, "search_ms": done - t_last, "typed_ms": t_last - t_first, **net}


# ----------------------------------------------------------------------------- main
def med(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def measure(url: str, *, loads: int, clicks: int) -> dict:
    from playwright.sync_api import sync_playwright

    explorer = f"{url}/explorer?source={SOURCE}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        paints = []
        for i in range(loads):
            paints.append(first_paint(browser, explorer) | {"load_average_1min": os.getloadavg()[0]})
            print(f"load {i + 1}: first paint {paints[-1]['paint_ms']:.0f} ms, {paints[-1]['bytes'] / 1e6:.2f} MB, "
                  f"load {paints[-1]['load_average_1min']:.1f}", flush=True)
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        page.goto(explorer)
        page.wait_for_function(PAINTED_JS, polling="raf", timeout=120_000)
        page.evaluate(MARK_JS)
        page.fill("#search-query-input", CLICK_QUERY)
        page.wait_for_selector(f"{ROWS}[row-index='0']", timeout=60_000)
        rows = []
        for i in range(clicks + 1):  # the first click reads the expression matrix's scale once: reported apart
            rows.append(click_row(page, i) | {"load_average_1min": os.getloadavg()[0]})
            print(f"click {i}: feature {rows[-1]['feature']}: card {rows[-1]['card_ms']:.0f} ms, latent "
                  f"{rows[-1]['latent_ms']:.0f} ms, {rows[-1]['bytes'] / 1e3:.0f} kB, "
                  f"slowest wait {rows[-1]['slowest_wait_ms']:.0f} ms", flush=True)
        searches = []
        for q in QUERIES:
            searches.append(type_query(page, q) | {"load_average_1min": os.getloadavg()[0]})
            r = searches[-1]
            print(f"search {q!r}: " + (f"{r['search_ms']:.0f} ms after the last key, {r['bytes'] / 1e3:.0f} kB"
                                       if r["search_ms"] is not None else r["error"]), flush=True)
        ctx.close()
        browser.close()
    later, warm = paints[1:] or paints, rows[1:] or rows
    return {
        "first_paint": {"first_load_ms": paints[0]["paint_ms"], "median_ms": med(later, "paint_ms"),
                        "n": len(later), "median_bytes": med(later, "bytes"),
                        "median_callback_bytes": med(later, "callback_bytes"),
                        "median_last_response_ms": med(later, "last_response_ms"),
                        "median_dom_content_loaded_ms": med(later, "dom_content_loaded_ms"),
                        "load_average_median": med(later, "load_average_1min"), "samples": paints},
        "click": {"first_click_ms": rows[0]["card_ms"], "median_ms": med(warm, "card_ms"), "n": len(warm),
                  "latent_median_ms": med(warm, "latent_ms"), "median_bytes": med(warm, "bytes"),
                  "median_biggest_callback_bytes": med(warm, "biggest_callback_bytes"),
                  "median_slowest_wait_ms": med(warm, "slowest_wait_ms"),
                  "median_last_response_ms": med(warm, "last_response_ms"),
                  "load_average_median": med(warm, "load_average_1min"), "samples": rows},
        "search": {"median_ms": med(searches, "search_ms"), "n": len(searches),
                   "median_bytes": med(searches, "bytes"), "median_slowest_wait_ms": med(searches, "slowest_wait_ms"),
                   "load_average_median": med(searches, "load_average_1min"), "samples": searches},
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=57_000)
    p.add_argument("--features", type=int, default=10_000)
    p.add_argument("--density", type=float, default=0.02)
    p.add_argument("--dense", type=int, default=5)
    p.add_argument("--terms-per-feature", type=int, default=95)
    p.add_argument("--genes", type=int, default=13_000)
    p.add_argument("--gene-density", type=float, default=0.03)
    p.add_argument("--loads", type=int, default=6, help="page loads (the first reported apart)")
    p.add_argument("--clicks", type=int, default=21, help="timed clicks (after one warm-up click)")
    p.add_argument("--workdir", type=Path, help="build the analysis here (reused if it is there)")
    args = p.parse_args(argv)
    if args.clicks > 49:
        p.error("--clicks: at most 49 (the search results list 50 rows)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-explorer-"))
    t0 = time.perf_counter()
    prepare(workdir, args)
    prepare_s = time.perf_counter() - t0
    proc, url = start_server(workdir)
    try:
        res = measure(url, loads=args.loads, clicks=args.clicks)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                       "browser": CHROMIUM},
           "cells": args.cells, "features": args.features, "genes": args.genes, "prepare_s": prepare_s,
           "load_average_1min_end": os.getloadavg()[0], "targets": TARGETS, **res}
    fp, c, s = out["first_paint"], out["click"], out["search"]
    print(f"first paint: first load {fp['first_load_ms']:.0f} ms; median of {fp['n']} {fp['median_ms']:.0f} ms "
          f"({fp['median_bytes'] / 1e6:.2f} MB; load {fp['load_average_median']:.1f})")
    print(f"click → complete card: median of {c['n']} {c['median_ms']:.0f} ms (latent {c['latent_median_ms']:.0f} ms; "
          f"{c['median_bytes'] / 1e3:.0f} kB; slowest callback wait {c['median_slowest_wait_ms']:.0f} ms; "
          f"load {c['load_average_median']:.1f})")
    print(f"search-as-you-type: median of {s['n']} {s['median_ms']:.0f} ms after the last key "
          f"({s['median_bytes'] / 1e3:.0f} kB; load {s['load_average_median']:.1f})")
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "explorer_browser.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
