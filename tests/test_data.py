"""Loading and validating datasets: good inputs load, bad inputs give one clear message."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import gen_adata

from core.data.load import load_dataset
from core.base.errors import InputError
from core.data.genes import detect_gene_ids


@pytest.mark.parametrize("sparse", [True, False])
def test_good_h5ad_loads(tmp_path, rng, sparse):
    path = tmp_path / "d.h5ad"
    gen_adata(rng=rng, sparse=sparse).write_h5ad(path)
    ds = load_dataset(path, embedding="X_emb", cell_type="cell_type")
    assert ds.embedding.shape == (60, 5) and ds.embedding.dtype == np.float32
    assert ds.n_cells == 60 and ds.cell_type == "cell_type"
    assert list(ds.cell_types.categories) == ["type_0", "type_1", "type_2"]
    assert ds.counts_kind == "counts"
    assert ds.gene_ids.kind == "symbol"
    assert ds.report.ok and ds.source["sha256"] and ds.source["n_genes"] == 40


def test_shipped_pbmc_is_real_counts():
    from core.data.datasets import shipped

    spec = shipped("pbmc68k")
    ds = load_dataset(spec.path, embedding=spec.embedding, cell_type=spec.cell_type)
    assert ds.adata.shape == (700, 765)
    assert ds.counts_kind == "counts"
    assert len(ds.cell_types.categories) == 10
    X = ds.adata.X
    assert X.min() >= 0 and np.array_equal(X.data, np.round(X.data))
    # 765 of the original genes: each cell's counts are a part of its recorded library size
    lib = np.asarray(X.sum(axis=1)).ravel()
    assert lib.min() > 0 and (lib <= ds.obs["n_counts"].to_numpy()).all()
    assert (X.data == 1).mean() > 0.3  # raw UMI counts: ones dominate


def test_cell_type_autodetect_and_string_conversion(tmp_path, rng):
    a = gen_adata(rng=rng)
    a.obs["cell_type"] = a.obs["cell_type"].astype(str)
    a.write_h5ad(tmp_path / "d.h5ad")
    ds = load_dataset(tmp_path / "d.h5ad")
    assert ds.cell_type == "cell_type"
    assert isinstance(ds.obs["cell_type"].dtype, pd.CategoricalDtype)


def test_normalised_counts_are_flagged_not_refused(tmp_path, rng):
    a = gen_adata(rng=rng, sparse=False)
    a.X = np.log1p(a.X)
    a.write_h5ad(tmp_path / "d.h5ad")
    ds = load_dataset(tmp_path / "d.h5ad")
    assert ds.counts_kind == "normalised"
    assert any("normalised" in str(w) for w in ds.report.warnings)


def test_counts_layer_preferred(tmp_path, rng):
    a = gen_adata(rng=rng, sparse=False)
    a.layers["counts"] = a.X.copy()
    a.X = a.X - a.X.mean(axis=0)  # scaled, negative
    a.write_h5ad(tmp_path / "d.h5ad")
    ds = load_dataset(tmp_path / "d.h5ad")
    assert ds.counts_kind == "counts" and ds.source["counts_layer"] == "counts"


def _bad(tmp_path, adata):
    path = tmp_path / "bad.h5ad"
    adata.write_h5ad(path)
    return path


BAD_CASES = {
    "missing embedding key": (lambda a: a, {"embedding": "X_nope"}, "not found in .obsm"),
    "nan embedding": (lambda a: _set_obsm(a, np.nan), {"embedding": "X_emb"}, "NaN/Inf"),
    "inf embedding": (lambda a: _set_obsm(a, np.inf), {"embedding": "X_emb"}, "NaN/Inf"),
    "empty embedding": (lambda a: _empty_obsm(a), {"embedding": "X_emb"}, "0 dimensions"),
    "negative counts": (lambda a: _negate(a), {}, "negative values"),
    "duplicated cells": (lambda a: _dup_cells(a), {}, "duplicated cell names"),
    "duplicated genes": (lambda a: _dup_genes(a), {}, "duplicated gene names"),
    "missing cell-type column": (lambda a: a, {"cell_type": "celltype_x"}, "not found in .obs"),
    "cell type with NaN": (lambda a: _nan_types(a), {"cell_type": "cell_type"}, "missing values"),
    "cell type continuous": (lambda a: _float_types(a), {"cell_type": "cell_type"}, "continuous"),
    "cell type is an id": (lambda a: _id_types(a), {"cell_type": "cell_type"}, "identifier"),
    "missing counts layer": (lambda a: a, {"counts_layer": "raw"}, "layer 'raw' not found"),
}


def _set_obsm(a, value):
    e = a.obsm["X_emb"].copy()
    e[3, 1] = value
    a.obsm["X_emb"] = e
    return a


def _empty_obsm(a):
    a.obsm["X_emb"] = np.zeros((a.n_obs, 0), dtype=np.float32)
    return a


def _negate(a):
    a.X = -a.X.toarray()
    return a


def _dup_cells(a):
    a.obs_names = ["c"] * a.n_obs
    return a


def _dup_genes(a):
    a.var_names = ["G"] * a.n_vars
    return a


def _nan_types(a):
    ct = a.obs["cell_type"].astype(object)
    ct.iloc[0] = None
    a.obs["cell_type"] = ct
    return a


def _float_types(a):
    a.obs["cell_type"] = np.linspace(0, 1, a.n_obs)
    return a


def _id_types(a):
    a.obs["cell_type"] = [f"id{i}" for i in range(a.n_obs)]
    return a


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_h5ad_gives_clear_error(tmp_path, rng, case):
    make, kwargs, expected = BAD_CASES[case]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = _bad(tmp_path, make(gen_adata(rng=rng)))
    with pytest.raises(InputError) as err:
        load_dataset(path, **kwargs)
    assert expected in str(err.value)
    assert "Traceback" not in str(err.value)


def test_error_names_the_fix(tmp_path, rng):
    path = _bad(tmp_path, gen_adata(rng=rng))
    with pytest.raises(InputError) as err:
        load_dataset(path, embedding="X_nope")
    assert err.value.fix == "choose one of: X_emb"


@pytest.mark.parametrize("content,expected", [
    (b"", "empty"),
    (b"cell,a,b\nx,1,2\n", "not an HDF5/.h5ad file"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 100, "could not be read as AnnData"),
])
def test_broken_files(tmp_path, content, expected):
    path = tmp_path / "x.h5ad"
    path.write_bytes(content)
    with pytest.raises(InputError, match=expected):
        load_dataset(path)


def test_truncated_h5ad(tmp_path, rng):
    path = tmp_path / "t.h5ad"
    gen_adata(rng=rng).write_h5ad(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_dataset(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "nope.h5ad")
    (tmp_path / "x.loom").write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported file type"):
        load_dataset(tmp_path / "x.loom")


# ----------------------------------------------------------------------------- embedding files
def _meta(tmp_path, names, types):
    path = tmp_path / "obs.csv"
    pd.DataFrame({"cell_type": types}, index=pd.Index(names, name="cell")).to_csv(path)
    return path


def test_npy_with_metadata(tmp_path, rng):
    emb = rng.normal(size=(30, 4))
    np.save(tmp_path / "e.npy", emb)
    obs = _meta(tmp_path, [f"c{i}" for i in range(30)], ["a", "b", "c"] * 10)
    ds = load_dataset(tmp_path / "e.npy", obs=obs)
    np.testing.assert_allclose(ds.embedding, emb.astype(np.float32))
    assert ds.cell_type == "cell_type" and ds.adata is None


def test_csv_aligns_by_cell_name(tmp_path, rng):
    names = [f"c{i}" for i in range(30)]
    emb = pd.DataFrame(rng.normal(size=(30, 3)), index=names)
    emb.iloc[::-1].to_csv(tmp_path / "e.csv")  # reversed order on disk
    obs = _meta(tmp_path, names, ["a", "b", "c"] * 10)
    ds = load_dataset(tmp_path / "e.csv", obs=obs)
    np.testing.assert_allclose(ds.embedding, emb.to_numpy(dtype=np.float32), rtol=1e-6)


def test_csv_mismatch_is_clear(tmp_path, rng):
    emb = pd.DataFrame(rng.normal(size=(3, 2)), index=["a", "b", "c"])
    emb.to_csv(tmp_path / "e.csv")
    obs = _meta(tmp_path, ["a", "b", "zz"], ["x", "y", "x"])
    with pytest.raises(InputError, match="have no row in e.csv"):
        load_dataset(tmp_path / "e.csv", obs=obs)


def test_pt_tensor_and_named_dict(tmp_path, rng):
    t = torch.randn(12, 3)
    torch.save(t, tmp_path / "e.pt")
    ds = load_dataset(tmp_path / "e.pt")
    assert ds.embedding.shape == (12, 3) and ds.cell_type is None
    torch.save({"embedding": t, "cell_names": [f"n{i}" for i in range(12)]}, tmp_path / "n.pt")
    ds = load_dataset(tmp_path / "n.pt")
    assert list(ds.cell_names[:2]) == ["n0", "n1"]


def test_embedding_row_mismatch(tmp_path, rng):
    np.save(tmp_path / "e.npy", rng.normal(size=(5, 2)))
    obs = _meta(tmp_path, [f"c{i}" for i in range(6)], ["a", "b"] * 3)
    with pytest.raises(InputError, match="5 rows but there are 6 cells"):
        load_dataset(tmp_path / "e.npy", obs=obs)


def test_npy_pickle_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not a valid .npy"):
        load_dataset(tmp_path / "o.npy")


@pytest.mark.parametrize("names,kind", [
    (["CD4", "HBB", "MT-CO1", "HLA-DRA"], "symbol"),
    (["ENSG00000010610", "ENSG00000244734.3", "ENSG00000198804"], "ensembl"),
    (["920", "3043", "4512"], "entrez"),
    (["???", "!!", "##"], "unknown"),
])
def test_gene_id_detection(names, kind):
    assert detect_gene_ids(names).kind == kind
