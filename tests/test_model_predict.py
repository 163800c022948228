"""Predicted expression: cached in the analysis by content hash, nothing written on failure; blocks."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from core.store.analysis import Analysis
from core.base.errors import InputError
from core.model import BuiltinDecoder, FittedModel, ModelConfig, NoDecoder, load_decoder
from core.model.predict import (PREDICTED_FILE, PREDICTED_STEP, cached_predicted_expression, expression_source,
                                iter_blocks, predicted_expression)
from core.model.vae import ExpressionModel

pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*:DeprecationWarning")

GENES = [f"G{j}" for j in range(25)]


def builtin(seed: int = 0) -> BuiltinDecoder:
    torch.manual_seed(seed)
    cfg = ModelConfig(latent=4, hidden=8)
    return BuiltinDecoder(FittedModel(model=ExpressionModel(25, 0, cfg).eval(), config=cfg, gene_names=list(GENES)))


@pytest.fixture
def analysis(tmp_path):
    return Analysis.create(tmp_path / "a", dataset={"path": "x.h5ad", "sha256": "0"})


@pytest.fixture
def inputs(rng):
    return rng.normal(size=(90, 4)).astype(np.float32), rng.uniform(100, 900, size=90)


def test_cached_once_then_reused(analysis, inputs):
    z, lib = inputs
    dec = builtin()
    first = cached_predicted_expression(analysis, dec, z, lib, chunk_size=16)
    assert first.dtype == np.float32 and first.shape == (90, 25)
    np.testing.assert_allclose(np.asarray(first), predicted_expression(dec, z, lib), rtol=1e-6)
    rec = Analysis.open(analysis.path).config["steps"][PREDICTED_STEP]
    assert rec["files"] == [PREDICTED_FILE] and rec["inputs"]["decoder"] == dec.fingerprint()
    mtime = analysis.file(PREDICTED_FILE).stat().st_mtime_ns
    calls = []
    again = cached_predicted_expression(analysis, dec, z, lib, progress=lambda *a: calls.append(a))
    assert calls == [] and analysis.file(PREDICTED_FILE).stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))
    # a different decoder or embedding invalidates it
    other = cached_predicted_expression(analysis, builtin(seed=1), z, lib)
    assert not np.allclose(np.asarray(other), np.asarray(first))
    cached_predicted_expression(analysis, builtin(seed=1), z + 1, lib)
    assert analysis.config["steps"][PREDICTED_STEP]["inputs"]["embedding"] != rec["inputs"]["embedding"]


class NaNLate(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = torch.softmax(torch.cat([z] * 5 + [z[:, :1]] * 5, dim=1), dim=1)
        return torch.where(z[:, 1:2] > 50.0, torch.full_like(out, float("nan")), out)


def test_nan_output_leaves_the_analysis_untouched(analysis, inputs, tmp_path):
    z, lib = inputs
    path = tmp_path / "nan.pt"
    torch.jit.save(torch.jit.script(NaNLate()), str(path))
    dec = load_decoder(path, n_latent=4, gene_names=GENES)
    good = cached_predicted_expression(analysis, builtin(), z, lib)
    before = np.asarray(good).copy()
    bad_z = z.copy()
    bad_z[70, 1] = 99.0
    with pytest.raises(InputError, match="NaN/Inf"):
        cached_predicted_expression(analysis, dec, bad_z, lib, chunk_size=10)
    reopened = Analysis.open(analysis.path)
    assert reopened.config["steps"][PREDICTED_STEP]["inputs"]["decoder"] == builtin().fingerprint()
    np.testing.assert_array_equal(np.load(analysis.file(PREDICTED_FILE)), before)
    assert not [p for p in analysis.path.iterdir() if p.name.startswith(".staging")]


@pytest.mark.parametrize("kind", ["dense", "memmap", "sparse"])
@pytest.mark.parametrize("rows", [None, "subset"])
def test_blocks_reassemble_the_matrix(kind, rows, rng, tmp_path):
    m = rng.poisson(0.7, size=(53, 37)).astype(np.float32)
    if kind == "memmap":
        np.save(tmp_path / "m.npy", m)
        mat = np.load(tmp_path / "m.npy", mmap_mode="r")
    else:
        mat = sp.csr_matrix(m) if kind == "sparse" else m
    sel = None if rows is None else np.sort(rng.choice(53, 20, replace=False))
    expected = m if sel is None else m[sel]
    out = np.full(expected.shape, -1.0, dtype=np.float32)
    gene_order = []
    for b in iter_blocks(mat, rows=sel, cell_chunk=8, gene_chunk=10):
        assert b.values.dtype == np.float32 and b.values.shape[0] <= 8 and b.values.shape[1] <= 10
        out[b.cells, b.genes] = b.values
        gene_order.append(b.genes.start)
    np.testing.assert_array_equal(out, expected)
    assert gene_order == sorted(gene_order)  # gene chunks are the outer loop


def test_expression_source_predicted_or_observed(inputs, rng):
    z, lib = inputs
    counts = sp.csr_matrix(rng.poisson(1.0, size=(90, 25)).astype(np.float32))
    pred = expression_source(decoder=builtin(), gene_names=GENES, counts=counts, latent=z, library_size=lib)
    assert pred.kind == "predicted" and pred.shape == (90, 25)
    obs = expression_source(decoder=NoDecoder(), gene_names=GENES, counts=counts, latent=z)
    assert obs.kind == "observed" and obs.matrix is counts
    blocks = list(obs.blocks(rows=np.array([3, 5]), gene_chunk=25))
    np.testing.assert_array_equal(blocks[0].values, counts[[3, 5]].toarray())
    with pytest.raises(InputError, match="no decoder and the data has no expression"):
        expression_source(decoder=NoDecoder(), gene_names=GENES, counts=None)


def test_analysis_finds_the_fitted_model_and_caches_its_prediction(tmp_path):
    from core.data.load import load_dataset
    from core.annotate.expression import resolve_expression
    from core.model import decode_all, fit_h5ad, library_size
    from core.model.predict import analysis_decoder
    from test_model_fit import FAST, planted_adata

    path = tmp_path / "p.h5ad"
    planted_adata(n_cells=80, n_genes=15).write_h5ad(path)
    report = fit_h5ad(path, config=ModelConfig(latent=3, **{**FAST, "max_epochs": 3}))
    ds = load_dataset(path, embedding="X_featurelens")
    a = Analysis.create(tmp_path / "an", dataset=ds.source)
    dec = analysis_decoder(a)
    assert isinstance(dec, BuiltinDecoder) and dec.fingerprint() == BuiltinDecoder(report.fitted).fingerprint()
    src = resolve_expression(a)
    assert "predicted" in src.label and src.matrix.shape == (80, 15) and list(src.gene_names[:2]) == ["G0", "G1"]
    expected = decode_all(dec, ds.embedding, library_size(ds.adata.X))
    np.testing.assert_allclose(np.asarray(src.matrix), expected, rtol=1e-6)
    assert resolve_expression(a).key == src.key  # second call: cached
    b = Analysis.create(tmp_path / "other", dataset=load_dataset(path).source)
    assert analysis_decoder(b) is None  # the analysis uses no embedding the model wrote
    c = Analysis.create(tmp_path / "none", dataset=ds.source, settings={"decoder": "none"})
    assert analysis_decoder(c) is None and "observed" in resolve_expression(c).label
