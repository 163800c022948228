"""Confounder flags: a feature's activation against technical covariates, within cell types."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from core.annotate.confounders import FLAG_ETA2, FLAG_R, confounder_table
from core.base.errors import InputError
from core.data.counts import cell_qc


def _world(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    types = rng.choice(["ery", "mono", "t"], size=n)
    batch = rng.choice(["b1", "b2"], size=n)
    size = {"ery": 2000.0, "mono": 6000.0, "t": 3500.0}
    lib = np.array([size[t] for t in types]) * rng.lognormal(0, 0.3, n)   # types differ in size
    return rng, types, batch, lib


def test_within_type_r_equals_scipy_on_the_residuals():
    rng, types, batch, lib = _world(n=600)
    acts = sp.random(600, 5, density=0.4, random_state=1, format="csc") * 3
    table = confounder_table(acts, {"library_size": lib}, cell_types=types)
    t = np.log1p(lib)
    df = pd.DataFrame({"type": types, "t": t})
    t_res = t - df.groupby("type")["t"].transform("mean").to_numpy()
    for f in range(5):
        a = acts[:, f].toarray().ravel()
        a_res = a - pd.Series(a).groupby(types).transform("mean").to_numpy()
        assert table.loc[f, "library_size_r"] == pytest.approx(stats.pearsonr(a_res, t_res)[0], abs=1e-10)


def test_batch_eta2_equals_a_direct_computation():
    rng, types, batch, lib = _world(n=500)
    acts = sp.csc_matrix(np.abs(rng.normal(size=(500, 3))) + (batch == "b1")[:, None] * [0, 1, 3])
    table = confounder_table(acts, {"batch": batch}, cell_types=types)
    for f in range(3):
        a = pd.Series(acts[:, f].toarray().ravel())
        within = a - a.groupby(types).transform("mean")
        tb = a.groupby([types, batch]).transform("mean") - a.groupby(types).transform("mean")
        assert table.loc[f, "batch_eta2"] == pytest.approx((tb ** 2).sum() / (within ** 2).sum(), rel=1e-9)


def test_flags_what_tracks_a_technical_variable_and_not_biology():
    rng, types, batch, lib = _world()
    n = len(types)
    noise = np.abs(rng.normal(0, 0.2, n))
    acts = np.column_stack([
        (types == "ery") * 3.0 + noise,                 # a cell type: correlates with size only through type
        np.log(lib) - np.log(lib).min() + noise,        # library size itself, within every type
        (batch == "b2") * 2.0 + noise,                  # a batch effect
        noise,                                          # nothing
    ])
    table = confounder_table(sp.csc_matrix(acts), {"library_size": lib, "batch": batch}, cell_types=types)
    assert list(table["tracks"]) == ["", "library_size", "batch", ""]
    raw = stats.pearsonr(acts[:, 0], np.log1p(lib))[0]
    assert abs(raw) > FLAG_R and abs(table.loc[0, "library_size_r"]) < 0.1   # biology is not flagged


def test_null_activations_are_never_flagged():
    rng, types, batch, lib = _world(n=3000, seed=3)
    acts = sp.random(3000, 400, density=0.05, random_state=4, format="csc")
    detected = rng.poisson(lib / 3)
    table = confounder_table(acts, {"library_size": lib, "detected_genes": detected, "pct_mito": rng.uniform(0, 10, 3000),
                                    "batch": batch}, cell_types=types)
    assert (table["tracks"] == "").all()
    assert table["library_size_r"].abs().max() < 0.12 and table["batch_eta2"].max() < 0.02 < FLAG_ETA2
    assert table["library_size_r"].abs().median() == pytest.approx(0.6745 / np.sqrt(3000), rel=0.3)


def test_constant_features_and_bad_covariates():
    acts = sp.csc_matrix(np.column_stack([np.zeros(50), np.ones(50), np.arange(50.0)]))
    table = confounder_table(acts, {"library_size": np.arange(50.0) + 1})
    assert table["library_size_r"].tolist()[:2] == [0.0, 0.0] and table.loc[2, "library_size_r"] > 0.9
    with pytest.raises(InputError, match="one finite number per cell"):
        confounder_table(acts, {"pct_mito": np.full(50, np.nan)})
    with pytest.raises(InputError, match="labels for"):
        confounder_table(acts, {"library_size": np.ones(50)}, cell_types=["a"] * 10)


@pytest.mark.parametrize("layout", ["csr", "csc", "dense"])
def test_cell_qc_in_one_pass_over_the_file(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.poisson(0.7, size=(120, 40)).astype(np.float32)
    genes = [f"MT-{i}" if i < 4 else f"G{i}" for i in range(40)]
    mat = {"csr": sp.csr_matrix(x), "csc": sp.csc_matrix(x), "dense": x}[layout]
    path = tmp_path / "c.h5ad"
    ad.AnnData(mat, var=pd.DataFrame(index=genes)).write_h5ad(path)
    qc = cell_qc(path, mito=np.array([g.startswith("MT-") for g in genes]), chunk_bytes=400)
    np.testing.assert_allclose(qc["library_size"], x.sum(1))
    np.testing.assert_allclose(qc["detected_genes"], (x > 0).sum(1))
    np.testing.assert_allclose(qc["pct_mito"], 100 * x[:, :4].sum(1) / np.maximum(x.sum(1), 1e-12))
    assert "pct_mito" not in cell_qc(path, mito=np.zeros(40, bool))
    with pytest.raises(InputError, match="mask has 3 entries"):
        cell_qc(path, mito=np.ones(3, bool))
