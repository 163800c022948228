"""SAERequest: a preset plus overrides -> (sae_config, train_config, seeds), the same for the CLI and the app."""
from __future__ import annotations

import pytest

from core.base.errors import InputError
from core.sae import PRESETS, preset
from core.sae.request import SAERequest
from core.sae.sweep import SweepConfig


@pytest.mark.parametrize("name", list(PRESETS))
def test_no_overrides_give_the_preset(name):
    sae, train, seeds = SAERequest(preset=name).configs()
    assert (sae, train, seeds) == (*preset(name), None)


def test_each_override_applies():
    sae, train, _ = SAERequest(preset="paper", hidden=512, l1=0.3, penalty="tanh", l1_scale="input",
                               decoder_norm="unit", center=False, scale=False, epochs=3, max_steps=40, lr=2e-3,
                               batch_size=64, val_fraction=0.2, patience=0, shuffle=False, seed=7,
                               device="cpu").configs()
    assert (sae.hidden, sae.expansion, sae.l1, sae.penalty, sae.l1_scale) == (512, None, 0.3, "tanh", "input")
    assert (sae.decoder_norm, sae.center, sae.scale) == ("unit", False, False)
    assert (train.epochs, train.min_steps, train.max_steps, train.lr, train.batch_size) == (3, None, 40, 2e-3, 64)
    assert (train.val_fraction, train.patience, train.shuffle, train.seed, train.device) == (0.2, None, False, 7, "cpu")
    sae, train, _ = SAERequest(expansion=4, patience=5, center=True).configs()
    assert (sae.expansion, sae.hidden, sae.center, train.patience) == (4, None, True, 5)
    # epochs left alone keeps the preset's floor on steps
    assert SAERequest(preset="default").configs()[1].min_steps == preset("default")[1].min_steps


def test_arch_switch_and_seeds():
    sae, _, _ = SAERequest(preset="fast", arch="topk", k=16).configs()
    assert (type(sae).__name__, sae.k, sae.hidden) == ("TopKConfig", 16, preset("fast")[0].hidden)  # fast keeps its size
    sae, _, _ = SAERequest(arch="batchtopk").configs()
    from core.sae import BatchTopKConfig

    assert sae == BatchTopKConfig()  # default preset: the architecture's own good-practice settings
    _, train, seeds = SAERequest(seeds=(3, 4, 9)).configs()
    assert (train.seed, seeds) == (3, [3, 4, 9])
    assert SAERequest(seed=3, seeds=[3, 4]).configs()[2] == [3, 4]


def test_sweep_only_for_auto():
    assert SAERequest().sweep() is None
    assert SAERequest(preset="auto").sweep() == SweepConfig()
    assert SAERequest(preset="auto", sweep_l1=[0.1, 0.3, 1]).sweep().l1 == (0.1, 0.3, 1.0)
    with pytest.raises(InputError, match="at least 3 distinct"):
        SAERequest(preset="auto", sweep_l1=[0.1, 1])


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "topk", "l1": 0.1}, "--l1 does not apply to the topk architecture (it uses --k)"),
    ({"k": 4}, "--k does not apply to the vanilla architecture (it uses --l1)"),
    ({"arch": "batchtopk", "penalty": "tanh"}, "--penalty does not apply to the batchtopk architecture"),
    ({"arch": "topk", "l1_scale": "mean"}, "--l1-scale does not apply to the topk architecture"),
    ({"seeds": (0,)}, "--seeds needs at least two seeds"),
    ({"seeds": (0, 0)}, "--seeds must list distinct non-negative integers (got '0,0')"),
    ({"seed": 1, "seeds": (0, 42)}, "give either --seed or --seeds"),
    ({"preset": "auto", "l1": 0.2}, "--preset auto chooses the L1 strength itself"),
    ({"sweep_l1": (0.1,)}, "--sweep-l1 applies only to --preset auto"),
    ({"preset": "auto", "arch": "topk"}, "the auto preset chooses the L1 strength; the topk architecture has none"),
    ({"preset": "nope"}, "unknown preset 'nope'"),
    ({"hidden": 64, "expansion": 2.0}, "give either hidden or expansion"),
])
def test_bad_combinations_raise_the_cli_message(kwargs, message):
    with pytest.raises(InputError) as err:
        SAERequest(**kwargs)
    assert err.value.message.startswith(message) and err.value.fix


@pytest.mark.parametrize("argv, message", [
    (["--arch", "topk", "--l1", "0.1"], "--l1 does not apply to the topk architecture"),
    (["--seed", "1", "--seeds", "0,42"], "give either --seed or --seeds"),
    (["--seeds", "0"], "--seeds needs at least two seeds"),
    (["--preset", "auto", "--sweep-l1", "a,b"], "--sweep-l1 must be comma-separated numbers"),
])
def test_cli_options_become_the_same_request(argv, message):
    from core.cli.main import build_parser
    from core.cli.train import sae_request

    parse = build_parser().parse_args
    args = parse(["train", "d.h5ad", "--out", "o", "--preset", "fast", "--arch", "relu", "--expansion", "3",
                  "--no-center", "--no-shuffle", "--patience", "0", "--seeds", "5,6"])
    assert sae_request(args) == SAERequest(preset="fast", arch="relu", expansion=3.0, center=False, shuffle=False,
                                           patience=0, seeds=(5, 6))
    with pytest.raises(InputError, match=message.replace("-", r"\-")):
        sae_request(parse(["train", "d.h5ad", "--out", "o", *argv]))


def test_request_is_frozen_and_round_trips_to_dict():
    req = SAERequest(preset="fast", seeds=[1, 2], sweep_l1=None)
    with pytest.raises(AttributeError):
        req.preset = "paper"  # type: ignore[misc]
    d = req.to_dict()
    assert d["seeds"] == [1, 2] and SAERequest(**d) == req
