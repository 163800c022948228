"""External embeddings: .obsm keys, files aligned to the cells by name, clear errors on mismatch."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core.base.errors import InputError
from core.model import attach_embedding, get_embedding, list_embeddings
from helpers import gen_adata


@pytest.fixture
def adata(rng):
    return gen_adata(n_cells=30, n_genes=8, rng=rng)


def test_get_and_list_embeddings(adata):
    assert list_embeddings(adata) == ["X_emb"]
    emb = get_embedding(adata, "X_emb")
    assert emb.dtype == np.float32 and emb.shape == (30, 5)
    with pytest.raises(InputError, match="not found") as exc:
        get_embedding(adata, "X_scvi")
    assert "X_emb" in str(exc.value)
    adata.obsm["X_bad"] = np.full((30, 2), np.nan)
    with pytest.raises(InputError, match="NaN"):
        get_embedding(adata, "X_bad")


def test_csv_rows_are_reordered_by_cell_name(adata, rng, tmp_path):
    emb = rng.normal(size=(30, 3))
    order = rng.permutation(30)
    pd.DataFrame(emb[order], index=adata.obs_names[order]).to_csv(tmp_path / "e.csv")
    out = attach_embedding(adata, tmp_path / "e.csv", key="X_ext")
    np.testing.assert_allclose(out, emb.astype(np.float32))
    assert adata.obsm["X_ext"] is out
    with pytest.raises(InputError, match="already exists"):
        attach_embedding(adata, tmp_path / "e.csv", key="X_ext")
    attach_embedding(adata, tmp_path / "e.csv", key="X_ext", overwrite=True)


def test_pt_dict_and_npy_with_names(adata, rng, tmp_path):
    emb = rng.normal(size=(30, 4)).astype(np.float32)
    rev = list(adata.obs_names[::-1])
    torch.save({"embedding": torch.from_numpy(emb[::-1].copy()), "cell_names": rev}, tmp_path / "e.pt")
    np.testing.assert_allclose(attach_embedding(adata, tmp_path / "e.pt", key="X_pt"), emb)
    np.save(tmp_path / "e.npy", emb[::-1])
    (tmp_path / "cells.txt").write_text("\n".join(rev) + "\n")
    np.testing.assert_allclose(attach_embedding(adata, tmp_path / "e.npy", key="X_npy",
                                                cell_names=tmp_path / "cells.txt"), emb)
    np.save(tmp_path / "plain.npy", emb)  # no names: same order and count required
    np.testing.assert_allclose(attach_embedding(adata, tmp_path / "plain.npy", key="X_plain"), emb)


def test_alignment_errors_name_an_example(adata, rng, tmp_path):
    emb = rng.normal(size=(30, 2))
    names = list(adata.obs_names)
    pd.DataFrame(emb[:29], index=names[:29]).to_csv(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="1 of 30 cells .* have no row .*'cell_29'"):
        attach_embedding(adata, tmp_path / "missing.csv", key="X")
    pd.DataFrame(np.vstack([emb, emb[:1]]), index=names + ["stranger"]).to_csv(tmp_path / "extra.csv")
    with pytest.raises(InputError, match="1 cells in extra.csv are not in the AnnData .*'stranger'"):
        attach_embedding(adata, tmp_path / "extra.csv", key="X")
    pd.DataFrame(emb, index=names[:29] + [names[0]]).to_csv(tmp_path / "dup.csv")
    with pytest.raises(InputError, match="duplicated cell names"):
        attach_embedding(adata, tmp_path / "dup.csv", key="X")
    np.save(tmp_path / "short.npy", emb[:20])
    with pytest.raises(InputError, match="20 rows but the AnnData has 30 cells"):
        attach_embedding(adata, tmp_path / "short.npy", key="X")
    with pytest.raises(InputError, match="3 cell names for 30 rows"):
        attach_embedding(adata, _npy(tmp_path, emb), key="X", cell_names=["a", "b", "c"])
    torch.save({"w": torch.zeros(3)}, tmp_path / "state.pt")
    with pytest.raises(InputError, match="not a tensor"):
        attach_embedding(adata, tmp_path / "state.pt", key="X")
    assert "X" not in adata.obsm


def _npy(tmp_path, emb):
    np.save(tmp_path / "full.npy", emb)
    return tmp_path / "full.npy"
