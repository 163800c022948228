"""SAE architectures, configs and registry: invariants that hold for every architecture."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.base.errors import InputError
from core.sae import (
    PRESETS,
    BatchTopKConfig,
    JumpReLUConfig,
    MatryoshkaConfig,
    ReLUConfig,
    SAEConfig,
    TopKConfig,
    TrainConfig,
    VanillaConfig,
    available_architectures,
    build_sae,
    config_from_dict,
    get_architecture,
    load_sae,
    preset,
    register_architecture,
    save_sae,
)
from core.sae.models import VanillaSAE
from helpers import one_torch_thread

ARCH_CONFIGS = {
    "vanilla": VanillaConfig(hidden=48, l1=0.5),
    "relu": ReLUConfig(hidden=48, l1=0.5),
    "topk": TopKConfig(hidden=48, k=4),
    "batchtopk": BatchTopKConfig(hidden=48, k=4),
    "matryoshka": MatryoshkaConfig(hidden=48, k=4),
    "jumprelu": JumpReLUConfig(hidden=48, l0=0.01),
}


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def test_registry_has_the_six_architectures_and_refuses_duplicates():
    assert available_architectures() == ["vanilla", "relu", "topk", "batchtopk", "matryoshka", "jumprelu"]
    from core.cli.train import ARCHS

    assert list(ARCHS) == available_architectures()  # the CLI offers every registered architecture
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("vanilla")(VanillaSAE)
    with pytest.raises(InputError, match="unknown SAE architecture"):
        get_architecture("gated")


@pytest.mark.parametrize("arch", list(ARCH_CONFIGS))
def test_config_round_trip(arch):
    cfg = ARCH_CONFIGS[arch]
    d = cfg.to_dict()
    assert d["arch"] == arch
    assert config_from_dict(d) == cfg
    assert SAEConfig.from_dict(d) == cfg
    assert type(cfg).from_dict(d) == cfg


def test_train_config_round_trip_and_unknown_keys():
    t = TrainConfig(lr=3e-4, batch_size=64, epochs=7, patience=None, seed=42)
    assert TrainConfig.from_dict(t.to_dict()) == t
    with pytest.raises(InputError, match="unknown training settings: bogus"):
        TrainConfig.from_dict({**t.to_dict(), "bogus": 1})
    with pytest.raises(InputError, match="unknown vanilla SAE settings: k"):
        config_from_dict({**VanillaConfig().to_dict(), "k": 3})


def test_paper_preset_is_the_reference_setting():
    sae, train = preset("paper")
    assert isinstance(sae, VanillaConfig) and sae.arch == "vanilla"
    assert (sae.hidden, sae.l1, sae.center, sae.scale, sae.decoder_norm, sae.init) == (
        10_000, 1e-3, False, False, "none", "torch")
    assert (train.lr, train.batch_size, train.epochs, train.patience, train.lr_schedule) == (
        1e-4, 128, 500, None, "constant")
    assert set(PRESETS) >= {"paper", "fast", "default"}
    with pytest.raises(InputError, match="unknown preset"):
        preset("nope")


@pytest.mark.parametrize("bad, match", [
    (dict(hidden=0), "hidden must be a positive integer"),
    (dict(hidden=10, expansion=2.0), "either hidden or expansion"),
    (dict(l1=-1.0), "l1 must be"),
    (dict(decoder_norm="max"), "decoder_norm must be one of"),
    (dict(l1=float("nan")), "l1 must be"),
])
def test_bad_sae_settings_raise_input_error(bad, match):
    with pytest.raises(InputError, match=match):
        VanillaConfig(**bad)


@pytest.mark.parametrize("bad, match", [
    (dict(lr=0.0), "lr must be"), (dict(batch_size=0), "batch_size"), (dict(epochs=0), "epochs"),
    (dict(val_fraction=1.0), "val_fraction"), (dict(device="tpu"), "device must be"),
    (dict(patience=0), "patience"), (dict(seed=-1), "seed"),
])
def test_bad_train_settings_raise_input_error(bad, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(**bad)


def test_hidden_smaller_than_input_and_k_larger_than_hidden_are_refused():
    with pytest.raises(InputError, match="at least as many latents"):
        VanillaConfig(hidden=8).hidden_size(20)
    with pytest.raises(InputError, match="at least as many latents"):
        build_sae(VanillaConfig(expansion=0.5), d_in=20)
    with pytest.raises(InputError, match="k = 50 is larger than hidden = 40"):
        TopKConfig(hidden=40, k=50)
    with pytest.raises(InputError, match="k = 500 is larger than the 200 latents"):
        TopKConfig(expansion=10, k=500).hidden_size(20)


def test_expansion_sets_hidden():
    assert VanillaConfig(expansion=4).hidden_size(20) == 80
    assert VanillaConfig().hidden_size(20) == 1000  # default 50×
    assert build_sae(TopKConfig(expansion=3, k=2), d_in=7).hidden == 21


@pytest.mark.parametrize("arch", list(ARCH_CONFIGS))
def test_loss_falls_on_repeated_data(arch):
    torch.manual_seed(0)
    sae = build_sae(ARCH_CONFIGS[arch], d_in=10, seed=1)
    x = torch.randn(64, 10)
    opt = torch.optim.Adam(sae.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        out = sae.loss(x, dead=torch.zeros(sae.hidden, dtype=torch.bool))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        sae.constrain_()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


@pytest.mark.parametrize("arch", ["vanilla", "relu"])
@pytest.mark.parametrize("decoder_norm", ["unit", "l1_weighted", "none"])
@pytest.mark.parametrize("penalty, l1_scale", [("tanh", "input"), ("l1", "input"), ("l1", "mean")])
def test_hand_written_gradients_equal_autograd(arch, decoder_norm, penalty, l1_scale):
    cfg = ARCH_CONFIGS[arch].replace(decoder_norm=decoder_norm, penalty=penalty, l1_scale=l1_scale)
    sae = build_sae(cfg, d_in=7, seed=3)
    with torch.no_grad():  # move away from the symmetric init
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(0))
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(1))
        sae.W_dec.mul_(torch.rand(sae.hidden, generator=torch.Generator().manual_seed(2)) + 0.5)
    x = torch.randn(16, 7, generator=torch.Generator().manual_seed(4))
    ref = sae.loss(x)
    ref.loss.backward()
    expected = {k: p.grad.clone() for k, p in sae.named_parameters()}
    sae.zero_grad(set_to_none=True)
    fast = sae.fast_grads_(x)
    torch.testing.assert_close(fast.loss, ref.loss.detach())
    torch.testing.assert_close(fast.mse, ref.mse)
    assert torch.equal(fast.fired, ref.fired)
    for name, p in sae.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-7, msg=name)


def test_topk_keeps_exactly_k():
    sae = build_sae(TopKConfig(hidden=48, k=5), d_in=10, seed=0)
    x = torch.randn(32, 10)
    z = sae.encode(x)
    assert ((z > 0).sum(1) <= 5).all()
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive: exactly k survive
    z = sae.encode(x)
    assert ((z > 0).sum(1) == 5).all()
    # the k kept are the k largest pre-activations
    pre = sae.pre_activation(sae.normalize(x))
    kept = torch.zeros_like(pre, dtype=torch.bool).scatter_(1, pre.topk(5, dim=1).indices, True)
    assert torch.equal(kept, z > 0)
    # the sparse-aware training path reconstructs exactly what encode+decode gives
    out = sae.loss(sae.normalize(x))
    torch.testing.assert_close(out.mse, (sae.decode_normalized(z) - sae.normalize(x)).pow(2).mean())


def test_batchtopk_keeps_k_per_sample_on_average_and_learns_a_threshold():
    sae = build_sae(BatchTopKConfig(hidden=48, k=3), d_in=10, seed=0)
    with torch.no_grad():
        sae.b_enc.fill_(10.0)
    x = torch.randn(16, 10)
    sae.train()
    assert int((sae.activate(sae.pre_activation(x)) > 0).sum()) == 3 * 16
    sae.loss(x)
    assert float(sae.threshold) > 0 and int(sae.threshold_updates) == 1
    sae.eval()
    z = sae.encode(x)
    pre = sae.pre_activation(x)
    assert torch.equal(z > 0, pre > sae.threshold)


def test_auxk_loss_is_used_only_with_dead_latents():
    sae = build_sae(TopKConfig(hidden=48, k=4), d_in=10, seed=0)
    x = torch.randn(32, 10)
    none_dead = sae.loss(x, dead=torch.zeros(48, dtype=torch.bool))
    assert float(none_dead.penalty) == 0.0
    dead = torch.zeros(48, dtype=torch.bool)
    dead[:20] = True
    some_dead = sae.loss(x, dead=dead)
    assert float(some_dead.penalty) > 0.0
    some_dead.loss.backward()
    assert sae.W_enc.grad[:20].abs().sum() > 0  # dead latents get a gradient through AuxK


def test_tied_init_is_transpose_and_unit_norm():
    sae = build_sae(TopKConfig(hidden=64, k=4), d_in=12, seed=0)
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)
    torch.testing.assert_close(sae.decoder_norms(), torch.ones(64))
    paper = build_sae(preset("paper")[0].replace(hidden=100), d_in=20, seed=0)
    assert paper.W_enc.abs().max() <= 1 / np.sqrt(20) and paper.W_dec.abs().max() <= 1 / np.sqrt(100)


@pytest.mark.parametrize("arch", list(ARCH_CONFIGS))
def test_save_load_round_trip(arch, tmp_path):
    sae = build_sae(ARCH_CONFIGS[arch], d_in=10, seed=5)
    x = torch.randn(40, 10)
    sae.fit_normalization_(x + 3.0)
    sae.train()
    sae.loss(sae.normalize(x))  # BatchTopK: sets the threshold buffer
    sae.eval()
    save_sae(sae, tmp_path, extra={"note": "hello"})
    assert (tmp_path / "sae.pt").is_file() and (tmp_path / "sae.json").is_file()
    loaded = load_sae(tmp_path)
    assert type(loaded) is type(sae) and loaded.config == sae.config
    for (k1, v1), (k2, v2) in zip(sae.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert torch.equal(loaded.encode(x), sae.encode(x))
    assert load_sae(tmp_path / "sae.pt").hidden == sae.hidden


def test_load_refuses_pickled_code_and_mismatched_files(tmp_path):
    sae = build_sae(VanillaConfig(hidden=20), d_in=5)
    save_sae(sae, tmp_path)
    state = sae.state_dict()
    state["evil"] = _Payload()
    torch.save(state, tmp_path / "sae.pt")
    with pytest.raises(InputError, match="safely"):
        load_sae(tmp_path)
    torch.save(build_sae(VanillaConfig(hidden=30), d_in=5).state_dict(), tmp_path / "sae.pt")
    with pytest.raises(InputError, match="does not match"):
        load_sae(tmp_path)
    with pytest.raises(InputError, match="no trained SAE"):
        load_sae(tmp_path / "nowhere")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unit_decoder_norm_is_kept():
    sae = build_sae(VanillaConfig(hidden=40, l1=0.5, decoder_norm="unit"), d_in=8, seed=0)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    x = torch.randn(64, 8)
    for _ in range(20):
        opt.zero_grad()
        sae.loss(x).loss.backward()
        opt.step()
        sae.constrain_()
    torch.testing.assert_close(sae.decoder_norms(), torch.ones(40))


def test_l1_scales_match_their_definitions():
    """"input": l1 · Σ_f z_f ‖d_f‖ / √d_in per cell; "mean": the reference's l1 · mean(z) over
    batch × hidden. So the input scale does not change with the number of latents."""
    x = torch.randn(32, 9, generator=torch.Generator().manual_seed(0))
    for hidden in (20, 200):
        for norm in ("unit", "l1_weighted"):
            sae = build_sae(VanillaConfig(hidden=hidden, l1=0.3, penalty="l1", decoder_norm=norm), d_in=9, seed=1)
            with torch.no_grad():
                sae.W_dec.mul_(torch.rand(hidden, generator=torch.Generator().manual_seed(2)) + 0.5)
            z = sae.activate(sae.pre_activation(x))
            w = sae.decoder_norms() if norm == "l1_weighted" else torch.ones(hidden)
            expected = 0.3 * (z * w).sum(1).mean() / 3.0                      # √9 = 3
            torch.testing.assert_close(sae.penalty(z), expected)
        mean = build_sae(VanillaConfig(hidden=hidden, l1=0.3, penalty="l1", l1_scale="mean"), d_in=9, seed=1)
        z = mean.activate(mean.pre_activation(x))
        torch.testing.assert_close(mean.penalty(z), 0.3 * z.mean())


def test_tanh_penalty_matches_its_definition():
    """l1 · Σ_f tanh(10 z_f w_f / √d) per cell: about l1 per strongly active latent, L1-like
    (slope 10 l1 w / √d) near zero."""
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    for norm in ("unit", "l1_weighted"):
        sae = build_sae(VanillaConfig(hidden=50, l1=0.05, penalty="tanh", decoder_norm=norm), d_in=16, seed=1)
        with torch.no_grad():
            sae.W_dec.mul_(torch.rand(50, generator=torch.Generator().manual_seed(2)) + 0.5)
        z = sae.activate(sae.pre_activation(x))
        w = sae.decoder_norms() if norm == "l1_weighted" else torch.ones(50)
        torch.testing.assert_close(sae.penalty(z), 0.05 * torch.tanh(10 * z * w / 4.0).sum(1).mean())
    big = torch.zeros(1, 50)
    big[0, :3] = 100.0
    sae = build_sae(VanillaConfig(hidden=50, l1=0.05, penalty="tanh"), d_in=16, seed=1)
    assert float(sae.penalty(big)) == pytest.approx(3 * 0.05, rel=1e-6)       # an L0 cost once saturated


def test_configs_from_before_l1_scale_keep_the_reference_scale():
    old = {"arch": "vanilla", "hidden": 100, "l1": 0.001, "center": True, "scale": True}
    cfg = VanillaConfig.from_dict(old)
    assert (cfg.penalty, cfg.l1_scale, cfg.resample_dead) == ("l1", "mean", False)
    new = VanillaConfig(hidden=100).to_dict()
    assert VanillaConfig.from_dict(new) == VanillaConfig(hidden=100)
    assert (VanillaConfig().penalty, VanillaConfig().l1_scale, VanillaConfig().resample_dead) == ("l1", "input", True)
    with pytest.raises(InputError, match="l1_scale must be"):
        VanillaConfig(l1_scale="sum")
    with pytest.raises(InputError, match="penalty must be"):
        VanillaConfig(penalty="l0")
    with pytest.raises(InputError, match="per unit of input norm"):
        VanillaConfig(penalty="tanh", l1_scale="mean")


def test_resampling_points_dead_latents_at_the_worst_reconstructed_cells():
    """Every dead latent gets a unit decoder direction equal to the residual of one sampled cell,
    an encoder row along it and a zero bias; live latents are untouched; cells the SAE already
    reconstructs perfectly are never drawn."""
    sae = build_sae(VanillaConfig(hidden=30), d_in=6, seed=0)
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(1))
    x[:25] = 0.0                                    # the SAE reconstructs 0 as b_dec = 0 exactly
    dead = torch.zeros(30, dtype=torch.bool)
    dead[[2, 5, 11]] = True
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    with torch.no_grad():
        resid = x - sae.decode_normalized(sae.activate(sae.pre_activation(x)))
        idx = sae.resample_dead_(dead, x, generator=torch.Generator().manual_seed(3))
    assert idx.tolist() == [2, 5, 11]
    dirs = resid / resid.norm(dim=1, keepdim=True).clamp_min(1e-12)
    for f in idx.tolist():
        col = (sae.W_dec[:, f] / sae.W_dec[:, f].norm()).detach()
        best = (dirs[25:] @ col).max()
        assert float(best) == pytest.approx(1.0, abs=1e-5)          # one of the non-zero cells' residuals
        assert float(sae.b_enc[f].detach()) == 0.0
        assert float(torch.nn.functional.cosine_similarity(sae.W_enc[f].detach(), col, dim=0)) == pytest.approx(1.0, abs=1e-5)
    live = ~dead
    assert torch.equal(sae.W_dec[:, live], before["W_dec"][:, live]) and torch.equal(sae.W_enc[live], before["W_enc"][live])
    none = sae.resample_dead_(torch.zeros(30, dtype=torch.bool), x, generator=torch.Generator().manual_seed(3))
    assert none.numel() == 0
