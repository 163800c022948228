"""SAE training: determinism, stopping, bad input, planted-feature recovery, seed robustness, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.base.errors import InputError
from core.sae import (
    BatchTopKConfig,
    ReLUConfig,
    TopKConfig,
    TrainConfig,
    VanillaConfig,
    load_sae,
    planted_sparse_data,
    seed_robustness,
    train_sae,
)
from core.sae.synthetic import atom_recovery
from helpers import one_torch_thread

FAST = TrainConfig(epochs=3, batch_size=64, lr=1e-2, patience=None, seed=0)


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def planted():
    """4,000 cells in 10-d: 16 unit atoms, about 2 active per cell, an offset, little noise."""
    return planted_sparse_data(4000, d=10, n_atoms=16, active=2.0, noise=0.01, offset=1.0, seed=1)


RECOVERY = {
    "vanilla": VanillaConfig(hidden=32, l1=0.3, penalty="l1"),
    "vanilla-default": VanillaConfig(hidden=32),                # the default penalty and strength (0.2)
    "relu": ReLUConfig(hidden=32, l1=0.3, penalty="l1"),
    "topk": TopKConfig(hidden=48, k=2),
    "batchtopk": BatchTopKConfig(hidden=48, k=2),
}


@pytest.mark.parametrize("arch", list(RECOVERY))
def test_recovers_planted_sparse_features(arch, planted):
    res = train_sae(planted.x, config=RECOVERY[arch], train=FAST.replace(epochs=20))
    frac, best = atom_recovery(res.sae.feature_directions().numpy(), planted.dictionary, threshold=0.9)
    assert frac >= 0.9, f"{arch}: {frac:.2f} of atoms found (best cosines {np.round(np.sort(best), 2)})"
    assert res.history[-1]["val_fvu"] < 0.5


@pytest.mark.parametrize("arch", ["vanilla", "topk"])
def test_same_seed_same_weights(arch, planted):
    cfg = RECOVERY[arch]
    a = train_sae(planted.x[:1000], config=cfg, train=FAST.replace(seed=7))
    b = train_sae(planted.x[:1000], config=cfg, train=FAST.replace(seed=7))
    c = train_sae(planted.x[:1000], config=cfg, train=FAST.replace(seed=8))
    for k, v in a.sae.state_dict().items():
        assert torch.equal(v, b.sae.state_dict()[k]), k
    assert not torch.equal(a.sae.W_dec, c.sae.W_dec)
    assert (a.val_index == b.val_index).all() and not (a.val_index == c.val_index).all()


def test_autograd_engine_matches_hand_written_gradients(planted):
    cfg = VanillaConfig(hidden=32, l1=0.3, penalty="l1")
    a = train_sae(planted.x[:600], config=cfg, train=FAST)
    b = train_sae(planted.x[:600], config=cfg, train=FAST.replace(engine="autograd"))
    torch.testing.assert_close(a.sae.W_dec, b.sae.W_dec, rtol=1e-4, atol=1e-5)


def test_history_split_and_normalisation(planted):
    res = train_sae(planted.x, config=VanillaConfig(hidden=32, l1=0.3, penalty="l1"), train=FAST)
    assert len(res.history) == 3 and res.stop_reason == "completed"
    row = res.history[-1]
    for key in ("epoch", "step", "samples", "elapsed_s", "lr", "train_loss", "val_loss", "val_mse", "val_fvu",
                "val_l0", "val_live", "train_dead"):
        assert key in row
    assert len(res.val_index) == 400 and len(np.unique(res.val_index)) == 400
    assert res.history[-1]["val_loss"] < res.history[0]["val_loss"]
    torch.testing.assert_close(res.sae.input_mean, torch.from_numpy(
        np.delete(planted.x, res.val_index, axis=0).mean(0)), rtol=1e-4, atol=1e-5)
    assert res.history[-1]["lr"] < FAST.lr  # linear decay at the end
    json.dumps(res.summary())  # JSON-able


def test_decoder_norm_stays_one_through_training(planted):
    res = train_sae(planted.x[:1000], config=TopKConfig(hidden=48, k=2), train=FAST)
    torch.testing.assert_close(res.sae.decoder_norms().detach(), torch.ones(48))


def test_early_stopping_and_max_steps(planted):
    res = train_sae(planted.x[:1000], config=VanillaConfig(hidden=32),
                    train=FAST.replace(epochs=50, patience=1, min_delta=1.0))
    assert res.stop_reason == "early_stopping" and len(res.history) == 2
    # patience spent at the 2nd evaluation (step 30), but min_steps 100 holds training to step 105
    res = train_sae(planted.x[:1000], config=TopKConfig(hidden=32, k=2),
                    train=FAST.replace(epochs=50, patience=1, min_delta=1.0, min_steps=100))
    assert res.stop_reason == "early_stopping" and res.history[-1]["step"] == 105
    res = train_sae(planted.x[:1000], config=VanillaConfig(hidden=32), train=FAST.replace(max_steps=5, eval_every=2))
    assert res.stop_reason == "max_steps" and res.history[-1]["step"] == 5
    assert [r["step"] for r in res.history] == [2, 4, 5]


def test_progress_and_should_stop(planted):
    calls = []
    res = train_sae(planted.x[:1000], config=VanillaConfig(hidden=32), train=FAST.replace(epochs=200),
                    progress=lambda done, total, msg: calls.append((done, total, msg)),
                    should_stop=lambda: len(calls) >= 2)
    assert res.stop_reason == "should_stop"
    assert res.history and res.history[-1]["step"] < 200 * 15
    assert calls and all(total == 200 * 15 for _, total, _ in calls)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_refused(bad, planted):
    x = planted.x[:200].copy()
    x[5, 3] = bad
    with pytest.raises(InputError, match="in 1 of 200 cells"):
        train_sae(x, config=VanillaConfig(hidden=32), train=FAST)


def test_bad_shapes_and_sizes_are_refused(planted):
    with pytest.raises(InputError, match="at least as many latents"):
        train_sae(planted.x[:200], config=VanillaConfig(hidden=5), train=FAST)
    with pytest.raises(InputError, match="k = 64 is larger than the 48 latents"):
        train_sae(planted.x[:200], config=TopKConfig(expansion=4.8, k=64), train=FAST)
    with pytest.raises(InputError, match="too few cells for a validation split"):
        train_sae(planted.x[:30], config=VanillaConfig(hidden=32), train=FAST)
    with pytest.raises(InputError, match="2-D"):
        train_sae(planted.x[0], config=VanillaConfig(hidden=32), train=FAST)
    with pytest.raises(InputError, match="empty"):
        train_sae(np.zeros((0, 10), np.float32), config=VanillaConfig(hidden=32), train=FAST)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            train_sae(planted.x[:200], config=VanillaConfig(hidden=32), train=FAST.replace(device="cuda"))


def test_iterable_of_chunks_equals_array(planted):
    x = planted.x[:600]
    a = train_sae(x, config=VanillaConfig(hidden=32), train=FAST)
    b = train_sae((x[i:i + 100] for i in range(0, 600, 100)), config=VanillaConfig(hidden=32), train=FAST)
    assert torch.equal(a.sae.W_dec, b.sae.W_dec)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_gpu(planted):
    res = train_sae(planted.x[:1000], config=TopKConfig(hidden=48, k=2), train=FAST.replace(device="cuda"))
    assert res.device.startswith("cuda") and res.sae.W_dec.is_cuda


def test_seed_robustness(planted):
    report, results = seed_robustness(planted.x[:2000], config=TopKConfig(hidden=48, k=2),
                                      train=FAST.replace(epochs=10), seeds=(0, 42, 9307))
    assert len(results) == 3 and [r.train_config.seed for r in results] == [0, 42, 9307]
    assert report.per_seed["seed"].tolist() == [0, 42, 9307]
    assert report.per_seed["n_local"].isna().all()  # filled by feature characterisation later
    assert len(report.pairs) == 3
    # the planted atoms are found by every seed, so most live features match across seeds
    assert (report.pairs["matched"] >= 12).all()
    d = report.to_dict()
    json.dumps(d)
    assert d["summary"]["live"]["mean"] > 0 and "cv" in d["summary"]["l0"]
    with pytest.raises(InputError, match="at least two seeds"):
        seed_robustness(planted.x[:200], config=TopKConfig(hidden=48, k=2), train=FAST, seeds=(0,))


# ----------------------------------------------------------------------------- CLI
def test_cli_train_writes_the_analysis(tmp_path, planted, capsys):
    import anndata as ad

    from core.cli.main import main

    path = tmp_path / "planted.h5ad"
    ad.AnnData(X=np.zeros((1500, 3), np.float32), obsm={"X_emb": planted.x[:1500]}).write_h5ad(path)
    out = tmp_path / "analysis"
    argv = ["train", str(path), "--embedding", "X_emb", "--out", str(out), "--arch", "topk", "--k", "2",
            "--hidden", "48", "--epochs", "4", "--lr", "0.01", "--seeds", "0,42"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "live" in text and "seeds 0–42" in text
    for name in ("sae.pt", "sae.json", "metrics.json", "features.parquet", "activations.npz"):
        assert (out / name).is_file(), name
    from core.store.analysis import Analysis

    a = Analysis.open(out)
    sae = load_sae(a)
    assert sae.arch == "topk" and sae.hidden == 48 and sae.config.k == 2
    metrics = a.read_json("metrics.json")
    assert metrics["summary"]["hidden"] == 48 and len(metrics["robustness"]["pairs"]) == 1
    assert f"per feature, stability across 1 other seed: median {metrics['robustness']['stability']['median']:.2f}" in text
    acts = a.read_npz_sparse("activations.npz")
    assert acts.shape == (1500, 48) and acts.dtype == np.float32
    features = a.read_parquet("features.parquet")
    assert len(features) == 48 and features["live"].sum() == metrics["summary"]["live"]
    # same inputs: reused, not retrained
    assert main(argv) == 0
    assert "already trained" in capsys.readouterr().out
    # bad combinations exit with code 2 and a message
    assert main(argv[:6] + ["--arch", "topk", "--l1", "0.1"]) == 2
    assert main(argv[:6] + ["--hidden", "4"]) == 2
    assert main(argv[:6] + ["--seed", "1", "--seeds", "0,42"]) == 2
    err = capsys.readouterr().err
    assert "--l1 does not apply" in err and "at least as many latents" in err


def test_cli_presets_build_the_right_configs():
    from core.cli.main import build_parser
    from core.cli.train import sae_request

    parse = build_parser().parse_args
    sae, train, seeds = sae_request(parse(["train", "d.h5ad", "--out", "o", "--preset", "paper"])).configs()
    assert (sae.arch, sae.hidden, sae.l1, sae.center, sae.decoder_norm) == ("vanilla", 10_000, 1e-3, False, "none")
    assert (sae.l1_scale, sae.resample_dead) == ("mean", False)                 # the reference's L1, as published
    assert (train.lr, train.batch_size, train.epochs, train.patience) == (1e-4, 128, 500, None) and seeds is None
    sae, train, seeds = sae_request(parse(["train", "d.h5ad", "--out", "o", "--arch", "relu", "--expansion", "5",
                                           "--seeds", "3,4", "--patience", "0"])).configs()
    assert (sae.arch, sae.expansion, sae.hidden, sae.l1, sae.l1_scale) == ("relu", 5.0, None, 0.2, "input")
    assert train.seed == 3 and seeds == [3, 4] and train.patience is None
