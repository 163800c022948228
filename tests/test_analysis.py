"""The analysis folder: round trip, atomic steps, caching by inputs, schema guard."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from core.base import io
from core.store.analysis import SCHEMA_VERSION, Analysis
from core.base.errors import InputError, SchemaError

DATASET = {"path": "/x/data.h5ad", "sha256": "abc", "embedding": "X_emb"}


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_create_open_round_trip(tmp_path, rng):
    a = Analysis.create(tmp_path / "an", dataset=DATASET, seed=42)
    feats = pd.DataFrame({"live": [True, False, True]}, index=pd.Index([0, 1, 2], name="feature"))
    acts = sp.random(10, 3, density=0.3, random_state=0, format="csr", dtype=np.float32)
    with a.step("sae", inputs={"hidden": 3}) as w:
        w.write_json("sae.json", {"arch": "vanilla"})
        w.write_torch_state("sae.pt", {"W": torch.ones(2, 3)})
        w.write_parquet("features.parquet", feats)
        w.write_npz_sparse("activations.npz", acts)
        w.write_json("metrics.json", {"mse": 0.5})

    b = Analysis.open(tmp_path / "an")
    assert b.seed == 42 and b.config["schema_version"] == SCHEMA_VERSION
    assert b.config["dataset"] == DATASET and "numpy" in b.config["versions"]
    assert b.read_json("sae.json") == {"arch": "vanilla"}
    assert torch.equal(b.read_torch_state("sae.pt")["W"], torch.ones(2, 3))
    pd.testing.assert_frame_equal(b.read_parquet("features.parquet"), feats)
    assert (b.read_npz_sparse("activations.npz") != acts).nnz == 0
    assert b.cached("sae", inputs={"hidden": 3})
    assert not b.cached("sae", inputs={"hidden": 4})
    assert b.config["steps"]["sae"]["files"] == ["sae.json", "sae.pt", "features.parquet", "activations.npz",
                                                 "metrics.json"]
    assert not [p for p in (tmp_path / "an").iterdir() if p.name.startswith(".")]  # no staging left


def test_failed_step_leaves_folder_byte_identical(tmp_path):
    a = Analysis.create(tmp_path / "an", dataset=DATASET)
    with a.step("sae", inputs={"v": 1}) as w:
        w.write_json("metrics.json", {"mse": 1.0})
        w.write_parquet("features.parquet", pd.DataFrame({"x": [1]}))
    before = _snapshot(a.path)
    with pytest.raises(RuntimeError):
        with a.step("sae", inputs={"v": 2}) as w:
            w.write_json("metrics.json", {"mse": 2.0})
            raise RuntimeError("training crashed half-way")
    assert _snapshot(a.path) == before
    assert sorted(p.name for p in a.path.iterdir()) == sorted(before)  # no staging folder left
    assert Analysis.open(a.path).cached("sae", inputs={"v": 1})


def test_disk_full_during_write_keeps_everything(tmp_path, monkeypatch):
    a = Analysis.create(tmp_path / "an", dataset=DATASET)
    with a.step("sae", inputs={"v": 1}) as w:
        w.write_json("metrics.json", {"mse": 1.0})
    before = _snapshot(a.path)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError):
        with a.step("sae", inputs={"v": 2}) as w:
            w.write_json("metrics.json", {"mse": 2.0})
    monkeypatch.undo()
    assert _snapshot(a.path) == before


def test_cached_requires_files_present(tmp_path):
    a = Analysis.create(tmp_path / "an", dataset=DATASET)
    with a.step("s", inputs={"v": 1}) as w:
        w.write_json("metrics.json", {})
    assert a.cached("s", inputs={"v": 1})
    (a.path / "metrics.json").unlink()
    assert not a.cached("s", inputs={"v": 1})


def test_create_refuses_to_clobber(tmp_path):
    Analysis.create(tmp_path / "an", dataset=DATASET)
    with pytest.raises(InputError, match="already holds an analysis"):
        Analysis.create(tmp_path / "an", dataset=DATASET)
    Analysis.create(tmp_path / "an", dataset=DATASET, overwrite=True)


def test_open_errors(tmp_path):
    with pytest.raises(InputError, match="not an analysis folder"):
        Analysis.open(tmp_path)
    a = Analysis.create(tmp_path / "future", dataset=DATASET)
    cfg = io.read_json(a.file("analysis.json"))
    cfg["schema_version"] = SCHEMA_VERSION + 1
    io.write_json(a.file("analysis.json"), cfg)
    with pytest.raises(SchemaError, match="newer FeatureLens"):
        Analysis.open(a.path)
    (a.path / "analysis.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        Analysis.open(a.path)


def test_missing_file_names_the_step(tmp_path):
    a = Analysis.create(tmp_path / "an", dataset=DATASET)
    with pytest.raises(InputError, match="featurelens annotate"):
        a.read_parquet("annotations.parquet")


def test_step_refuses_path_names(tmp_path):
    a = Analysis.create(tmp_path / "an", dataset=DATASET)
    with pytest.raises(InputError):
        with a.step("x", inputs={}) as w:
            w.write_json("../escape.json", {})
    assert not (tmp_path / "escape.json").exists()


def test_open_or_create(tmp_path):
    a = Analysis.open_or_create(tmp_path / "an", dataset=DATASET, seed=1)
    stamp = a.file("analysis.json").stat().st_mtime_ns
    Analysis.open_or_create(tmp_path / "an", dataset=DATASET, seed=1)
    assert a.file("analysis.json").stat().st_mtime_ns == stamp  # reopened, not rewritten
    other = {**DATASET, "sha256": "different"}
    with pytest.raises(InputError, match="analysis of another dataset"):
        Analysis.open_or_create(tmp_path / "an", dataset=other)
    b = Analysis.open_or_create(tmp_path / "an", dataset=other, replace_other=True)
    assert b.config["dataset"]["sha256"] == "different"


def test_a_stale_copy_never_drops_steps_committed_by_another_writer(tmp_path):
    """Two objects on one folder (e.g. the app's page and a background job): each commit adds its
    step to the config on disk. Before, the second commit wrote back its stale copy and the first
    writer's steering runs vanished (found by the Explorer → Steering browser journey)."""
    Analysis.create(tmp_path / "a", dataset={"path": "x"})
    first, second = Analysis.open(tmp_path / "a"), Analysis.open(tmp_path / "a")
    with first.step("steering/one", inputs={"n": 1}) as w:
        w.write_json("steering/one/run.json", {"n": 1})
    with second.step("steering/two", inputs={"n": 2}) as w:  # second never saw "one"
        w.write_json("steering/two/run.json", {"n": 2})
    steps = Analysis.open(tmp_path / "a").config["steps"]
    assert {"steering/one", "steering/two"} <= set(steps)
    assert set(second.config["steps"]) == set(steps)  # the writer's copy is the merged config
    assert second.cached("steering/one", inputs={"n": 1})


def test_steps_from_concurrent_processes_all_land(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    Analysis.create(tmp_path / "a", dataset={"path": "x"})
    code = ("import sys; from core.store.analysis import Analysis; a = Analysis.open(sys.argv[1]); tag = sys.argv[2]\n"
            "for i in range(15):\n"
            "    with a.step(f'{tag}/{i}', inputs={'i': i}) as w: w.write_json(f'{tag}/{i}.json', {'i': i})\n")
    root = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "a"), tag], cwd=root) for tag in "pq"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    steps = Analysis.open(tmp_path / "a").config["steps"]
    assert {f"{t}/{i}" for t in "pq" for i in range(15)} <= set(steps)


def test_a_replaced_analysis_refuses_the_step(tmp_path):
    old = Analysis.create(tmp_path / "a", dataset={"path": "x"})
    Analysis.create(tmp_path / "a", dataset={"path": "y"}, overwrite=True)
    before = _snapshot(tmp_path / "a")
    with pytest.raises(InputError, match="replaced by another analysis"):
        with old.step("s", inputs={}) as w:
            w.write_json("s.json", {})
    assert _snapshot(tmp_path / "a") == before
