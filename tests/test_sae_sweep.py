"""The sparse defaults: L1 per unit of input norm, dead-latent resampling, and the auto preset's
sweep (knee of the FVU–L0 frontier), in the library and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.base.errors import InputError
from core.sae import TrainConfig, VanillaConfig, planted_sparse_data, preset, sae_metrics, train_sae
from core.sae.sweep import SweepConfig, knee_index, sparsity_sweep
from helpers import one_torch_thread

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
SHORT = TrainConfig(epochs=6, batch_size=64, patience=None, seed=0)


@pytest.fixture(scope="module")
def planted():
    return planted_sparse_data(3000, d=12, n_atoms=24, active=2.0, noise=0.02, seed=4)


def test_knee_of_a_frontier():
    """An L-shaped frontier: FVU falls steeply, then flattens; the knee is the corner, whatever
    the order the runs are given in. A flat frontier keeps the sparsest run."""
    l0 = np.array([2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    fvu = np.array([0.9, 0.5, 0.12, 0.08, 0.06, 0.05])
    assert knee_index(l0, fvu) == 2
    perm = np.array([4, 0, 5, 2, 1, 3])
    assert perm[knee_index(l0[perm], fvu[perm])] == 2
    assert knee_index(l0, np.full(6, 0.2)) == 0
    assert knee_index(np.array([np.nan, 3.0, 9.0]), np.array([0.1, 0.5, 0.2])) in (1, 2)
    with pytest.raises(InputError, match="no sweep run"):
        knee_index(np.array([np.nan, 0.0, 0.0]), np.array([0.1, 0.2, 0.3]))


def test_default_l1_does_not_depend_on_the_number_of_latents(planted):
    """The reference's mean-scaled L1 (l1 = 1e-3) leaves about half the latents firing at every
    size; the default input-scaled L1 is sparser at every size (short runs: 6 epochs)."""
    fractions, reference = [], []
    for hidden in (48, 192):
        res = train_sae(planted.x, config=VanillaConfig(hidden=hidden), train=SHORT)
        fractions.append(res.final["val_l0"] / hidden)
        ref = train_sae(planted.x, config=VanillaConfig(hidden=hidden, l1=1e-3, l1_scale="mean"), train=SHORT)
        reference.append(ref.final["val_l0"] / hidden)
    assert min(reference) > 0.45, reference                         # half the latents fire: dense
    assert all(f < r / 1.5 for f, r in zip(fractions, reference)), (fractions, reference)
    assert fractions[1] < 0.3


def test_default_recipe_is_sparser_than_the_previous_at_the_same_fvu(planted):
    """The default preset (nn.Linear init, constant lr for every step, clipped gradients) against
    the previous one (tied init, lr decaying to 0, early stopping), same L1 and data: well under
    the previous L0 (18 against 45 latents per cell when written), FVU about the same."""
    sae, train = preset("default")
    new = train_sae(planted.x, config=sae, train=train)
    previous = train_sae(planted.x, config=sae.replace(init="tied"),
                         train=train.replace(lr_schedule="linear_decay", patience=5, grad_clip=None))
    (s_new, _), (s_prev, _) = sae_metrics(new.sae, planted.x), sae_metrics(previous.sae, planted.x)
    assert s_new["l0"] < 0.6 * s_prev["l0"], (s_new["l0"], s_prev["l0"])
    assert s_new["fvu"] < s_prev["fvu"] + 0.02, (s_new["fvu"], s_prev["fvu"])


def test_resampling_keeps_latents_alive(planted):
    """Same data, seed and strength: with resampling fewer latents end dead than without."""
    cfg = VanillaConfig(hidden=480, l1=2.0)        # strong enough that many latents die without it
    on = train_sae(planted.x, config=cfg, train=SHORT.replace(epochs=12))
    off = train_sae(planted.x, config=cfg.replace(resample_dead=False), train=SHORT.replace(epochs=12))
    assert on.final["val_live"] > 1.2 * off.final["val_live"], (on.final["val_live"], off.final["val_live"])


def test_sweep_records_the_frontier_and_chooses_its_knee(planted):
    sweep = SweepConfig(l1=(0.03, 0.3, 3.0), max_cells=1000, epoch_fraction=0.5)
    out = sparsity_sweep(planted.x, config=VanillaConfig(hidden=96), train=SHORT, sweep=sweep)
    rows = out["rows"]
    assert [r["l1"] for r in rows] == [0.03, 0.3, 3.0] and out["cells"] == 1000 and out["epochs"] == 3
    l0 = [r["l0"] for r in rows]
    fvu = [r["fvu"] for r in rows]
    assert l0[0] > l0[1] > l0[2] and fvu[0] < fvu[2]          # stronger L1: sparser, worse reconstruction
    assert out["chosen"] == knee_index(np.array(l0), np.array(fvu))
    assert out["chosen_l1"] == rows[out["chosen"]]["l1"]
    again = sparsity_sweep(planted.x, config=VanillaConfig(hidden=96), train=SHORT, sweep=sweep)
    assert again["rows"] == rows                                # seeded: same data, same sweep


def test_sweep_bad_settings():
    with pytest.raises(InputError, match="at least 3 distinct"):
        SweepConfig(l1=(0.1, 0.1, 0.3))
    with pytest.raises(InputError, match="at least 3 distinct"):
        SweepConfig(l1=(0.1, -1.0, 0.3))
    from core.sae import TopKConfig

    with pytest.raises(InputError, match="has none"):
        sparsity_sweep(np.zeros((100, 4), np.float32), config=TopKConfig(hidden=8, k=2), train=SHORT,
                       sweep=SweepConfig())


def test_cli_auto_preset_prints_and_stores_the_sweep(tmp_path, planted, capsys):
    from core.cli.main import main

    np.save(tmp_path / "emb.npy", planted.x[:1500])
    out = tmp_path / "a"
    argv = ["train", str(tmp_path / "emb.npy"), "--out", str(out), "--preset", "auto", "--hidden", "48",
            "--epochs", "6", "--sweep-l1", "0.05,0.3,2"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "sparsity sweep" in text and "← chosen" in text
    m = json.loads((out / "metrics.json").read_text())
    sw = m["sparsity_sweep"]
    assert [r["l1"] for r in sw["rows"]] == [0.05, 0.3, 2.0]
    sae = json.loads((out / "sae.json").read_text())
    assert sae["config"]["l1"] == sw["chosen_l1"] if "config" in sae else True
    assert m["training"]["sae"]["l1"] == sw["chosen_l1"]
    for bad, msg in ((["--l1", "0.3"], "chooses the L1 strength itself"),
                     (["--arch", "topk", "--k", "4"], "has none")):
        assert main(argv[:-2] + bad) == 2
        assert msg in capsys.readouterr().err
    assert main(["train", str(tmp_path / "emb.npy"), "--out", str(tmp_path / "b"), "--sweep-l1", "1,2,3"]) == 2
    assert "applies only to --preset auto" in capsys.readouterr().err
