"""SAE metrics: hand-made activations against hand-computed values, and consistency with the model."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose

from core.base.errors import InputError
from core.sae import VanillaConfig, TopKConfig, build_sae, encode_activations, reconstruct, sae_metrics
from core.sae.metrics import (
    FEATURE_COLUMNS,
    activation_metrics,
    activation_stats,
    frequency_histogram,
    max_decoder_cosines,
    reconstruction_metrics,
    reconstruction_quality,
    redundant_latents,
)
from core.sae.robustness import match_features, parse_seeds
from helpers import one_torch_thread

# 6 cells × 5 latents. Latent 1 = 2 × latent 0 (Pearson 1), latent 3 is dead,
# latent 4 fires once; latent 2 is unrelated.
ACTS = np.array([
    [1.0, 2.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 3.0, 0.0, 0.0],
    [2.0, 4.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 5.0],
    [3.0, 6.0, 2.0, 0.0, 0.0],
    [0.0, 0.0, 0.5, 0.0, 0.0],
])


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.mark.parametrize("as_sparse", [False, True])
def test_activation_stats_match_hand_computed(as_sparse):
    acts = sp.csr_matrix(ACTS) if as_sparse else ACTS
    t = activation_stats(acts)
    assert t["n_cells"].tolist() == [3, 3, 4, 0, 1]
    assert t["live"].tolist() == [True, True, True, False, True]
    assert_allclose(t["frequency"], [0.5, 0.5, 4 / 6, 0.0, 1 / 6])
    assert_allclose(t["mean_activation"], [1.0, 2.0, 6.5 / 6, 0.0, 5 / 6])
    assert_allclose(t["mean_active"], [2.0, 4.0, 6.5 / 4, np.nan, 5.0])
    assert_allclose(t["max_activation"], [3.0, 6.0, 3.0, 0.0, 5.0])


def test_redundancy_matches_numpy_corrcoef():
    red = redundant_latents(ACTS, threshold=0.9)
    corr = np.corrcoef(ACTS[:, [0, 1, 2, 4]].T)
    np.fill_diagonal(corr, -np.inf)
    expected = np.full(5, np.nan)
    expected[[0, 1, 2, 4]] = corr.max(axis=0)
    assert_allclose(red["max_corr"], expected)
    assert red["redundant"].tolist() == [True, True, False, False, False]
    assert red["redundant_with"].tolist() == [1, 0, -1, -1, -1]
    # blocks of one latent give the same answer as one block
    assert_allclose(redundant_latents(sp.csr_matrix(ACTS), block=1)["max_corr"], expected)


@pytest.mark.parametrize("method", ["sparse", "dense", "auto"])
def test_redundancy_on_random_sparse_matrix_against_corrcoef(method):
    rng = np.random.default_rng(0)
    a = rng.exponential(size=(200, 30)) * (rng.random((200, 30)) < 0.2)
    a[:, 7] = a[:, 3] * 1.5 + 0.01 * a[:, 5]
    red = redundant_latents(sp.csr_matrix(a), block=7, method=method)
    corr = np.corrcoef(a.T)
    np.fill_diagonal(corr, -np.inf)
    assert_allclose(red["max_corr"], corr.max(axis=0), rtol=1e-5, atol=1e-7)
    assert set(np.flatnonzero(red["redundant"])) == {3, 7}
    assert red["redundant_with"][3] == 7 and red["redundant_with"][7] == 3


def test_activation_metrics_summary():
    summary, table = activation_metrics(ACTS)
    assert summary["n_cells"] == 6 and summary["hidden"] == 5
    assert summary["l0"] == pytest.approx(np.count_nonzero(ACTS) / 6)  # 11 / 6
    assert (summary["live"], summary["dead"], summary["redundant"]) == (4, 1, 2)
    assert summary["dead_fraction"] == pytest.approx(0.2)
    hist = summary["frequency_histogram"]
    assert sum(hist["counts"]) == 4 and hist["dead"] == 1
    assert hist["log10_edges"][-1] == 0.0 and hist["log10_edges"][0] <= np.log10(1 / 6)


def test_frequency_histogram_bins():
    h = frequency_histogram(np.array([1e-3, 1e-2, 0.5, 0.0]), n_cells=1000, bins_per_decade=1)
    assert h["log10_edges"] == [-3.0, -2.0, -1.0, 0.0]
    assert h["counts"] == [1, 1, 1] and h["dead"] == 1


def test_reconstruction_metrics_hand_computed():
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]])
    x_hat = np.array([[1.0, 2.5], [2.0, 4.0], [5.0, 1.0]])
    m = reconstruction_metrics(x, x_hat)
    sse = 0.25 + 1.0 + 1.0
    assert m["mse"] == pytest.approx(sse / 6)
    total = ((x - x.mean(0)) ** 2).sum()
    assert m["fvu"] == pytest.approx(sse / total)


def _quality_by_hand(x, x_hat):
    """SAEBench's definitions written out cell by cell (raw space)."""
    ev = 1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    cos = [a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for a, b in zip(x, x_hat)
           if np.linalg.norm(a) > 0 and np.linalg.norm(b) > 0]
    ratio = [np.linalg.norm(b) / np.linalg.norm(a) for a, b in zip(x, x_hat) if np.linalg.norm(a) > 0]
    rrb = np.mean([b @ b for b in x_hat]) / np.mean([a @ b for a, b in zip(x, x_hat)])
    return {"explained_variance": ev, "cossim": np.mean(cos), "l2_ratio": np.mean(ratio),
            "relative_reconstruction_bias": rrb}


def test_reconstruction_quality_matches_saebench_definitions():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 6)) + 1.0
    x_hat = 0.8 * x + rng.normal(scale=0.3, size=x.shape)
    x[4] = 0.0          # a zero input: left out of cossim and the norm ratio
    x_hat[7] = 0.0      # a zero reconstruction: left out of cossim only
    got = reconstruction_quality(x, x_hat)
    for key, value in _quality_by_hand(x, x_hat).items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert got["explained_variance"] == pytest.approx(1 - reconstruction_metrics(x, x_hat)["fvu"])
    # invariants: a perfect reconstruction scores 1 everywhere; a uniform shrink by 0.5 keeps the
    # cosine at 1 and halves the norm ratio and the relative bias
    assert all(v == pytest.approx(1.0) for v in reconstruction_quality(x, x).values())
    half = reconstruction_quality(x, 0.5 * x)
    assert (half["cossim"], half["l2_ratio"], half["relative_reconstruction_bias"]) == pytest.approx((1, 0.5, 0.5))


def test_max_decoder_cosines_match_the_full_matrix():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(5, 30))
    w[:, 3] = -2.5 * w[:, 10]                   # anti-parallel: |cos| = 1
    w[:, 20] = 0.0                              # a zero column
    live = np.ones(30, bool)
    live[[10, 25]] = False                      # latent 3's twin is dead: it does not count
    unit = w / np.where(np.linalg.norm(w, axis=0) > 0, np.linalg.norm(w, axis=0), 1)
    keep = live & (np.linalg.norm(w, axis=0) > 0)
    cos = np.abs(unit.T @ unit)
    np.fill_diagonal(cos, -1)
    cos[:, ~keep] = -1
    expected = np.where(keep, cos.max(axis=1), np.nan)
    assert_allclose(max_decoder_cosines(w, live), expected, rtol=1e-6)
    assert_allclose(max_decoder_cosines(w, live, block=4), expected, rtol=1e-6)
    assert np.isnan(max_decoder_cosines(w, live)[[10, 20, 25]]).all()
    assert max_decoder_cosines(w, np.ones(30, bool))[3] == pytest.approx(1.0)
    assert np.isnan(max_decoder_cosines(w, np.eye(30, dtype=bool)[0])).all()   # one live latent: nothing to compare


def test_sae_metrics_agree_with_the_model():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float32) + 2.0
    sae = build_sae(VanillaConfig(hidden=40, l1=0.1), d_in=8, seed=0)
    sae.fit_normalization_(torch.from_numpy(x))
    acts = encode_activations(sae, x, batch_size=64)
    assert sp.isspmatrix_csr(acts) and acts.dtype == np.float32 and acts.shape == (300, 40)
    dense = sae.encode(torch.from_numpy(x)).detach().numpy()
    assert_allclose(acts.toarray(), dense, rtol=1e-6, atol=1e-6)
    assert acts.nnz == np.count_nonzero(dense)
    metrics, features = sae_metrics(sae, x, activations=acts)
    assert list(features.columns) == list(FEATURE_COLUMNS) and len(features) == 40
    ref = reconstruction_metrics(x, reconstruct(sae, x))
    assert metrics["mse"] == pytest.approx(ref["mse"], rel=1e-5)
    assert metrics["fvu"] == pytest.approx(ref["fvu"], rel=1e-5)
    assert metrics["l0"] == pytest.approx(np.count_nonzero(dense) / 300)
    assert metrics["live"] == int((dense > 0).any(0).sum())
    assert_allclose(features["decoder_norm"], sae.decoder_norms().detach().numpy(), rtol=1e-6)
    again, _ = sae_metrics(sae, x)  # encodes itself
    assert again["mse"] == pytest.approx(metrics["mse"])
    # SAEBench quality on all cells and on the held-out ones, against a direct computation
    x_hat = reconstruct(sae, x).astype(np.float64)
    val = np.arange(0, 300, 7)
    metrics, features = sae_metrics(sae, x, activations=acts, val_index=val)
    for key, value in _quality_by_hand(x.astype(np.float64), x_hat).items():
        assert metrics[key] == pytest.approx(value, rel=1e-4), key
    for key, value in _quality_by_hand(x[val].astype(np.float64), x_hat[val]).items():
        assert metrics["validation"][key] == pytest.approx(value, rel=1e-4), key
    assert metrics["validation"]["n_cells"] == val.size
    per = max_decoder_cosines(sae.W_dec.detach().numpy(), features["live"].to_numpy())
    assert_allclose(features["max_decoder_cosine"], per, rtol=1e-5)
    assert metrics["max_decoder_cosine"] == pytest.approx(np.nanmax(per), rel=1e-5)
    assert metrics["median_max_decoder_cosine"] == pytest.approx(np.nanmedian(per), rel=1e-5)
    assert "validation" not in again


def test_encode_refuses_wrong_width_and_bad_values():
    sae = build_sae(TopKConfig(hidden=20, k=2), d_in=4)
    with pytest.raises(InputError, match="expects 4-dimensional input"):
        encode_activations(sae, np.zeros((5, 3), np.float32))
    bad = np.zeros((5, 4), np.float32)
    bad[2, 1] = np.inf
    with pytest.raises(InputError, match="infinite"):
        encode_activations(sae, bad)


def test_match_features_finds_a_permutation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 12))
    perm = rng.permutation(30)
    b = a[perm] + 0.01 * rng.normal(size=(30, 12))
    b = np.vstack([b, rng.normal(size=(5, 12))])  # unmatched extras
    m = match_features(a, b, threshold=0.9)
    assert len(m) == 30
    assert (perm[m["b"].to_numpy()] == m["a"].to_numpy()).all()
    assert (m["cosine"] >= 0.9).all()
    assert len(match_features(a, rng.normal(size=(30, 12)), threshold=0.9)) == 0


def test_parse_seeds():
    assert parse_seeds("0,42,9307") == [0, 42, 9307]
    for bad in ("a,b", "1,1", "-1,2", ""):
        with pytest.raises(InputError):
            parse_seeds(bad)
