"""Second modality: found where multiome files keep it; the high-vs-low z-test equals a naive loop."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from core.base.errors import InputError
from core.model import compare_modality, expression_columns, find_modalities, get_modality, peak_comparison
from core.model.multiomics import high_low_cells
from helpers import gen_adata


def planted(rng, n_cells=400, n_features=12, n_peaks=40):
    """Sparse activations; feature 0's high cells have closed chromatin on the first 10 peaks."""
    acts = rng.exponential(1.0, size=(n_cells, n_features)) * (rng.random((n_cells, n_features)) < 0.3)
    if n_features > 6:
        acts[:, 5] = 0.0  # a dead feature
        acts[:7, 6] = 2.0  # ties at the top
    atac = (rng.random((n_cells, n_peaks)) < 0.4).astype(np.float64)
    top = acts[:, 0] > np.percentile(acts[:, 0], 99)
    atac[np.ix_(top, np.arange(10))] = 0.0
    return sp.csr_matrix(acts), sp.csr_matrix(atac)


def naive(acts: np.ndarray, atac: np.ndarray, f: int, *, n_low=1000, seed=0, ddof=1):
    col = acts[:, f]
    thr = np.percentile(col, 99)
    high = np.where(col > thr)[0]
    zero = np.where(col == 0)[0]
    if len(zero) > n_low:
        zero = np.sort(np.random.default_rng([seed, f]).choice(zero, n_low, replace=False))
    score = atac.mean(axis=1)

    def stats(x):
        if len(x) == 0:
            return np.nan, np.nan
        return x.mean(), (x.std(ddof=ddof) / np.sqrt(len(x)) if len(x) > ddof else np.nan)

    mh, sh = stats(score[high])
    ml, sl = stats(score[zero])
    up = down = 0
    for p in range(atac.shape[1]):
        pmh, psh = stats(atac[high, p])
        pml, psl = stats(atac[zero, p])
        d = pmh - pml
        if d > 1.96 * (psh + psl):
            up += 1
        elif -d > 1.96 * (psh + psl):
            down += 1
    return dict(n_high=len(high), n_low=len(zero), threshold=thr, mean_high=mh, mean_low=ml, se_high=sh, se_low=sl,
                peaks_up=up, peaks_down=down)


@pytest.mark.parametrize("n_low", [1000, 50])
def test_vectorised_equals_naive_loop(rng, n_low):
    acts, atac = planted(rng)
    df = compare_modality(acts, atac, n_low=n_low, seed=3, max_block_bytes=8 * 6 * 40 * 5)  # blocks of 5 features
    assert list(df.index) == list(range(12)) and df.index.name == "feature"
    A, M = acts.toarray(), atac.toarray()
    for f in range(12):
        ref = naive(A, M, f, n_low=n_low, seed=3)
        row = df.loc[f]
        assert row["atac_n_high"] == ref["n_high"] and row["atac_n_low"] == ref["n_low"]
        for key in ("threshold", "mean_high", "mean_low", "se_high", "se_low"):
            np.testing.assert_allclose(row[f"atac_{key}"], ref[key], rtol=1e-9, atol=1e-12, equal_nan=True)
        assert row["atac_n_peaks_higher"] == ref["peaks_up"] and row["atac_n_peaks_lower"] == ref["peaks_down"]
        if ref["n_high"] > 1:
            z = (ref["mean_high"] - ref["mean_low"]) / (ref["se_high"] + ref["se_low"])
            np.testing.assert_allclose(row["atac_z"], z, rtol=1e-9)
            expected = "higher" if z > 1.96 else "lower" if z < -1.96 else "ns"
            assert row["atac_direction"] == expected
    # the planted feature: closed chromatin in high cells, overall and on the planted peaks
    assert df.loc[0, "atac_direction"] == "lower" and df.loc[0, "atac_n_peaks_lower"] >= 8
    assert df.loc[5, "atac_n_high"] == 0 and np.isnan(df.loc[5, "atac_z"]) and df.loc[5, "atac_direction"] == "ns"


def test_low_sample_is_seeded_and_independent_of_the_feature_set(rng):
    acts, _ = planted(rng, n_cells=3000, n_features=4)
    _, _, lows_all = high_low_cells(acts, n_low=100, seed=7)
    _, _, lows_one = high_low_cells(acts, [2], n_low=100, seed=7)
    np.testing.assert_array_equal(lows_all[2], lows_one[0])
    _, _, lows_other = high_low_cells(acts, [2], n_low=100, seed=8)
    assert not np.array_equal(lows_one[0], lows_other[0])
    assert len(lows_one[0]) == 100 and (acts[:, 2].toarray().ravel()[lows_one[0]] == 0).all()


def test_dense_inputs_and_peak_table(rng):
    acts, atac = planted(rng)
    a = compare_modality(acts, atac, features=[0, 3])
    b = compare_modality(acts.toarray(), atac.toarray(), features=[0, 3], prefix="atac")
    pd.testing.assert_frame_equal(a, b)
    peaks = peak_comparison(acts, atac, 0)
    assert len(peaks) == 40 and peaks.index.name == "peak"
    assert (peaks.loc[[f"peak_{i}" for i in range(10)], "direction"] == "lower").all()
    assert (peaks["z"].abs().diff().dropna() <= 0).all()  # sorted by |z|
    with pytest.raises(InputError, match="same cells"):
        compare_modality(acts[:10], atac)


def test_modalities_found_in_obsm_var_and_uns(rng):
    adata = gen_adata(n_cells=20, n_genes=6, rng=rng)
    assert find_modalities(adata) == {}
    with pytest.raises(InputError, match="no second modality"):
        get_modality(adata)
    adata.obsm["X_atac"] = sp.csr_matrix((rng.random((20, 9)) < 0.5).astype(np.float32))
    adata.uns["X_atac_names"] = np.array([f"chr1:{i}" for i in range(9)])
    mod = get_modality(adata)
    assert mod.spec == "obsm:X_atac" and mod.n_features == 9 and mod.feature_names[0] == "chr1:0"
    adata.var["feature_types"] = ["Gene Expression"] * 4 + ["Peaks"] * 2
    assert expression_columns(adata).tolist() == [True] * 4 + [False] * 2
    found = find_modalities(adata)
    assert found["atac"] == "obsm:X_atac" and found["peaks"] == "var:feature_types=Peaks"
    peaks = get_modality(adata, "var:feature_types=Peaks")
    assert peaks.matrix.shape == (20, 2) and peaks.feature_names == ["GENE4", "GENE5"]
    adata.uns["featurelens_modalities"] = {"chromatin": "obsm:X_atac"}
    assert next(iter(find_modalities(adata))) == "chromatin"
    with pytest.raises(InputError, match="unknown modality spec"):
        get_modality(adata, "frob:x")
