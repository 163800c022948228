"""scvi-tools models as the expression model, with a real SCVI trained here on the shipped PBMC data.

The session fixture trains ``scvi.model.SCVI`` (n_latent 10, n_hidden 64, 4 epochs) on
``data/pbmc68k_reduced.h5ad`` (700 cells × 765 genes of integer UMI counts in ``.X``, see
data/README.md), with a planted two-level ``batch`` column so the batch covariate path is used.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

scvi = pytest.importorskip("scvi", reason="scvi-tools is the optional extra featurelens[scvi] (make test installs it)")

import anndata as ad  # noqa: E402
import torch  # noqa: E402

from core.base.errors import InputError  # noqa: E402
from core.cli.main import main  # noqa: E402
from core.data.datasets import shipped  # noqa: E402
from core.model.decoders import decode_all  # noqa: E402
from core.model.scvi import SCVIDecoder, is_scvi_model_dir, load_scvi_model, prepare_scvi_dataset  # noqa: E402

pytestmark = pytest.mark.slow
TIMES: dict[str, float] = {}


def pbmc_with_batch(path: Path) -> Path:
    """The shipped PBMC file with an ``obs['batch']`` of two seeded random halves, written to ``path``."""
    adata = ad.read_h5ad(shipped("pbmc68k").path)
    rng = np.random.default_rng(0)
    adata.obs["batch"] = np.where(rng.random(adata.n_obs) < 0.5, "a", "b")
    adata.obs["batch"] = adata.obs["batch"].astype("category")
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="session")
def scvi_model(tmp_path_factory) -> tuple[Path, Path]:
    """``(pbmc .h5ad without X_scVI, saved SCVI folder)``; the model trained once per session."""
    base = tmp_path_factory.mktemp("scvi")
    data = pbmc_with_batch(base / "pbmc.h5ad")
    adata = ad.read_h5ad(data)
    t0 = time.perf_counter()
    scvi.settings.seed = 0
    scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
    model = scvi.model.SCVI(adata, n_latent=10, n_hidden=64)
    model.train(max_epochs=4, accelerator="cpu", batch_size=128, enable_progress_bar=False)
    model.save(str(base / "scvi_model"))
    TIMES["scvi_train_s"] = time.perf_counter() - t0
    print(f"\nSCVI trained in {TIMES['scvi_train_s']:.1f} s (4 epochs, 700 cells)")
    return data, base / "scvi_model"


@pytest.fixture(scope="session")
def scvi_decoder(scvi_model):
    data, model_dir = scvi_model
    return SCVIDecoder.load(model_dir, ad.read_h5ad(data))


def _posterior_mean(self, sample_shape=torch.Size()):
    return self.loc.expand(self._extended_shape(sample_shape))


def scvi_expression(model, library_size):
    """scvi-tools' own ``get_normalized_expression`` with the posterior sample replaced by its mean
    (``z = qz.loc``), i.e. the decoding of ``get_latent_representation()``."""
    with mock.patch.object(torch.distributions.Normal, "sample", _posterior_mean), \
            mock.patch.object(torch.distributions.Normal, "rsample", _posterior_mean):
        return model.get_normalized_expression(library_size=library_size, return_numpy=True)


def test_decoding_the_models_latent_equals_scvi_tools(scvi_decoder):
    dec, model = scvi_decoder, scvi_decoder.model
    z, cov = dec.latent(), dec.cell_covariates()
    np.testing.assert_allclose(z, model.get_latent_representation(), rtol=0, atol=0)
    assert cov.shape == (700, 2) and set(cov.sum(1)) == {1.0}
    lib = np.asarray(model.adata.X.sum(axis=1), dtype=np.float64).ravel()
    ours = decode_all(dec, z, lib, cov)
    # library_size="latent": px_rate = px_scale × the cell's observed library (use_observed_lib_size)
    np.testing.assert_allclose(ours, scvi_expression(model, "latent"), rtol=1e-5, atol=1e-6)
    ours_1e4 = decode_all(dec, z, np.full(z.shape[0], 1e4), cov)
    np.testing.assert_allclose(ours_1e4, scvi_expression(model, 1e4), rtol=1e-5, atol=1e-5)
    # the batch matters: decoding every cell as batch "a" changes the output
    as_a = decode_all(dec, z, lib, np.tile([1.0, 0.0], (z.shape[0], 1)).astype(np.float32))
    assert not np.allclose(as_a, ours, rtol=1e-3)


def test_linear_scvi_without_batches(tmp_path):
    """LinearSCVI (LDVAE): one batch, so no covariates; its composition × 10⁴ equals scvi-tools'
    ``get_normalized_expression(library_size=1e4)``. (LDVAE's default library is a latent variable;
    FeatureLens multiplies by the observed library, as for SCVI.)"""
    adata = ad.read_h5ad(shipped("pbmc68k").path)
    scvi.settings.seed = 0
    scvi.model.LinearSCVI.setup_anndata(adata)
    model = scvi.model.LinearSCVI(adata, n_latent=10, n_hidden=64)
    model.train(max_epochs=3, accelerator="cpu", batch_size=128, enable_progress_bar=False)
    model.save(str(tmp_path / "ldvae"))
    dec = SCVIDecoder.load(tmp_path / "ldvae", ad.read_h5ad(shipped("pbmc68k").path))
    assert dec.describe()["model"] == "LinearSCVI" and dec.n_covariates == 0 and dec.cell_covariates() is None
    z = dec.latent()
    ours = decode_all(dec, z, np.full(z.shape[0], 1e4), None)
    np.testing.assert_allclose(ours, scvi_expression(dec.model, 1e4), rtol=1e-5, atol=1e-5)
    assert dec.dispersion().shape == (765,)


def test_dispersion_and_description(scvi_decoder):
    dec = scvi_decoder
    theta = dec.dispersion()
    np.testing.assert_allclose(theta, np.exp(dec.model.module.px_r.detach().numpy().astype(np.float64)), rtol=1e-12)
    d = dec.describe()
    assert d["kind"] == "scvi" and d["model"] == "SCVI" and d["n_latent"] == 10 and d["n_batch"] == 2
    assert dec.batch_categories == ["a", "b"]
    assert dec.fingerprint() == SCVIDecoder(dec.model).fingerprint()


def test_genes_in_another_order_are_matched(scvi_model, scvi_decoder):
    data, model_dir = scvi_model
    adata = ad.read_h5ad(data)
    perm = np.random.default_rng(1).permutation(adata.n_vars)
    shuffled = adata[:, perm].copy()
    dec = SCVIDecoder.load(model_dir, shuffled).match_genes(shuffled.var_names)
    z, cov = dec.latent(), dec.cell_covariates()
    out = decode_all(dec, z, None, cov)
    ref = decode_all(scvi_decoder, scvi_decoder.latent(), None, scvi_decoder.cell_covariates())
    np.testing.assert_allclose(out, ref[:, perm], rtol=1e-5, atol=1e-7)


def test_bad_inputs_are_input_errors(scvi_model, tmp_path, monkeypatch):
    data, model_dir = scvi_model
    adata = ad.read_h5ad(data)
    with pytest.raises(InputError, match="does not exist"):
        load_scvi_model(tmp_path / "nowhere", adata)
    (tmp_path / "file.pt").write_bytes(b"x")
    with pytest.raises(InputError, match="not a folder"):
        load_scvi_model(tmp_path / "file.pt", adata)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model.pt"):
        load_scvi_model(tmp_path / "empty", adata)
    (tmp_path / "junk").mkdir()
    torch.save({"weights": torch.zeros(2)}, tmp_path / "junk" / "model.pt")
    assert is_scvi_model_dir(tmp_path / "junk")
    with pytest.raises(InputError, match="not a saved scvi-tools model"):
        load_scvi_model(tmp_path / "junk", adata)
    with pytest.raises(InputError, match="trained on 765 genes, the data has 700"):
        load_scvi_model(model_dir, adata[:, :700].copy())
    no_batch = adata.copy()
    del no_batch.obs["batch"]
    with pytest.raises(InputError, match="batch column"):
        load_scvi_model(model_dir, no_batch)
    wrong = tmp_path / "wrong.h5ad"
    with_pca = adata.copy()
    with_pca.obsm["X_scVI"] = np.zeros((adata.n_obs, 3), np.float32)
    with_pca.write_h5ad(wrong)
    with pytest.raises(InputError, match="latent is 10-dimensional"):
        prepare_scvi_dataset(wrong, model_dir)
    with pytest.raises(InputError, match=r"needs its AnnData \(.h5ad\)"):
        prepare_scvi_dataset(tmp_path / "file.pt", model_dir)
    monkeypatch.setitem(sys.modules, "scvi", None)  # as if scvi-tools were not installed
    with pytest.raises(InputError, match="needs the scvi-tools package") as exc:
        load_scvi_model(model_dir, adata)
    assert "featurelens[scvi]" in exc.value.fix


def test_cli_refuses_bad_scvi_models_with_exit_2(scvi_model, tmp_path, capsys):
    data, model_dir = scvi_model
    out = tmp_path / "a"
    assert main(["train", str(data), "--scvi-model", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    small = tmp_path / "small.h5ad"
    ad.read_h5ad(data)[:, :700].copy().write_h5ad(small)
    assert main(["train", str(small), "--scvi-model", str(model_dir), "--out", str(out)]) == 2
    assert "765 genes" in capsys.readouterr().err
    assert not out.exists()


def test_train_annotate_steer_end_to_end_through_the_cli(scvi_model, tmp_path, capsys):
    """A real SCVI drives train → annotate → steer (NB GLM with the model's dispersions) via the CLI."""
    src, model_dir = scvi_model
    data = tmp_path / "pbmc.h5ad"
    shutil.copyfile(src, data)
    analysis = tmp_path / "analysis"
    t0 = time.perf_counter()
    assert main(["train", str(data), "--scvi-model", str(model_dir), "--out", str(analysis), "--hidden", "40",
                 "--epochs", "30", "--cell-type", "bulk_labels"]) == 0
    printed = capsys.readouterr().out
    assert "to .obsm['X_scVI']" in printed
    written = ad.read_h5ad(data)
    assert not [c for c in written.obs.columns if c.startswith("_scvi")] and "_scvi_uuid" not in written.uns
    model = scvi.model.SCVI.load(str(model_dir), adata=ad.read_h5ad(src))
    np.testing.assert_allclose(written.obsm["X_scVI"], model.get_latent_representation(), rtol=1e-6, atol=1e-6)
    assert "expression fidelity" in printed and "not measured" not in printed
    assert main(["annotate", str(analysis), "--concepts", "go-bp", "--n-null", "0"]) == 0
    from core.store.analysis import Analysis

    a = Analysis.open(analysis)
    assert a.config["dataset"]["decoder"] == str(model_dir.resolve())
    pred = np.load(a.file("predicted_expression.npy"))
    dec = SCVIDecoder.load(model_dir, ad.read_h5ad(src))
    lib = np.asarray(written.X.sum(axis=1), dtype=np.float64).ravel()
    np.testing.assert_allclose(pred, decode_all(dec, dec.latent(), lib, dec.cell_covariates()), rtol=1e-5, atol=1e-6)
    features = a.read_parquet("features.parquet")
    feature = int(features.loc[features["live"], "feature"].iloc[0])
    capsys.readouterr()
    assert main(["steer", str(analysis), "--feature", str(feature), "--cells", "bulk_labels=CD14+ Monocyte",
                 "--test", "nb-glm", "--target", "x2", "--concepts", ""]) == 0
    out = capsys.readouterr().out
    assert "steered: feature" in out and "nb-glm" in out
    TIMES["pbmc_end_to_end_s"] = time.perf_counter() - t0
    print(f"\nPBMC scvi-tools → train → annotate → steer: {TIMES['pbmc_end_to_end_s']:.1f} s")
    _export_with_directions(a, feature, tmp_path)


def _export_with_directions(a, feature: int, tmp_path):
    """`export --h5ad` of the scvi analysis: varm['sae_decoder'] matches the decoder's derivative
    (autograd through scvi-tools' generative model) along the feature's SAE decoder column."""
    import scanpy as sc

    from core.steer import steering_context

    out = tmp_path / "with-features.h5ad"
    assert main(["export", str(a.path), "--h5ad", str(out), "--obs-features", str(feature)]) == 0
    adata = ad.read_h5ad(out)
    assert adata.varm["sae_decoder"].shape == (adata.n_vars, 1)
    assert list(adata.uns["featurelens"]["decoder_features"]) == [feature]
    ctx = steering_context(a)
    z = torch.from_numpy(np.asarray(ctx.embedding, np.float32))
    batch = torch.from_numpy(ctx.covariates.argmax(1)).reshape(-1, 1)
    sae = ctx.sae
    direction = (sae.W_dec.detach()[:, feature] * sae.input_scale.detach()).reshape(1, -1).expand_as(z)
    module = ctx.decoder.model.module

    def log2_scale(zz):
        return torch.log2(module.generative(z=zz, library=torch.zeros(zz.shape[0], 1), batch_index=batch)["px"].scale)

    _, jvp = torch.func.jvp(log2_scale, (z,), (direction,))
    expected = jvp.detach().mean(0).numpy().astype(np.float64)
    assert ctx.decoder.gene_names == list(adata.var_names)  # same gene order: no reordering here
    got = adata.varm["sae_decoder"][:, 0]
    # a finite step of 10 % of the largest activation against the derivative at the cells
    assert np.corrcoef(got, expected)[0, 1] > 0.99
    np.testing.assert_allclose(got, expected, atol=0.1 * np.abs(expected).max())
    ax = sc.pl.umap(adata, color=f"featurelens_{feature}", show=False)
    assert len(ax.collections[0].get_array()) == adata.n_obs


def test_annotate_and_steer_take_the_model_for_an_analysis_made_without_it(scvi_model, tmp_path, capsys):
    """An SAE trained on .obsm['X_scVI'] alone has no decoder; `annotate --scvi-model DIR` records the
    model (after checking it fits), and steering then uses it without the option."""
    src, model_dir = scvi_model
    data = tmp_path / "pbmc.h5ad"
    shutil.copyfile(src, data)
    assert prepare_scvi_dataset(data, model_dir)["written"]
    analysis = tmp_path / "b"
    common = ["--epochs", "10", "--cell-type", "bulk_labels"]
    assert main(["train", str(data), "--embedding", "X_scVI", "--out", str(analysis), "--hidden", "30", *common]) == 0
    assert "expression fidelity: no decoder" in capsys.readouterr().out
    assert main(["steer", str(analysis), "--feature", "0", "--cells", "all"]) == 2
    assert "steering needs the model's decoder" in capsys.readouterr().err
    pca = tmp_path / "pca"
    assert main(["train", str(data), "--embedding", "X_pca", "--out", str(pca), "--hidden", "60", *common]) == 0
    assert main(["annotate", str(pca), "--scvi-model", str(model_dir), "--n-null", "0"]) == 2
    assert "10-dimensional latent" in capsys.readouterr().err
    assert not (pca / "decoder.json").exists()
    assert main(["annotate", str(analysis), "--scvi-model", str(tmp_path), "--n-null", "0"]) == 2
    assert "no model.pt" in capsys.readouterr().err
    assert main(["annotate", str(analysis), "--scvi-model", str(model_dir), "--n-null", "0"]) == 0
    assert "decoder: the scvi-tools SCVI" in capsys.readouterr().out
    from core.store.analysis import Analysis

    a = Analysis.open(analysis)
    assert a.read_json("decoder.json")["decoder"] == str(model_dir.resolve())
    assert a.config["steps"]["annotate"] and a.has("predicted_expression.npy")
    assert main(["steer", str(analysis), "--feature", "0", "--cells", "all", "--test", "nb-glm",
                 "--concepts", ""]) == 0
    assert "steered: feature" in capsys.readouterr().out


def test_data_page_offers_and_trains_with_an_scvi_model(scvi_model, tmp_path, monkeypatch):
    """The app end to end: the Data page's decoder choice lists scvi-tools model folders of the data
    folder; training with one records it; the page's annotate and the Steering page's job then run
    on the model's decoder (NB GLM with its dispersions)."""
    from core.store.analysis import Analysis
    from core.views.data import TrainRequest, train_for_source
    from core.views.data_sources import decoder_choices, resolve_decoder, source_options
    from core.views.steering import steerability

    src, model_dir = scvi_model
    data, analyses = tmp_path / "data", tmp_path / "analyses"
    data.mkdir()
    analyses.mkdir()
    monkeypatch.setenv("FEATURELENS_DATA_DIR", str(data))
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(analyses))
    shutil.copyfile(src, data / "pbmc.h5ad")
    shutil.copytree(model_dir, data / "pbmc-scvi")
    prepare_scvi_dataset(data / "pbmc.h5ad", data / "pbmc-scvi")
    choice = {"label": "scvi-tools model · pbmc-scvi", "value": "scvi:pbmc-scvi"}
    assert choice in decoder_choices() and choice in source_options("file:pbmc.h5ad").decoders
    assert resolve_decoder("scvi:pbmc-scvi") == str((data / "pbmc-scvi").resolve())
    overview = train_for_source(TrainRequest(source="file:pbmc.h5ad", analysis="pbmc-scvi", embedding="X_scVI",
                                             cell_type="bulk_labels", decoder="scvi:pbmc-scvi", expansion=3,
                                             epochs=10))
    assert overview["decoder"] == "pbmc-scvi"
    a = Analysis.open(analyses / "pbmc-scvi")
    fidelity = a.read_json("metrics.json")["summary"]["fidelity"]
    assert fidelity["decoder"] == "scvi" and fidelity["n_cells"] > 0
    assert steerability(a) is None
    # … then annotate it as the Data page's Annotate button does, and steer it as the Steering page's job
    from callbacks import steering as steer_cb
    from callbacks.jobs import JobProgress
    from core.annotate.pipeline import AnnotationConfig
    from core.views.data import annotate_named

    annotate_named("pbmc-scvi", config=AnnotationConfig(concepts=("go-bp",), n_null=0))
    a = Analysis.open(analyses / "pbmc-scvi")
    assert a.has("annotations.parquet") and a.has("predicted_expression.npy")
    features = a.read_parquet("features.parquet")
    feature = int(features.loc[features["live"], "feature"].iloc[0])
    alert, shown = steer_cb.run_steering(JobProgress(None), "analysis:pbmc-scvi", [feature], "types",
                                         ["CD14+ Monocyte"], [], "max", None, None, True, "nb-glm")
    assert shown["run_id"] and "genes up" in str(alert)
    from core.steer import load_steering_run

    run = load_steering_run(Analysis.open(analyses / "pbmc-scvi"), shown["run_id"])
    assert run.config.test == "nb-glm" and "scvi" in str(run.info.get("decoder")), run.info.get("decoder")
