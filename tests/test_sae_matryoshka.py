"""Matryoshka TopK SAE: config, the nested-prefix loss, training, persistence, CLI, a null check."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.base.errors import InputError
from core.sae import (
    MatryoshkaConfig,
    SAEConfig,
    TopKConfig,
    TrainConfig,
    build_sae,
    encode_activations,
    load_sae,
    planted_sparse_data,
    sae_metrics,
    save_sae,
    train_sae,
)
from core.sae.request import SAERequest
from helpers import one_torch_thread

FAST = TrainConfig(epochs=4, batch_size=64, lr=1e-2, patience=None, seed=0)
SMALL = MatryoshkaConfig(hidden=64, k=2)  # prefixes 4, 8, 16, 32, 64


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def planted():
    """3,000 cells in 10-d: 16 unit atoms, about 2 active per cell, an offset, little noise."""
    return planted_sparse_data(3000, d=10, n_atoms=16, active=2.0, noise=0.01, offset=1.0, seed=3)


def test_defaults_prefix_sizes_and_json_round_trip():
    cfg = MatryoshkaConfig()
    assert cfg.prefixes == (1 / 16, 1 / 8, 1 / 4, 1 / 2) and cfg.weighting == "mean" and cfg.k is None
    assert cfg.prefix_sizes(10) == [31, 62, 125, 250, 500]          # 50 × 10 latents
    assert MatryoshkaConfig(hidden=20, prefixes=(0.01, 0.02, 0.5)).prefix_sizes(10) == [1, 10, 20]  # merged
    assert MatryoshkaConfig(prefixes=()).prefix_sizes(4) == [200]   # plain TopK
    sae = build_sae(cfg, d_in=12)
    assert sae.k == 12 and sae.hidden == 600 and sae.prefix_ends.tolist() == [38, 75, 150, 300, 600]
    assert build_sae(cfg.replace(k=5), d_in=12).k == 5
    d = json.loads(json.dumps(cfg.replace(prefixes=(0.1, 0.3), weighting="sum").to_dict()))
    back = SAEConfig.from_dict(d)
    assert type(back) is MatryoshkaConfig and back == cfg.replace(prefixes=(0.1, 0.3), weighting="sum")
    assert TopKConfig(k=None).k_size(7) == 7 and TopKConfig().k_size(7) == 32


@pytest.mark.parametrize("bad, match", [
    (dict(prefixes=(0.5, 0.25)), "strictly increasing"),
    (dict(prefixes=(0.25, 0.25)), "strictly increasing"),
    (dict(prefixes=(0.0, 0.5)), "between 0 and 1"),
    (dict(prefixes=(0.5, 1.0)), "between 0 and 1"),
    (dict(prefixes=0.5), "list of fractions"),
    (dict(prefixes=("a",)), "list of fractions"),
    (dict(prefixes=(float("nan"),)), "list of fractions"),
    (dict(weighting="max"), "weighting must be one of mean, sum"),
    (dict(selection="global"), "selection must be one of sample, batch"),
    (dict(k=0), "k must be a positive integer"),
    (dict(k=2.5), "k must be a positive integer"),
    (dict(hidden=40, k=50), "k = 50 is larger than hidden = 40"),
    (dict(aux_coef=-1.0), "aux_coef must be >= 0"),
])
def test_bad_settings_raise_input_error(bad, match):
    with pytest.raises(InputError, match=match) as err:
        MatryoshkaConfig(**bad)
    assert err.value.message.startswith("invalid SAE setting")


@pytest.mark.parametrize("weighting, selection", [("mean", "sample"), ("sum", "sample"), ("mean", "batch")])
def test_sparse_loss_equals_the_dense_definition(weighting, selection):
    """The gather path's loss is Σ or mean over prefixes of MSE(x, decode(z · [index < m]))."""
    sae = build_sae(SMALL.replace(weighting=weighting, k=5, selection=selection), d_in=10, seed=2)
    xn = torch.randn(32, 10)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.5)
        sae.b_dec.normal_(0, 0.3)
    sae.train()
    out = sae.loss(xn, dead=torch.zeros(sae.hidden, dtype=torch.bool))
    z = sae.activate(sae.pre_activation(xn))  # training-mode latents; normalisation is the identity here
    assert int((z > 0).sum()) <= 5 * 32 and ((z > 0).sum(1) <= 5).all() == (selection == "sample")
    dense = torch.stack([(sae.decode_normalized(z * (torch.arange(64) < m)) - xn).pow(2).mean()
                         for m in (4, 8, 16, 32, 64)])
    torch.testing.assert_close(sae.prefix_mse(xn, z), dense)
    torch.testing.assert_close(out.mse, dense[-1])
    torch.testing.assert_close(out.loss, dense.mean() if weighting == "mean" else dense.sum())
    assert float(out.penalty) == 0.0  # no AuxK without dead latents
    dead = torch.zeros(64, dtype=torch.bool)
    dead[40:] = True
    with_dead = sae.loss(xn, dead=dead)
    assert float(with_dead.penalty) > 0 and float(with_dead.loss.detach()) > float(out.loss.detach())


def test_validation_loss_is_the_prefix_objective():
    """Early stopping follows the prefix objective, not the full MSE (which is best near the init)."""
    from core.sae.train import evaluate_normalized

    xn = torch.randn(300, 10)
    for weighting in ("mean", "sum"):
        sae = build_sae(SMALL.replace(weighting=weighting, k=5), d_in=10, seed=4)
        errs = sae.prefix_mse(xn)
        row = evaluate_normalized(sae, xn, batch_size=128)
        want = errs.mean() if weighting == "mean" else errs.sum()
        assert row["val_loss"] == pytest.approx(float(want), rel=1e-5)
        assert row["val_mse"] == pytest.approx(float(errs[-1]), rel=1e-5)


def test_training_lowers_every_prefix_loss_and_is_deterministic(planted):
    x = planted.x[:1500]
    a = train_sae(x, config=SMALL, train=FAST)
    b = train_sae(x, config=SMALL, train=FAST)
    c = train_sae(x, config=SMALL, train=FAST.replace(seed=1))
    losses = [row["train_loss"] for row in a.history]
    assert losses[-1] < 0.8 * losses[0]
    xn = a.sae.normalize(torch.from_numpy(x))
    start = build_sae(SMALL, d_in=10, seed=0)
    start.load_state_dict({k: v for k, v in a.sae.state_dict().items() if k in ("input_mean", "input_scale")},
                          strict=False)
    before, after = start.prefix_mse(xn), a.sae.prefix_mse(xn)
    assert (after < before).all() and after[-1] < 0.5 * before[-1], (before, after)
    for k, v in a.sae.state_dict().items():
        assert torch.equal(v, b.sae.state_dict()[k]), k
    assert not torch.equal(a.sae.W_dec, c.sae.W_dec)


@pytest.mark.parametrize("selection", ["sample", "batch"])
def test_save_load_round_trip_gives_equal_encodings(planted, tmp_path, selection):
    res = train_sae(planted.x[:1000], config=SMALL.replace(prefixes=(0.1, 0.4), weighting="sum", selection=selection),
                    train=FAST.replace(epochs=2))
    if selection == "batch":
        assert float(res.sae.threshold) > 0  # inference by the learned threshold
    save_sae(res.sae, tmp_path)
    loaded = load_sae(tmp_path)
    assert type(loaded) is type(res.sae) and loaded.config == res.sae.config
    assert loaded.prefix_ends.tolist() == res.sae.prefix_ends.tolist() == [6, 26, 64]
    a, b = encode_activations(res.sae, planted.x), encode_activations(loaded, planted.x)
    assert (a != b).nnz == 0 and a.nnz > 0
    s1, _ = sae_metrics(res.sae, planted.x, activations=a)
    s2, _ = sae_metrics(loaded, planted.x, activations=b)
    assert s1 == s2 and s1["hidden"] == 64 and 0 < s1["fvu"] < 1


def test_first_prefix_alone_beats_as_many_latents_of_plain_topk(planted):
    """The point of the nested loss: the first 8 latents carry the general directions alone, where
    8 latents of a plain TopK model (its latent order is arbitrary: a random subset) do not."""
    cfg = MatryoshkaConfig(hidden=64, k=3, prefixes=(0.125, 0.5))
    train = FAST.replace(epochs=6)
    mat = train_sae(planted.x, config=cfg, train=train).sae
    top = train_sae(planted.x, config=TopKConfig(hidden=64, k=3), train=train).sae
    x = torch.from_numpy(planted.x)

    @torch.no_grad()
    def fvu_of_first(sae, m):
        xn = sae.normalize(x)
        z = sae.encode(x)
        z[:, m:] = 0
        return float((sae.decode_normalized(z) - xn).pow(2).sum() / (xn - xn.mean(0)).pow(2).sum())

    mat_first, top_first = fvu_of_first(mat, 8), fvu_of_first(top, 8)
    assert mat_first < 0.5 * top_first, (mat_first, top_first)
    assert fvu_of_first(mat, 64) < 0.15 and fvu_of_first(top, 64) < 0.15  # both reconstruct in full


def test_no_latent_tracks_an_independent_variable_on_noise():
    """Null check: on a pure-noise embedding, the best single-latent |r| with a variable drawn
    independently stays below a Bonferroni bound for 320 latents (|r| √n ≤ 5: family-wise p ≈ 2e-4)."""
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = np.column_stack([rng.normal(size=n), rng.random(n) < 0.2]).astype(np.float64)
    res = train_sae(x, config=MatryoshkaConfig(expansion=40), train=FAST.replace(epochs=3))
    acts = encode_activations(res.sae, x).toarray()
    live = acts.std(0) > 0
    assert live.sum() > 10
    def best_r(v):
        return max(abs(np.corrcoef(acts[:, f], v)[0, 1]) for f in np.flatnonzero(live))

    assert max(best_r(y[:, j]) for j in range(2)) * np.sqrt(n) <= 5.0
    assert best_r(np.maximum(x[:, 0], 0)) * np.sqrt(n) > 5.0  # the check can fail: a variable of x is found


def test_cli_trains_a_matryoshka_analysis(planted, tmp_path):
    import anndata as ad

    from core.cli.main import main
    from core.store.analysis import Analysis

    path = tmp_path / "planted.h5ad"
    ad.AnnData(X=np.zeros((800, 3), np.float32), obsm={"X_emb": planted.x[:800]}).write_h5ad(path)
    out = tmp_path / "analysis"
    argv = ["train", str(path), "--embedding", "X_emb", "--out", str(out), "--arch", "matryoshka", "--hidden", "64",
            "--epochs", "2", "--lr", "0.01"]
    assert main(argv) == 0
    a = Analysis.open(out)
    sae = load_sae(a)
    assert sae.arch == "matryoshka" and sae.k == 10 and sae.config.k is None   # k = the embedding's dimension
    metrics = a.read_json("metrics.json")["summary"]
    assert metrics["hidden"] == 64 and metrics["l0"] <= 10 and 0 <= metrics["fvu"] < 1
    assert main(argv[:6] + ["--arch", "matryoshka", "--l1", "0.1"]) == 2


def test_cli_and_request_pick_the_architecture():
    from core.cli.main import build_parser
    from core.cli.train import sae_request

    args = build_parser().parse_args(["train", "d.h5ad", "--out", "o", "--arch", "matryoshka", "--expansion", "16"])
    sae, _, _ = sae_request(args).configs()
    assert sae == MatryoshkaConfig(expansion=16.0)
    sae, _, _ = SAERequest(arch="matryoshka", k=6).configs()
    assert sae == MatryoshkaConfig(k=6)
    with pytest.raises(InputError, match="--l1 does not apply to the matryoshka architecture"):
        SAERequest(arch="matryoshka", l1=0.1)
