"""Scale-out: Redis + Celery workers behind the app's background callbacks, and lost-job reporting.

The integration tests start a real ``redis-server`` (Debian package; ``make redis`` installs it)
on a free port in a temporary folder, real app processes (``featurelens serve``) and a real
worker (``featurelens worker``), and drive the footer's job-health check over Dash's HTTP
protocol for background callbacks: the first POST to ``/_dash-update-component`` queues the
job and returns signed ``cacheKey`` / ``job`` handles; later POSTs with those handles poll
until the response carries the outputs (or a side update).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, free_port, start_server, stop_server

from core.cli.main import main
from core.base.errors import InputError
from core.runtime.jobs import BROKER_ENV, JobProbe, broker_url, check_broker, make_celery, probe_job, redact_url

REDIS_SERVER = shutil.which("redis-server")
NO_REDIS = "redis-server is not installed (Debian package redis-server; `make redis` or `make test` installs it)"


# ----------------------------------------------------------------------------- helpers
class RedisServer:
    def __init__(self, base: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = base / "redis.log"
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(base)], stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                check_broker(self.url, timeout=0.5)
                return
            except InputError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    raise RuntimeError(f"redis-server did not start:\n{self.log.read_text()}") from None
                time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()


@contextlib.contextmanager
def environ(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Worker:
    """``featurelens worker`` as a subprocess; ``pool_pids()`` are the processes that run jobs."""

    def __init__(self, base: Path, url: str, *, concurrency: int = 2, timeout: float = 60):
        self.log = base / f"worker-{time.monotonic_ns()}.log"
        env = {**os.environ, BROKER_ENV: url, "FEATURELENS_ANALYSES_DIR": str(base / "analyses"),
               "FEATURELENS_DATA_DIR": str(base / "data"), "PYTHONUNBUFFERED": "1"}
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "core.cli", "worker", "--concurrency", str(concurrency)],
                                         cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while " ready." not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"worker did not start:\n{self.log.read_text()}")
            time.sleep(0.2)

    def pool_pids(self) -> set[int]:
        import psutil

        return {c.pid for c in psutil.Process(self.proc.pid).children()}

    def kill_all(self):
        for pid in self.pool_pids() | {self.proc.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill_all()


PROBE = {"output": "jobs-check-result.children", "outputs": {"id": "jobs-check-result", "property": "children"},
         "inputs": [{"id": "jobs-check-button", "property": "n_clicks", "value": 1}],
         "changedPropIds": ["jobs-check-button.n_clicks"]}


class DashJob:
    """One background-callback run of the job-health probe, driven like the browser does."""

    def __init__(self, url: str, *, hold_s: float = 0.0):
        self.url = url
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        config = json.loads(re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>',
                                      page, re.S).group(1))
        self.end_id = config["end_id"]
        self.payload = {**PROBE, "state": [{"id": "jobs-check-hold", "property": "data", "value": hold_s}]}
        self.handles = self._post({"endId": self.end_id})
        assert "cacheKey" in self.handles and "job" in self.handles, self.handles
        self.job = self.handles["job"].rpartition("~")[0]  # the unsigned Celery task id / process id
        self.progress: list[str] = []

    def _post(self, params: dict) -> dict:
        req = urllib.request.Request(f"{self.url}/_dash-update-component?{urllib.parse.urlencode(params)}",
                                     data=json.dumps(self.payload).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    def poll(self) -> dict:
        body = self._post({"endId": self.end_id, "cacheKey": self.handles["cacheKey"], "job": self.handles["job"]})
        msg = body.get("progress", {}).get("jobs-check-progress.children")
        if msg:
            self.progress.append(msg)
        return body

    def wait(self, *, timeout: float = 60, until=lambda body: "response" in body or "sideUpdate" in body) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.poll()
            if until(body):
                return body
            time.sleep(0.25)
        raise AssertionError(f"job {self.job} did not finish in {timeout} s (progress: {self.progress[-3:]})")

    def wait_started(self, timeout: float = 30) -> None:
        self.wait(timeout=timeout, until=lambda body: bool(self.progress))


def wait_all(jobs: list[DashJob], *, timeout: float) -> list[dict]:
    """Poll several jobs in turn (as several browser tabs would) until each has finished."""
    done: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(jobs) and time.monotonic() < deadline:
        for i, job in enumerate(jobs):
            if i not in done and ("response" in (body := job.poll()) or "sideUpdate" in body):
                done[i] = body
        time.sleep(0.25)
    assert len(done) == len(jobs), f"only {sorted(done)} of {len(jobs)} jobs finished in {timeout} s"
    return [done[i] for i in range(len(jobs))]


def result_text(body: dict) -> str:
    return body["response"]["jobs-check-result"]["children"]["props"]["children"]


def alert_text(body: dict) -> str:
    alert = body["sideUpdate"]["jobs-lost-alert"]
    assert alert["is_open"] is True
    return alert["children"]


# ----------------------------------------------------------------------------- unit
def test_broker_url_and_redaction():
    assert broker_url({}) is None and broker_url({BROKER_ENV: "  "}) is None
    assert broker_url({BROKER_ENV: "redis://h:6379/0"}) == "redis://h:6379/0"
    assert redact_url("redis://:s3cret@h:6380/1") == "redis://***@h:6380/1"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_check_broker_refuses_bad_url_and_silent_port():
    with pytest.raises(InputError, match="is not a Redis URL"):
        check_broker("http://127.0.0.1:1/")
    with pytest.raises(InputError, match=r"cannot reach Redis at redis://\*\*\*@127\.0\.0\.1") as exc:
        check_broker(f"redis://:pw@127.0.0.1:{free_port()}/0", timeout=0.5)
    assert "pw" not in str(exc.value) and "make redis" in exc.value.fix


def test_worker_command_needs_a_reachable_broker(monkeypatch, capsys):
    monkeypatch.delenv(BROKER_ENV, raising=False)
    assert main(["worker"]) == 2
    assert f"{BROKER_ENV} is not set" in capsys.readouterr().err
    monkeypatch.setenv(BROKER_ENV, f"redis://127.0.0.1:{free_port()}/0")
    assert main(["worker", "--concurrency", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach Redis" in err and "Traceback" not in err
    assert main(["worker", "--concurrency", "0"]) == 2


def test_serve_refuses_an_unreachable_broker(monkeypatch, capsys):
    monkeypatch.setenv(BROKER_ENV, f"redis://127.0.0.1:{free_port()}/0")
    assert main(["serve", "--port", str(free_port())]) == 2
    assert "cannot reach Redis" in capsys.readouterr().err


def test_probe_job_reports_its_process_progress_and_cancel():
    seen = []
    probe = probe_job(hold_s=0.3, progress=lambda d, t, m: seen.append((d, t, m)), step_s=0.05)
    assert isinstance(probe, JobProbe) and probe.pid == os.getpid() and not probe.cancelled
    assert probe.held_s >= 0.3 and len(seen) >= 3 and seen[-1] == (0.3, 0.3, "done")
    assert all(d <= t for d, t, _ in seen)
    calls = iter([False, False, True])
    stopped = probe_job(hold_s=30, should_stop=lambda: next(calls), step_s=0.01)
    assert stopped.cancelled and stopped.held_s < 1
    with pytest.raises(InputError, match="hold_s"):
        probe_job(hold_s=-1)


def test_check_jobs_callback_as_a_function(monkeypatch):
    from dash import no_update

    from callbacks.jobs_health import check_jobs

    monkeypatch.delenv(BROKER_ENV, raising=False)
    progress = []
    out = check_jobs(progress.append, 1, 0)
    text = out.children
    assert f"(process {os.getpid()})" in text and "Diskcache" in text and progress[-1] == ""
    assert check_jobs(progress.append, None, 0) is no_update
    assert "hold_s must be between" in check_jobs(progress.append, 1, 10_000)


def test_local_manager_reports_a_dead_job_but_not_a_cancelled_one(tmp_path):
    import diskcache

    from app import LocalJobManager

    mgr = LocalJobManager(diskcache.Cache(str(tmp_path / "cache")))
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    cancelled = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert mgr.lost_reason(victim.pid) is None and mgr.job_running(victim.pid)
        victim.kill()
        victim.wait()
        reason = mgr.lost_reason(victim.pid)
        assert reason and f"process ({victim.pid}) ended unexpectedly" in reason
        # through Dash's polling path: no result + dead process -> side update opening the alert
        assert mgr.get_result("k1", victim.pid) is mgr.UNDEFINED
        assert mgr.get_updated_props("k1") == {"jobs-lost-alert": {"children": reason, "is_open": True}}
        assert mgr.get_updated_props("k1") == {}
        mgr.terminate_job(cancelled.pid)  # what Dash does on cancel
        cancelled.wait(timeout=10)
        assert mgr.lost_reason(cancelled.pid) is None
        assert mgr.get_result("k2", cancelled.pid) is mgr.UNDEFINED and mgr.get_updated_props("k2") == {}
    finally:
        for p in (victim, cancelled):
            if p.poll() is None:
                p.kill()


def test_app_layout_has_the_lost_job_alert_and_the_jobs_footer(monkeypatch, tmp_path):
    import app as featurelens_app
    from components import ids

    monkeypatch.delenv(BROKER_ENV, raising=False)
    monkeypatch.setenv("FEATURELENS_CACHE_DIR", str(tmp_path / "cache"))
    dash_app = featurelens_app.create_app()
    assert isinstance(dash_app._background_manager, featurelens_app.LocalJobManager)
    layout = dash_app.layout() if callable(dash_app.layout) else dash_app.layout  # built per page load
    found = {c.id: c for c in layout._traverse() if getattr(c, "id", None)}
    assert found[ids.JOBS_ALERT].is_open is False
    from plotly.io.json import to_json_plotly

    assert "Background jobs: in subprocesses of this app" in to_json_plotly(found[ids.JOBS_FOOTER])
    assert ids.JOBS_CHECK_BUTTON in found and ids.JOBS_CHECK_HOLD in found


def test_identical_jobs_get_their_own_result_slot(tmp_path):
    """Dash alone keys results by (source, args): two identical jobs at once would share one slot."""
    import dash
    import diskcache

    from app import LocalJobManager

    def fn(x):
        return x

    cache = diskcache.Cache(str(tmp_path / "cache"))
    ours = LocalJobManager(cache)
    assert ours.build_cache_key(fn, [1], [], None) != ours.build_cache_key(fn, [1], [], None)
    plain = dash.DiskcacheManager(cache)
    assert plain.build_cache_key(fn, [1], [], None) == plain.build_cache_key(fn, [1], [], None)


# ----------------------------------------------------------------------------- with a real Redis
@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    if REDIS_SERVER is None:
        if os.environ.get("CI"):
            pytest.fail(f"{NO_REDIS}; in CI `make test` must have installed it")
        pytest.skip(NO_REDIS)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def test_create_app_uses_celery_when_the_broker_is_set(redis_server, monkeypatch):
    import app as featurelens_app

    monkeypatch.setenv(BROKER_ENV, redis_server.url)
    dash_app = featurelens_app.create_app()
    manager = dash_app._background_manager
    assert isinstance(manager, featurelens_app.WorkerJobManager)
    assert featurelens_app.celery_app is manager.handle
    assert featurelens_app.celery_app.conf.broker_url == redis_server.url
    assert any(name.startswith("background_callback_") for name in featurelens_app.celery_app.tasks)
    monkeypatch.delenv(BROKER_ENV)
    assert isinstance(featurelens_app.create_app()._background_manager, featurelens_app.LocalJobManager)


@pytest.mark.slow
def test_two_apps_share_one_worker_pool_and_lost_workers_are_reported(redis_server, tmp_path):
    bases = [tmp_path / "app0", tmp_path / "app1"]
    for base in bases:
        base.mkdir()
    with environ(**{BROKER_ENV: redis_server.url}):
        apps = [start_server(base, ["serve"]) for base in bases]
    worker = Worker(tmp_path, redis_server.url, concurrency=2)
    try:
        app_pids = {a.proc.pid for a in apps}
        # 1. one identical job from each app at once (same result slot in plain Dash), both run by the one pool
        jobs = [DashJob(a.url, hold_s=2.0) for a in apps]
        bodies = wait_all(jobs, timeout=60)
        pool, pids = worker.pool_pids(), set()
        for job, body in zip(jobs, bodies):
            text = result_text(body)
            pid = int(re.search(r"\(process (\d+)\)", text).group(1))
            assert "via Redis (a featurelens worker)" in text and pid in pool and pid not in app_pids, text
            assert any("holding" in p for p in job.progress)  # progress travelled worker -> Redis -> app
            pids.add(pid)
        assert len(pids) == 2  # side by side, in the pool's two processes
        # 2. the pool process running a job is killed (as the OOM killer would): the app says so
        job = DashJob(apps[0].url, hold_s=60)
        job.wait_started()
        running_pid = make_celery(redis_server.url).AsyncResult(job.job).info["pid"]  # recorded when STARTED
        assert running_pid in worker.pool_pids()
        os.kill(running_pid, signal.SIGKILL)
        text = alert_text(job.wait(timeout=30))
        assert "its worker process died" in text and "WorkerLostError" in text
        # 3. the whole worker is killed mid-job: the app notices the worker no longer answers
        job = DashJob(apps[1].url, hold_s=60)
        job.wait_started()
        worker.kill_all()
        text = alert_text(job.wait(timeout=30))
        assert "no longer answers" in text and "featurelens worker" in text
        # 4. no worker at all: a queued job is given up after the grace period, with the fix
        job = DashJob(apps[0].url, hold_s=0)
        text = alert_text(job.wait(timeout=40))
        assert "No background worker is connected" in text
        # 5. a new worker serves the apps again
        worker = Worker(tmp_path, redis_server.url, concurrency=1)
        assert "via Redis" in result_text(DashJob(apps[1].url).wait(timeout=60))
    finally:
        worker.stop()
        for a in apps:
            stop_server(a)


@pytest.mark.slow
def test_local_jobs_killed_mid_run_open_the_alert(tmp_path):
    with environ(**{BROKER_ENV: None}):
        server = start_server(tmp_path, ["serve"])
    try:
        ok = DashJob(server.url, hold_s=0.5).wait(timeout=60)
        assert "Diskcache" in result_text(ok)
        job = DashJob(server.url, hold_s=60)
        job.wait_started(timeout=60)
        os.kill(int(job.job), signal.SIGKILL)
        text = alert_text(job.wait(timeout=30))
        assert f"its process ({job.job}) ended unexpectedly" in text
    finally:
        stop_server(server)
