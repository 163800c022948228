"""The Simulation lab without a browser: core.views.simulation (a tiny real run, stored, reused, cancelled),
the R² read-out against scikit-learn, the page's callbacks as plain functions, the figure."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from dash import no_update

import callbacks.simulation as cb
from callbacks.jobs import JobProgress, run_job
from components import figures, ids, simulation_page
from core.views import simulation
from core.store.analysis import Analysis
from core.base.errors import InputError
from core.base.progress import Cancelled

TINY = dict(n_cells=300, n_genes=8, seed=3, sae_epochs=3, ae_epochs=3)


def text_of(component) -> str:
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component,
                      default=lambda o: o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o),
                      ensure_ascii=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """An analyses folder holding one tiny stored run, made by the page's job function (the real
    pipeline, ~5-15 s). The form has no autoencoder-epochs field, so the form is bypassed for speed."""
    root = tmp_path_factory.mktemp("simlab")
    mp = pytest.MonkeyPatch()
    mp.setenv("FEATURELENS_ANALYSES_DIR", str(root))
    mp.setattr(cb, "config_from_form", lambda *a: simulation.SimLabConfig(**TINY))
    sent = []
    progress = JobProgress(sent.append, min_interval=0.0)
    alert, options, value = cb.recovery_job(progress, 300, 8, 3, 3)
    mp.undo()
    mp.setenv("FEATURELENS_ANALYSES_DIR", str(root))
    yield root, simulation.load_run(value), {"alert": alert, "options": options, "sent": sent}
    mp.undo()


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("field, value, words", [
    ("n_cells", 10, "cells must be a whole number from 200"),
    ("n_genes", 2, "genes must be a whole number from 3"),
    ("seed", -1, "seed must be"),
    ("sae_epochs", 2.5, "SAE epochs must be a whole number"),
    ("n_cells", True, "cells must be"),
])
def test_config_refuses_bad_values(field, value, words):
    with pytest.raises(InputError, match=words):
        simulation.SimLabConfig(**{field: value})


def test_run_id_depends_on_every_setting():
    base = simulation.SimLabConfig()
    assert base.run_id == simulation.SimLabConfig().run_id
    assert base.run_id.startswith("small-2000x10-seed0-")
    others = {simulation.SimLabConfig(**{k: v}).run_id for k, v in
              (("n_cells", 300), ("n_genes", 5), ("seed", 1), ("sae_epochs", 2), ("ae_epochs", 2))}
    assert len(others) == 5 and base.run_id not in others


# ----------------------------------------------------------------------------- R² read-out
def test_readout_r2_matches_sklearn():
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(0)
    n = 400
    z = rng.normal(size=(n, 3))
    values = np.c_[z @ [1.0, -2.0, 0.5], z[:, 0] ** 2 + 0.1 * rng.normal(size=n), rng.normal(size=n)]
    variable = np.array(["lin", "sq", "noise"])
    train, val = np.arange(300), np.arange(300, n)
    units = {"good": z, "none": rng.normal(size=(n, 2))}
    out = simulation.readout_r2(units, values, variable, train=train, validation=val)
    assert list(out.index) == ["lin", "sq", "noise"] and list(out.columns) == ["good", "none"]
    for method, x in units.items():
        pred = LinearRegression().fit(x[train], values[train]).predict(x[val])
        expect = r2_score(values[val], pred, multioutput="raw_values")
        np.testing.assert_allclose(out[method].to_numpy(), expect, rtol=1e-10, atol=1e-12)
    assert out.loc["lin", "good"] == pytest.approx(1.0)
    assert out.loc["noise", "good"] < 0.05


# ----------------------------------------------------------------------------- a stored run
def test_run_is_stored_complete_and_ordered(lab):
    root, run, _ = lab
    assert run.path == root / "simulations" / simulation.SimLabConfig(**TINY).run_id
    names = {p.name for p in run.path.iterdir()}
    assert {"run.json", "best_r.csv", "readout_r2.csv", "recovery.csv", "recovery_means.csv", "summary.json",
            "report.md", "figures.html"} <= names
    assert not [p for p in run.path.parent.iterdir() if p.name.startswith(".staging")]
    assert list(run.best_r.index) == ["Y", "X''", "A", "X"]           # nearest to the counts first
    assert list(run.best_r.columns) == ["sae", "pca", "ica", "svd", "latent"]
    assert list(run.r2.index) == list(run.best_r.index) and list(run.r2.columns) == list(run.best_r.columns)
    assert ((run.best_r.to_numpy() >= 0) & (run.best_r.to_numpy() <= 1)).all()
    assert (run.r2.to_numpy() <= 1 + 1e-9).all()
    # the table is the experiment's: recovery_means.csv (methods × variables) transposed
    means = pd.read_csv(run.path / "recovery_means.csv").set_index("method")
    np.testing.assert_allclose(run.best_r.T.loc[run.best_r.columns, means.columns].to_numpy(),
                               means.loc[run.best_r.columns].to_numpy(), rtol=1e-5)
    assert run.findings and {"finding", "paper", "ours", "status"} <= set(run.findings[0])
    assert run.sae["hidden"] == 40 and run.data["n_cells"] == 300 and run.config == TINY


def test_same_settings_reuse_the_stored_run(lab):
    root, run, _ = lab
    again = simulation.run_simlab(simulation.SimLabConfig(**TINY))
    assert again.reused and again.run_id == run.run_id
    pd.testing.assert_frame_equal(again.best_r, run.best_r)
    assert simulation.list_runs()[0]["run_id"] == run.run_id
    assert "300 cells × 8 genes, seed 3" in simulation.list_runs()[0]["label"]


def test_cancelled_run_leaves_nothing(lab):
    root, _, _ = lab
    before = sorted(p.name for p in (root / "simulations").iterdir())
    config = simulation.SimLabConfig(**{**TINY, "seed": 99})
    with pytest.raises(Cancelled):
        simulation.run_simlab(config, should_stop=lambda: True)
    assert sorted(p.name for p in (root / "simulations").iterdir()) == before


@pytest.mark.parametrize("run_id, words", [("nope", "no simulation run"), ("../x", "not a simulation run"),
                                           (".staging-x", "not a simulation run")])
def test_load_run_refuses_unknown_ids(lab, run_id, words):
    with pytest.raises(InputError, match=words):
        simulation.load_run(run_id)


def test_unreadable_run_is_an_input_error(lab):
    root, _, _ = lab
    bad = root / "simulations" / "broken"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    try:
        with pytest.raises(InputError, match="cannot be read"):
            simulation.load_run("broken")
        assert "broken" not in [r["run_id"] for r in simulation.list_runs()]
    finally:
        (bad / "run.json").unlink()
        bad.rmdir()


# ----------------------------------------------------------------------------- callbacks
def test_recovery_job_reports_and_selects_the_run(lab):
    _, run, job = lab
    assert job["alert"].color == "success" and "Run finished." in text_of(job["alert"])
    assert f"Y {run.best_r.loc['Y', 'sae']:.2f}" in text_of(job["alert"])
    assert job["options"] == [{"label": r["label"], "value": r["run_id"]} for r in simulation.list_runs()]
    percents = [m[0] for m in job["sent"]]
    assert percents[-1] == 100 and len(set(percents)) > 5 and percents == sorted(percents)


def test_form_values_become_a_config():
    assert cb.config_from_form("300", 8.0, None, "3") == simulation.SimLabConfig(n_cells=300, n_genes=8, seed=0,
                                                                            sae_epochs=3)
    assert cb.config_from_form(None, "", None, None) == simulation.SimLabConfig()


def test_recovery_job_with_bad_form_values_is_an_alert_in_place():
    out = run_job(cb.recovery_job, JobProgress(None), ("abc", 10, 0, 30), n_outputs=2)
    assert out[0].color == "danger" and "cells must be a whole number" in text_of(out[0])
    assert out[1:] == (no_update, no_update)
    out = run_job(cb.recovery_job, JobProgress(None), (50, 10, 0, 30), n_outputs=2)
    assert "from 200 to 50,000" in text_of(out[0])
    out = run_job(cb.recovery_job, JobProgress(None), (2000, 10, 0.5, 30), n_outputs=2)
    assert "seed must be a whole number" in text_of(out[0])


def test_recovery_job_on_stored_settings_says_reused(lab, monkeypatch):
    _, run, _ = lab
    monkeypatch.setattr(cb, "config_from_form", lambda *a: simulation.SimLabConfig(**TINY))
    alert, options, value = cb.recovery_job(JobProgress(None), 300, 8, 3, 3)
    assert value == run.run_id and alert.color == "info" and "Reused." in text_of(alert)
    assert options[0] == {"label": simulation.list_runs()[0]["label"], "value": run.run_id}


def test_show_run_renders_tables_figure_and_findings(lab):
    _, run, _ = lab
    view = cb.show_run(run.run_id)
    text = text_of(view)
    for words in ("Best |Pearson r| of a single unit", "R² of a linear read-out", "AE latent axes", "X″",
                  "Findings: ours vs the paper", run.findings[0]["status"]):
        assert words in text, words
    graph = next(c for c in view if getattr(c, "id", None) == ids.SIM_BAR)
    assert [t.name for t in graph.figure.data] == ["SAE", "PCA", "ICA", "SVD", "AE latent axes", "paper: ≥ 0.9"]
    np.testing.assert_allclose(graph.figure.data[0].y, run.best_r["sae"].to_numpy())


def test_show_run_errors_and_empty_state():
    assert "No simulation run yet" in text_of(cb.show_run(None))
    alert = cb.show_run("../../etc")
    assert alert.color == "danger" and "Cannot show this run" in text_of(alert)


def test_run_in_url():
    assert cb.write_url("small-1", "?source=shipped%3Apbmc68k") == "?source=shipped%3Apbmc68k&run=small-1"
    assert cb.write_url("small-1", "?run=small-1") is no_update
    assert cb.write_url(None, "?run=small-1") == ""


def test_layout_lists_runs_newest_and_takes_the_url_run(lab):
    _, run, _ = lab
    page = simulation_page.layout(simulation.simulation_page_data(None, query={}))
    dropdown = _find(page, ids.SIM_RUNS)
    assert dropdown.value == run.run_id and dropdown.options[0]["value"] == run.run_id
    assert _find(simulation_page.layout(simulation.simulation_page_data(None, query={"run": "gone"})), ids.SIM_RUNS).value == run.run_id


def _find(component, cid):
    if getattr(component, "id", None) == cid:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and hasattr(child, "to_plotly_json"):
            found = _find(child, cid)
            if found is not None:
                return found
    return None


# ----------------------------------------------------------------------------- planted score
PLANTED = {"score": 0.5, "score_with_relatives": 0.75, "top": 10, "n_programs": 4, "n_found": 2,
           "programs": [{"program": f"p{i}", "term_id": f"GO:000000{i}", "term_name": f"program {i}",
                         "scope": "global", "cell_types": "", "best_feature": i, "correlation": 0.9,
                         "n_enriched_terms": 12, "rank": 1.0 if i < 2 else None, "found": i < 2,
                         "found_relative": i < 3, "relative_term": None, "relative_name": None,
                         "top_terms": ""} for i in range(4)]}


@pytest.fixture
def demo_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(tmp_path))
    scored = Analysis.create(tmp_path / "demo", dataset={"path": "d.h5ad", "demo": "simulated"})
    with scored.step("annotate", inputs={}) as w:
        w.write_parquet("annotations.parquet", pd.DataFrame({"feature": [0], "term_id": ["GO:0000001"]}))
    with scored.step("planted", inputs={}) as w:
        w.write_json("planted_score.json", PLANTED)
    Analysis.create(tmp_path / "demo-raw", dataset={"path": "d.h5ad", "demo": "simulated"})
    Analysis.create(tmp_path / "other", dataset={"path": "o.h5ad"})
    return tmp_path


def test_planted_analyses_are_those_of_the_simulated_demo(demo_folder):
    assert simulation.planted_analyses() == [{"name": "demo", "annotated": True, "scored": True},
                                         {"name": "demo-raw", "annotated": False, "scored": False}]
    assert [o["value"] for o in simulation_page.planted_options(simulation.planted_analyses())] == ["demo", "demo-raw"]


def test_show_planted_displays_the_stored_score(demo_folder):
    body, disabled = cb.show_planted("demo")
    text = text_of(body)
    assert not disabled
    assert "2/4" in text and "score 0.50" in text and "0.75 counting near-identical relatives" in text
    assert text.count("✓") == 2 and text.count("≈") == 1 and text.count("✗") == 1


def test_show_planted_without_annotation_or_analysis(demo_folder):
    body, disabled = cb.show_planted("demo-raw")
    assert disabled and "not annotated yet" in text_of(body)
    body, disabled = cb.show_planted(None)
    assert disabled and "featurelens demo --build-only" in text_of(body)
    body, disabled = cb.show_planted("other")
    assert disabled and "not an analysis of the simulated demo dataset" in text_of(body)


def test_planted_job_on_an_unannotated_analysis_is_an_alert(demo_folder):
    out = run_job(cb.planted_job, JobProgress(None), ("demo-raw",), n_outputs=1)
    assert out[0].color == "danger" and "not annotated yet" in text_of(out[0]) and out[1] is no_update
    out = run_job(cb.planted_job, JobProgress(None), ("../x",), n_outputs=1)
    assert "outside the allowed folders" in text_of(out[0])


@pytest.mark.slow
def test_planted_job_scores_the_real_demo(demo_analysis, monkeypatch):
    """On the real simulated demo (built once per session): the job's score is planted_concept_score's."""
    from core.demo.planted import planted_concept_score

    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(demo_analysis.parent))
    alert, body = cb.planted_job(JobProgress(None), demo_analysis.name)
    expect = planted_concept_score(Analysis.open(demo_analysis)).to_dict()
    assert f"{expect['n_found']} of {expect['n_programs']} planted programs found" in text_of(alert)
    assert f"{expect['n_found']}/{expect['n_programs']}" in text_of(body)


# ----------------------------------------------------------------------------- figure
def test_recovery_bars_figure():
    best = pd.DataFrame({"sae": [0.95, 0.5], "pca": [0.7, 0.4]}, index=pd.Index(["Y", "X''"], name="variable"))
    fig = figures.recovery_bars_figure(best, target=0.9, labels={"sae": "SAE"})
    assert [t.name for t in fig.data] == ["SAE", "pca", "paper: ≥ 0.9"]
    assert list(fig.data[0].x) == ["Y", "X″"] and list(fig.data[1].y) == [0.7, 0.4]
    assert fig.layout.shapes[0].y0 == 0.9
    assert "no recovery results" in figures.recovery_bars_figure(best.iloc[:0]).layout.annotations[0].text
    assert [t.type for t in figures.recovery_bars_figure(best, target=None).data] == ["bar", "bar"]


# ----------------------------------------------------------------------------- the page's data
def test_simulation_page_data_lists_runs_and_takes_the_url_run(lab):
    _, run, _ = lab
    d = simulation.simulation_page_data(None, query={"run": run.run_id})
    assert d.runs == tuple(simulation.list_runs()) and d.run == run.run_id and d.planted == ()
    assert simulation.simulation_page_data("analysis:x", query={"run": "gone"}).run == run.run_id  # the newest
    assert simulation.simulation_page_data(None) == simulation.simulation_page_data(None, query={})


def test_simulation_page_data_without_runs(demo_folder, monkeypatch):
    d = simulation.simulation_page_data(None, query={"run": "gone"})
    assert (d.runs, d.run) == ((), None)
    assert d.planted == tuple(simulation.planted_analyses()) and [a["name"] for a in d.planted] == ["demo", "demo-raw"]
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(demo_folder / "not-made-yet"))
    assert simulation.simulation_page_data(None) == simulation.SimulationPageData()
