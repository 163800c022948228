"""Many sessions on one server (issue 9): no cross-talk, no lost results, no deadlock, dead jobs reported.

One real app process (``featurelens serve``, Dash's DiskcacheManager: every background job is a
subprocess of the app) serves at once

- explorer sessions: separate browser contexts (separate cookies, stores, URLs) searching and
  clicking DIFFERENT features of the same analysis; each must keep seeing its own selection
  (card title, latent-space title with its own active-cell count, the points drawn, its URL),
  and its click round-trip is measured in the page (click → recoloured title) before and
  while the jobs run;
- data-page sessions in the browser training small SAEs into their own analysis names;
- HTTP sessions (what a browser tab sends: their own page load, so their own job handles)
  training SAEs of other sizes and seeds into other names, polled from threads.

Every job must finish with its own result (the size and seed it asked for on disk, its own
name in its alert), the explorer sessions must stay responsive, and the server must still
answer afterwards. A job whose process is killed must end in an error alert within 5 s with
the panel usable again, and leave the analysis it was re-training byte-identical.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import ARTIFACTS, start_server, stop_server
from explore_data import small_analysis_path

ANALYSIS = "pbmc-small"
LATENT = "#explorer-latent-graph .js-plotly-plot"
ROWS = "#search-results-grid .ag-center-cols-container .ag-row"
JOB_TIMEOUT_S = 240  # the 2-core CI machine is shared; a small job takes ~10 s alone, more side by side


# ----------------------------------------------------------------------------- unit: stale staging folders
def test_cc000_stale_staging_folders_of_dead_jobs_are_removed_on_open(tmp_path):
    import subprocess
    import sys

    from core.store.analysis import STAGING_OWNER, Analysis

    a = Analysis.create(tmp_path / "an", dataset={"path": "x"})
    with a.step("sae", inputs={"x": 1}) as w:
        w.write_json("metrics.json", {"ok": 1})
    before = snapshot(a.path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = a.path / ".staging-sae-dead"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "sae.pt").write_bytes(b"half written")
    (stale / STAGING_OWNER).write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid}))
    live = a.path / ".staging-annotate-live"          # a job still writing (this process): kept
    live.mkdir()
    (live / STAGING_OWNER).write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid()}))
    other_host = a.path / ".staging-sae-elsewhere"   # a worker on another machine: not ours to judge
    other_host.mkdir()
    (other_host / STAGING_OWNER).write_text(json.dumps({"host": "another-host", "pid": dead.pid}))
    old = a.path / ".staging-sae-old"                # no owner (or unreadable) and a day old: removed
    old.mkdir()
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    young = a.path / ".staging-sae-young"            # no owner, just made: may be another writer's, kept
    young.mkdir()

    reopened = Analysis.open(a.path)
    left = sorted(p.name for p in a.path.iterdir() if p.name.startswith(".staging-"))
    assert left == [".staging-annotate-live", ".staging-sae-elsewhere", ".staging-sae-young"]
    assert reopened.read_json("metrics.json") == {"ok": 1}
    for name in left:
        shutil.rmtree(a.path / name)
    assert snapshot(a.path) == before
    # a step records its owner while it writes, and leaves nothing behind
    with a.step("sae", inputs={"x": 2}) as w:
        staging = w.path("metrics.json").parent
        owner = json.loads((staging / STAGING_OWNER).read_text())
        assert owner == {"host": os.uname().nodename, "pid": os.getpid()}
        w.write_json("metrics.json", {"ok": 2})
    assert not (a.path / STAGING_OWNER).exists() and a.read_json("metrics.json") == {"ok": 2}
    assert not [p for p in a.path.iterdir() if p.name.startswith(".staging-")]


THREADS_SCRIPT = r"""
import os, sys, threading, time
sys.path.insert(0, os.getcwd())
import numpy as np
from core.annotate.stats import bh, rank_rows
from core.base.parallel import kernel_lock
rng = np.random.default_rng(0)
p, x = rng.random((40, 1500)), rng.random((40, 1500))
q0, (r0, t0) = bh(p), rank_rows(x)
def work():
    for _ in range(60):
        assert np.array_equal(bh(p), q0) and np.array_equal(rank_rows(x)[0], r0)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
# a job forked while another thread runs a kernel (holds the lock) must not wait forever
lock = kernel_lock()
holder = threading.Thread(target=lambda: (lock.acquire(), time.sleep(3), lock.release()))
holder.start(); time.sleep(0.2)
pid = os.fork()
if pid == 0:
    os._exit(0 if np.array_equal(bh(p), q0) else 1)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9); print("forked child hung"); sys.exit(3)
holder.join()
print("ok", os.waitstatus_to_exitcode(status))
"""


def test_cc000_numba_kernels_from_many_server_threads_do_not_abort_the_process():
    """Four request threads running statistics at once used to abort the server ("Numba workqueue
    threading layer is terminating: Concurrent access has been detected")."""
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}  # what the app uses (fork-safe)
    res = subprocess.run([sys.executable, "-c", THREADS_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=240)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok 0"), (res.returncode, res.stdout, res.stderr[-2000:])


def test_cc000_jobs_start_from_the_fork_server_and_a_vanished_job_is_not_an_error(tmp_path, monkeypatch):
    """A job forked from the threaded app could inherit a lock another request thread held (it then
    hung for ever, e.g. in SQLite); jobs now come from a single-threaded fork server."""
    import dash
    import diskcache
    import psutil

    from core.runtime.fork_server import ForkServerJobs, preload_modules

    class Manager(ForkServerJobs, dash.DiskcacheManager):
        pass

    assert preload_modules(["app", "callbacks.jobs", "core.sae", "components.ids", "numpy", "__main__", "corex"]) == [
        "app", "callbacks.jobs", "components.ids", "core.sae"]
    mgr = Manager(diskcache.Cache(str(tmp_path / "cache")))
    job_fn = mgr.make_job_fn(os.getppid, False)
    pid = mgr.call_job_fn("k1", job_fn, [], {})
    deadline = time.monotonic() + 120
    while mgr.handle.get("k1") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    parent = mgr.handle.get("k1")
    assert parent is not None, "the job did not run"
    assert parent != os.getpid()  # forked by the fork server, not by this (threaded) process
    assert "forkserver" in " ".join(psutil.Process(parent).cmdline())
    deadline = time.monotonic() + 30
    while mgr.job_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not mgr.job_running(pid)
    # a job that ends between the manager's two looks (pid_exists, then Process(pid)): plain Dash raises
    # (an error 500 after it has read and deleted the result); here it is simply not running any more

    def vanished(pid):
        raise psutil.NoSuchProcess(pid)

    monkeypatch.setattr(psutil, "pid_exists", lambda pid: True)
    monkeypatch.setattr(psutil, "Process", vanished)
    plain = dash.DiskcacheManager(mgr.handle)
    with pytest.raises(psutil.NoSuchProcess):
        plain.terminate_job(12345)
    mgr.terminate_job(12345)
    assert mgr.job_running(12345) is False


# ----------------------------------------------------------------------------- helpers
def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden ones included), by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


TRAIN_DEFAULTS = {"data-source-store": "shipped:pbmc68k", "data-embedding-select": "X_pca",
                  "data-celltype-select": "auto", "data-decoder-select": "auto", "data-preset-select": "default",
                  "data-arch-select": "vanilla", "data-sparsity-input": 0.2, "data-epochs-input": 5,
                  "data-seeds-radio": 1}


class HttpTrainJob(threading.Thread):
    """One session that loads the data page over HTTP and trains an SAE through the train button's
    background callback, polling every 0.5 s as the browser does (in its own thread)."""

    def __init__(self, url: str, *, name: str, expansion: int, seed: int):
        super().__init__(daemon=True)
        self.url, self.name, self.expansion, self.seed = url, name, expansion, seed
        self.progress: list[str] = []
        self.body: dict | None = None
        self.error: BaseException | None = None
        self.started = self.finished = None

    def _post(self, payload: dict, params: dict) -> dict:
        req = urllib.request.Request(f"{self.url}/_dash-update-component?{urllib.parse.urlencode(params)}",
                                     data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"{}")

    def run(self) -> None:
        try:
            page = urllib.request.urlopen(f"{self.url}/data", timeout=60).read().decode()
            config = re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>', page, re.S)
            end_id = json.loads(config.group(1))["end_id"]
            deps = json.loads(urllib.request.urlopen(f"{self.url}/_dash-dependencies", timeout=60).read())
            cb = next(d for d in deps if d["output"].startswith("..data-train-alert.children..."))
            outputs = [dict(zip(("id", "property"), o.split(".", 1))) for o in cb["output"].strip(".").split("...")]
            values = {**TRAIN_DEFAULTS, "data-analysis-name": self.name, "data-expansion-input": self.expansion,
                      "data-seed-input": self.seed}
            payload = {"output": cb["output"], "outputs": outputs,
                       "inputs": [{"id": "data-train-start", "property": "n_clicks", "value": 1}],
                       "state": [{**s, "value": values[s["id"]]} for s in cb["state"]],
                       "changedPropIds": ["data-train-start.n_clicks"]}
            self.started = time.monotonic()
            handles = self._post(payload, {"endId": end_id})
            assert "cacheKey" in handles and "job" in handles, handles
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while time.monotonic() < deadline:
                body = self._post(payload, {"endId": end_id, "cacheKey": handles["cacheKey"], "job": handles["job"]})
                message = body.get("progress", {}).get("data-train-message.children")
                if message:
                    self.progress.append(message)
                if "response" in body or "sideUpdate" in body:
                    self.body = body
                    break
                time.sleep(0.5)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc
        finally:
            self.finished = time.monotonic()

    def alert_text(self) -> str:
        assert self.error is None, f"{self.name}: {self.error!r}"
        assert self.body is not None, f"{self.name} did not finish in {JOB_TIMEOUT_S} s ({self.progress[-2:]})"
        return json.dumps(self.body["response"]["data-train-alert"]["children"])


def arm_round_trip(page, feature: int) -> None:
    """Start timing in the page: from the next click to the latent title naming ``feature``."""
    page.evaluate("""([sel, prefix]) => {
        window.__clicked = null;
        document.addEventListener('click', () => { window.__clicked = performance.now(); },
                                  {capture: true, once: true});
        window.__roundTrip = new Promise(resolve => {
            const started = performance.now();
            const tick = () => {
                const gd = document.querySelector(sel);
                const title = (gd && gd.layout && gd.layout.title && gd.layout.title.text) || '';
                if (window.__clicked !== null && title.startsWith(prefix)) resolve(performance.now() - window.__clicked);
                else if (performance.now() - started > 90000) resolve(-1);  // never: the test fails below
                else setTimeout(tick, 5);
            };
            tick();
        });
    }""", [LATENT, f"feature {feature}: "])


def click_feature_row(page, feature: int) -> None:
    row = page.locator(ROWS).filter(has=page.locator("[col-id=feature]").get_by_text(str(feature), exact=True))
    row.locator("[col-id=match]").click()


def latent_state(page) -> dict:
    """What the latent view shows now: its title and how many active cells the coloured trace draws."""
    return page.evaluate("""(sel) => { const gd = document.querySelector(sel);
        return {title: gd.layout.title.text || '', n: gd._fullData[1] ? gd._fullData[1]._length : -1}; }""", LATENT)


def assert_own_selection(page, feature: int, n_cells: dict[int, int], n_total: int) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#card-title")).to_have_text(f"Feature {feature}", timeout=30_000)
    page.wait_for_function(f"() => (document.querySelector('{LATENT}')?.layout?.title?.text || '')"
                           f".startsWith('feature {feature}: ')", timeout=30_000)
    state = latent_state(page)
    assert state["title"].startswith(f"feature {feature}: active in {n_cells[feature]:,} of {n_total:,} cells"), state
    assert state["n"] == n_cells[feature], state
    expect(page).to_have_url(re.compile(rf"[?&]feature={feature}(&|$)"), timeout=30_000)  # written after the view


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    built = small_analysis_path(tmp_path_factory)
    base = tmp_path_factory.mktemp("concurrency-app")
    shutil.copytree(built, base / "analyses" / ANALYSIS)
    shutil.copytree(built, base / "analyses" / "crash-target")  # re-trained and killed in cc002
    srv = start_server(base, ["serve"])
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def features(server):
    """Live features of the analysis by active-cell count, and the cell count."""
    import pandas as pd

    df = pd.read_parquet(server.analyses / ANALYSIS / "features.parquet")
    meta = json.loads((server.analyses / ANALYSIS / "sae.json").read_text())
    n_total = meta["data"]["n_cells"]
    usable = df[(df["n_cells"] >= 20) & (df["n_cells"] <= n_total - 20)]
    return {int(f): int(n) for f, n in zip(usable["feature"], usable["n_cells"])}, n_total


# ----------------------------------------------------------------------------- tests
@pytest.mark.browser
@pytest.mark.slow
def test_cc001_nine_sessions_jobs_and_clicks_without_cross_talk(server, browser, features):
    from playwright.sync_api import expect

    n_cells, n_total = features
    n_explorers, n_rounds = 3, 4  # round 0 before the jobs start, rounds 1.. while they run
    pool = sorted(n_cells, key=lambda f: (n_cells[f], f))
    assert len(pool) >= n_explorers * n_rounds
    step = len(pool) // (n_explorers * n_rounds)
    picks = [pool[i * step] for i in range(n_explorers * n_rounds)]  # distinct, spread over activity
    plan = [picks[i::n_explorers] for i in range(n_explorers)]       # plan[session][round] -> feature
    contexts = [browser.new_context(viewport={"width": 1300, "height": 900}) for _ in range(n_explorers + 2)]
    try:
        # 1. explorer sessions: each searches its own feature ids
        explorers = [ctx.new_page() for ctx in contexts[:n_explorers]]
        for page, feats in zip(explorers, plan):
            q = ", ".join(map(str, feats))
            page.goto(f"{server.url}/explorer?" + urllib.parse.urlencode(
                {"source": f"analysis:{ANALYSIS}", "mode": "feature", "q": q}))
        for page, feats in zip(explorers, plan):
            q = ", ".join(map(str, feats))
            expect(page.locator("#search-results-status")).to_contain_text(
                f"{len(feats)} features match “{q}”", timeout=60_000)
            page.wait_for_function(f"() => {{ const gd = document.querySelector('{LATENT}');"
                                   " return gd && gd._fullData && gd._fullData.length > 1; }", timeout=60_000)
        round_trips: list[list[float]] = [[] for _ in range(n_rounds)]

        def click_round(r: int) -> None:
            for page, feats in zip(explorers, plan):   # all sessions click at (nearly) the same moment
                arm_round_trip(page, feats[r])
                click_feature_row(page, feats[r])
            for page, feats in zip(explorers, plan):
                round_trips[r].append(page.evaluate("() => window.__roundTrip"))
                assert round_trips[r][-1] >= 0, f"feature {feats[r]} was not shown within 90 s of its click"
                assert_own_selection(page, feats[r], n_cells, n_total)

        click_round(0)  # baseline: no job running

        # 2. data-page sessions in the browser and HTTP sessions start training jobs at once
        data_pages = [ctx.new_page() for ctx in contexts[n_explorers:]]
        browser_jobs = [{"name": f"browser-{i}", "expansion": 3 + i, "page": p} for i, p in enumerate(data_pages)]
        for job in browser_jobs:
            page = job["page"]
            page.goto(f"{server.url}/data?source=shipped:pbmc68k")
            expect(page.locator("#data-epochs-input")).to_have_value("30", timeout=60_000)
            expect(page.locator("#data-analysis-name")).to_have_value("pbmc68k-X_pca", timeout=30_000)
            page.fill("#data-analysis-name", job["name"])
            page.press("#data-analysis-name", "Enter")
            page.fill("#data-expansion-input", str(job["expansion"]))
            page.fill("#data-epochs-input", "5")
            expect(page.locator("#data-size-help")).to_contain_text(f"{job['expansion'] * 50} latents")
        http_jobs = [HttpTrainJob(server.url, name=f"http-{i}", expansion=1 + (i % 2), seed=10 + i) for i in range(4)]
        t_jobs = time.monotonic()
        for job in http_jobs:
            job.start()
        for job in browser_jobs:
            job["page"].click("#data-train-start")
        for job in browser_jobs:
            expect(job["page"].locator("#data-train-status")).to_have_text("Running…", timeout=30_000)

        # 3. the explorer sessions keep clicking while the jobs run
        running_during: list[int] = []
        for r in range(1, n_rounds):
            t0 = time.monotonic()
            click_round(r)
            running_during.append(sum(1 for j in http_jobs if j.finished is None or j.finished > t0))

        # 4. every job finishes with its own result
        for job in browser_jobs:
            page = job["page"]
            expect(page.locator("#data-train-alert")).to_contain_text(f"Trained {job['name']}.",
                                                                      timeout=JOB_TIMEOUT_S * 1000)
            expect(page.locator("#data-summary")).to_contain_text(f"of {job['expansion'] * 50}")
            expect(page.locator("#data-train-start")).to_be_enabled()
            expect(page.locator("#data-train-progress-box")).to_be_hidden()
        for job in http_jobs:
            job.join(timeout=JOB_TIMEOUT_S)
        jobs_done = time.monotonic() - t_jobs
        for job in http_jobs:
            text = job.alert_text()
            assert f"Trained {job.name}." in text, text
            assert any(m.startswith("epoch ") for m in job.progress), job.progress
        expected = {j.name: (j.expansion * 50, j.seed) for j in http_jobs}
        expected |= {j["name"]: (j["expansion"] * 50, 0) for j in browser_jobs}
        for name, (hidden, seed) in expected.items():
            meta = json.loads((server.analyses / name / "sae.json").read_text())
            assert (meta["hidden"], meta["train"]["seed"]) == (hidden, seed), (name, meta["hidden"])
            steps = json.loads((server.analyses / name / "analysis.json").read_text())["steps"]
            assert set(steps) == {"sae"} and (server.analyses / name / "activations.npz").is_file()
            assert not [p for p in (server.analyses / name).iterdir() if p.name.startswith(".staging-")]

        # 5. no cross-talk in the end either, and the server answers at once
        for page, feats in zip(explorers, plan):
            assert_own_selection(page, feats[-1], n_cells, n_total)
            expect(page.locator("#jobs-lost-alert")).to_be_hidden()
        for job in browser_jobs:
            expect(job["page"].locator("#jobs-lost-alert")).to_be_hidden()
        t0 = time.monotonic()
        urllib.request.urlopen(server.url + "/_dash-layout", timeout=10).read()
        answer_s = time.monotonic() - t0
        assert server.proc.poll() is None
        ARTIFACTS.mkdir(exist_ok=True)
        explorers[0].screenshot(path=str(ARTIFACTS / "test_cc001-explorer-0.png"), full_page=True)
        browser_jobs[0]["page"].screenshot(path=str(ARTIFACTS / "test_cc001-data-0.png"), full_page=True)
    finally:
        for ctx in contexts:
            ctx.close()

    idle, busy = round_trips[0], [t for r in round_trips[1:] for t in r]
    assert max(running_during) >= 1, f"the jobs ended before the clicks ({running_during}); nothing was measured"
    report = {"sessions": {"explorer_browser": n_explorers, "data_page_browser": len(browser_jobs),
                           "http_jobs": len(http_jobs)},
              "click_round_trip_ms": {"idle_median": round(statistics.median(idle)),
                                      "during_jobs_median": round(statistics.median(busy)),
                                      "during_jobs_max": round(max(busy)), "idle": [round(t) for t in idle],
                                      "during_jobs": [round(t) for t in busy]},
              "jobs_running_per_round": running_during, "all_jobs_done_s": round(jobs_done, 1),
              "server_answer_after_s": round(answer_s, 3), "cpu_cores": os.cpu_count()}
    print("\nconcurrency:", json.dumps(report))
    write_report(report)
    # responsive: every click answered within a few seconds even with 7 jobs on 2 cores
    assert max(busy) < 15_000, report


def start_job(page, panel: str) -> int:
    """Click ``panel``'s start button; the job's process id, from the server's answer to the click."""
    with page.expect_response(lambda r: "_dash-update-component" in r.url and "cacheKey=" not in r.url
                              and f"data-{panel}-alert" in (r.request.post_data or "")) as first:
        page.click(f"#data-{panel}-start")
    return int(first.value.json()["job"].partition("~")[0])


def kill_and_wait_for_alert(page, pid: int, panel: str) -> tuple[float, float]:
    """SIGKILL the job (as the out-of-memory killer would); seconds until the alert and until the
    panel's start button is usable again."""
    from playwright.sync_api import expect

    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    alert = page.locator("#jobs-lost-alert")
    expect(alert).to_contain_text(f"its process ({pid}) ended unexpectedly", timeout=5_000)
    alert_s = time.monotonic() - killed
    expect(page.locator(f"#data-{panel}-start")).to_be_enabled(timeout=5_000)
    enabled_s = time.monotonic() - killed
    expect(alert).to_be_visible()
    expect(page.locator(f"#data-{panel}-alert .alert-danger")).to_contain_text(f"its process ({pid}) ended",
                                                                              timeout=5_000)
    expect(page.locator(f"#data-{panel}-cancel")).to_be_disabled()
    expect(page.locator(f"#data-{panel}-status")).to_have_text("")
    expect(page.locator(f"#data-{panel}-progress-box")).to_be_hidden()
    return alert_s, enabled_s


@pytest.mark.browser
@pytest.mark.slow
def test_cc002_killed_job_processes_become_alerts_and_change_nothing(server, browser):
    import psutil
    from playwright.sync_api import expect

    folder = server.analyses / "crash-target"
    before = snapshot(folder)
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
    try:
        page = ctx.new_page()
        page.goto(f"{server.url}/data?source=analysis:crash-target")
        expect(page.locator("#data-analysis-name")).to_have_value("crash-target", timeout=60_000)
        expect(page.locator("#data-annotate-start")).to_be_enabled(timeout=30_000)
        # two jobs of one page at once: a long re-training (10,000 latents × 500 epochs) and a re-annotation
        page.select_option("#data-preset-select", "paper")
        expect(page.locator("#data-epochs-input")).to_have_value("500")
        train = start_job(page, "train")
        expect(page.locator("#data-train-message")).to_contain_text("epoch", timeout=JOB_TIMEOUT_S * 1000)
        page.locator("#data-annotate-concepts input").nth(2).check()  # + GO CC: other settings than stored
        annotate = start_job(page, "annotate")
        jobs = {c.pid for c in psutil.Process(server.proc.pid).children(recursive=True)}
        assert {train, annotate} <= jobs  # processes of the app (forked by its fork server)
        expect(page.locator("#data-annotate-status")).to_have_text("Running…", timeout=10_000)

        # 1. the annotation's process dies: its panel says so; the training goes on, untouched
        times = [kill_and_wait_for_alert(page, annotate, "annotate")]
        expect(page.locator("#data-train-status")).to_have_text("Running…")
        expect(page.locator("#data-train-alert")).to_have_text("")
        message = page.locator("#data-train-message").inner_text()
        expect(page.locator("#data-train-message")).not_to_have_text(message, timeout=30_000)  # still progressing
        # 2. then the training's
        times.append(kill_and_wait_for_alert(page, train, "train"))
        expect(page.locator("#data-annotate-alert .alert-danger")).to_contain_text(f"({annotate})")  # unchanged
        page.screenshot(path=str(ARTIFACTS / "test_cc002-killed.png"), full_page=True)
        assert server.proc.poll() is None
        time.sleep(1.0)  # nothing arrives late
        assert snapshot(folder) == before

        # 3. the panel works again: start the same job and cancel it
        page.click("#data-train-start")
        expect(page.locator("#data-train-message")).to_contain_text("epoch", timeout=JOB_TIMEOUT_S * 1000)
        page.click("#data-train-cancel")
        expect(page.locator("#data-train-alert")).to_contain_text("Cancelled", timeout=10_000)
        expect(page.locator("#data-train-start")).to_be_enabled(timeout=10_000)
        time.sleep(1.0)
        assert snapshot(folder) == before
        assert server.proc.poll() is None
    finally:
        ctx.close()
    assert all(a < 5 and e < 5 for a, e in times), times
    print(f"\nkilled jobs: alert after {[round(a, 2) for a, _ in times]} s, "
          f"start button usable after {[round(e, 2) for _, e in times]} s")
    write_report({"killed_jobs": {"alert_s": [round(a, 2) for a, _ in times],
                                  "start_enabled_s": [round(e, 2) for _, e in times]}})


def write_report(values: dict) -> None:
    """Merge ``values`` into test-artifacts/concurrency.json (the numbers quoted in the README)."""
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "concurrency.json"
    report = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps({**report, **values}, indent=1) + "\n")
