"""`featurelens export`: tables as CSV/Parquet, the whole analysis as a .zip that reopens."""
from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from core.store.analysis import Analysis
from core.cli.main import main
from core.store.export import export_archive, export_tables, unpack_archive


@pytest.fixture()
def analysis(tmp_path):
    a = Analysis.create(tmp_path / "ana", dataset={"path": "x.h5ad", "sha256": "0" * 64}, seed=3)
    feats = pd.DataFrame({"feature": [0, 1, 2], "locality": ["local", "global", "dead"], "frequency": [0.1, 0.5, 0.0]})
    ann = pd.DataFrame({"feature": [0, 0, 1], "term": ["GO:1", "GO:2", "GO:1"], "q": [1e-5, 2e-3, 4e-4]})
    with a.step("sae", inputs={"x": 1}) as w:
        w.write_parquet("features.parquet", feats)
        w.write_npz_sparse("activations.npz", sp.random(5, 3, density=0.5, format="csr", random_state=0))
        w.write_json("metrics.json", {"fvu": 0.01})
    with a.step("annotate", inputs={"y": 2}) as w:
        w.write_parquet("annotations.parquet", ann)
    with a.step("steering/f0-abc", inputs={"z": 3}) as w:
        w.write_parquet("steering/f0-abc/de.parquet", pd.DataFrame({"gene": ["A"], "log2fc": [1.5]}))
    (a.path / ".staging-leftover").mkdir()
    return Analysis.open(a.path), feats, ann


def test_tables_as_csv_equal_the_analysis(analysis, tmp_path):
    a, feats, ann = analysis
    files = export_tables(a, tmp_path / "out")
    names = {str(f) for f in files}
    assert {"features.csv", "annotations.csv", "steering/f0-abc/de.csv", "metrics.json", "analysis.json"} <= names
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "features.csv"), feats)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "annotations.csv"), ann)
    assert not any(".staging" in n for n in names)


def test_tables_as_parquet_and_never_overwrite(analysis, tmp_path):
    a, feats, _ = analysis
    export_tables(a, tmp_path / "pq", fmt="parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "pq" / "features.parquet"), feats)
    assert main(["export", str(a.path), "--out", str(tmp_path / "pq")]) == 2  # exists already


def test_zip_reopens_byte_identical(analysis, tmp_path):
    a, _, _ = analysis
    out = export_archive(a, tmp_path / "ana.zip")
    with zipfile.ZipFile(out) as zf:
        assert not any(".staging" in n for n in zf.namelist())
    b = unpack_archive(out, tmp_path / "elsewhere")
    assert b.config == a.config
    for name in ("features.parquet", "activations.npz", "steering/f0-abc/de.parquet"):
        assert (b.path / name).read_bytes() == (a.path / name).read_bytes()
    np.testing.assert_array_equal(b.read_npz_sparse("activations.npz").toarray(), a.read_npz_sparse("activations.npz").toarray())


def test_cli(analysis, tmp_path, capsys):
    a, _, _ = analysis
    assert main(["export", str(a.path), "--out", str(tmp_path / "t")]) == 0
    assert "features.csv" in capsys.readouterr().out
    assert main(["export", str(a.path), "--out", str(tmp_path / "a.zip")]) == 0
    assert (tmp_path / "a.zip").stat().st_size > 0


def test_bad_inputs(tmp_path, analysis, capsys):
    a, _, _ = analysis
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    empty = Analysis.create(tmp_path / "empty", dataset={"path": "x.h5ad"})
    assert main(["export", str(empty.path), "--out", str(tmp_path / "o")]) == 2
    assert "no tables yet" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("x/analysis.json", "{}")
        zf.writestr("x/../../escape.txt", "no")
    with pytest.raises(Exception, match="unsafe member"):
        unpack_archive(evil, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()
