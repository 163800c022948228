"""Per-feature stability across seeds (core.sae.stability): against direct numpy, invariants
(a permuted copy scores 1), the random-direction null, and the column train_into_analysis writes."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import stats

from core.store.analysis import Analysis
from core.sae import TopKConfig, TrainConfig, VanillaConfig, build_sae, planted_sparse_data
from core.sae.stability import (
    STABILITY_COLUMNS,
    best_match_cosine,
    chance_best_cosine,
    feature_stability,
    seed_stability,
)
from core.sae.pipeline import train_into_analysis


def _unit(w):
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def test_best_match_cosine_matches_numpy_in_any_block_size(rng):
    a, b = rng.normal(size=(53, 12)) * 3, rng.normal(size=(31, 12))
    direct = (_unit(a) @ _unit(b).T).max(axis=1)
    for block in (1, 7, 2048):
        np.testing.assert_allclose(best_match_cosine(a, b, block_rows=block), direct, atol=2e-6)
    assert np.isnan(best_match_cosine(a, np.zeros((0, 12)))).all()
    with pytest.raises(ValueError, match="different widths"):
        best_match_cosine(a, b[:, :5])


def test_feature_stability_mean_min_and_dead_features(rng):
    d, h = 10, 40
    dirs = rng.normal(size=(h, d))
    live = rng.random(h) > 0.25
    others = [rng.normal(size=(30, d)), rng.normal(size=(25, d)), np.zeros((0, d))]   # the last seed: no live features
    t = feature_stability(dirs, live, others, block_rows=8)
    assert list(t.columns) == list(STABILITY_COLUMNS) and len(t) == h
    best = np.stack([(_unit(dirs) @ _unit(o).T).max(axis=1) for o in others[:2]])     # (2, h), direct
    np.testing.assert_allclose(t.loc[live, "stability"], best.mean(axis=0)[live], atol=2e-6)
    np.testing.assert_allclose(t.loc[live, "stability_min"], best.min(axis=0)[live], atol=2e-6)
    assert (t.loc[live, "stability_seeds"] == 2).all()
    assert t.loc[~live, ["stability", "stability_min"]].isna().all().all() and (t.loc[~live, "stability_seeds"] == 0).all()
    assert t["stability"].isna().sum() == (~live).sum() > 0
    none = feature_stability(dirs, live, [])
    assert none["stability"].isna().all() and (none["stability_seeds"] == 0).all()


def test_a_permuted_copy_is_perfectly_stable():
    sae = build_sae(VanillaConfig(hidden=200), d_in=20, seed=0)
    twin = copy.deepcopy(sae)
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        twin.W_dec.copy_(sae.W_dec[:, perm])
    live = np.ones(200, bool)
    table, summary = seed_stability([sae, twin, twin], [live, live, live])
    np.testing.assert_allclose(table["stability"], 1.0, atol=1e-6)
    np.testing.assert_allclose(table["stability_min"], 1.0, atol=1e-6)
    assert summary["median"] == pytest.approx(1.0, abs=1e-6) and summary["fraction_stable"] == 1.0
    assert summary["n_features"] == 200 and summary["n_other_seeds"] == 2


def test_random_decoders_score_what_random_directions_give(rng):
    """The null: independent isotropic decoders, d = 20, 200 latents. Chance median best cosine is
    0.571 (F(c)^200 = 1/2 with (1 + c)/2 ~ Beta(9.5, 9.5)), far below 0.9."""
    d, h = 20, 200
    chance = chance_best_cosine(d, h)
    assert chance == pytest.approx(0.5705, abs=1e-3)
    # the analytic law of one cosine, checked by simulation
    c = np.sum(_unit(rng.normal(size=(20_000, d))) * _unit(rng.normal(size=(20_000, d))), axis=1)
    assert stats.kstest((1 + c) / 2, stats.beta((d - 1) / 2, (d - 1) / 2).cdf).pvalue > 0.01
    kept = rng.normal(size=(h, d))
    t = feature_stability(kept, np.ones(h, bool), [rng.normal(size=(h, d)), rng.normal(size=(h, d))])
    best_min = t["stability_min"].to_numpy()
    assert np.median(best_min) < 0.6 and np.median(t["stability"]) < 0.65
    # each seed's best cosine is one draw from the chance law: its median lies near the analytic one
    one = feature_stability(kept, np.ones(h, bool), [rng.normal(size=(h, d))])["stability"]
    assert abs(np.median(one) - chance) < 0.04
    assert (t["stability"] >= 0.9).mean() == 0.0
    # freshly initialised SAEs with different seeds behave the same way
    saes = [build_sae(VanillaConfig(hidden=h), d_in=d, seed=s) for s in (0, 1, 2)]
    _, summary = seed_stability(saes, [np.ones(h, bool)] * 3)
    assert summary["median"] < 0.7 and summary["fraction_stable"] == 0.0
    assert summary["chance_median"] == pytest.approx(chance)


def test_chance_best_cosine_grows_with_latents_and_falls_with_width():
    assert chance_best_cosine(20, 10_000) > chance_best_cosine(20, 1000) > chance_best_cosine(20, 200)
    assert chance_best_cosine(50, 1000) < chance_best_cosine(20, 1000)
    assert np.isnan(chance_best_cosine(1, 10)) and np.isnan(chance_best_cosine(20, 0))


def test_train_into_analysis_with_seeds_writes_stability(tmp_path):
    p = planted_sparse_data(1500, d=12, n_atoms=20, active=2, seed=3)
    kw = dict(sae_config=TopKConfig(hidden=40, k=2), train_config=TrainConfig(epochs=8, seed=0),
              data_ref={"path": "planted"})
    a = Analysis.create(tmp_path / "three", dataset={"path": "planted"})
    m = train_into_analysis(a, p.x, seeds=[0, 1, 2], **kw)
    f = a.read_parquet("features.parquet")
    assert set(STABILITY_COLUMNS) <= set(f.columns)
    live = f["live"].to_numpy(bool)
    assert f.loc[live, "stability"].between(-1, 1).all() and f.loc[~live, "stability"].isna().all()
    assert (f.loc[live, "stability"] >= f.loc[live, "stability_min"] - 1e-12).all()
    assert (f.loc[live, "stability_seeds"] == 2).all()
    st = m["robustness"]["stability"]
    s = f.loc[live, "stability"]
    assert st["median"] == pytest.approx(float(s.median())) and st["n_features"] == live.sum()
    assert st["fraction_stable"] == pytest.approx(float((s >= 0.9).mean()))
    assert a.read_json("metrics.json")["robustness"]["stability"] == st
    one = Analysis.create(tmp_path / "one", dataset={"path": "planted"})
    assert train_into_analysis(one, p.x, **kw)["robustness"] is None
    assert "stability" not in one.read_parquet("features.parquet")
