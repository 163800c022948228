"""Simulation experiments: metrics against numpy/scipy/scikit-learn, the autoencoders, each
experiment on the small simulation (the paper's "X″ recovered at r ≥ 0.9"), the report and
the `featurelens simulate experiment` CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from core.cli.main import main
from core.base.errors import InputError
from core.base.progress import Cancelled
from core.simulate import SmallSimConfig, simulate, write_simulation
from core.simulate.autoencoders import AEConfig, encode_latent, train_autoencoder
from core.simulate.baselines import baseline_components
from core.simulate.experiments import (
    StructureConfig,
    SuperpositionConfig,
    SweepConfig,
    reference_embedding,
    run_recovery,
    run_sae_sweep,
    run_structure,
    run_superposition,
    structure_match,
)
from core.simulate.metrics import VariableMatrix, pearson_matrix, r2_scores, recovery_table, variable_matrix
from core.simulate.report import findings, write_results


@pytest.fixture(scope="module")
def small():
    torch.set_num_threads(1)
    return simulate(SmallSimConfig(), seed=0)


@pytest.fixture(scope="module")
def small_embedding(small):
    emb, _ = reference_embedding(small, seed=0)
    return emb


@pytest.fixture(scope="module")
def recovery(small, small_embedding):
    return run_recovery(small, seed=0, embedding=small_embedding)


# ----------------------------------------------------------------------------- metrics
def test_pearson_matrix_matches_numpy_dense_and_sparse(rng):
    lat = np.maximum(rng.normal(size=(200, 6)), 0)
    lat[:, 2] = 0.0                                                     # a dead latent
    val = rng.normal(size=(200, 4)) + lat[:, :4] * 2
    val[:, 3] = 1.5                                                     # a constant variable
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.corrcoef(lat.T, val.T)[:6, 6:]
    for latents in (lat, sp.csr_matrix(lat)):
        with np.errstate(invalid="ignore", divide="ignore"):
            r = pearson_matrix(latents, val)
        assert r.shape == (6, 4)
        assert np.isnan(r[2]).all() and np.isnan(r[:, 3]).all()
        ok = ~np.isnan(r)
        np.testing.assert_allclose(r[ok], expected[ok], atol=1e-10)


def test_r2_scores_match_sklearn(rng):
    from sklearn.metrics import r2_score

    y = rng.normal(size=(100, 3))
    pred = y + rng.normal(scale=0.5, size=y.shape)
    np.testing.assert_allclose(r2_scores(y, pred), r2_score(y, pred, multioutput="raw_values"))
    y[:, 1] = 2.0
    assert np.isnan(r2_scores(y, pred)[1])


def test_recovery_table_best_and_counts():
    r = np.array([[0.95, 0.1, np.nan], [0.8, -0.9, np.nan], [0.2, 0.75, np.nan]])
    v = VariableMatrix(values=np.zeros((1, 3)), variable=np.array(["Y", "X''", "X''"], dtype=object),
                       dim=np.array([0, 0, 1]))
    t = recovery_table(r, v, threshold=0.7)
    assert t["best_r"].tolist()[:2] == [0.95, 0.75] and np.isnan(t["best_r"][2])
    assert t["best_latent"].tolist() == [0, 2, -1] and t["n_latents"].tolist() == [2, 1, 0]
    ta = recovery_table(r, v, threshold=0.7, absolute=True)
    assert ta["best_r"][1] == 0.9 and ta["best_latent"][1] == 1 and ta["n_latents"][1] == 2


def test_variable_matrix_samples_genes_with_a_seed(small):
    from core.simulate import LargeSimConfig

    vm = variable_matrix(small)
    assert vm.names == ["Y", "X''", "A", "X"] and vm.values.shape == (5000, 10 + 3 + 1 + 3)
    big = simulate(LargeSimConfig(n_cells=50, n_genes=800, n_programs=4, n_cell_types=2, n_batches=2), seed=0)
    a, b = variable_matrix(big, y_genes=100, seed=1), variable_matrix(big, y_genes=100, seed=1)
    assert len(a.columns("Y")) == 100 and np.array_equal(a.dim, b.dim)
    genes = a.dim[a.columns("Y")]
    np.testing.assert_array_equal(a.values[:, a.columns("Y")], big.X[:, genes].toarray())
    assert a.names == ["Y", "E[Y]", "X''", "A", "B", "X'", "X"]               # large adds E[Y] = M X″
    np.testing.assert_array_equal(a.dim[a.columns("E[Y]")], genes)
    expected = big.obsm["sim_X_dprime"].astype(np.float64) @ big.varm["sim_M"][genes].T.astype(np.float64)
    np.testing.assert_allclose(a.values[:, a.columns("E[Y]")], expected, rtol=1e-10)


def test_structure_match_on_planted_connectivity():
    """Three programs with disjoint genes; features 0–2 light up exactly their program's genes."""
    from scipy.stats import binomtest

    g = 60
    M = np.zeros((g, 3))
    for j in range(3):
        M[j * 20:(j + 1) * 20, j] = 1.0
    rng = np.random.default_rng(0)
    cos = rng.uniform(0.0, 0.1, size=(g, 4))
    for j in range(3):
        cos[j * 20:(j + 1) * 20, j] = rng.uniform(0.8, 1.0, size=20)
    features, programs, row = structure_match(cos, M, percentile=70, alpha=0.05)
    assert features["best_program"].tolist()[:3] == [0, 1, 2]
    assert programs["matched"].all() and np.allclose(programs["coverage"], 1.0)
    assert row["mean_coverage"] == 1.0 and row["programs_matched"] == 3 and row["entries_recovered"] == 1.0
    f0 = features.iloc[0]
    n = int(f0["n_genes"])
    assert np.isclose(f0["p"], binomtest(int(f0["hits"]), n, 20 / g, alternative="greater").pvalue)
    assert np.isclose(row["pseudo_density"], 0.3, atol=0.01)


def test_baselines_match_sklearn_and_refuse_unknown(rng):
    from sklearn.decomposition import PCA

    x = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    np.testing.assert_allclose(baseline_components(x, method="pca", seed=0),
                               PCA(n_components=5, random_state=0).fit_transform(x))
    assert baseline_components(x, method="svd", seed=0).shape == (300, 4)
    assert baseline_components(x, method="ica", seed=0).shape == (300, 5)
    assert baseline_components(x, method="latent", seed=0) is not None
    with pytest.raises(InputError, match="unknown baseline"):
        baseline_components(x, method="nmf", seed=0)


# ----------------------------------------------------------------------------- autoencoders
def test_autoencoder_layer_sizes():
    assert AEConfig(latent=20, n_layers=3, width="narrow").hidden_sizes(20_000) == [160, 80, 40]
    assert AEConfig(latent=20, n_layers=1, width="narrow").hidden_sizes(20_000) == [40]
    assert AEConfig(latent=20, n_layers=3, width="wide", max_hidden=620).hidden_sizes(20_000) == [620, 420, 220]
    assert AEConfig(latent=4, n_layers=2, width="wide").hidden_sizes(10) == [10, 7]
    assert AEConfig(latent=4, n_layers=0).hidden_sizes(10) == []
    with pytest.raises(InputError, match="width must be one of"):
        AEConfig(width="deep")


def test_autoencoder_is_seeded_and_selects_genes(rng):
    counts = sp.csr_matrix(rng.poisson(rng.gamma(1.0, 2.0, size=(300, 40))).astype(np.float32))
    cfg = AEConfig(latent=3, n_layers=1, epochs=3, max_genes=10, batch_size=32)
    a = train_autoencoder(counts, config=cfg, seed=7)
    b = train_autoencoder(counts, config=cfg, seed=7)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k
    logc = np.log1p(counts.toarray())
    train = np.setdiff1d(np.arange(300), a.val_index)
    top = np.sort(np.argsort(-logc[train].var(0))[:10])
    np.testing.assert_array_equal(a.model.genes.numpy(), top)
    z = encode_latent(a.model, counts)
    assert z.shape == (300, 3) and np.isfinite(z).all()
    assert a.history[-1]["val_loss"] <= a.history[0]["val_loss"] * 1.5
    with pytest.raises(InputError, match="expects 40 genes"):
        encode_latent(a.model, counts[:, :20])
    with pytest.raises(InputError, match="latent of 12 is larger than the 10 genes"):
        train_autoencoder(counts, config=cfg.replace(latent=12), seed=0)


# ----------------------------------------------------------------------------- experiments
def test_small_recovery_reproduces_the_paper(recovery):
    """Paper §5.3: observed variables and the hidden X″ are recovered almost perfectly (r ≥ 0.9)."""
    means = recovery.means()
    sae = means.loc["sae"]
    assert sae["X''"] >= 0.9 and sae["Y"] >= 0.9
    assert sae["A"] < sae["X''"]
    assert set(means.index) == {"sae", "latent", "pca", "ica", "svd"}
    s = recovery.summary()
    assert s["recovered"]["X''"] and s["sae"]["live"] <= s["sae"]["hidden"]
    per_dim = recovery.table[(recovery.table["method"] == "sae") & (recovery.table["variable"] == "X''")]
    assert len(per_dim) == 3 and (per_dim["best_r"] >= 0.8).all()


def test_small_structure_tables(small, recovery):
    res = run_structure(small, seed=0, activations=recovery.activations,
                        config=StructureConfig(percentiles=(20, 50, 70)))
    bp = res.by_percentile
    assert bp["percentile"].tolist() == [20, 50, 70]
    np.testing.assert_allclose(bp["pseudo_density"], [0.8, 0.5, 0.3], atol=0.05)
    assert (bp["n_features"] == recovery.summary()["sae"]["live"]).all()
    assert len(res.programs) == 3 * 3 and res.features["feature"].max() < recovery.activations.shape[1]
    assert bp["mean_coverage_any"].between(0, 1).all()


def test_small_superposition_linear_autoencoder_holds_y_and_x2(small):
    res = run_superposition(small, seed=0, config=SuperpositionConfig(latents=(4,), layers=(0,)))
    assert res.models["model"].tolist() == ["narrow-L0-z4"]
    r2 = res.mean_r2().iloc[0]
    assert r2["Y"] > 0.99 and r2["X''"] > 0.99 and r2["X"] < r2["X''"]
    assert res.summary()["order"][:2] in (["Y", "X''"], ["X''", "Y"])


def test_superposition_can_be_cancelled(small):
    with pytest.raises(Cancelled):
        run_superposition(small, seed=0, config=SuperpositionConfig(latents=(3,), layers=(0,)),
                          should_stop=lambda: True)


def test_sweep_tiny_grid(small, small_embedding):
    cfg = SweepConfig(archs=("vanilla", "topk"), expansions=(2,), lrs=(1e-3,), l1s=(1e-3,), k_fractions=(0.25,),
                      epochs=3)
    calls = []
    res = run_sae_sweep(small, seed=0, embedding=small_embedding, config=cfg,
                        progress=lambda d, t, m: calls.append((d, t)))
    runs = res.runs
    assert runs["arch"].tolist() == ["vanilla", "topk"] and (runs["hidden"] == 8).all()
    assert runs.loc[1, "k"] == 2 and runs.loc[1, "l0"] <= 2 + 1e-9
    assert (runs["live"] + runs["dead"] == runs["hidden"]).all()
    for col in ("fvu", "redundant", "r[Y]", "r[X'']", "n[X'']"):
        assert col in runs
    assert len(res.variables) == 2 * 17
    assert calls and calls[-1][0] == calls[-1][1]
    assert set(res.summary()["by_arch"]) == {"vanilla", "topk"}


def test_report_files_and_findings(tmp_path, small, recovery):
    structure = run_structure(small, seed=0, activations=recovery.activations)
    results = {"recovery": recovery, "structure": structure}
    paths = write_results(results, tmp_path, data={"kind": "small", "seed": 0, "n_cells": 3000, "n_genes": 10,
                                                   "n_programs": 3, "n_cell_types": 8, "n_batches": 1,
                                                   "zero_fraction": 0.3, "median_library_size": 36.0,
                                                   "median_genes_per_cell": 8.0}, seed=0)
    names = {p.name for p in paths}
    assert {"recovery.csv", "recovery_means.csv", "structure.csv", "summary.json", "report.md",
            "figures.html"} <= names
    report = (tmp_path / "report.md").read_text()
    assert "## Findings: ours vs the paper" in report and "| reproduced |" in report
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["recovery"]["recovered"]["X''"] is True
    first = findings(results)[0]
    assert first["status"] == "reproduced" and "X''" in first["ours"]


def test_cli_experiment_and_bad_data(tmp_path, small, small_h5ad, capsys):
    data = write_simulation(simulate(SmallSimConfig(n_cells=600), seed=1), tmp_path / "s.h5ad")
    out = tmp_path / "res"
    assert main(["simulate", "experiment", "recovery", "--data", str(data), "--out", str(out), "--quick",
                 "--epochs", "5"]) == 0
    assert (out / "report.md").exists() and (out / "recovery.csv").exists()
    assert "[" in capsys.readouterr().out
    assert main(["simulate", "experiment", "all", "--data", str(small_h5ad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "not a FeatureLens simulation" in err and "Traceback" not in err
    assert main(["simulate", "experiment", "sweep", "--data", str(data), "--out", str(out), "--epochs", "0"]) == 2
