"""Likelihoods against scipy.stats, and the model config's validation and round trip."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch

from core.base.errors import InputError
from core.model.config import ModelConfig
from core.model.nb import gaussian_log_prob, nb_log_prob, nb_log_prob_rows, poisson_log_prob


@pytest.mark.parametrize("theta", [0.05, 0.7, 3.0, 250.0])
def test_nb_log_prob_matches_scipy_mean_dispersion(theta, rng):
    x = rng.poisson(rng.gamma(theta, 5.0 / theta, size=(40, 7))).astype(np.float64)
    mu = rng.uniform(0.01, 30.0, size=(40, 7))
    ours = nb_log_prob(torch.from_numpy(x), torch.from_numpy(mu), torch.full((7,), theta, dtype=torch.float64)).numpy()
    ref = st.nbinom.logpmf(x, n=theta, p=theta / (theta + mu))
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_nb_per_gene_theta_and_constant(rng):
    x = rng.poisson(3.0, size=(10, 4)).astype(np.float64)
    mu = rng.uniform(0.5, 8.0, size=(10, 4))
    theta = np.array([0.3, 1.0, 5.0, 40.0])
    full = nb_log_prob(torch.from_numpy(x), torch.from_numpy(mu), torch.from_numpy(theta)).numpy()
    np.testing.assert_allclose(full, st.nbinom.logpmf(x, n=theta, p=theta / (theta + mu)), rtol=1e-6, atol=1e-6)
    no_const = nb_log_prob(torch.from_numpy(x), torch.from_numpy(mu), torch.from_numpy(theta), constant=False).numpy()
    np.testing.assert_allclose(no_const - full, np.vectorize(_lgamma)(x + 1), rtol=1e-9, atol=1e-9)


def test_nb_sparse_rows_equal_dense_sum(rng):
    import scipy.sparse as sp

    x = rng.poisson(0.4, size=(12, 30)).astype(np.float64)
    log_mu = np.log(rng.uniform(0.05, 4.0, size=(12, 30)))
    theta = rng.uniform(0.2, 20.0, size=30)
    X = sp.csr_matrix(x)
    rows = np.repeat(np.arange(12), np.diff(X.indptr))
    got = nb_log_prob_rows(torch.from_numpy(log_mu), torch.from_numpy(theta), torch.from_numpy(rows),
                           torch.from_numpy(X.indices.astype(np.int64)), torch.from_numpy(X.data)).numpy()
    dense = st.nbinom.logpmf(x, n=theta, p=theta / (theta + np.exp(log_mu))) + np.vectorize(_lgamma)(x + 1)
    np.testing.assert_allclose(got, dense.sum(1), rtol=1e-9, atol=1e-8)


def _lgamma(v: float) -> float:
    import math

    return math.lgamma(v)


def test_poisson_and_gaussian_match_scipy(rng):
    x = rng.poisson(4.0, size=(5, 6)).astype(np.float64)
    mu = rng.uniform(0.5, 9.0, size=(5, 6))
    np.testing.assert_allclose(poisson_log_prob(torch.from_numpy(x), torch.from_numpy(mu)).numpy(),
                               st.poisson.logpmf(x, mu), rtol=1e-6, atol=1e-6)
    y = rng.normal(size=(5, 6))
    log_var = np.log(rng.uniform(0.1, 3.0, size=6))
    np.testing.assert_allclose(
        gaussian_log_prob(torch.from_numpy(y), torch.from_numpy(mu), torch.from_numpy(log_var)).numpy(),
        st.norm.logpdf(y, loc=mu, scale=np.sqrt(np.exp(log_var))), rtol=1e-9, atol=1e-9)


def test_config_round_trip_and_validation():
    cfg = ModelConfig(latent=8, likelihood="gaussian", max_epochs=5, seed=3)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"latent": 0}, {"likelihood": "zinb"}, {"lr": -1.0}, {"max_epochs": 0}, {"dropout": 1.0},
                {"latent": 2.5}, {"validation_fraction": 0.0}):
        with pytest.raises(InputError):
            ModelConfig(**bad)
    with pytest.raises(InputError, match="unknown model settings"):
        ModelConfig.from_dict({**cfg.to_dict(), "frobnicate": 1})
    assert 30 <= ModelConfig().epochs_for(700) <= 400
    assert ModelConfig(max_epochs=7).epochs_for(10**6) == 7


def test_fit_nb_theta_is_the_maximum_likelihood(rng):
    from scipy.optimize import minimize_scalar

    from core.model.nb import fit_nb_theta

    n = 400
    mu = rng.uniform(0.5, 20.0, size=(n, 4))
    true = np.array([0.5, 2.0, 10.0, 1e5])
    x = rng.poisson(rng.gamma(true, mu / true))
    got = fit_nb_theta(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(mu)).numpy()
    for g in range(3):
        res = minimize_scalar(lambda u: -st.nbinom.logpmf(x[:, g], n=np.exp(u), p=np.exp(u) / (np.exp(u) + mu[:, g])).sum(),
                              bounds=(np.log(1e-3), np.log(1e5)), method="bounded", options={"xatol": 1e-8})
        np.testing.assert_allclose(got[g], np.exp(res.x), rtol=1e-3)
    assert got[3] > 100  # Poisson-like gene: a large theta
