"""Steering experiments: dose–response sweep, matched controls, per-term verdicts, steer toward a type, CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.base.errors import InputError
from core.cli.main import main
from core.steer import (NOT_ABOVE, SPECIFIC, SteerConfig, SteerExperiment, list_experiments, load_experiment,
                        matched_controls, parse_strengths, rank_toward, run_experiment, save_experiment, steer,
                        steer_toward, steering_context, term_scores, term_verdicts)
from steer_data import PLANTED_TERM, build_planted
from steer_experiment_data import build_wide

pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*:DeprecationWarning")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    a, genes, p_idx, _ = build_planted(tmp_path_factory.mktemp("steerx"))
    return a, genes, p_idx


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    a, genes, p_idx, _ = build_wide(tmp_path_factory.mktemp("steerx-wide"))
    return a, genes, p_idx


def test_sweep_shape_and_same_cells(planted):
    a, _, p_idx = planted
    res = run_experiment(a, SteerExperiment(feature=0, cells="cell_type=a", strengths=(0.5, 1, 2, 4), controls=0))
    dr = res.dose_response()
    assert dr["strength"].tolist() == [0, 0.5, 1, 2, 4] and dr["run"].iloc[0] == "feature-off"
    # off in cells where the feature barely fires: (almost) nothing changes; then changed genes grow with strength
    assert dr["n_changed"].iloc[0] <= 1
    assert (np.diff(dr["n_changed"].to_numpy()) >= 0).all() and dr["n_changed"].iloc[-1] > dr["n_changed"].iloc[1] > 5
    # the feature's targets are s × its maximum; every run steers the same cells
    ctx = steering_context(a)
    top = float(ctx.activations[:, 0].max())
    np.testing.assert_allclose(dr["target"], dr["strength"] * top, rtol=1e-6)
    runs = [res.runs[r] for r in dr["run"]]
    assert all(np.array_equal(r.cells, runs[0].cells) for r in runs) and runs[0].n_cells == 80
    # the 1× run equals a plain steer() to max
    one = steer(a, features=[0], cells="cell_type=a", config=SteerConfig(target="max"))
    pd.testing.assert_frame_equal(res.runs["feature-x1"].de, one.de)
    pd.testing.assert_frame_equal(res.runs["feature-x1"].enrichment_up, one.enrichment_up)
    off = steer(a, features=[0], cells="cell_type=a", config=SteerConfig(target="off"))
    pd.testing.assert_frame_equal(res.runs["feature-off"].de, off.de, check_exact=False, rtol=1e-12)
    idle = run_experiment(a, SteerExperiment(feature=0, cells=tuple(np.flatnonzero(ctx.embedding[:, 0] <= 0)[:50]),
                                             strengths=(1,), controls=0))
    assert idle.runs["feature-off"].info["cells_changed"] == 0  # the short cut when nothing moved = the test's
    ref = steer(a, features=[0], cells=idle.runs["feature-off"].cells, config=SteerConfig(target="off"))
    pd.testing.assert_frame_equal(idle.runs["feature-off"].de, ref.de, check_exact=False, rtol=1e-12)
    # the cells come closer to type b as the dose grows (up to 1×), and the planted term's score rises
    assert dr["toward[b]"].iloc[2] > dr["toward[b]"].iloc[1] > 0
    t = res.terms[(res.terms["term_id"] == PLANTED_TERM) & (res.terms["kind"] == "feature")].sort_values("strength")
    assert t["score"].iloc[0] == 0 and t["score"].iloc[2] > t["score"].iloc[1] > 5
    assert res.verdicts["verdict"].eq("no controls").all()


def test_controls_are_matched(wide):
    a, _, _ = wide
    exp = SteerExperiment(feature=0, cells="cell_type=a", strengths=(1,), controls=2, seed=4)
    res = run_experiment(a, exp)
    ctx = steering_context(a)
    fired = np.diff(ctx.activations.indptr)
    feats = res.info["control_features"]
    assert len(feats) == 2 and 0 not in feats and all(fired[g] > 0 for g in feats)
    assert feats == matched_controls(ctx, feature=0, n=2, seed=4)  # seeded: the same draw again
    # similar firing frequency: among the `pool` live features nearest in log firing count
    gaps = np.abs(np.log(fired[fired > 0]) - np.log(fired[0]))
    assert all(abs(np.log(fired[g]) - np.log(fired[0])) <= np.sort(gaps)[exp.pool] for g in feats)
    # every control moves each cell's embedding by the same norm as the feature does in that cell
    ref = res.runs["feature-x1"]
    norm = np.linalg.norm(ref.latent_after - ref.latent_before, axis=1)
    labels = [r for r in res.conditions["run"] if r.startswith("control")]
    assert len(labels) == 4
    for label in labels:
        r = res.runs[label]
        np.testing.assert_allclose(np.linalg.norm(r.latent_after - r.latent_before, axis=1), norm, rtol=1e-4)
    # the two random directions differ from each other and from the feature's (dimension 0)
    u = [res.runs[f"control-direction-{k}"].latent_after[0] - ref.latent_before[0] for k in (1, 2)]
    assert abs(np.dot(u[0], u[1])) / (np.linalg.norm(u[0]) * np.linalg.norm(u[1])) < 0.9
    assert all(abs(v[0]) / np.linalg.norm(v) < 0.9 for v in u)
    # without the error term the controls start from the SAE reconstruction, as the feature's run does
    paper = run_experiment(a, SteerExperiment(feature=0, cells="cell_type=a", strengths=(1,), controls=1, seed=4,
                                              config=SteerConfig(error_term=False)))
    for label in paper.conditions["run"][2:]:
        r = paper.runs[label]  # this SAE is exact: the reconstruction is the cell, so the norms match again
        np.testing.assert_allclose(np.linalg.norm(r.latent_after - r.latent_before, axis=1), norm, rtol=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_erythroid_terms_are_specific_against_both_controls(wide, seed):
    a, _, _ = wide
    res = run_experiment(a, SteerExperiment(feature=0, cells="cell_type=a", strengths=(0.5, 1, 2), controls=2,
                                            seed=seed))
    v = res.verdicts.set_index("term_id")
    for term in (PLANTED_TERM, "GO:0015669"):  # oxygen transport, gas transport
        row = v.loc[term]
        assert row["verdict"] == SPECIFIC, row
        assert row["score"] >= row["best_control_feature"] + 1 and row["score"] >= row["best_control_direction"] + 1
    # broad parents that any perturbation enriches are not called specific
    assert (v["verdict"] == NOT_ABOVE).any()


def test_null_random_features_get_no_specific_terms(wide):
    """Calibration: features with no program behind them (random gene weights) steered the same way."""
    a, _, _ = wide
    rng = np.random.default_rng(7)
    null = rng.choice(np.r_[2:16, 18:32], size=6, replace=False)
    n_terms = n_specific = 0
    for f in null:
        res = run_experiment(a, SteerExperiment(feature=int(f), cells="cell_type=a", strengths=(1,), controls=2,
                                                seed=int(f)))
        assert res.conditions["n_changed"].iloc[1] >= 0
        n_terms += len(res.verdicts)
        n_specific += int((res.verdicts["verdict"] == SPECIFIC).sum())
    assert n_terms >= 20  # the null features do enrich terms by chance …
    assert n_specific <= 0.05 * n_terms  # … which are (almost) never above the controls


def test_verdict_rule():
    rows = []
    for run, kind, scores in (("feature-x1", "feature", [10.0, 10.0, 3.0, 10.0]),
                              ("control-feature-5", "control-feature", [8.0, 9.5, 0.0, 0.0]),
                              ("control-direction-1", "control-direction", [1.0, 0.0, 0.0, 9.1])):
        for i, s in enumerate(scores):
            rows.append({"run": run, "kind": kind, "strength": 1.0, "direction": "up", "term_id": f"T{i}",
                         "term_name": f"t{i}", "score": s, "q": 10 ** -s if i != 2 else 0.2})
    v = term_verdicts(pd.DataFrame(rows), reference="feature-x1", margin=1.0, term_q=0.05).set_index("term_id")
    # T0 beats both by ≥ 1; T1 is within 1 of a control feature; T2 is not significant; T3 by 0.9 only
    assert v.loc["T0", "verdict"] == SPECIFIC and v.loc["T0", "margin_over_controls"] == 2.0
    assert v.loc["T1", "verdict"] == NOT_ABOVE and v.loc["T2", "verdict"] == NOT_ABOVE
    assert v.loc["T3", "verdict"] == NOT_ABOVE and v.loc["T3", "margin_over_controls"] == pytest.approx(0.9)
    table = pd.DataFrame({"term_id": ["A", "B"], "term_name": ["a", "b"], "hits": [5, 1], "expected": [1.0, 2.0],
                          "binom_p": [1e-6, 1e-9], "binom_q": [1e-5, 1e-8], "mwu_p": [1e-3, 1e-2],
                          "mwu_q": [1e-2, 0.04]})
    s = term_scores(table)  # B is under-represented: only its Mann–Whitney p counts
    np.testing.assert_allclose(s["score"], [6.0, 2.0])
    np.testing.assert_allclose(s["q"], [1e-5, 0.04])


def test_store_round_trip(planted):
    a, _, _ = planted
    res = run_experiment(a, SteerExperiment(feature=0, cells="cell_type=a", strengths=(1, 2), controls=1, seed=1))
    eid = save_experiment(a, res)
    assert eid.startswith("x0-") and a.has(f"steer-experiments/{eid}/verdicts.parquet")
    step = a.config["steps"][f"steer-experiment/{eid}"]
    assert any(f.endswith("runs/control-direction-1/de.parquet") for f in step["files"])  # one step holds all runs
    stamp = step["completed"]
    assert save_experiment(a, res) == eid and a.config["steps"][f"steer-experiment/{eid}"]["completed"] == stamp
    back = load_experiment(a, eid)
    assert back.experiment == res.experiment and set(back.runs) == set(res.runs)
    pd.testing.assert_frame_equal(back.conditions, res.conditions)
    pd.testing.assert_frame_equal(back.verdicts, res.verdicts)
    for label, r in res.runs.items():
        pd.testing.assert_frame_equal(back.runs[label].de, r.de)
        np.testing.assert_array_equal(back.runs[label].latent_after, r.latent_after)
    row = list_experiments(a).iloc[-1]
    assert row["experiment_id"] == eid and row["strengths"] == "0,1,2"
    with pytest.raises(InputError, match="no steering experiment"):
        load_experiment(a, "x0-nothere")


def test_toward_ranks_the_feature_that_moves_a_to_b(planted):
    a, _, p_idx = planted
    ranking = rank_toward(a, cells="cell_type=a", toward="b")
    assert ranking["feature"].iloc[0] == 0 and ranking["change"].iloc[0] < -1
    assert ranking["nearest_target_before"].iloc[0] < 0.1 and ranking["nearest_target_after"].iloc[0] > 0.9
    # the ranking's distances are those of actually steering each feature (error-term form)
    ctx = steering_context(a)
    names, cents = ctx.centroids()
    for f in ranking["feature"].head(3):
        r = steer(a, features=[int(f)], cells="cell_type=a")
        d = np.linalg.norm(r.latent_after - cents[names.index("b")], axis=1).mean()
        assert ranking.set_index("feature").loc[f, "mean_distance_after"] == pytest.approx(d, rel=1e-5)
    # dimension 1 (feature 1) moves type-a cells toward c
    assert rank_toward(a, cells="cell_type=a", toward="c")["feature"].iloc[0] == 1
    t = steer_toward(a, cells="cell_type=a", toward="b", save=False)
    assert t.feature == 0 and t.result.features == [0] and t.result.info["toward"]["cell_type"] == "b"
    assert (t.result.de.iloc[p_idx]["direction"] == "up").all()


def test_bad_inputs(planted):
    a, _, _ = planted
    for bad in ("a,b", "-1", "", "1,1", "inf"):
        with pytest.raises(InputError):
            parse_strengths(bad)
    assert parse_strengths("off,0.5,x2") == (0.0, 0.5, 2.0)
    for kwargs, msg in (({"strengths": (0,)}, "no strength above off"), ({"controls": -1}, "controls"),
                        ({"reference": 3.0}, "reference strength"), ({"margin": -1}, "margin"),
                        ({"feature": [0, 1]}, "one feature"), ({"term_q": 0}, "term_q")):
        with pytest.raises(InputError, match=msg):
            SteerExperiment(**{"feature": 0, "cells": "cell_type=a", **kwargs})
    for kwargs, msg in (({"feature": 8}, "dead"), ({"feature": 99}, "does not exist"), ({"controls": 9}, "only 7"),
                        ({"cells": "cell_type=zz"}, "unknown cell type")):
        with pytest.raises(InputError, match=msg):
            run_experiment(a, SteerExperiment(**{"feature": 0, "cells": "cell_type=a", **kwargs}))
    for kwargs, msg in (({"toward": "zz"}, "unknown cell type 'zz'"), ({"toward": "a"}, "already is 'a'"),
                        ({"toward": "b", "features": [8, 9]}, "no live feature")):
        with pytest.raises(InputError, match=msg):
            rank_toward(a, cells="cell_type=a", **kwargs)


def test_cli_sweep_and_toward(planted, tmp_path, capsys):
    a, _, _ = planted
    out = tmp_path / "sweep"
    assert main(["steer", str(a.path), "--feature", "0", "--cells", "cell_type=a", "--sweep", "0.5,1,2,4",
                 "--controls", "1", "--seed", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stored as experiment x0-" in text and "oxygen transport" in text and "specific" in text
    cond = pd.read_csv(out / "conditions.csv")
    assert cond["run"].tolist() == ["feature-off", "feature-x0.5", "feature-x1", "feature-x2", "feature-x4",
                                    cond["run"].iloc[5], "control-direction-1"]
    assert cond["run"].iloc[5].startswith("control-feature-")
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert set(verdicts["verdict"]) <= {SPECIFIC, NOT_ABOVE} and PLANTED_TERM in set(verdicts["term_id"])
    assert (out / "terms.csv").is_file() and json.loads((out / "summary.json").read_text())["feature"] == 0
    assert (out / "runs" / "feature-x2" / "de.csv").is_file()
    from core.store.analysis import Analysis

    assert len(list_experiments(Analysis.open(a.path))) >= 1
    # toward: rank, then steer (and store) the best feature
    out2 = tmp_path / "toward"
    assert main(["steer", str(a.path), "--cells", "cell_type=a", "--toward", "b", "--out", str(out2)]) == 0
    text = capsys.readouterr().out
    assert "1. feature 0" in text and "stored as run f0-" in text
    assert pd.read_csv(out2 / "toward.csv")["feature"].iloc[0] == 0 and (out2 / "de.csv").is_file()
    # toward + sweep: the experiment runs on the best feature
    assert main(["steer", str(a.path), "--cells", "cell_type=a", "--toward", "b", "--sweep", "1,2",
                 "--controls", "0"]) == 0
    assert "experiment x0-" in capsys.readouterr().out
    for extra, msg in ((["--sweep", "1,x"], "invalid sweep strength"), (["--sweep", "-2"], "invalid sweep"),
                       (["--controls", "two"], "--controls must be"), (["--controls", "-1"], "--controls must be"),
                       (["--toward", "zz"], "unknown cell type 'zz'"), (["--toward", "a"], "already is"),
                       (["--controls", "1", "--target", "p99"], "multiple of the maximum")):
        assert main(["steer", str(a.path), "--feature", "0", "--cells", "cell_type=a", *extra]) == 2, extra
        assert msg in capsys.readouterr().err, extra
    assert main(["steer", str(a.path), "--cells", "cell_type=a"]) == 2
    assert "no feature to steer" in capsys.readouterr().err
    assert main(["steer", str(a.path), "--feature", "0,1", "--cells", "cell_type=a", "--sweep", "1"]) == 2
    assert "one feature" in capsys.readouterr().err
