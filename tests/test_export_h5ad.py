"""AnnData write-back: `featurelens export ANALYSIS --h5ad OUT.h5ad` and core.store.export.write_h5ad,
read back with anndata and plotted with scanpy. The analysis (shipped PBMC, X_pca, no decoder) is
tests/explore_data.py's; the decoder directions (varm) are tested with a real scvi-tools model in
tests/test_scvi.py."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from core.annotate.reported import reported  # noqa: E402
from core.base.errors import InputError  # noqa: E402
from core.data.load import file_sha256  # noqa: E402
from core.cli.main import main  # noqa: E402
from core.store.analysis import Analysis  # noqa: E402
from core.store.export import top_features, write_h5ad  # noqa: E402
from explore_data import small_analysis_path  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analysis(tmp_path_factory) -> Analysis:
    return Analysis.open(small_analysis_path(tmp_path_factory))


def test_cli_writes_a_copy_that_anndata_and_scanpy_read(analysis, tmp_path, capsys):
    sc = pytest.importorskip("scanpy")
    data = analysis.config["dataset"]["path"]
    before = file_sha256(data)
    out = tmp_path / "pbmc-features.h5ad"
    assert main(["export", str(analysis.path), "--h5ad", str(out), "--obs-features", "3,7", "--top", "2"]) == 0
    assert "featurelens_3" in capsys.readouterr().out
    assert file_sha256(data) == before  # the user's file is only read
    adata = ad.read_h5ad(out)
    acts = analysis.read_npz_sparse("activations.npz").tocsr()
    assert adata.obsm["X_sae"].format == "csr" and adata.obsm["X_sae"].shape == acts.shape
    np.testing.assert_array_equal(adata.obsm["X_sae"].toarray(), acts.toarray())
    feats = analysis.read_parquet("features.parquet")
    ann = reported(analysis.read_parquet("annotations.parquet"))
    chosen = [3, 7, *[f for f in top_features(feats, ann, 2) if f not in (3, 7)]]
    uns = adata.uns["featurelens"]
    assert list(uns["obs_features"]) == chosen
    for f in chosen:
        np.testing.assert_array_equal(adata.obs[f"featurelens_{f}"].to_numpy(), acts[:, f].toarray().ravel())
    assert "sae_decoder" not in adata.varm and "decoder_features" not in uns  # X_pca: no decoder
    assert list(uns["features"]["columns"]) == [str(c) for c in feats.columns]
    np.testing.assert_array_equal(uns["features"]["frequency"], feats["frequency"].to_numpy())
    assert len(uns["annotations"]["term_id"]) == len(ann) > 0
    assert set(uns["annotations"]["term_id"]) == set(ann["term_id"].astype(str))
    assert '"embedding": "X_pca"' in uns["config_json"]
    ax = sc.pl.umap(adata, color="featurelens_3", show=False)
    plotted = np.sort(np.asarray(ax.collections[0].get_array(), dtype=np.float64))
    np.testing.assert_allclose(plotted, np.sort(adata.obs["featurelens_3"].to_numpy(np.float64)), rtol=1e-6)


def test_top_features_rank_by_concepts_then_frequency():
    feats = pd.DataFrame({"feature": [0, 1, 2, 3], "live": [True, True, False, True],
                          "frequency": [0.5, 0.1, 0.9, 0.3]})
    ann = pd.DataFrame({"feature": [1, 1, 3], "term_id": ["a", "b", "c"]})
    assert top_features(feats, ann, 3) == [1, 3, 0]  # 2 is dead
    assert top_features(feats, None, 2) == [0, 3]
    assert top_features(feats, ann, 0) == []


def test_bad_requests_are_input_errors(analysis, tmp_path, capsys):
    out = tmp_path / "x.h5ad"
    with pytest.raises(InputError, match="does not exist"):
        write_h5ad(analysis, out, obs_features=[10_000])
    with pytest.raises(InputError, match="not an .h5ad"):
        write_h5ad(analysis, tmp_path / "x.zarr")
    with pytest.raises(InputError, match="replace the analysis's own data"):
        write_h5ad(analysis, analysis.config["dataset"]["path"])
    out.write_bytes(b"")
    assert main(["export", str(analysis.path), "--h5ad", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(analysis.path), "--h5ad", str(tmp_path / "y.h5ad"), "--obs-features", "a"]) == 2
    assert not (tmp_path / "y.h5ad").exists()
