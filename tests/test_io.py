from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from core.base import io


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "x.json"
    io.write_json(target, {"a": 1})
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("disk full")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_failed_serialisation_keeps_old_file(tmp_path):
    target = tmp_path / "x.json"
    io.write_json(target, {"a": 1})
    before = target.read_bytes()
    with pytest.raises(TypeError):
        io.write_json(target, {"a": object()})
    assert target.read_bytes() == before


def test_round_trips(tmp_path, rng):
    df = pd.DataFrame({"f": np.arange(5), "v": rng.normal(size=5)})
    io.write_parquet(tmp_path / "t.parquet", df)
    pd.testing.assert_frame_equal(io.read_parquet(tmp_path / "t.parquet"), df)

    m = sp.random(20, 30, density=0.1, random_state=1, format="csr", dtype=np.float32)
    io.write_npz_sparse(tmp_path / "a.npz", m)
    back = io.read_npz_sparse(tmp_path / "a.npz")
    assert (back != m).nnz == 0 and back.dtype == np.float32

    state = {"w": torch.randn(3, 4), "b": torch.zeros(4)}
    io.write_torch_state(tmp_path / "s.pt", state)
    back = io.read_torch_state(tmp_path / "s.pt")
    assert torch.equal(back["w"], state["w"])


def test_torch_state_refuses_pickled_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(Exception):
        io.read_torch_state(path)


def test_content_hash_is_stable_and_sensitive(tmp_path):
    a = np.arange(6, dtype=np.float32)
    assert io.content_hash({"k": 1}, a) == io.content_hash({"k": 1}, a.copy())
    assert io.content_hash({"k": 1}, a) != io.content_hash({"k": 2}, a)
    assert io.content_hash(a) != io.content_hash(a.astype(np.float64))
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    h1 = io.content_hash(f)
    f.write_bytes(b"abd")
    assert io.content_hash(f) != h1
