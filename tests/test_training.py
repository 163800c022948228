"""Training into an analysis: files, characterisation, caching, seed robustness with locality counts."""
from __future__ import annotations

from helpers import gen_adata

from core.store.analysis import Analysis
from core.cli.main import main
from core.data.load import load_dataset
from core.sae import TrainConfig, VanillaConfig
from core.sae.pipeline import train_into_analysis


def test_train_into_analysis(tmp_path, rng):
    path = tmp_path / "d.h5ad"
    gen_adata(n_cells=300, rng=rng).write_h5ad(path)
    ds = load_dataset(path, embedding="X_emb")
    a = Analysis.create(tmp_path / "an", dataset=ds.source)
    kw = dict(sae_config=VanillaConfig(expansion=4), train_config=TrainConfig(epochs=5, seed=0),
              data_ref=ds.source, cell_types=ds.cell_types)
    m = train_into_analysis(a, ds.embedding, seeds=[0, 1], **kw)
    feats = a.read_parquet("features.parquet")
    assert len(feats) == 20 and {"locality", "top_cell_type", "mean[type_0]", "live", "frequency"} <= set(feats)
    s = m["summary"]
    assert s["local"] + s["regional"] + s["global"] == s["live"] == int(feats["live"].sum())
    assert s["regional"] == int((feats["locality"] == "regional").sum())
    assert s["max_regional_types"] == 2  # gen_adata has ≤ 8 cell types: max(2, ceil(n / 4))
    first = m["robustness"]["per_seed"][0]
    assert (first["n_local"], first["n_regional"], first["n_global"]) == (s["local"], s["regional"], s["global"])
    assert s["fidelity"] is None                      # no expression model behind X_emb: no decoder
    assert s["validation"]["n_cells"] == m["val_cells"] and 0 < s["explained_variance"] <= 1
    assert "max_decoder_cosine" in feats
    stamp = a.config["steps"]["sae"]["completed"]
    assert train_into_analysis(a, ds.embedding, seeds=[0, 1], **kw) == a.read_json("metrics.json")
    assert a.config["steps"]["sae"]["completed"] == stamp


def test_train_on_the_built_in_model_measures_expression_fidelity(tmp_path, capsys):
    import numpy as np

    from core.model import ModelConfig, fit_h5ad
    from test_model_fit import FAST, planted_adata

    path = tmp_path / "p.h5ad"
    planted_adata(n_cells=400, n_genes=40).write_h5ad(path)
    fit_h5ad(path, config=ModelConfig(latent=4, **FAST))
    ds = load_dataset(path, embedding="X_featurelens", cell_type="cell_type")
    a = Analysis.create(tmp_path / "an", dataset=ds.source)
    m = train_into_analysis(a, ds.embedding, sae_config=VanillaConfig(expansion=4),
                            train_config=TrainConfig(epochs=30, seed=0), data_ref=ds.source, cell_types=ds.cell_types)
    fid = m["summary"]["fidelity"]
    assert fid["decoder"] == "builtin" and fid["n_cells"] == m["val_cells"] == 40
    assert fid["loglik_original"] > fid["loglik_mean"] and np.isfinite(fid["loglik_reconstruction"])
    assert 0.5 < fid["fidelity"] <= 1.05
    assert a.read_json("metrics.json")["summary"]["fidelity"] == fid
    from core.cli.train import print_summary

    print_summary(m)
    out = capsys.readouterr().out
    assert "quality:" in out and "expression fidelity" in out


def test_cli_train_then_annotate_bad_genes(tmp_path, rng, capsys):
    path = tmp_path / "d.h5ad"
    gen_adata(n_cells=300, rng=rng).write_h5ad(path)
    assert main(["train", str(path), "--embedding", "X_emb", "--out", str(tmp_path / "an"), "--expansion", "4",
                 "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "local " in out and " / regional " in out and "regional = 2 types" in out
    # synthetic gene names match no concept: a clear message naming the identifier type, exit 2
    assert main(["annotate", str(tmp_path / "an"), "--expression", "observed"]) == 2
    err = capsys.readouterr().err
    assert "none of the 40 genes matches a concept" in err and "symbol" in err
