"""The bad-input corpus (tests/bad_inputs.py): every case gives one clear message, never a traceback.

For every case: (a) the CLI exits with code 2 and prints a specific message, (b) the core call
the app makes shows the same message (the UI puts it in an alert), (c) nothing in the workspace
changes — the existing analysis folder, the data folder and the bad input itself are
byte-identical afterwards, and no temporary file is left behind. Then: disk full during a write,
a cancelled and a crashed job, an interrupted CLI, and the server's upload-size cap.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs import CASES, build_base, copy_workspace, snapshot

from core.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("base") / "ws")


@pytest.fixture
def ws(base, tmp_path, monkeypatch):
    ws = copy_workspace(base, tmp_path / "ws")
    monkeypatch.setenv("FEATURELENS_DATA_DIR", str(ws.data))
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(ws.analyses))
    monkeypatch.delenv("FEATURELENS_CONFINE", raising=False)
    monkeypatch.chdir(ws.data)
    return ws


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, ws, monkeypatch, capsys):
    bad = CASES[name](ws)
    for key, value in bad.env.items():
        monkeypatch.setenv(key, value)
    before = snapshot(ws.root)
    capsys.readouterr()

    code = main(bad.argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "error: " in err
    for words in bad.expect:
        assert words in err, f"{words!r} not in CLI message {err!r}"

    shown = bad.core()
    for words in bad.expect:
        assert words in shown, f"{words!r} not in the app's message {shown!r}"

    assert snapshot(ws.root) == before
    if bad.check:
        bad.check()


def test_many_bad_inputs_in_one_process_then_a_good_one(ws, capsys):
    """The process keeps running: after a series of refusals the same process still works."""
    for name in ("NaN in the embedding", "truncated .h5ad", "GMT separated by spaces", "decoder returning NaN"):
        assert main(CASES[name](ws).argv) == 2
    assert main(["validate", str(ws.h5ad), "--embedding", "X_emb"]) == 0
    assert "OK: the dataset can be used" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["truncated .h5ad", "path traversal ../../etc/passwd"])
def test_real_process(name, ws):
    """The installed entry point as a real process: exit code 2, message, no traceback."""
    bad = CASES[name](ws)
    env = {"FEATURELENS_DATA_DIR": str(ws.data), "FEATURELENS_ANALYSES_DIR": str(ws.analyses), **bad.env}
    import os

    out = subprocess.run([sys.executable, "-m", "core.cli", *bad.argv], cwd=ws.data, capture_output=True, text=True,
                         env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and bad.expect[0] in out.stderr


def test_constant_embedding_is_refused_before_anything_is_written(ws, capsys):
    """A zero-variance embedding: the library, the analysis step and the CLI refuse it before
    training, name the constant dimensions and the fix, and neither create nor change a folder."""
    import numpy as np

    from bad_inputs import N_CELLS

    from core.store.analysis import Analysis
    from core.base.errors import InputError
    from core.sae import TrainConfig, VanillaConfig, check_trainable, train_sae
    from core.sae.pipeline import train_into_analysis

    rng = np.random.default_rng(0)
    zeros = np.zeros((N_CELLS, 6), np.float32)
    one = np.c_[np.full((N_CELLS, 3), 2.0), rng.normal(size=(N_CELLS, 1)), np.full((N_CELLS, 2), -1.0)]
    with pytest.raises(InputError, match="none of its 6 dimensions varies") as err:
        train_sae(zeros, config=VanillaConfig(hidden=12), train=TrainConfig(epochs=1))
    assert "featurelens fit-model" in err.value.fix
    with pytest.raises(InputError, match=r"1 non-constant dimension of 6 \(dimensions 0–2, 4–5 are constant\)"):
        train_sae(one, config=VanillaConfig(hidden=12), train=TrainConfig(epochs=1))
    near = np.c_[np.full(N_CELLS, 3.0) + rng.normal(scale=1e-9, size=N_CELLS), rng.normal(size=(N_CELLS, 2))]
    assert check_trainable(near).shape == (N_CELLS, 3)  # 2 varying dimensions are enough
    with pytest.raises(InputError, match="1 non-constant dimension of 3"):  # float32 rounding noise is constant
        check_trainable(np.c_[near[:, :2], np.full(N_CELLS, 3.0)])

    before = snapshot(ws.root)
    with pytest.raises(InputError, match="embedding X_emb is constant"):
        train_into_analysis(Analysis.open(ws.analysis), zeros, sae_config=VanillaConfig(hidden=12),
                            train_config=TrainConfig(epochs=1), data_ref={"embedding": "X_emb"}, force=True)
    assert snapshot(ws.root) == before

    a = ws.adata()
    a.obsm["X_emb"] = np.zeros_like(a.obsm["X_emb"])
    path = ws.write(a, "zeros.h5ad")
    before = snapshot(ws.root)
    new = ws.analyses / "new"
    code = main(["train", str(path), "--embedding", "X_emb", "--out", str(new), "--hidden", "10", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "embedding X_emb is constant: none of its 5 dimensions varies" in err and "Fix: " in err
    assert not new.exists() and snapshot(ws.root) == before


# ----------------------------------------------------------------------------- writes that fail
def _train_argv(ws, *extra):
    return ["train", str(ws.h5ad), "--embedding", "X_emb", "--out", str(ws.analysis), "--hidden", "10", "--epochs",
            "1", *extra]


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_disk_full_during_train_write(ws, monkeypatch, capsys, where):
    """ENOSPC while the step writes its files, or while it commits them: exit 2, folder identical."""
    import errno
    import os

    from core.store import analysis as analysis_mod
    from core.base import io

    before = snapshot(ws.root)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "fsync":
        monkeypatch.setattr(io.os, "fsync", full)
    else:  # the third rename of a staged file into the analysis: two are already in place
        real = os.replace
        into_analysis = []

        def replace(src, dst):
            if Path(dst).parent == ws.analysis:
                into_analysis.append(Path(dst).name)
                if len(into_analysis) == 3:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(src, dst)

        monkeypatch.setattr(analysis_mod.os, "replace", replace)
    code = main(_train_argv(ws, "--force"))
    monkeypatch.undo()
    if where == "replace":
        assert into_analysis[3:] == into_analysis[2::-1]  # two new files were in place: all three old ones restored
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "No space left on device" in err and "nothing in the analysis was changed" in err
    assert snapshot(ws.root) == before


def test_cancelled_training_and_annotation_leave_the_folder(ws):
    from bad_inputs import N_CELLS

    from core.store.analysis import Analysis
    from core.annotate.pipeline import AnnotationConfig, annotate_analysis
    from core.data.load import load_dataset
    from core.base.progress import Cancelled
    from core.sae import TrainConfig, VanillaConfig
    from core.sae.pipeline import train_into_analysis

    before = snapshot(ws.root)
    ds = load_dataset(ws.h5ad, embedding="X_emb")
    calls = []

    def stop_after(n):
        def should_stop():
            calls.append(1)
            return len(calls) > n
        return should_stop

    analysis = Analysis.open(ws.analysis)
    with pytest.raises(Cancelled):
        train_into_analysis(analysis, ds.embedding, sae_config=VanillaConfig(hidden=12),
                            train_config=TrainConfig(epochs=100_000, patience=None, seed=1), data_ref=ds.source,
                            should_stop=stop_after(3), force=True)
    assert len(calls) > 3 and ds.embedding.shape[0] == N_CELLS
    assert snapshot(ws.root) == before

    calls.clear()
    config = AnnotationConfig(concepts=(), gmt=(str(ws.gmt),), min_term_size=3, percentile=70)
    with pytest.raises(Cancelled):
        annotate_analysis(analysis, config=config, should_stop=stop_after(1), force=True)
    assert snapshot(ws.root) == before
    assert Analysis.open(ws.analysis).config == analysis.config


def test_crash_mid_step_leaves_the_folder(ws, monkeypatch):
    """A bug (any exception) after some files were staged: nothing reaches the analysis."""
    from core.base import io
    from core.store.analysis import Analysis
    from core.data.load import load_dataset
    from core.sae import TrainConfig, VanillaConfig
    from core.sae.pipeline import train_into_analysis

    before = snapshot(ws.root)
    ds = load_dataset(ws.h5ad, embedding="X_emb")

    def crash(*args, **kwargs):
        raise RuntimeError("worker crashed")

    monkeypatch.setattr(io, "write_npz_sparse", crash)  # after sae.pt, metrics, features were staged
    with pytest.raises(RuntimeError, match="worker crashed"):
        train_into_analysis(Analysis.open(ws.analysis), ds.embedding, sae_config=VanillaConfig(hidden=12),
                            train_config=TrainConfig(epochs=1), data_ref=ds.source, force=True)
    assert snapshot(ws.root) == before


def test_interrupted_cli_keeps_what_was_there(ws, monkeypatch, capsys):
    from core.base import progress

    before = snapshot(ws.root)

    def interrupt(self, done, total, message=""):
        raise KeyboardInterrupt

    monkeypatch.setattr(progress.ProgressBar, "__call__", interrupt)
    assert main(_train_argv(ws, "--force")) == 130
    assert "interrupted" in capsys.readouterr().err
    assert snapshot(ws.root) == before


# ----------------------------------------------------------------------------- uploads
def test_oversized_upload_is_refused_by_the_server(tmp_path, monkeypatch):
    """The real app, served as a subprocess with a 1 MB cap, answers 413 to a 2 MB body."""
    import urllib.error
    import urllib.request

    from conftest import start_server, stop_server

    monkeypatch.setenv("FEATURELENS_MAX_UPLOAD_MB", "1")
    server = start_server(tmp_path, ["serve"])
    try:
        body = b'{"output": "x", "inputs": [], "pad": "' + b"a" * (2 << 20) + b'"}'
        req = urllib.request.Request(server.url + "/_dash-update-component", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 413
        small = urllib.request.Request(server.url + "/_dash-update-component", data=b"{}", method="POST",
                                       headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:  # a small bad body: refused, but not as too large
            urllib.request.urlopen(small, timeout=30)
        assert err.value.code != 413
        assert server.proc.poll() is None  # still serving
        assert urllib.request.urlopen(server.url, timeout=10).status == 200
    finally:
        stop_server(server)
