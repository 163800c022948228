"""Training into an analysis: files, characterisation, caching, seed robustness with locality counts."""
from __future__ import annotations

from helpers import gen_adata

from core.analysis import Analysis
from core.cli import main
from core.data import load_dataset
from core.sae import TrainConfig, VanillaConfig
from core.training import train_into_analysis


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
    stamp = a.config["steps"]["sae"]["completed"]
    assert train_into_analysis(a, ds.embedding, seeds=[0, 1], **kw) == a.read_json("metrics.json")
    assert a.config["steps"]["sae"]["completed"] == stamp


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
