"""Feature characterisation: checked against per-feature loops with numpy and planted profiles."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from core.characterise import cell_type_stats, characterise, find_trajectory_features
from core.errors import InputError


def _planted(rng, n_per=80):
    types = np.repeat(["HSC", "MEP", "EryP", "Ery", "Mono", "B"], n_per)
    n = types.size
    A = np.zeros((n, 6))
    A[types == "Mono", 0] = rng.gamma(5, 1, n_per)               # local to Mono
    A[:, 1] = rng.gamma(2, 1, n)                                 # global, everywhere
    A[np.isin(types, ["Mono", "B"]), 2] = rng.gamma(5, 1, 2 * n_per)  # two types → global
    stage = {"HSC": 0.5, "MEP": 1.0, "EryP": 2.0, "Ery": 4.0}
    A[:, 3] = np.array([stage.get(t, 0.0) for t in types]) * rng.uniform(0.9, 1.1, n)  # trajectory
    A[:, 5] = np.where(types == "HSC", 3.0, 0.0) * rng.uniform(0.9, 1.1, n)            # decreasing: not one
    # feature 4: dead
    A[rng.random(A.shape) < 0.3] *= 0  # sparsify
    return sp.csr_matrix(A), types


def test_stats_match_numpy_loop(rng):
    A, types = _planted(rng)
    st = cell_type_stats(A, types)
    D = A.toarray()
    for i, t in enumerate(st.types):
        x, y = D[types == t], D[types != t]
        np.testing.assert_allclose(st.mean[i], x.mean(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(st.se[i], x.std(0, ddof=1) / np.sqrt(len(x)), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(st.mean_rest[i], y.mean(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(st.se_rest[i], y.std(0, ddof=1) / np.sqrt(len(y)), rtol=1e-9, atol=1e-12)


def test_local_global_dead(rng):
    A, types = _planted(rng)
    df = characterise(A, types)
    assert df.loc[0, "locality"] == "local" and df.loc[0, "top_cell_type"] == "Mono"
    assert df.loc[0, "significant_types"] == "Mono"
    assert df.loc[1, "locality"] == "global"
    assert df.loc[2, "locality"] == "global" and set(df.loc[2, "significant_types"].split("|")) == {"Mono", "B"}
    assert df.loc[4, "locality"] == "dead" and df.loc[4, "top_cell_type"] == ""
    np.testing.assert_allclose(df["mean[Mono]"], A.toarray()[types == "Mono"].mean(0))


def test_without_cell_types(rng):
    A, _ = _planted(rng)
    df = characterise(A)
    assert df["locality"].tolist().count("dead") == 1 and "top_cell_type" not in df


def test_trajectory_finder(rng):
    A, types = _planted(rng)
    tr = find_trajectory_features(A, types, ["HSC", "MEP", "EryP", "Ery"])
    assert tr["feature"].tolist()[0] == 3
    assert 5 not in tr["feature"].tolist() and 0 not in tr["feature"].tolist()
    assert tr.loc[0, "mean[Ery]"] > tr.loc[0, "mean[HSC]"]


def test_trajectory_bad_input(rng):
    A, types = _planted(rng)
    with pytest.raises(InputError, match="not in the data"):
        find_trajectory_features(A, types, ["HSC", "Neutrophil"])
    with pytest.raises(InputError, match="at least two"):
        find_trajectory_features(A, types, ["HSC"])


def test_label_count_mismatch(rng):
    A, types = _planted(rng)
    with pytest.raises(InputError, match="cell-type labels"):
        cell_type_stats(A, types[:-1])
    with pytest.raises(InputError, match="no cell-type label"):
        cell_type_stats(A, pd.Categorical(types, categories=["HSC"]))
