from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

CHROMIUM = os.environ.get("FEATURELENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)


@pytest.fixture
def small_h5ad(tmp_path, rng):
    from helpers import gen_adata

    path = tmp_path / "small.h5ad"
    gen_adata(rng=rng).write_h5ad(path)
    return path


# ----------------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_FLAGS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path, analyses: Path, data: Path):
        self.url, self.proc, self.log, self.analyses, self.data = url, proc, log, analyses, data


def start_server(base: Path, args: list[str], *, timeout: float = 60) -> AppServer:
    """Run ``python -m core.cli.main ARGS --port P`` with its own folders under ``base``; wait until it serves."""
    port = free_port()
    env = {**os.environ,
           "FEATURELENS_ANALYSES_DIR": str(base / "analyses"),
           "FEATURELENS_DATA_DIR": str(base / "data"),
           "FEATURELENS_CACHE_DIR": str(base / "cache"),
           "PYTHONUNBUFFERED": "1"}
    (base / "data").mkdir(exist_ok=True)
    (base / "analyses").mkdir(exist_ok=True)
    log = base / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "core.cli", *args, "--port", str(port)],
                                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"app did not start:\n{log.read_text()}")
            time.sleep(0.3)
    return AppServer(url, proc, log, base / "analyses", base / "data")


def stop_server(server: AppServer) -> None:
    proc = server.proc
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The real app (`featurelens serve`) on a free loopback port, with its own folders."""
    server = start_server(tmp_path_factory.mktemp("app"), ["serve"])
    yield server
    stop_server(server)


@pytest.fixture
def screenshot(page, request):
    """Call ``screenshot(name)`` to save a PNG of the page under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)

    def _shot(name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _shot


# ----------------------------------------------------------------------------- demo analysis
@pytest.fixture(scope="session")
def demo_analysis(tmp_path_factory) -> Path:
    """The default demo (``featurelens demo``: simulated data → model → SAE → annotation), built ONCE
    per test session into ``<tmp>/analyses/demo``; returns the analysis folder. Treat it as read-only."""
    from core.demo.build import build_demo

    out = tmp_path_factory.mktemp("demo-session") / "analyses" / "demo"
    build_demo(out, seed=0)
    return out
