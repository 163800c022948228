"""Sources the app can open, and path confinement."""
from __future__ import annotations

import pytest
from helpers import gen_adata

from core.store import catalog
from core.store.analysis import Analysis
from core.base.errors import InputError
from core.base.paths import confine


@pytest.fixture
def folders(tmp_path, monkeypatch, rng):
    data, analyses = tmp_path / "data", tmp_path / "analyses"
    (data / "sub").mkdir(parents=True)
    analyses.mkdir()
    gen_adata(rng=rng).write_h5ad(data / "sub" / "mine.h5ad")
    (data / "notes.txt").write_text("x")
    Analysis.create(analyses / "first", dataset={"path": "p", "n_cells": 3})
    monkeypatch.setenv("FEATURELENS_DATA_DIR", str(data))
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(analyses))
    return data, analyses


def test_list_sources(folders):
    values = [o["value"] for o in catalog.list_sources()]
    assert values == ["analysis:first", "shipped:pbmc68k", "file:sub/mine.h5ad"]


def test_describe_sources(folders):
    s = catalog.describe_source("file:sub/mine.h5ad")
    assert s["error"] is None and s["facts"]["cells"] == "60"
    s = catalog.describe_source("shipped:pbmc68k")
    assert s["facts"]["embedding"] == "X_pca (50 dimensions)"
    s = catalog.describe_source("analysis:first")
    assert s["facts"]["steps done"] == "none" and "live features" not in s["facts"]


def test_describe_analysis_with_results(folders):
    _, analyses = folders
    a = Analysis.open(analyses / "first")
    with a.step("sae", inputs={}) as w:
        w.write_json("metrics.json", {"summary": {"live": 7, "hidden": 10, "l0": 2.5, "local": 3, "global": 4}})
        w.write_json("annotation.json", {"features_annotated": 5, "annotated_fraction_of_live": 5 / 7,
                                         "unique_terms": 42})
    f = catalog.describe_source("analysis:first")["facts"]
    assert f["live features"] == "7 of 10 (L0 2.5 per cell)" and f["local / regional / global"] == "3 / – / 4"
    assert f["annotated features"] == "5 (71% of live)" and f["unique terms"] == 42


@pytest.mark.parametrize("value", ["file:../../etc/passwd", "file:/etc/passwd", "analysis:../data",
                                   "file:sub/../../x.h5ad"])
def test_path_traversal_refused(folders, value):
    s = catalog.describe_source(value)
    assert "outside the allowed folders" in s["error"]


def test_bad_names(folders):
    assert "not a source name" in catalog.describe_source("nonsense")["error"]
    assert "unknown source kind" in catalog.describe_source("ftp:x")["error"]
    assert "no shipped dataset" in catalog.describe_source("shipped:nope")["error"]


def test_confine_allows_inside(tmp_path):
    assert confine("a/b.h5ad", roots=[tmp_path]) == (tmp_path / "a" / "b.h5ad").resolve()
    with pytest.raises(InputError):
        confine(tmp_path.parent / "x", roots=[tmp_path])
