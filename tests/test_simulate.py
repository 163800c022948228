"""The simulation generator: shapes, the generative relations, seeds, count realism, bad
input, the .h5ad round trip and the `featurelens simulate small|large|demo` CLI."""
from __future__ import annotations


import numpy as np
import pytest
import scipy.sparse as sp

from core.cli.main import main
from core.base.errors import InputError
from core.simulate import (
    LargeSimConfig,
    SmallSimConfig,
    read_simulation,
    simulate,
    simulation_info,
    simulation_variables,
    write_simulation,
)


@pytest.fixture(scope="module")
def small():
    return simulate(SmallSimConfig(n_cells=400), seed=3)


@pytest.fixture(scope="module")
def large():
    return simulate(LargeSimConfig(n_cells=300, n_genes=3000, n_programs=12, n_cell_types=4, n_batches=3), seed=5)


def test_small_shapes_and_generative_relations(small):
    assert small.shape == (400, 10)
    x, a, x2 = (small.obsm[k] for k in ("sim_X", "sim_A", "sim_X_dprime"))
    assert x.shape == (400, 3) and a.shape == (400, 1) and x2.shape == (400, 3)
    M = small.varm["sim_M"]
    assert M.shape == (10, 3) and set(np.unique(M)) <= {0.0, 1.0}
    assert np.linalg.matrix_rank(M) == 3 and (M.sum(0) > 0).all() and (M.sum(1) > 0).all()
    assert set(np.unique(x)) <= {0.0, 1.0}                         # Binomial(1, p)
    np.testing.assert_array_equal(x2, x * a)                        # X″ = X · A (no noise)
    y = small.X.toarray()
    np.testing.assert_array_equal(y, x2 @ M.T)                      # Y = M X″ exactly
    assert np.array_equal(y, np.round(y)) and y.min() >= 0
    # cell types are the sets of active programs
    for label, row in zip(small.obs["cell_type"].astype(str)[:50], x[:50]):
        assert label == ("+".join(f"P{j + 1}" for j in np.flatnonzero(row)) or "none")
    info = simulation_info(small)
    assert info["kind"] == "small" and info["variables"] == ["Y", "X''", "A", "X"] and info["seed"] == 3
    assert set(small.obs["split"].unique()) == {"train", "validation"}
    assert (small.obs["split"] == "validation").sum() == 40


def test_small_binomial_frequencies_match_probabilities():
    ad = simulate(SmallSimConfig(n_cells=6000, program_probs=(0.2, 0.5, 0.8)), seed=0)
    freq = ad.obsm["sim_X"].mean(0)
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.8], atol=0.03)
    assert abs(ad.obsm["sim_A"].mean() - 5.0) < 0.15                # Poisson(5)


def test_large_shapes_and_generative_relations(large):
    n, g, p = 300, 3000, 12
    assert large.shape == (n, g)
    for key in ("sim_X", "sim_X_prime", "sim_X_dprime", "sim_A", "sim_B"):
        assert large.obsm[key].shape == (n, p)
    x, x1, x2, a, b = (large.obsm[k] for k in ("sim_X", "sim_X_prime", "sim_X_dprime", "sim_A", "sim_B"))
    np.testing.assert_allclose(x1, np.maximum(x + b, 0), rtol=1e-6)     # X′ = max(X + B, 0)
    np.testing.assert_allclose(x2, x1 * a, rtol=1e-6)                   # X″ = X′ ⊙ A
    sim = large.uns["simulation"]
    types = large.obs["cell_type"].cat.codes.to_numpy()
    batches = large.obs["batch"].cat.codes.to_numpy()
    np.testing.assert_array_equal(a, sim["activity_matrix"][:, types].T)  # A = Act · onehot(type)
    np.testing.assert_array_equal(b, sim["noise_matrix"][:, batches].T)   # B = N · onehot(batch)
    assert large.obs["cell_type"].nunique() == 4 and large.obs["batch"].nunique() == 3
    M = large.varm["sim_M"]
    assert M.shape == (g, p) and (M >= 0).all() and ((M > 0).sum(1) >= 1).all() and ((M > 0).sum(0) >= 1).all()
    assert sp.issparse(large.X)
    assert simulation_info(large)["variables"] == ["Y", "X''", "A", "B", "X'", "X"]


def test_large_counts_follow_their_expected_means(large):
    """Summed over cells, counts match Σ E[Y] = Σ M X″ for well-expressed genes (NB sampling)."""
    mu = large.obsm["sim_X_dprime"].astype(np.float64) @ large.varm["sim_M"].T.astype(np.float64)
    y = np.asarray(large.X.sum(0)).ravel()
    expected = mu.sum(0)
    strong = expected > 2000
    assert strong.sum() > 20
    np.testing.assert_allclose(y[strong], expected[strong], rtol=0.25)
    assert abs(y.sum() / expected.sum() - 1) < 0.02


@pytest.mark.parametrize("dispersion", [None, 2.0])
def test_counts_are_poisson_or_negative_binomial_around_their_means(dispersion):
    """Given the means μ = M X″: Poisson residuals have E(Y − μ)² = μ, NB ones μ + μ²/θ."""
    ad = simulate(LargeSimConfig(n_cells=200, n_genes=2000, n_programs=8, dispersion=dispersion), seed=1)
    mu = ad.obsm["sim_X_dprime"].astype(np.float64) @ ad.varm["sim_M"].T.astype(np.float64)
    y = ad.X.toarray()
    sel = mu > 1
    variance = mu + (0 if dispersion is None else mu ** 2 / dispersion)
    y, mu, variance = y[sel], mu[sel], variance[sel]
    pearson = (y - mu) ** 2 / variance                             # each term has expectation 1
    assert abs(pearson.mean() - 1) < 0.05
    poisson_pearson = ((y - mu) ** 2 / mu).mean()
    assert (poisson_pearson > 2) == (dispersion is not None)


def test_large_defaults_give_realistic_counts():
    """Stated range for the defaults (20,000 genes): 90–98 % zeros, median library size within
    ±15 % of 3,000, a heavy-tailed gene-mean distribution."""
    ad = simulate(LargeSimConfig(n_cells=250), seed=0)
    y = ad.X
    zeros = 1 - y.nnz / (y.shape[0] * y.shape[1])
    assert 0.90 <= zeros <= 0.98
    lib = np.asarray(y.sum(1)).ravel()
    assert 0.85 * 3000 <= np.median(lib) <= 1.15 * 3000
    gene_mean = np.asarray(y.mean(0)).ravel()
    assert np.percentile(gene_mean, 99) > 20 * np.median(gene_mean)


def test_same_seed_same_data_other_seed_other_data():
    cfg = LargeSimConfig(n_cells=60, n_genes=400, n_programs=5, n_cell_types=3, n_batches=2)
    a, b, c = simulate(cfg, seed=1), simulate(cfg, seed=1), simulate(cfg, seed=2)
    assert (a.X != b.X).nnz == 0
    np.testing.assert_array_equal(a.varm["sim_M"], b.varm["sim_M"])
    np.testing.assert_array_equal(a.obs["cell_type"], b.obs["cell_type"])
    assert (a.X != c.X).nnz > 0
    s1, s2 = simulate(SmallSimConfig(n_cells=50), seed=4), simulate(SmallSimConfig(n_cells=50), seed=4)
    np.testing.assert_array_equal(s1.obsm["sim_X_dprime"], s2.obsm["sim_X_dprime"])


@pytest.mark.parametrize("make, message", [
    (lambda: SmallSimConfig(n_cells=0), "n_cells must be a positive integer"),
    (lambda: LargeSimConfig(n_cells=0), "n_cells must be a positive integer"),
    (lambda: LargeSimConfig(n_genes=10, n_programs=50), "50 programs but only 10 genes"),
    (lambda: SmallSimConfig(n_genes=2), "3 programs but only 2 genes"),
    (lambda: SmallSimConfig(program_probs=(0.5, 0.5)), "program_probs has 2 values for 3 programs"),
    (lambda: SmallSimConfig(program_probs=(0.5, 0.5, 1.5)), "program_probs must lie in (0, 1)"),
    (lambda: LargeSimConfig(dispersion=-1.0), "dispersion must be positive"),
    (lambda: LargeSimConfig(n_cell_types=0), "n_cell_types must be a positive integer"),
    (lambda: LargeSimConfig(n_cells=200_000, n_genes=20_000), "too large to simulate"),
])
def test_impossible_settings_are_refused(make, message):
    with pytest.raises(InputError) as exc:
        make()
    assert message in str(exc.value)


def test_negative_seed_is_refused():
    with pytest.raises(InputError, match="seed must be a non-negative integer"):
        simulate(SmallSimConfig(n_cells=10), seed=-1)


def test_h5ad_round_trip(tmp_path, large):
    path = write_simulation(large, tmp_path / "sim.h5ad")
    back = read_simulation(path)
    assert (back.X != large.X).nnz == 0
    np.testing.assert_array_equal(back.varm["sim_M"], large.varm["sim_M"])
    for key in large.obsm:
        np.testing.assert_array_equal(back.obsm[key], large.obsm[key])
    assert simulation_info(back) == simulation_info(large)
    v = simulation_variables(back)
    assert list(v) == ["Y", "X''", "A", "B", "X'", "X"] and v["Y"].shape == (300, 3000)
    with pytest.raises(InputError, match="must be an .h5ad"):
        write_simulation(large, tmp_path / "sim.csv")


def test_reading_data_without_ground_truth_is_refused(small_h5ad):
    with pytest.raises(InputError, match="not a FeatureLens simulation") as exc:
        read_simulation(small_h5ad)
    assert "featurelens simulate small" in str(exc.value)


# ----------------------------------------------------------------------------- CLI
def test_cli_small_and_large(tmp_path, capsys):
    out = tmp_path / "s.h5ad"
    assert main(["simulate", "small", "--out", str(out), "--cells", "200", "--seed", "2"]) == 0
    ad = read_simulation(out)
    assert ad.shape == (200, 10) and simulation_info(ad)["seed"] == 2
    assert "200 cells × 10 genes" in capsys.readouterr().out
    out2 = tmp_path / "l.h5ad"
    assert main(["simulate", "large", "--out", str(out2), "--cells", "80", "--genes", "500", "--programs", "6",
                 "--cell-types", "3", "--batches", "2", "--dispersion", "0"]) == 0
    ad2 = read_simulation(out2)
    assert ad2.shape == (80, 500) and ad2.obs["cell_type"].nunique() <= 3
    assert simulation_info(ad2)["config"]["dispersion"] is None


@pytest.mark.parametrize("argv, message", [
    (["simulate", "large", "--out", "{tmp}/x.h5ad", "--genes", "20", "--programs", "50"], "50 programs but only 20"),
    (["simulate", "small", "--out", "{tmp}/x.h5ad", "--cells", "0"], "n_cells must be a positive integer"),
    (["simulate", "small", "--out", "{tmp}/x.csv"], "must be an .h5ad"),
])
def test_cli_bad_input_exits_2_without_traceback(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.h5ad"))
