"""Expression-space fidelity: identity scores 1, the mean 0, an SAE in between, shuffled cells ≤ 0;
the NB likelihood against scipy; the held-out counts read from every .h5ad encoding."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from scipy import stats

from core.base.errors import InputError
from core.model import ModelConfig, fit_expression_model
from core.model.decoders import BuiltinDecoder
from core.model.fidelity import model_log_likelihood, expression_fidelity, fidelity_score, nb_cell_log_likelihood
from core.sae import TrainConfig, VanillaConfig, reconstruct, train_sae
from helpers import one_torch_thread
from test_model_fit import FAST, planted_counts

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def model():
    """A built-in NB model on 400 planted cells (3 types), its embedding, counts and library sizes."""
    X, types, _ = planted_counts(n_cells=400, n_genes=60, seed=2)
    fitted = fit_expression_model(X, config=ModelConfig(latent=4, **FAST), gene_names=[f"G{j}" for j in range(60)])
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    return fitted, X, lib


def _score(model, reconstruction, *, log_likelihood="model"):
    fitted, X, lib = model
    decoder = BuiltinDecoder(fitted)
    ll = model_log_likelihood(decoder) if log_likelihood == "model" else None
    return expression_fidelity(X, original=fitted.embedding, reconstruction=reconstruction,
                               decode=lambda z, rows: decoder.decode_chunk(z, lib[rows]), log_likelihood=ll,
                               chunk=128)


def _sae_reconstruction(z, config, *, epochs=60):
    res = train_sae(z, config=config, train=TrainConfig(epochs=epochs, seed=0, val_fraction=0.1))
    return reconstruct(res.sae, z)


def test_identity_is_one_mean_is_zero_sae_in_between_shuffled_at_most_zero(model):
    fitted, X, _ = model
    z = fitted.embedding
    ident = _score(model, z.copy())
    assert ident["fidelity"] == 1.0 and ident["loglik_reconstruction"] == ident["loglik_original"]
    assert ident["n_cells"] == 400 and ident["dispersion"] == "given"
    assert ident["loglik_original"] > ident["loglik_mean"]          # the embedding carries cell state
    mean = _score(model, np.tile(z.mean(0), (len(z), 1)))
    assert mean["fidelity"] == 0.0
    good = _score(model, _sae_reconstruction(z, VanillaConfig(expansion=4)))["fidelity"]
    # a strong L1 shrinks the code (explained variance ~0.7): the counts are explained a little less well
    lossy = _score(model, _sae_reconstruction(z, VanillaConfig(expansion=4, l1=10.0)))["fidelity"]
    assert 0.9 < good <= 1.02
    assert 0.0 < lossy < min(good, 0.995)
    shuffled = _score(model, z[np.random.default_rng(0).permutation(len(z))])["fidelity"]
    assert shuffled <= 0.05                                           # the null: cell identity lost


def test_fitted_dispersion_still_scores_identity_one(model):
    fitted, _, _ = model
    out = _score(model, fitted.embedding.copy(), log_likelihood=None)
    assert out["dispersion"] == "fitted" and out["fidelity"] == 1.0


def test_nb_cell_log_likelihood_matches_scipy():
    import torch

    rng = np.random.default_rng(5)
    mu = rng.uniform(0.1, 20, size=(4, 7))
    theta = rng.uniform(0.5, 10, size=7)
    x = rng.poisson(mu).astype(np.float64)
    got = nb_cell_log_likelihood(theta)(torch.tensor(x, dtype=torch.float32), torch.tensor(mu, dtype=torch.float32))
    ref = stats.nbinom(n=theta, p=theta / (theta + mu)).logpmf(x).sum(1)
    assert_allclose(got.numpy(), ref, rtol=1e-4)


def test_score_undefined_and_bad_inputs():
    assert fidelity_score(-10.0, -12.0, -20.0) == pytest.approx(0.8)
    assert fidelity_score(-10.0, -12.0, -10.0) is None              # the embedding is no better than the mean
    z = np.zeros((3, 2), np.float32)
    with pytest.raises(InputError, match="reconstruction has shape"):
        expression_fidelity(np.zeros((3, 4)), original=z, reconstruction=z[:2], decode=lambda a, r: a)
    with pytest.raises(InputError, match="2 cells of counts for 3"):
        expression_fidelity(np.zeros((2, 4)), original=z, reconstruction=z, decode=lambda a, r: a)


@pytest.mark.parametrize("encoding", ["csr", "csc", "dense"])
def test_count_rows_reads_the_chosen_cells(tmp_path, encoding):
    import anndata as ad

    from core.data.counts import count_rows

    rng = np.random.default_rng(6)
    counts = rng.poisson(1.0, size=(50, 9)).astype(np.float32)
    X = {"csr": sp.csr_matrix(counts), "csc": sp.csc_matrix(counts), "dense": counts}[encoding]
    path = tmp_path / f"{encoding}.h5ad"
    ad.AnnData(X=X).write_h5ad(path)
    rows = np.array([0, 1, 2, 7, 30, 49])
    cols = np.array([True, False] * 4 + [True])
    got = count_rows(path, rows, columns=cols, chunk_bytes=64)
    assert sp.isspmatrix_csr(got) and got.dtype == np.float32
    assert_allclose(got.toarray(), counts[rows][:, cols])
    with pytest.raises(InputError, match="sorted, unique"):
        count_rows(path, np.array([3, 1]))
    with pytest.raises(InputError, match="out of range"):
        count_rows(path, np.array([50]))
