"""JumpReLU SAE: the straight-through pseudo-derivatives, config checks, training lowers L0, persistence."""
from __future__ import annotations

import pytest
import torch

from core.base.errors import InputError
from core.sae import JumpReLUConfig, TrainConfig, build_sae, encode_activations, load_sae, planted_sparse_data, save_sae, train_sae
from helpers import one_torch_thread

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def test_forward_and_pseudo_derivatives_match_their_definitions():
    cfg = JumpReLUConfig(hidden=40, l0=0.3, bandwidth=0.5, init_threshold=0.2)
    sae = build_sae(cfg, d_in=6, seed=1)
    with torch.no_grad():
        sae.threshold.uniform_(0.05, 0.4, generator=torch.Generator().manual_seed(0))
    xn = torch.randn(24, 6, generator=torch.Generator().manual_seed(2))
    out = sae.loss(xn)
    out.loss.backward()
    pre = sae.pre_activation(xn).detach()
    theta = sae.threshold.detach()
    on = (pre > theta).float()
    z = pre * on
    torch.testing.assert_close(sae.encode(xn), z)                     # normalisation is the identity here
    mse = (z @ sae.W_dec.detach().T + sae.b_dec.detach() - xn).pow(2).mean()
    torch.testing.assert_close(out.mse, mse)
    torch.testing.assert_close(out.penalty, 0.3 * on.sum() / 24)
    # dL/dθ = Σ_b dL/dz · (−θ K/ε) + l0/b · Σ_b (−K/ε), K the rectangle of width ε around θ
    g_z = 2 * (z @ sae.W_dec.detach().T + sae.b_dec.detach() - xn) / xn.numel() @ sae.W_dec.detach()
    kernel = ((pre - theta).abs() < 0.25).float() / 0.5
    want = (g_z * -theta * kernel).sum(0) + 0.3 / 24 * (-kernel).sum(0)
    assert kernel.sum() > 0
    torch.testing.assert_close(sae.threshold.grad, want)
    torch.testing.assert_close(sae.b_enc.grad, (g_z * on).sum(0))   # through the kept latents only


@pytest.mark.parametrize("bad, match", [
    (dict(l0=-0.1), "l0 must be"), (dict(bandwidth=0.0), "bandwidth must be"),
    (dict(init_threshold=-1.0), "init_threshold must be"), (dict(l0=float("inf")), "l0 must be"),
])
def test_bad_settings_raise_input_error(bad, match):
    with pytest.raises(InputError, match=match):
        JumpReLUConfig(**bad)


def test_training_raises_thresholds_lowers_l0_and_round_trips(tmp_path):
    p = planted_sparse_data(1500, d=8, n_atoms=12, active=2.0, noise=0.01, seed=4)
    cfg = JumpReLUConfig(hidden=48, l0=0.05)
    res = train_sae(p.x, config=cfg, train=TrainConfig(epochs=40, batch_size=64, lr=1e-2, patience=None))
    assert not cfg.resample_dead
    l0 = [row["val_l0"] for row in res.history]
    assert l0[-1] < 0.5 * l0[0] and res.history[-1]["val_fvu"] < 0.3
    theta = res.sae.threshold.detach()
    assert float(theta.min()) >= 0 and float(theta.mean()) > 10 * cfg.init_threshold
    save_sae(res.sae, tmp_path)
    loaded = load_sae(tmp_path)
    assert torch.equal(loaded.threshold, res.sae.threshold)
    assert (encode_activations(loaded, p.x) != encode_activations(res.sae, p.x)).nnz == 0


def test_cli_request_names_what_jumprelu_uses():
    from core.sae.request import SAERequest

    sae, _, _ = SAERequest(arch="jumprelu").configs()
    assert sae == JumpReLUConfig()
    with pytest.raises(InputError, match=r"--k does not apply to the jumprelu architecture \(it uses its l0"):
        SAERequest(arch="jumprelu", k=4)
    with pytest.raises(InputError, match=r"--l1 does not apply to the topk architecture \(it uses --k\)"):
        SAERequest(arch="topk", l1=0.1)
