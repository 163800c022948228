"""Feature characterisation: checked against per-feature loops with numpy and planted profiles."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from core.sae.characterise import (
    Z_CRIT,
    cell_type_stats,
    characterise,
    default_max_regional_types,
    find_trajectory_features,
    locality_counts,
)
from core.base.errors import InputError


def _planted(rng, n_per=80):
    types = np.repeat(["HSC", "MEP", "EryP", "Ery", "Mono", "B"], n_per)
    n = types.size
    A = np.zeros((n, 6))
    A[types == "Mono", 0] = rng.gamma(5, 1, n_per)               # local to Mono
    A[:, 1] = rng.gamma(2, 1, n)                                 # global, everywhere
    A[np.isin(types, ["Mono", "B"]), 2] = rng.gamma(5, 1, 2 * n_per)  # two types → regional
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


def test_local_regional_global_dead(rng):
    A, types = _planted(rng)
    df = characterise(A, types)
    assert df.attrs["max_regional_types"] == 2  # 6 types: max(2, ceil(6 / 4))
    assert df.loc[0, "locality"] == "local" and df.loc[0, "top_cell_type"] == "Mono"
    assert df.loc[0, "significant_types"] == "Mono"
    assert df.loc[1, "locality"] == "global"
    assert df.loc[2, "locality"] == "regional" and set(df.loc[2, "significant_types"].split("|")) == {"Mono", "B"}
    assert df.loc[4, "locality"] == "dead" and df.loc[4, "top_cell_type"] == ""
    np.testing.assert_allclose(df["mean[Mono]"], A.toarray()[types == "Mono"].mean(0))
    paper = characterise(A, types, max_regional_types=1)  # the paper's two-way split
    assert paper.loc[2, "locality"] == "global" and "regional" not in set(paper["locality"])


N_TYPES, N_PER = 12, 40
#: feature → number of cell types it is planted in (high, with noise; 0 elsewhere)
PLANTED_M = {0: 1, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 6, 7: 11}


def _by_construction(rng):
    """12 types × 40 cells; features 0–7 high in exactly ``PLANTED_M[f]`` types (so significant in
    exactly those), 8: high in all 12 types (significant in none), 9: uniform noise everywhere
    (significant in none), 10 and 11: dead."""
    types = np.repeat([f"t{i:02d}" for i in range(N_TYPES)], N_PER)
    A = np.zeros((types.size, 12))
    for f, m in PLANTED_M.items():
        chosen = rng.choice(N_TYPES, size=m, replace=False)
        on = np.isin(types, [f"t{i:02d}" for i in chosen])
        A[on, f] = 10 + rng.uniform(0, 1, on.sum())
    A[:, 8] = 10 + rng.uniform(0, 1, types.size)
    A[:, 9] = rng.uniform(0, 1, types.size)
    return sp.csr_matrix(A), types


def test_locality_counts_known_by_construction(rng):
    A, types = _by_construction(rng)
    assert default_max_regional_types(N_TYPES) == 3
    df = characterise(A, types)                                    # k = 3
    assert df["n_significant_types"].tolist() == [1, 1, 2, 3, 3, 4, 6, 11, 0, 0, 0, 0]
    assert df["locality"].tolist() == ["local", "local", "regional", "regional", "regional",  # m = k: regional
                                       "global", "global", "global",                           # m = k + 1, …
                                       "global", "global", "dead", "dead"]                     # m = 0 but live
    assert locality_counts(df["locality"]) == {"local": 2, "regional": 3, "global": 5}
    k4 = characterise(A, types, max_regional_types=4)              # now m = 4 is the boundary
    assert locality_counts(k4["locality"]) == {"local": 2, "regional": 4, "global": 4}
    assert k4.loc[5, "locality"] == "regional" and k4.loc[6, "locality"] == "global"
    k2 = characterise(A, types, max_regional_types=2)
    assert locality_counts(k2["locality"]) == {"local": 2, "regional": 1, "global": 7}
    k1 = characterise(A, types, max_regional_types=1)              # local / global only
    assert locality_counts(k1["locality"]) == {"local": 2, "regional": 0, "global": 8}
    assert set(k1.index[k1["locality"] == "dead"]) == {10, 11}
    big = characterise(A, types, max_regional_types=N_TYPES)       # every multi-type feature is regional
    assert locality_counts(big["locality"]) == {"local": 2, "regional": 6, "global": 2}


def test_locality_matches_a_per_feature_loop(rng):
    """Random sparse activations: locality equals a loop over features and types with numpy."""
    types = rng.choice([f"c{i}" for i in range(9)], size=600)
    D = rng.gamma(1.0, 1.0, (600, 40)) * (rng.random((600, 40)) < 0.3)
    for j in range(40):  # cell-type structure of varying breadth: boosted in 1–6 random types
        D[np.isin(types, rng.choice(np.unique(types), size=j % 6 + 1, replace=False)), j] *= 4
    D[:, 39] = 0
    for k in (None, 1, 2, 5):
        df = characterise(D, types, max_regional_types=k)
        kk = k if k is not None else 3  # ceil(9 / 4)
        for j in range(40):
            m = 0
            for t in np.unique(types):
                x, y = D[types == t, j], D[types != t, j]
                se = x.std(ddof=1) / np.sqrt(len(x)) + y.std(ddof=1) / np.sqrt(len(y))
                m += bool(x.mean() - y.mean() > Z_CRIT * se)
            want = "dead" if not D[:, j].any() else "local" if m == 1 else "regional" if 2 <= m <= kk else "global"
            assert df.loc[j, "locality"] == want, (k, j, m)
            assert df.loc[j, "n_significant_types"] == m
        if k is None:  # the data exercise every branch
            assert set(df["locality"]) == {"local", "regional", "global", "dead"}


def test_default_k_and_bad_k(rng):
    assert [default_max_regional_types(n) for n in (1, 2, 8, 9, 12, 14, 22, 40)] == [2, 2, 2, 3, 3, 4, 6, 10]
    A, types = _planted(rng)
    for bad in (0, -1, 2.5, "3", True):
        with pytest.raises(InputError, match="max_regional_types"):
            characterise(A, types, max_regional_types=bad)


def test_old_tables_count_without_regional():
    assert locality_counts(pd.Series(["local", "global", "dead", "global"])) == {"local": 1, "regional": 0,
                                                                               "global": 2}


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
