"""The built-in model: it learns planted structure, is seeded, saves/loads, refuses bad data; the CLI."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from core.cli.main import main
from core.base.errors import InputError
from core.model import FittedModel, ModelConfig, fit_anndata, fit_expression_model, load_model, save_model
from core.base.progress import Cancelled

FAST = dict(hidden=32, max_epochs=40, min_epochs=5, kl_warmup=5, patience=5, batch_size=64, lr=5e-3)


def planted_counts(n_cells=300, n_genes=60, *, n_types=3, seed=0, batch_shift=False):
    """NB counts whose composition depends on a planted cell type; library sizes vary 4-fold."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n_cells)
    programs = rng.normal(0, 1.2, size=(n_types, n_genes))
    logits = programs[types] + rng.normal(0, 0.1, size=(n_cells, n_genes))
    batch = rng.integers(0, 2, n_cells)
    if batch_shift:
        logits[:, :5] += 1.5 * batch[:, None]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    lib = rng.uniform(500, 2000, n_cells)
    mu = p * lib[:, None]
    theta = 5.0
    X = rng.poisson(rng.gamma(theta, mu / theta)).astype(np.float32)
    return sp.csr_matrix(X), types, batch.astype(str)


def planted_adata(**kwargs):
    import anndata as ad

    X, types, batch = planted_counts(**kwargs)
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"t{t}" for t in types]), "batch": batch},
                       index=[f"c{i}" for i in range(X.shape[0])])
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(X.shape[1])]))


@pytest.fixture(scope="module")
def fitted() -> FittedModel:
    X, _, _ = planted_counts()
    return fit_expression_model(X, config=ModelConfig(latent=4, **FAST), gene_names=[f"G{j}" for j in range(60)])


def test_model_learns_planted_structure(fitted):
    m = fitted.metrics
    # held-out cells: the model beats the per-gene-mean NB and Poisson baselines, clearly
    assert m["heldout_nb_loglik_per_cell"] > m["baseline_nb_loglik_per_cell"] + 10
    assert m["baseline_nb_loglik_per_cell"] > m["baseline_poisson_loglik_per_cell"]
    assert m["reconstruction_pearson_log1p"] > m["baseline_pearson_log1p"]
    assert fitted.embedding.shape == (300, 4) and fitted.embedding.dtype == np.float32
    assert np.isfinite(fitted.embedding).all()
    assert fitted.history[-1]["epoch"] == m["epochs_run"]


def test_embedding_separates_planted_types(fitted):
    _, types, _ = planted_counts()
    z = fitted.embedding
    centroids = np.stack([z[types == t].mean(0) for t in range(3)])
    nearest = np.argmin(((z[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == types).mean() > 0.9


def test_same_seed_identical_weights_other_seed_differs():
    X, _, _ = planted_counts(n_cells=120, n_genes=20)
    cfg = dict(latent=3, hidden=16, max_epochs=3, min_epochs=1, kl_warmup=1, batch_size=32)
    a = fit_expression_model(X, config=ModelConfig(seed=5, **cfg))
    b = fit_expression_model(X, config=ModelConfig(seed=5, **cfg))
    c = fit_expression_model(X, config=ModelConfig(seed=6, **cfg))
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert np.array_equal(a.embedding, b.embedding)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_global_torch_rng_untouched_and_threads_restored():
    X, _, _ = planted_counts(n_cells=60, n_genes=10)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit_expression_model(X, config=ModelConfig(latent=2, hidden=8, max_epochs=1, min_epochs=0, kl_warmup=0))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_save_load_round_trip(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m.featurelens-model")
    assert {p.name for p in path.iterdir()} == {"model.pt", "model.json"}
    loaded = load_model(path)
    assert loaded.gene_names == fitted.gene_names and loaded.config == fitted.config
    s1, s2 = fitted.model.state_dict(), loaded.model.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    with pytest.raises(InputError, match="already exists"):
        save_model(fitted, path)
    save_model(fitted, path, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_load_refuses_mismatched_or_pickled_weights(fitted, tmp_path):
    path = save_model(fitted, tmp_path / "m")
    state = {k: v for k, v in fitted.model.state_dict().items() if not k.startswith("decoder.out")}
    torch.save(state, path / "model.pt")
    with pytest.raises(InputError, match="does not match"):
        load_model(path)
    torch.save({"obj": Cancelled("pickled")}, path / "model.pt")  # an arbitrary pickled object
    with pytest.raises(InputError, match="could not be read safely"):
        load_model(path)
    with pytest.raises(InputError, match="not a FeatureLens model folder"):
        load_model(tmp_path)


def test_non_integer_counts_refused_with_gaussian_offer():
    X, _, _ = planted_counts(n_cells=40, n_genes=10)
    with pytest.raises(InputError) as exc:
        fit_expression_model(X.toarray() * 0.5 + 0.1, config=ModelConfig(max_epochs=1))
    assert "non-integer" in str(exc.value) and "--likelihood gaussian" in str(exc.value)
    neg = X.toarray()
    neg[3, 2] = -1
    with pytest.raises(InputError, match="negative"):
        fit_expression_model(neg, config=ModelConfig(max_epochs=1))
    with pytest.raises(InputError, match="at least"):
        fit_expression_model(X[:5], config=ModelConfig(max_epochs=1))


def test_gaussian_likelihood_on_normalised_data():
    X, _, _ = planted_counts(n_cells=200, n_genes=30)
    norm = np.log1p(X.toarray() / X.sum(1).A * 1e4)
    fm = fit_expression_model(norm, config=ModelConfig(latent=3, likelihood="gaussian", **FAST))
    m = fm.metrics
    assert m["heldout_gaussian_loglik_per_cell"] > m["baseline_gaussian_loglik_per_cell"]
    assert m["reconstruction_pearson"] > 0.5


def test_batch_covariate_and_cancel():
    adata = planted_adata(n_cells=150, n_genes=20, batch_shift=True)
    fm = fit_anndata(adata, config=ModelConfig(latent=3, **{**FAST, "max_epochs": 4}), batch_key="batch")
    assert fm.covariate == {"key": "batch", "categories": ["0", "1"]}
    assert adata.obsm["X_featurelens"].shape == (150, 3)
    cov = fm.covariates_for(adata.obs["batch"])
    assert cov.shape == (150, 2) and (cov.sum(1) == 1).all()
    with pytest.raises(InputError, match="unknown to the model"):
        fm.covariates_for(["2"])
    with pytest.raises(InputError, match="not found in .obs"):
        fit_anndata(adata, batch_key="nope")
    calls = []
    with pytest.raises(Cancelled):
        fit_expression_model(adata.X, config=ModelConfig(max_epochs=5), should_stop=lambda: calls.append(1) or True)


def test_cli_fit_model_writes_embedding_and_model(tmp_path, capsys):
    import anndata as ad

    path = tmp_path / "planted.h5ad"
    planted_adata(n_cells=150, n_genes=25).write_h5ad(path)
    args = ["fit-model", str(path), "--latent", "3", "--epochs", "6", "--hidden", "16", "--seed", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "held-out NB log-likelihood per cell" in out and "reconstruction Pearson" in out
    back = ad.read_h5ad(path)
    assert back.obsm["X_featurelens"].shape == (150, 3)
    model_dir = tmp_path / "planted.featurelens-model"
    assert (model_dir / "model.pt").is_file() and (model_dir / "model.json").is_file()
    meta = __import__("json").loads((model_dir / "model.json").read_text())
    assert meta["gene_names"][:2] == ["G0", "G1"] and "heldout_nb_loglik_per_cell" in meta["metrics"]
    # a second run refuses to overwrite, and leaves everything as it was
    before = path.read_bytes()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_cli_bad_input_writes_nothing(tmp_path, capsys):
    import anndata as ad

    adata = planted_adata(n_cells=60, n_genes=10)
    adata.X = adata.X * 0.5
    path = tmp_path / "norm.h5ad"
    adata.write_h5ad(path)
    before = path.read_bytes()
    assert main(["fit-model", str(path), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "non-integer" in err and "--likelihood gaussian" in err and "Traceback" not in err
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["norm.h5ad"]
    out_h5ad = tmp_path / "with_emb.h5ad"
    assert main(["fit-model", str(path), "--epochs", "2", "--likelihood", "gaussian", "--latent", "2",
                 "--output-h5ad", str(out_h5ad)]) == 0
    assert ad.read_h5ad(out_h5ad).obsm["X_featurelens"].shape == (60, 2)
    assert path.read_bytes() == before
