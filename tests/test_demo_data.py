"""The simulated haematopoietic demo dataset: real GO gene sets, the hierarchical model, ground truth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.base.errors import InputError
from core.demo.data import (CELL_TYPES, LINEAGES, PROGRAMS, DemoDataConfig, Program,
                                     generate_demo_dataset, ground_truth, write_demo_dataset)

SMALL = DemoDataConfig(n_cells=1_500, n_genes=1_600)


@pytest.fixture(scope="module")
def small():
    return generate_demo_dataset(SMALL, seed=3)


@pytest.fixture(scope="module")
def go_bp():
    from core.concepts import load_go

    return load_go(("BP",))


def test_shape_counts_and_metadata(small):
    a = small
    assert a.shape == (1_500, 1_600)
    X = a.X
    assert X.dtype == np.int32 and X.data.min() >= 0
    assert a.var_names.is_unique and a.obs_names.is_unique
    assert set(a.obs["cell_type"].cat.categories) == set(CELL_TYPES) and len(CELL_TYPES) >= 10
    assert set(a.obs["cell_type"]) == set(CELL_TYPES)           # every type has cells
    assert sorted(a.obs["batch"].unique()) == ["batch1", "batch2"]
    assert set(a.obs["phase"]) == {"G1", "S", "G2M"}
    np.testing.assert_array_equal(a.obs["library_size"], np.asarray(X.sum(axis=1)).ravel())
    # stages increase along every lineage of the tree
    for stages in LINEAGES.values():
        assert list(a.obs.groupby("cell_type", observed=True)["stage"].first()[list(stages)]) == \
            sorted(CELL_TYPES[t][1] for t in stages)


def test_genes_are_real_symbols_and_programs_are_real_go_terms(small, go_bp):
    assert set(small.var_names) <= set(go_bp.genes)
    gt = ground_truth(small)
    ids = go_bp.terms["id"].tolist()
    for k, prog in gt.programs.iterrows():
        row = ids.index(prog["term_id"])
        assert go_bp.terms["name"].iat[row] == prog["term_name"]
        term_genes = set(go_bp.genes[go_bp.matrix[row].indices])
        assert term_genes <= set(small.var_names)                  # every gene of the term is in the data
        driven = set(small.var_names[gt.connectivity[:, k] > 0])
        assert driven <= term_genes                                 # M only connects the term's genes
        assert len(driven) == prog["n_genes_driven"] == max(10, round(SMALL.connect_fraction * len(term_genes)))
    assert {"global", "local"} == set(gt.programs["scope"])


def test_hierarchical_model_is_stored_exactly(small):
    gt = ground_truth(small)
    X, X1, X2 = (np.asarray(small.obsm[k], np.float64) for k in ("truth_X", "truth_X_batch", "truth_activity"))
    B = np.asarray(small.uns["ground_truth"]["batch_program_effect"], np.float64)
    batch = small.obs["batch"].cat.codes.to_numpy()
    np.testing.assert_allclose(X1, X * np.exp(B[batch]), rtol=1e-5)           # X′ = X · exp(B[batch])
    A = gt.cell_type_activity.loc[small.obs["cell_type"].astype(str)].to_numpy()
    np.testing.assert_allclose(X2, X1 * A, rtol=1e-5, atol=1e-7)               # X″ = X′ · A[cell type]
    for k, p in enumerate(PROGRAMS):
        on = gt.cell_type_activity.iloc[:, k] > 0
        assert on.all() == (p.activity is None)
        if p.activity is not None:
            assert sorted(gt.cell_type_activity.index[on]) == sorted(t for t, v in p.activity.items() if v > 0)
    # the two cell-cycle programs are exclusive phases
    k_s = [p.key for p in PROGRAMS].index("dna_replication")
    k_g2m = [p.key for p in PROGRAMS].index("chromatid_segregation")
    assert not ((X[:, k_s] > 0) & (X[:, k_g2m] > 0)).any()
    np.testing.assert_array_equal(X[:, k_s] > 0, small.obs["phase"].to_numpy() == "S")


def test_programs_drive_their_genes_in_the_counts(small):
    """Planted signal: in cells where a program is active, its genes' share of the counts is higher."""
    gt = ground_truth(small)
    X = small.X.tocsr().astype(np.float64)
    norm = X.multiply(1.0 / np.asarray(X.sum(axis=1))).tocsc()
    for k, prog in gt.programs.iterrows():
        genes = np.flatnonzero(gt.connectivity[:, k] > 0)
        score = np.asarray(norm[:, genes].sum(axis=1)).ravel()
        act = gt.activity[:, k]
        hi, lo = act > np.quantile(act, 0.9), act <= np.quantile(act, 0.5)
        assert score[hi].mean() > 1.5 * score[lo].mean(), prog["key"]
        assert np.corrcoef(score, act)[0, 1] > 0.4, prog["key"]


def test_counts_are_overdispersed(small):
    X = small.X.toarray().astype(np.float64)
    cells = (small.obs["cell_type"] == "T").to_numpy() & (small.obs["batch"] == "batch1").to_numpy()
    m, v = X[cells].mean(0), X[cells].var(0)
    ok = m > 1
    assert ok.sum() > 50 and np.median(v[ok] / m[ok]) > 1.5    # NB, not Poisson
    assert 0.3 < (X == 0).mean() < 0.95


def test_same_seed_same_data_other_seed_other_data(small):
    again = generate_demo_dataset(SMALL, seed=3)
    assert (again.X != small.X).nnz == 0 and list(again.var_names) == list(small.var_names)
    np.testing.assert_array_equal(again.obsm["truth_activity"], small.obsm["truth_activity"])
    other = generate_demo_dataset(SMALL, seed=4)
    assert (other.X != small.X).nnz > 0


def test_write_is_atomic_and_round_trips(tmp_path, small):
    import anndata as ad

    calls = []
    path = write_demo_dataset(tmp_path / "demo.h5ad", seed=3, config=SMALL,
                              progress=lambda d, t, m="": calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] and all(d <= t for d, t in calls)
    back = ad.read_h5ad(path)
    assert (back.X != small.X).nnz == 0
    gt = ground_truth(back)
    assert list(gt.programs["term_id"]) == [p.term_id for p in PROGRAMS]
    np.testing.assert_array_equal(gt.activity, small.obsm["truth_activity"])
    assert [p.name for p in tmp_path.iterdir()] == ["demo.h5ad"]   # no temporary file left

    before = path.read_bytes()

    def boom(done, total, message=""):
        if "sampling" in message:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_demo_dataset(path, seed=5, config=SMALL, progress=boom)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["demo.h5ad"]


def test_bad_settings_are_input_errors(tmp_path):
    with pytest.raises(InputError):
        DemoDataConfig(n_cells=10)
    with pytest.raises(InputError):
        DemoDataConfig(programs=(Program("x", "GO:0015671", {"Nope": 1.0}),))
    with pytest.raises(InputError, match="not in the shipped GO"):
        generate_demo_dataset(DemoDataConfig(n_cells=500, programs=(Program("x", "GO:9999999"),)))
    with pytest.raises(InputError, match="n_genes"):
        generate_demo_dataset(DemoDataConfig(n_cells=500, n_genes=100))
    with pytest.raises(InputError, match=".h5ad"):
        write_demo_dataset(tmp_path / "demo.csv")
    with pytest.raises(InputError, match="no planted ground truth"):
        from helpers import gen_adata

        ground_truth(gen_adata())


def test_ground_truth_table(small):
    gt = ground_truth(small)
    assert isinstance(gt.programs, pd.DataFrame) and len(gt.programs) == len(PROGRAMS) >= 10
    assert gt.activity.shape == (small.n_obs, len(PROGRAMS))
    assert gt.connectivity.shape == (small.n_vars, len(PROGRAMS))
    ery = gt.programs.set_index("key").loc["oxygen_transport"]
    assert ery["term_name"] == "oxygen transport" and ery["scope"] == "local" and "Ery" in ery["cell_types"]
