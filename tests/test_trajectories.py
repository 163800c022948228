"""Trajectories: the rising-feature finder, its steering ranking, the page data, the callbacks as
plain functions, the stage figure and the CLI, on a small analysis with a planted trajectory
(:mod:`trajectory_data`)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from dash.exceptions import PreventUpdate
from trajectory_data import ALSO_RISING, ELSEWHERE, RISING, STAGES, UP_THEN_DOWN, build_trajectory_analysis

from core.base.errors import InputError
from core.cli.main import main
from core.sae.characterise import find_trajectory_features
from core.steer import rank_trajectory, rising_features, steering_context
from core.store.analysis import Analysis
from core.views import trajectories as views


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("traj")
    return {"dec": build_trajectory_analysis(base / "dec"),
            "nodec": build_trajectory_analysis(base / "nodec", decoder=False)}


@pytest.fixture(scope="module")
def arrays(built):
    a = Analysis.open(built["dec"])
    return a.read_npz_sparse("activations.npz"), views.cell_labels(a)


# ----------------------------------------------------------------------------- the finder
def test_planted_rising_features_found_and_the_no_trend_ones_not(arrays):
    acts, labels = arrays
    found = rising_features(acts, labels, list(STAGES))
    feats = found["feature"].tolist()
    assert set(feats) >= {RISING, ALSO_RISING}
    assert UP_THEN_DOWN not in feats and ELSEWHERE not in feats
    # by rise alone feature 3 (0 → 1) beats feature 0 (0.1 → 3)
    assert feats.index(ALSO_RISING) < feats.index(RISING)
    assert found.attrs["n_cells"] == {t: 60 for t in STAGES}


def test_stage_means_and_standard_errors_match_numpy(arrays):
    acts, labels = arrays
    row = rising_features(acts, labels, list(STAGES)).set_index("feature").loc[RISING]
    x = np.asarray(acts[:, RISING].todense(), np.float64).ravel()
    for t in STAGES:
        v = x[labels == t]
        assert row[f"mean[{t}]"] == pytest.approx(v.mean(), rel=1e-9)
        assert row[f"se[{t}]"] == pytest.approx(v.std(ddof=1) / np.sqrt(v.size), rel=1e-9)
    assert row["mean[s0]"] < row["mean[s1]"] < row["mean[s2]"] < row["mean[s3]"]


def test_steering_ranks_the_planted_feature_first(built, arrays):
    acts, labels = arrays
    rising = rising_features(acts, labels, list(STAGES))
    ranked = rank_trajectory(steering_context(Analysis.open(built["dec"])), rising, lineage=list(STAGES))
    assert ranked["feature"].iloc[0] == RISING and ranked["shift_rank"].iloc[0] == 1
    assert ranked["shift_rank"].tolist() == sorted(ranked["shift_rank"].tolist())
    best, other = ranked.set_index("feature").loc[[RISING, ALSO_RISING], "shift_progress"]
    assert best > 0.3 and best > other  # s0 cells come ≥ 30 % closer to s3's centre


def test_the_shift_is_the_distance_change_of_the_steered_cells(built, arrays):
    """Golden check of one number: steer feature 0 to its maximum in the s0 cells by hand."""
    acts, labels = arrays
    ctx = steering_context(Analysis.open(built["dec"]))
    ranked = rank_trajectory(ctx, rising_features(acts, labels, list(STAGES)), lineage=list(STAGES))
    s0 = labels == "s0"
    z = np.asarray(acts[:, RISING].todense()).ravel()
    x = ctx.embedding.astype(np.float64)
    v = ctx.sae.W_dec.detach().numpy()[:, RISING].astype(np.float64)
    after = x[s0] + (z.max() - z[s0])[:, None] * v[None, :]
    c = x[labels == "s3"].mean(0)
    change = np.linalg.norm(after - c, axis=1).mean() - np.linalg.norm(x[s0] - c, axis=1).mean()
    got = ranked.set_index("feature").loc[RISING, "shift_change"]
    assert got == pytest.approx(change, rel=1e-6)


def test_random_stage_labels_list_almost_nothing():
    """Null: activations unrelated to the labels. The significance test removes what monotone means alone let through."""
    rng = np.random.default_rng(7)
    n_cells, n_feat = 3000, 300
    acts = sp.random(n_cells, n_feat, density=0.3, random_state=rng, data_rvs=lambda k: rng.gamma(2.0, 1.0, k))
    labels = rng.choice(["a", "b", "c", "d", "e", "other"], size=n_cells)
    lineage = ["a", "b", "c", "d", "e"]
    listed = rising_features(acts, labels, lineage)
    loose = rising_features(acts, labels, lineage, significant=False)
    assert len(listed) <= 2
    assert len(loose) >= 20  # noise that is merely monotone within the tolerance


def test_strict_is_the_papers_rule(arrays):
    acts, labels = arrays
    strict = rising_features(acts, labels, list(STAGES), strict=True, significant=False)
    paper = find_trajectory_features(acts, labels, list(STAGES), strict=True)
    assert strict["feature"].tolist() == paper["feature"].tolist()


def test_tolerance_lets_small_dips_through():
    """Feature 0 dips 2 % at the second step, feature 1 drops 30 %: only feature 0 passes with tolerance."""
    labels = np.repeat(["a", "b", "c", "x"], 50)
    means = {"a": (0.0, 0.0), "b": (1.0, 1.0), "c": (0.98, 0.7), "x": (0.0, 0.0)}
    acts = np.array([means[t] for t in labels]) * np.random.default_rng(0).uniform(0.9, 1.1, (200, 1))
    assert rising_features(acts, labels, ["a", "b", "c"])["feature"].tolist() == [0]
    assert rising_features(acts, labels, ["a", "b", "c"], tolerance=0.0).empty


@pytest.mark.parametrize("lineage, words", [
    (["s0"], "at least two"), ([], "at least two"), ("s0,s0,s1", "more than once"),
    (["s0", "nope"], "unknown cell type"),
])
def test_bad_lineages_are_input_errors(arrays, lineage, words):
    acts, labels = arrays
    with pytest.raises(InputError, match=words) as exc:
        rising_features(acts, labels, lineage)
    assert ("s0" in exc.value.fix and "other" in exc.value.fix) or "once" in exc.value.fix


def test_no_cell_types_is_an_input_error(arrays):
    with pytest.raises(InputError, match="no cell-type column") as exc:
        rising_features(arrays[0], None, ["a", "b"])
    assert "--cell-type" in exc.value.fix


def test_lineage_as_text(arrays):
    acts, labels = arrays
    a = rising_features(acts, labels, "s0 → s1 → s2 → s3")
    b = rising_features(acts, labels, " s0, s1,s2 ,s3")
    assert a["feature"].tolist() == b["feature"].tolist() and a.attrs["lineage"] == list(STAGES)


# ----------------------------------------------------------------------------- the page's data
def test_find_trajectories_ranks_and_without_decoder_says_why(built):
    ranked = views.find_trajectories(built["dec"], list(STAGES))
    assert ranked.shift_note is None and ranked.table["feature"].iloc[0] == RISING
    assert list(ranked.table.columns[:len(views.TABLE_COLUMNS)]) == views.TABLE_COLUMNS
    unranked = views.find_trajectories(built["nodec"], list(STAGES))
    assert "decoder" in unranked.shift_note
    assert unranked.table["shift_rank"].isna().all()
    assert set(unranked.table["feature"]) == set(ranked.table["feature"])
    assert "Ordered by rise, not by steering" in views.findings_summary(unranked)
    assert "Ranked by steering" in views.findings_summary(ranked)


def test_rows_carry_the_stage_profile_and_card_link(built):
    found = views.find_trajectories(built["dec"], list(STAGES))
    rows = views.trajectory_rows(found, source="analysis:traj")
    first = rows[0]
    assert first["feature"] == RISING and first["shift_rank"] == 1
    assert len(first["mean"]) == len(first["se"]) == 4 and first["mean"] == sorted(first["mean"])
    assert first["card"] == f"[card {RISING}](/explorer?source=analysis%3Atraj&feature={RISING})"
    json.dumps(rows)  # JSON-serialisable for the grid


def test_page_data_defaults_and_problems(tmp_path, monkeypatch, built):
    import shutil

    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(tmp_path))
    shutil.copytree(built["dec"], tmp_path / "traj")
    data = views.trajectories_page_data("analysis:traj", query={"lineage": "s0,s1,s3"})
    assert data.problem is None and data.lineage == ("s0", "s1", "s3") and "other" in data.cell_types
    assert views.trajectories_page_data("analysis:traj", query={}).lineage == ()  # no known chain in s0..s3
    assert views.trajectories_page_data("analysis:traj", query={"lineage": "s0,bogus"}).lineage == ()
    assert views.trajectories_page_data(None).problem.level == "info"
    assert views.trajectories_page_data("analysis:missing").problem.level == "danger"


def test_default_lineage_from_known_chains():
    demo_types = ["B", "CLP", "DC", "Ery", "GMP", "HSC", "MEP", "MPP", "Mono", "NK", "Neut", "ProB", "ProEry", "T"]
    assert views.default_lineage(demo_types) == ("HSC", "MPP", "MEP", "ProEry", "Ery")
    assert views.default_lineage(["HSC", "MEP", "Proerythroblast", "Erythroblast", "B"]) == (
        "HSC", "MEP", "Proerythroblast", "Erythroblast")
    assert views.default_lineage(["a", "b"]) == ()


# ----------------------------------------------------------------------------- callbacks and figure
def test_callbacks_as_functions(built, monkeypatch, tmp_path):
    import shutil

    import callbacks.trajectories as cb
    from components.trajectories_page import HIDDEN, SHOWN, lineage_text

    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(tmp_path))
    shutil.copytree(built["dec"], tmp_path / "traj")
    calls = []
    alert, rows, shown, note, style, _, link_style = cb.find_job(lambda *a: calls.append(a), "analysis:traj",
                                                                 list(STAGES), False)
    assert "Found." in str(alert) and rows[0]["feature"] == RISING and note is None
    assert style == SHOWN and link_style == HIDDEN and calls[-1][0] == calls[-1][1]
    assert shown == {"source": "analysis:traj", "lineage": list(STAGES), "n_cells": {t: 60 for t in STAGES}}
    fig, text, href, lstyle = cb.show_feature({"rowId": str(RISING)}, rows, shown)
    assert list(fig.data[0].x) == list(STAGES) and np.allclose(fig.data[0].y, rows[0]["mean"])
    assert href == f"/explorer?source=analysis%3Atraj&feature={RISING}" and str(RISING) in text
    with pytest.raises(PreventUpdate):
        cb.show_feature({"rowId": "999"}, rows, shown)
    assert lineage_text(["a"]).startswith("Choose") and lineage_text(["a", "b"]) == "Lineage: a → b"
    assert cb.write_url(["s0", "s1"], "?source=analysis%3Atraj") == "?source=analysis%3Atraj&lineage=s0%2Cs1"


def test_trajectory_figure_is_pure():
    from components.figures import trajectory_figure

    fig = trajectory_figure(["b", "a"], [1.0, 2.0], [0.1, np.nan], n_cells=[5, 6], title="t")
    assert list(fig.data[0].x) == ["b", "a"] and list(fig.layout.xaxis.categoryarray) == ["b", "a"]
    assert list(fig.data[0].error_y.array) == [0.1, 0.0]


def test_layout_draws_the_default_lineage():
    from components import ids, trajectories_page

    data = views.TrajectoriesPageData(source="analysis:x", cell_types=("a", "b", "c"), lineage=("a", "c"))
    page = trajectories_page.layout(data)
    dropdown = next(c for c in _walk(page) if getattr(c, "id", None) == ids.TRAJ_STAGES)
    assert dropdown.value == ["a", "c"] and dropdown.multi
    problem = trajectories_page.layout(views.TrajectoriesPageData(source=None, problem=views.PageProblem(
        "No analysis chosen.", "Pick one.", "info")))
    assert "No analysis chosen." in str(problem)


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children] if children is not None else []:
        if hasattr(child, "to_plotly_json"):
            yield from _walk(child)


# ----------------------------------------------------------------------------- CLI
def test_cli_prints_the_table_and_writes_tsv(built, tmp_path, capsys):
    out = tmp_path / "t.tsv"
    assert main(["trajectories", str(built["dec"]), "--lineage", ",".join(STAGES), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rise along s0 → s1 → s2 → s3" in text and "Ranked by steering" in text
    tsv = pd.read_csv(out, sep="\t")
    assert tsv["feature"].iloc[0] == RISING and "se[s3]" in tsv.columns


@pytest.mark.parametrize("lineage, words", [("s0", "at least two"), ("s0,zzz", "unknown cell type(s): zzz")])
def test_cli_bad_lineage_exits_2(built, capsys, lineage, words):
    assert main(["trajectories", str(built["dec"]), "--lineage", lineage]) == 2
    err = capsys.readouterr().err
    assert words in err and "s0" in err


def test_router_opens_the_page():
    import callbacks.shell as shell_cb
    from components import ids

    page, rendered = shell_cb.render_page("/trajectories", None, "", None, triggered=None)
    assert rendered["page"] == "trajectories" and f"'{ids.TRAJECTORIES_PAGE}'" in str(page)
    assert "No analysis chosen." in str(page)
