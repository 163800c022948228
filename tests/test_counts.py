"""Counts streamed from an .h5ad: library sizes and the on-disk CSC copy equal the in-memory
matrix for every storage (CSR, CSC, dense, a layer), column subset and chunk size."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from core.data.counts import library_sizes, load_csc, load_csr, write_csc, write_csr_of_csc
from core.base.errors import InputError
from core.base.progress import Cancelled


def _counts(rng, n=157, g=41):
    x = rng.poisson(0.4, size=(n, g)).astype(np.float32)
    x[:, 5] = 0  # an all-zero gene
    x[7] = 0     # an all-zero cell
    return x


def _write(path, x, *, storage: str, layer: str | None = None):
    mat = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": np.asarray}[storage](x)
    a = ad.AnnData(X=np.zeros_like(x) if layer else mat,
                   obs=pd.DataFrame(index=[f"c{i}" for i in range(x.shape[0])]),
                   var=pd.DataFrame(index=[f"g{j}" for j in range(x.shape[1])]))
    if layer:
        a.layers[layer] = mat
    a.write_h5ad(path)
    return path


@pytest.mark.parametrize("storage", ["csr", "csc", "dense"])
@pytest.mark.parametrize("chunk_bytes", [64, 10**6])  # tiny: one row/column per chunk; large: one chunk
@pytest.mark.parametrize("subset", [False, True])
def test_stream_equals_memory(tmp_path, rng, storage, chunk_bytes, subset):
    x = _counts(rng)
    path = _write(tmp_path / "d.h5ad", x, storage=storage)
    cols = np.flatnonzero(rng.random(x.shape[1]) < 0.6) if subset else None
    want = x if cols is None else x[:, cols]
    np.testing.assert_allclose(library_sizes(path, columns=cols, chunk_bytes=chunk_bytes), want.sum(1), rtol=1e-12)
    out = tmp_path / "csc"
    out.mkdir()
    shape = write_csc(path, out, columns=cols, chunk_bytes=chunk_bytes)
    m = load_csc(out, shape)
    assert shape == want.shape and m.format == "csc" and not m.data.flags.writeable  # the read-only map, not a copy
    assert m.has_sorted_indices and m.nnz == np.count_nonzero(want)
    np.testing.assert_array_equal(m.toarray(), want)
    np.testing.assert_array_equal(m[:, 3:9].toarray(), want[:, 3:9])
    rows_dir = tmp_path / "csr"
    rows_dir.mkdir()
    write_csr_of_csc(m, rows_dir)  # the by-cell copy the Explorer's cards read
    r = load_csr(rows_dir, shape)
    assert r.format == "csr" and not r.data.flags.writeable and r.has_sorted_indices and r.nnz == m.nnz
    np.testing.assert_array_equal(r.toarray(), want)
    pick = rng.permutation(want.shape[0])[:20]
    np.testing.assert_array_equal(r[pick].toarray(), want[pick])


def test_layer_rule_and_errors(tmp_path, rng):
    x = _counts(rng)
    path = _write(tmp_path / "d.h5ad", x, storage="csr", layer="counts")
    np.testing.assert_allclose(library_sizes(path), x.sum(1))  # layers['counts'] before .X
    np.testing.assert_allclose(library_sizes(path, layer="counts"), x.sum(1))
    with pytest.raises(InputError, match="layer 'raw' not found"):
        library_sizes(path, layer="raw")
    with pytest.raises(Cancelled):
        write_csc(path, tmp_path, should_stop=lambda: True)


def test_memory_stays_bounded_by_the_chunk(tmp_path):
    """An 80 MB counts matrix copied in 2 MiB chunks: the Python heap never holds a quarter of it."""
    import tracemalloc

    rng = np.random.default_rng(1)
    n, g = 20_000, 2_000
    x = sp.random(n, g, density=0.25, format="csr", random_state=rng, dtype=np.float32)
    x.data = np.ceil(x.data * 10)
    path = tmp_path / "big.h5ad"
    ad.AnnData(X=x).write_h5ad(path)
    out = tmp_path / "csc"
    out.mkdir()
    tracemalloc.start()
    write_csc(path, out, chunk_bytes=2**21)
    lib = library_sizes(path, chunk_bytes=2**21)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    nbytes = x.data.nbytes + x.indices.nbytes
    assert peak < nbytes / 4, (peak, nbytes)
    np.testing.assert_allclose(lib, np.asarray(x.sum(1)).ravel(), rtol=1e-6)
    m = load_csc(out, (n, g))
    np.testing.assert_array_equal(m[:, 100:110].toarray(), x[:, 100:110].toarray())
