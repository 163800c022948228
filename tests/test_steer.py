"""Steering: planted effects move the right genes the right way, exact no-ops, GLM = statsmodels, storage, CLI."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core.cli.main import main
from core.base.errors import InputError
from core.steer import (SteerConfig, list_steering_runs, load_steering_run, nb_glm_paired, paired_log_test,
                        parse_target, save_steering_run, select_cells, steer, steering_context)
from steer_data import PLANTED_TERM, SECOND_TERM, build_planted

pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*:DeprecationWarning")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    a, genes, p_idx, s_idx = build_planted(tmp_path_factory.mktemp("steer"))
    return a, genes, p_idx, s_idx


def _type_cells(a, t):
    ctx = steering_context(a)
    return np.flatnonzero(ctx.cell_types == t)


def test_planted_feature_moves_its_genes_and_enriches_its_term(planted):
    a, genes, p_idx, _ = planted
    res = steer(a, features=[0], cells="cell_type=a", config=SteerConfig(target="max"))
    de = res.de
    assert list(de["gene"]) == genes and res.n_cells == 80
    ctx = steering_context(a)
    assert res.targets[0] == pytest.approx(ctx.embedding[:, 0].max(), rel=1e-6)
    planted_rows = de.iloc[p_idx]
    assert (planted_rows["direction"] == "up").all() and (planted_rows["log2fc"] > 1).all()
    others = np.setdiff1d(np.arange(len(genes)), p_idx)
    assert (de.iloc[others]["direction"] != "up").all()
    top = res.enrichment_up.iloc[0]
    assert top["term_id"] == PLANTED_TERM and top["hits"] == len(p_idx) and top["binom_p"] < 1e-10
    # the latent moved along dimension 0 only, by target − activation, and the cells now sit nearest type b
    shift = res.latent_after - res.latent_before
    np.testing.assert_allclose(shift[:, 0], res.targets[0] - res.activations_before[:, 0], rtol=1e-5)
    np.testing.assert_array_equal(shift[:, 1:], 0.0)
    cs = res.centroid_shift
    assert (cs["nearest_before"] == "a").mean() > 0.9 and (cs["nearest_after"] == "b").mean() > 0.9
    assert res.summary()["moves"].get("a → b", 0) > 60
    assert res.centroid_summary().iloc[0]["cell_type"] == "b"  # the type it came closest to


def test_current_value_with_error_term_changes_nothing_exactly(planted):
    a, _, _, _ = planted
    ctx = steering_context(a)
    cell = int(np.flatnonzero(ctx.embedding[:, 0] > 0.5)[0])
    first = steer(a, features=[0], cells=[cell], config=SteerConfig(target="max"))
    current = float(first.activations_before[0, 0])
    assert current > 0
    same = steer(a, features=[0], cells=[cell], config=SteerConfig(target=current))
    assert same.targets[0] == first.activations_before[0, 0]
    np.testing.assert_array_equal(same.latent_after, same.latent_before)
    np.testing.assert_array_equal(same.expression_steered, same.expression_normal)
    # many cells: switching off a feature that is already 0 in them
    idle = np.flatnonzero(ctx.embedding[:, 0] <= 0)
    res = steer(a, features=[0], cells=idle, config=SteerConfig(target="off"))
    np.testing.assert_array_equal(res.latent_after, ctx.embedding[idle])
    np.testing.assert_array_equal(res.expression_steered, res.expression_normal)
    assert (res.de["log2fc"] == 0).all() and (res.de["pvalue"] == 1).all() and not res.de["significant"].any()
    assert res.info["cells_changed"] == 0
    glm = steer(dataclasses.replace(ctx, dispersion=np.full(len(ctx.gene_names), 5.0)), features=[0], cells=idle,
                config=SteerConfig(target="off", test="nb-glm"))
    assert (glm.de["log2fc"] == 0).all() and (glm.de["pvalue"] == 1).all()
    # without the error term the SAE reconstruction is compared with the cell (this SAE is exact: ~no change)
    paper = steer(a, features=[0], cells=idle, config=SteerConfig(target="off", error_term=False))
    np.testing.assert_allclose(paper.latent_after, paper.latent_before, atol=1e-6)


def test_normal_expression_comes_from_the_cached_prediction(tmp_path):
    from core.annotate.expression import resolve_expression
    from core.steer import clear_context_cache

    a, _, p_idx, _ = build_planted(tmp_path / "cached", n_genes=60, n_per_type=20)
    decoded = steer(a, features=[0], cells="cell_type=a")
    assert steering_context(a).predicted is None
    src = resolve_expression(a)  # what annotation leaves behind: predicted_expression.npy
    clear_context_cache()
    ctx = steering_context(a)
    assert ctx.predicted is not None
    res = steer(a, features=[0], cells="cell_type=a")
    np.testing.assert_array_equal(res.expression_normal, np.asarray(src.matrix)[res.cells])
    np.testing.assert_allclose(res.expression_normal, decoded.expression_normal, rtol=1e-5)
    np.testing.assert_allclose(res.de["log2fc"], decoded.de["log2fc"], atol=1e-5)


def test_negative_steering_reverses_the_sign(planted):
    a, _, p_idx, _ = planted
    ctx = steering_context(a)
    active = np.flatnonzero(ctx.embedding[:, 0] > 1.0)
    up = steer(a, features=[0], cells=active, config=SteerConfig(target="x1.5"))
    off = steer(a, features=[0], cells=active, config=SteerConfig(target="off"))
    assert (up.de.iloc[p_idx]["log2fc"] > 0).all() and (up.de.iloc[p_idx]["direction"] == "up").all()
    assert (off.de.iloc[p_idx]["log2fc"] < 0).all() and (off.de.iloc[p_idx]["direction"] == "down").all()
    assert off.enrichment_down.iloc[0]["term_id"] == PLANTED_TERM
    # the opposite direction's feature (4 = the negative part of dimension 0) lowers the planted genes
    neg = steer(a, features=[4], cells="cell_type=b", config=SteerConfig(target="max"))
    assert (neg.de.iloc[p_idx]["log2fc"] < 0).all()


def test_several_features_with_their_own_targets(planted):
    a, _, p_idx, s_idx = planted
    res = steer(a, features=[0, 1], cells="cell_type=a,c", config=SteerConfig(target=("max", "off")))
    assert res.target_labels == ["max", "off"] and res.targets[1] == 0 and res.n_cells == 160
    de = res.de
    assert (de.iloc[p_idx]["direction"] == "up").all()
    c_cells = res.cell_types == "c"  # type c sits at dimension 1 = 2: switching feature 1 off lowers DNA replication
    assert (res.latent_after[c_cells, 1] == 0).all()
    assert de.iloc[s_idx]["log2fc"].mean() < -0.3
    terms = set(res.enrichment_down["term_id"]) | set(res.enrichment_up["term_id"])
    assert SECOND_TERM in terms


def test_paired_log_test_matches_scipy(rng):
    normal = rng.gamma(2.0, 1.0, (30, 40)).astype(np.float32)
    steered = (normal * np.exp(rng.normal(0.2, 0.5, normal.shape))).astype(np.float32)
    steered[:, 0] = normal[:, 0]  # unchanged gene
    r = paired_log_test(normal, steered, pseudocount=0.1)
    a, b = np.log2(steered.astype(np.float64) + 0.1), np.log2(normal.astype(np.float64) + 0.1)
    ref = stats.ttest_rel(a[:, 1:], b[:, 1:])
    np.testing.assert_allclose(r["stat"][1:], ref.statistic, rtol=1e-9)
    np.testing.assert_allclose(r["pvalue"][1:], ref.pvalue, rtol=1e-8)
    np.testing.assert_allclose(r["log2fc"][1:], (a - b)[:, 1:].mean(0), rtol=1e-9)
    np.testing.assert_allclose(r["mean_normal"], normal.mean(0, dtype=np.float64), rtol=1e-9)
    assert r["log2fc"][0] == 0 and r["pvalue"][0] == 1 and r["stat"][0] == 0


def test_nb_glm_agrees_with_statsmodels(rng):
    sm = pytest.importorskip("statsmodels.api")
    n, g = 8, 6
    normal = rng.gamma(2.0, 3.0, (n, g))
    steered = normal * np.exp(rng.normal(0.3, 0.4, (n, g)))
    normal[2, 3] = 0.0  # a zero in one condition
    theta = rng.uniform(0.5, 8.0, g)
    r = nb_glm_paired(normal, steered, theta=theta)
    x = np.zeros((2 * n, n + 1))
    x[:, 0] = 1.0
    for i in range(1, n):
        x[i, i] = x[n + i, i] = 1.0
    x[n:, n] = 1.0
    for j in range(g):
        y = np.concatenate([normal[:, j], steered[:, j]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.GLM(y, x, family=sm.families.NegativeBinomial(alpha=1.0 / theta[j])).fit(tol=1e-13, maxiter=500)
        assert r["beta"][j] == pytest.approx(fit.params[-1], rel=1e-6, abs=1e-9)
        assert r["se"][j] == pytest.approx(fit.bse[-1], rel=1e-6)
        assert r["pvalue"][j] == pytest.approx(fit.pvalues[-1], rel=1e-5)
        assert r["log2fc"][j] == pytest.approx(fit.params[-1] / np.log(2), rel=1e-6)


def test_nb_glm_steering_run(planted):
    a, _, p_idx, _ = planted
    ctx = dataclasses.replace(steering_context(a), dispersion=np.full(len(steering_context(a).gene_names), 4.0))
    res = steer(ctx, features=[0], cells="cell_type=a", config=SteerConfig(test="nb-glm"))
    # the least expressed planted genes carry little NB information; most are significant and none goes down
    assert (res.de.iloc[p_idx]["direction"] == "up").mean() >= 0.75
    assert not (res.de.iloc[p_idx]["direction"] == "down").any()
    assert res.enrichment_up.iloc[0]["term_id"] == PLANTED_TERM
    # without a pseudocount both estimate the same log fold changes
    paired = steer(ctx, features=[0], cells="cell_type=a", config=SteerConfig(pseudocount=1e-9))
    np.testing.assert_allclose(res.de.iloc[p_idx]["log2fc"], paired.de.iloc[p_idx]["log2fc"], rtol=0.05)


def test_targets_parse_and_resolve(planted):
    a, _, _, _ = planted
    assert parse_target("x2").factor == 2 and parse_target("p99").percentile == 99
    t = parse_target("mean:B cellx1.5")
    assert (t.kind, t.cell_type, t.factor) == ("mean", "B cell", 1.5)
    assert parse_target("off").kind == "off" and parse_target(0).kind == "off" and parse_target("2.5").value == 2.5
    for bad in ("maxi", "x0", "p0", "p101", "-1", "mean:", ""):
        with pytest.raises(InputError):
            parse_target(bad)
    ctx = steering_context(a)
    col = ctx.activations[:, 0].toarray().ravel()
    types = ctx.cell_types
    r = steer(a, features=[0], cells=[0], config=SteerConfig(target=("p90",)))
    assert r.targets[0] == pytest.approx(np.percentile(col[col > 0], 90), rel=1e-6)
    r = steer(a, features=[0], cells=[0], config=SteerConfig(target="mean:bx1.5"))
    assert r.targets[0] == pytest.approx(1.5 * col[types == "b"].mean(), rel=1e-6)
    r = steer(a, features=[0], cells=[0], config=SteerConfig(target="x2"))
    assert r.targets[0] == pytest.approx(2 * col.max(), rel=1e-6)


def test_select_cells(planted):
    a, _, _, _ = planted
    ctx = steering_context(a)
    np.testing.assert_array_equal(select_cells(a, "cell_type=b"), np.flatnonzero(ctx.cell_types == "b"))
    assert select_cells(ctx, "all").size == 240
    np.testing.assert_array_equal(select_cells(ctx, "cells=cell5,cell2"), [5, 2])
    np.testing.assert_array_equal(select_cells(ctx, ["cell7", "cell1"]), [7, 1])
    np.testing.assert_array_equal(select_cells(ctx.obs, "cell_type=a,c").size, 160)
    mask = np.zeros(240, bool)
    mask[[3, 9]] = True
    np.testing.assert_array_equal(select_cells(ctx, mask), [3, 9])
    for spec, msg in (("cell_type=z", "unknown cell type 'z'"), ("cells=nope", "not found"), ([], "no cells"),
                      ("batch=1", "no .obs column"), ("garbage", "cannot read"), ([500], "out of range")):
        with pytest.raises(InputError, match=msg):
            select_cells(ctx, spec)


def test_bad_inputs(planted, tmp_path):
    a, _, _, _ = planted
    for kwargs, msg in (({"features": [99]}, "does not exist"), ({"features": [8]}, "dead"),
                        ({"features": [0], "cells": "cell_type=z"}, "unknown cell type"),
                        ({"features": [0], "cells": []}, "no cells"),
                        ({"features": [0], "config": SteerConfig(target="mean:zz")}, "unknown cell type 'zz'"),
                        ({"features": [0], "config": SteerConfig(test="nb-glm")}, "dispersions"),
                        ({"features": [0, 1], "config": SteerConfig(target=("max", "off", "x2"))}, "3 targets")):
        kwargs.setdefault("cells", "cell_type=a")
        with pytest.raises(InputError, match=msg):
            steer(a, **kwargs)
    with pytest.raises(InputError, match="unknown test"):
        SteerConfig(test="wilcoxon")
    nodec, _, _, _ = build_planted(tmp_path / "nodec", decoder=False, n_genes=60)
    with pytest.raises(InputError, match="steering needs the model's decoder") as err:
        steer(nodec, features=[0], cells="all")
    assert "fit-model" in str(err.value)


def test_save_list_load_round_trip(planted):
    a, _, _, _ = planted
    res = steer(a, features=[0], cells="cell_type=a", config=SteerConfig(target="x2", save_expression=True))
    run_id = save_steering_run(a, res)
    assert res.run_id == run_id and a.has(f"steering/{run_id}/de.parquet")
    assert a.has(f"steering/{run_id}/expression_steered.npy")
    stamp = a.config["steps"][f"steering/{run_id}"]["completed"]
    assert save_steering_run(a, res) == run_id  # same experiment: same id, not written again
    assert a.config["steps"][f"steering/{run_id}"]["completed"] == stamp
    runs = list_steering_runs(a)
    row = runs[runs["run_id"] == run_id].iloc[0]
    assert row["features"] == "0" and row["targets"] == "x2" and row["n_cells"] == 80
    back = load_steering_run(a, run_id)
    np.testing.assert_array_equal(back.cells, res.cells)
    np.testing.assert_array_equal(back.latent_after, res.latent_after)
    np.testing.assert_array_equal(back.expression_steered, res.expression_steered)
    pd.testing.assert_frame_equal(back.de, res.de)
    pd.testing.assert_frame_equal(back.enrichment_up, res.enrichment_up)
    pd.testing.assert_frame_equal(back.centroid_shift, res.centroid_shift)
    assert back.config == res.config and back.summary() == res.summary()
    # by default the per-cell expression is not stored (it is large); the run reopens without it
    lean = steer(a, features=[0], cells="cell_type=a", config=SteerConfig(target="x3"))
    lean_id = save_steering_run(a, lean)
    assert a.has(f"steering/{lean_id}/de.parquet") and not a.has(f"steering/{lean_id}/expression_steered.npy")
    assert load_steering_run(a, lean_id).expression_steered is None
    with pytest.raises(InputError, match="no steering run"):
        load_steering_run(a, "f0-nothere")


def test_cli_steer(planted, tmp_path, capsys):
    a, genes, p_idx, _ = planted
    out = tmp_path / "out"
    assert main(["steer", str(a.path), "--feature", "0", "--cells", "cell_type=a", "--target", "max",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "oxygen transport" in text and "a → b" in text and "stored as run" in text
    de = pd.read_csv(out / "de.csv")
    assert set(de.loc[de["direction"] == "up", "gene"]) >= {genes[i] for i in p_idx}
    for name in ("enrichment_up.csv", "enrichment_down.csv", "centroid_shift.csv", "latent.csv", "summary.json"):
        assert (out / name).is_file(), name
    from core.store.analysis import Analysis

    assert len(list_steering_runs(Analysis.open(a.path))) >= 1  # stored by the CLI's own Analysis
    assert main(["steer", str(a.path), "--feature", "8", "--cells", "cell_type=a"]) == 2
    assert "dead" in capsys.readouterr().err
    assert main(["steer", str(a.path), "--feature", "0", "--cells", "cell_type=a", "--target", "bogus"]) == 2
    assert "invalid steering target" in capsys.readouterr().err
    # nothing past the threshold: the largest changes are still listed, the planted genes on top
    assert main(["steer", str(a.path), "--feature", "0", "--cells", "cell_type=a", "--min-log2fc", "50"]) == 0
    text = capsys.readouterr().out
    assert "no gene changed" in text
    up = next(line for line in text.splitlines() if line.strip().startswith("largest up"))
    assert up.split()[2] in {genes[i] for i in p_idx}, up


def _gmt_concepts(tmp_path, n_genes=400, n_terms=20, size=20):
    from core.steer import steering_concepts

    genes = [f"G{i}" for i in range(n_genes)]
    path = tmp_path / "sets.gmt"
    path.write_text("".join(f"T{t}\tna\t" + "\t".join(genes[t * size:(t + 1) * size]) + "\n" for t in range(n_terms)))
    return genes, steering_concepts(genes, databases=(), gmt=(str(path),))


def test_enrichment_keeps_shifted_terms_only_when_they_moved_enough(tmp_path):
    """The rank test alone flags a coherent shift of any size; the keep rule asks for ≥ 0.25 log2."""
    from core.steer import de_table, up_down_enrichment

    genes, concepts = _gmt_concepts(tmp_path)
    rng = np.random.default_rng(0)
    for shift, kept in ((0.01, False), (0.4, True)):
        lfc = rng.normal(0, 0.002, len(genes))
        lfc[:20] += shift  # term T0's genes, none of them past the 2-fold threshold
        stats_ = {"mean_normal": np.ones(len(genes)), "mean_steered": 2 ** lfc, "log2fc": lfc,
                  "stat": lfc / 0.01, "pvalue": np.full(len(genes), 0.5)}
        de = de_table(genes, stats_, alpha=0.05, min_abs_log2fc=1.0)
        assert not de["significant"].any()
        up, down = up_down_enrichment(de, concepts)
        assert ("T0" in set(up["term_id"])) is kept, (shift, up)
        assert len(down) == 0 and set(up["term_id"]) <= {"T0"}
        every, _ = up_down_enrichment(de, concepts, q_max=1.0)
        t0 = every.set_index("term_id").loc["T0"]
        assert t0["mwu_q"] < 1e-6 and t0["shift"] == pytest.approx(shift * (1 - 20 / 400), abs=0.01)


def test_enrichment_of_null_changes_keeps_almost_nothing(tmp_path):
    """Null: gene changes with no term structure (noise, uniform p): BH keeps the share of runs
    that report any term near 5 % per direction (here ≤ 4 of 30 runs)."""
    from core.steer import de_table, up_down_enrichment

    genes, concepts = _gmt_concepts(tmp_path)
    rng = np.random.default_rng(1)
    runs_with_terms = 0
    for _ in range(30):
        lfc = rng.normal(0, 0.8, len(genes))
        p = rng.uniform(size=len(genes))
        de = de_table(genes, {"mean_normal": np.ones(len(genes)), "mean_steered": 2 ** lfc, "log2fc": lfc,
                              "stat": lfc, "pvalue": p}, alpha=0.05, min_abs_log2fc=1.0)
        up, down = up_down_enrichment(de, concepts)
        runs_with_terms += int(len(up) + len(down) > 0)
    assert runs_with_terms <= 4
