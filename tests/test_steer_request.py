"""SteerRequest (form and CLI inputs -> one validated request) and steer_into_analysis (run + store, atomically)."""
from __future__ import annotations

import numpy as np
import pytest

from core.store.analysis import Analysis
from core.base.errors import InputError
from core.base.progress import Cancelled
from core.steer import SteerConfig, SteerRequest, list_steering_runs, load_steering_run, steer_into_analysis
from core.steer.request import MAX_FEATURES, feature_ids
from steer_data import PLANTED_TERM, build_planted

pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*:DeprecationWarning")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return build_planted(tmp_path_factory.mktemp("steer-request"))[0]


# ----------------------------------------------------------------------------- the request
def test_request_normalises_features_and_cells():
    req = SteerRequest(features=[3, np.int64(5)], cells=[9, 2], config=SteerConfig(target=("max", "x2")))
    assert req.features == (3, 5) and req.cells == (9, 2) and req.cells_label is None
    assert SteerRequest(features=7, cells="all").features == (7,)          # one id
    assert SteerRequest(features=(1,), cells="all").config == SteerConfig()  # the default config
    d = req.to_dict()
    assert d["features"] == [3, 5] and d["cells"] == [9, 2] and d["config"]["target"] == ["max", "x2"]
    with pytest.raises(AttributeError):
        req.features = (1,)  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, message", [
    ({"features": ()}, "no feature to steer"),
    ({"features": ["x"]}, "features must be integers"),
    ({"features": (2, 2)}, "feature listed twice in [2, 2]"),
    ({"features": (1, 2, 3), "config": SteerConfig(target=("max", "off"))}, "2 targets for 3 features"),
    ({"features": (1,), "config": {"target": "max"}}, "config must be a SteerConfig"),
])
def test_bad_requests_raise(kwargs, message):
    with pytest.raises(InputError) as err:
        SteerRequest(**{"cells": "all", **kwargs})
    assert message in err.value.message


def test_from_form_builds_the_selection_target_and_label():
    req = SteerRequest.from_form(features=[3, "5"], cell_mode="types", cell_types=["a", "b"], target_kind="factor",
                                 factor=2.5, error_term=False, test="nb-glm")
    assert (req.features, req.cells, req.cells_label) == ((3, 5), "cell_type=a,b", "cell_type=a,b")
    assert (req.config.target, req.config.error_term, req.config.test, req.config.save_expression) == \
        ("x2.5", False, "nb-glm", False)
    req = SteerRequest.from_form(features=[1], cell_mode="lasso", lasso=[7, 3, 3], target_kind="percentile",
                                 percentile=90, error_term=None, test=None)
    assert (req.cells, req.cells_label, req.config.target, req.config.error_term, req.config.test) == \
        ((3, 7), "lasso: 2 cells", "p90", True, "paired-log")
    req = SteerRequest.from_form(features=[1], cell_mode="explorer", carried=[9, 4], target_kind="mean",
                                 mean_type="B cell", mean_factor="1.5")
    assert (req.cells, req.cells_label, req.config.target) == ((4, 9), "Explorer selection: 2 cells", "mean:B cellx1.5")
    req = SteerRequest.from_form(features=[1], cell_mode=None, cell_types=["a"], target_kind="value", value="2.5")
    assert (req.cells, req.config.target, req.config.targets[0].value) == ("cell_type=a", "2.5", 2.5)
    req = SteerRequest.from_form(features=[1], cell_mode="all", target_kind=None)
    assert (req.cells, req.cells_label, req.config.target) == ("all", "all", "max")


@pytest.mark.parametrize("form, message", [
    ({"features": []}, "no feature chosen"),
    ({"features": list(range(MAX_FEATURES + 1))}, f"{MAX_FEATURES + 1} features chosen; at most {MAX_FEATURES}"),
    ({"features": ["x"]}, "'x' is not a feature number"),
    ({"cell_types": []}, "no cell type chosen"),
    ({"cell_mode": "lasso"}, "no cells lassoed"),
    ({"cell_mode": "explorer", "carried": None}, "no cells were carried from the Explorer"),
    ({"cell_mode": "sideways"}, "unknown cell selection 'sideways'"),
    ({"target_kind": "factor"}, "no multiple chosen"),
    ({"target_kind": "percentile"}, "no percentile chosen"),
    ({"target_kind": "mean", "mean_factor": 2}, "no cell type chosen for the cell-type mean"),
    ({"target_kind": "mean", "mean_type": "a"}, "no factor of the cell-type mean given"),
    ({"target_kind": "mean", "mean_type": "a", "mean_factor": "-1"}, "must be a positive number"),
    ({"target_kind": "value", "value": ""}, "no activation value given"),
    ({"target_kind": "sideways"}, "unknown target 'sideways'"),
    ({"test": "t-test"}, "unknown test 't-test'"),
])
def test_bad_form_values_say_what_to_fix(form, message):
    with pytest.raises(InputError) as err:
        SteerRequest.from_form(**{"features": [1], "cell_types": ["a"], **form})
    assert message in err.value.message


def test_feature_ids():
    assert feature_ids([1, "2", 3.0]) == [1, 2, 3] and feature_ids(None) == []
    with pytest.raises(InputError, match="is not a feature number"):
        feature_ids([None])


def test_cli_options_become_the_same_request():
    from core.cli.main import build_parser
    from core.cli.steer import request_from_args

    args = build_parser().parse_args(["steer", "an", "--feature", "2,4", "--cells", "cell_type=a",
                                      "--target", "max,off", "--no-error-term", "--max-cells", "0"])
    req = request_from_args(args)
    assert (req.features, req.cells, req.config.target, req.config.error_term, req.config.max_cells) == \
        ((2, 4), "cell_type=a", ("max", "off"), False, None)
    with pytest.raises(InputError, match="--feature must be integer ids"):
        request_from_args(build_parser().parse_args(["steer", "an", "--feature", "a", "--cells", "all"]))


# ----------------------------------------------------------------------------- steer_into_analysis
def test_steer_into_analysis_saves_a_run_that_is_listed(planted):
    sent = []
    req = SteerRequest.from_form(features=[0], cell_mode="types", cell_types=["a"], target_kind="max")
    result = steer_into_analysis(planted, req, progress=lambda d, t, m="": sent.append((d, t, m)))
    assert result.run_id and result.info["cells"] == "cell_type=a" and result.n_cells == 80
    runs = list_steering_runs(planted)  # the caller's analysis knows the run, and so does the folder
    assert result.run_id in set(runs["run_id"]) and result.run_id in set(list_steering_runs(Analysis.open(planted.path))["run_id"])
    row = runs[runs["run_id"] == result.run_id].iloc[0]
    assert row["features"] == "0" and row["n_cells"] == 80
    back = load_steering_run(planted, result.run_id)
    assert back.enrichment_up.iloc[0]["term_id"] == PLANTED_TERM
    assert back.info["cells"] == "cell_type=a"
    assert sent[-1][:2] == (7, 7) and all(t == 7 for _, t, _ in sent)
    assert [d for d, _, _ in sent] == sorted(d for d, _, _ in sent)  # progress only goes forward
    # the same request again: the same run, not a second one
    again = steer_into_analysis(planted, req)
    assert again.run_id == result.run_id and len(list_steering_runs(Analysis.open(planted.path))) == len(runs)


def test_a_lasso_label_is_stored(planted):
    req = SteerRequest.from_form(features=[0], cell_mode="lasso", lasso=[5, 3, 4], target_kind="factor", factor=3)
    result = steer_into_analysis(planted, req)
    assert load_steering_run(planted, result.run_id).info["cells"] == "lasso: 3 cells"


@pytest.mark.parametrize("request_kwargs, message", [
    ({"features": (10_000,), "cells": "all"}, "feature 10000 does not exist"),
    ({"features": (0,), "cells": "cell_type=nope"}, "nope"),
    ({"features": (0,), "cells": (10**9,)}, "out of range"),
])
def test_bad_input_raises_and_writes_nothing(planted, request_kwargs, message):
    before = sorted(p.relative_to(planted.path) for p in planted.path.rglob("*"))
    with pytest.raises(InputError, match=message):
        steer_into_analysis(planted, SteerRequest(**request_kwargs))
    assert sorted(p.relative_to(planted.path) for p in planted.path.rglob("*")) == before


def test_a_cancelled_run_writes_nothing(planted):
    before = sorted(p.relative_to(planted.path) for p in planted.path.rglob("*"))
    with pytest.raises(Cancelled):
        steer_into_analysis(planted, SteerRequest(features=(1,), cells="all"), should_stop=lambda: True)
    assert sorted(p.relative_to(planted.path) for p in planted.path.rglob("*")) == before
