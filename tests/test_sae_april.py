"""Anthropic's April 2024 training recipe as options: small tied init, L1 warm-up, gradient clipping."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.base.errors import InputError
from core.sae import SAEConfig, TrainConfig, VanillaConfig, build_sae, planted_sparse_data, train_sae
from helpers import one_torch_thread

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

APRIL = VanillaConfig(hidden=32, l1=0.3, decoder_norm="l1_weighted", init_scale=0.1, resample_dead=False)
APRIL_TRAIN = TrainConfig(epochs=4, batch_size=64, lr=1e-2, patience=None, restore_best=False, l1_warmup=0.05,
                          decay_fraction=0.2, grad_clip=1.0, seed=0)
ONE_STEP = TrainConfig(max_steps=1, batch_size=64, lr=1e-2, patience=None, restore_best=False,
                       lr_schedule="constant", seed=0)


@pytest.fixture(scope="module")
def planted():
    return planted_sparse_data(1500, d=10, n_atoms=16, active=2.0, noise=0.01, offset=1.0, seed=1)


@pytest.mark.parametrize("bad, match", [
    (dict(init_scale=0.0), "init_scale must be a positive number"),
    (dict(init_scale=float("nan")), "init_scale must be a positive number"),
    (dict(init_scale=True), "init_scale must be a positive number"),
    (dict(init_scale=0.1, init="torch"), "tied init only"),
    (dict(init_scale=0.1, decoder_norm="unit"), "no effect with decoder_norm 'unit'"),
])
def test_bad_init_scale_is_refused(bad, match):
    base = dict(decoder_norm="l1_weighted")
    with pytest.raises(InputError, match=match):
        VanillaConfig(**{**base, **bad})


@pytest.mark.parametrize("bad, match", [
    (dict(l1_warmup=-0.1), "l1_warmup must be"), (dict(l1_warmup=1.0), "l1_warmup must be"),
    (dict(l1_warmup="5%"), "l1_warmup must be"), (dict(grad_clip=0.0), "grad_clip must be"),
    (dict(grad_clip=float("inf")), "grad_clip must be"),
])
def test_bad_warmup_and_clip_are_refused(bad, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(**bad)


def test_new_options_round_trip():
    assert SAEConfig.from_dict(APRIL.to_dict()) == APRIL
    assert TrainConfig.from_dict(APRIL_TRAIN.to_dict()) == APRIL_TRAIN
    old = {k: v for k, v in APRIL_TRAIN.to_dict().items() if k not in ("l1_warmup", "grad_clip")}
    assert (TrainConfig.from_dict(old).l1_warmup, TrainConfig.from_dict(old).grad_clip) == (0.0, None)


def test_warmup_schedule_values():
    train = TrainConfig(l1_warmup=0.05)
    assert train.warmup_steps(1000) == 50
    weights = [train.penalty_weight(s, 1000) for s in (0, 1, 25, 49, 50, 51, 999)]
    np.testing.assert_allclose(weights, [0.0, 0.02, 0.5, 0.98, 1.0, 1.0, 1.0])
    assert all(TrainConfig().penalty_weight(s, 1000) == 1.0 for s in (0, 1, 999))  # no warm-up by default


def test_small_tied_init_has_the_given_norms_and_is_not_recalibrated():
    sae = build_sae(APRIL.replace(hidden=64), d_in=12, seed=0)
    torch.testing.assert_close(sae.decoder_norms(), torch.full((64,), 0.1))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)
    assert float(sae.b_enc.detach().abs().sum()) == 0.0 and float(sae.b_dec.detach().abs().sum()) == 0.0
    before = sae.W_enc.detach().clone()
    assert sae.calibrate_init_(torch.randn(200, 12, generator=torch.Generator().manual_seed(0))) == 1.0
    assert torch.equal(sae.W_enc, before)
    unit = build_sae(APRIL.replace(hidden=64, init_scale=None), d_in=12, seed=0)  # same directions, norm 1
    torch.testing.assert_close(unit.W_dec * 0.1, sae.W_dec)


@pytest.mark.parametrize("engine", ["auto", "autograd"])
def test_first_warmup_step_has_no_penalty(engine, planted):
    x = planted.x
    cfg = VanillaConfig(hidden=32, l1=0.5, decoder_norm="l1_weighted", init_scale=0.1)
    warm = train_sae(x, config=cfg, train=ONE_STEP.replace(l1_warmup=0.9, engine=engine))  # 1 warm-up step
    free = train_sae(x, config=cfg.replace(l1=0.0), train=ONE_STEP.replace(engine=engine))
    full = train_sae(x, config=cfg, train=ONE_STEP.replace(engine=engine))
    torch.testing.assert_close(warm.sae.W_enc, free.sae.W_enc)
    assert not torch.allclose(full.sae.W_enc, free.sae.W_enc)
    assert warm.sae.penalty_weight == 1.0  # the returned model is at full strength


def test_gradient_clipping_reaches_the_step(planted):
    x, cfg = planted.x, APRIL
    start = build_sae(cfg, d_in=10, seed=0).W_enc.detach()
    free = train_sae(x, config=cfg, train=ONE_STEP).sae.W_enc.detach()
    # clipped far below Adam's eps (1e-8): the first Adam step is then much smaller than lr
    clipped = train_sae(x, config=cfg, train=ONE_STEP.replace(grad_clip=1e-11)).sae.W_enc.detach()
    assert float((clipped - start).abs().max()) < 0.05 * float((free - start).abs().max())


def test_recipe_same_seed_same_weights_and_loss_falls(planted):
    train = APRIL_TRAIN.replace(eval_every=4)
    a = train_sae(planted.x, config=APRIL, train=train)
    b = train_sae(planted.x, config=APRIL, train=train)
    c = train_sae(planted.x, config=APRIL, train=train.replace(seed=1))
    for k, v in a.sae.state_dict().items():
        assert torch.equal(v, b.sae.state_dict()[k]), k
    assert not torch.equal(a.sae.W_dec, c.sae.W_dec)
    hist = a.history                                                   # first row: after 4 steps
    assert hist[-1]["val_loss"] < 0.5 * hist[0]["val_loss"] and hist[-1]["val_fvu"] < 0.2
    assert hist[-1]["lr"] < APRIL_TRAIN.lr / 10                      # decayed to ~0 over the last 20 %
    assert float(a.sae.decoder_norms().detach().std()) > 1e-3                  # the decoder is not renormalised
