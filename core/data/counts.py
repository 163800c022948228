"""Counts read from an .h5ad in chunks, never whole: library sizes and an on-disk CSC copy.

The annotation's DE reads genes column by column and steering needs each cell's library size;
neither needs all counts in memory at once. Here the counts matrix (``.X`` or a layer; CSR, CSC
or dense in the file) is read in chunks of at most ``chunk_bytes`` straight from HDF5:

- :func:`library_sizes`: per-cell totals over the chosen columns;
- :func:`count_rows`: the counts of a few chosen cells (e.g. held-out cells for a likelihood);
- :func:`write_csc`: a compressed-sparse-column copy as three ``.npy`` files (two passes over the
  file: non-zeros per gene, then placement), which :func:`load_csc` memory-maps. Column slices of
  it touch only those genes' pages, so memory stays bounded by the chunk size and the page cache;
- :func:`write_csr_of_csc`: a compressed-sparse-row copy of that copy, which :func:`load_csr`
  memory-maps: a few cells' rows (the Explorer card's DE) touch only their pages, where row
  indexing of the CSC copy reads every stored value.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import scipy.sparse as sp
from numba import njit

from core.base.errors import InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress, Cancelled

__all__ = ["counts_location", "library_sizes", "cell_qc", "count_rows", "write_csc", "load_csc", "write_csr_of_csc", "load_csr", "CSC_FILES",
           "CSR_FILES"]

CHUNK_BYTES = 64 * 2**20
CSC_FILES = ("counts_data.npy", "counts_indices.npy", "counts_indptr.npy")
CSR_FILES = ("rows_data.npy", "rows_indices.npy", "rows_indptr.npy")


def counts_location(h5, layer: str | None) -> str:
    """Where the counts are in an open .h5ad (``h5py.File``): ``layers/<layer>``, else
    ``layers/counts`` if present, else ``X`` (the rule of :func:`core.model.api.counts_of`)."""
    layers = h5.get("layers")
    if layer is not None:
        if layers is None or layer not in layers:
            raise InputError(f"layer {layer!r} not found",
                             fix=f"available layers: {', '.join(layers.keys()) if layers else 'none (use .X)'}")
        return f"layers/{layer}"
    if layers is not None and "counts" in layers:
        return "layers/counts"
    if "X" not in h5:
        raise InputError("the AnnData has no .X", fix="put the counts in .X or name a layer with --counts-layer")
    return "X"


class _Matrix:
    """One counts matrix in an open .h5ad: its shape, encoding and chunked readers."""

    def __init__(self, node):
        import h5py

        self.node = node
        if isinstance(node, h5py.Dataset):
            self.encoding, self.shape = "dense", tuple(int(s) for s in node.shape)
        else:
            enc = node.attrs.get("encoding-type", "")
            enc = enc.decode() if isinstance(enc, bytes) else str(enc)
            if enc not in ("csr_matrix", "csc_matrix"):
                raise InputError(f"the counts are stored as {enc or 'an unknown encoding'!r}, not a matrix",
                                 fix="re-save the AnnData with anndata")
            self.encoding = enc[:3]
            self.shape = tuple(int(s) for s in node.attrs["shape"])
            self.indptr = node["indptr"][...].astype(np.int64)

    def chunks(self, *, chunk_bytes: int) -> Iterator[tuple[int, int, sp.spmatrix]]:
        """``(start, stop, block)`` along the stored major axis: row blocks (CSR, dense; cells ×
        genes, CSR) or column blocks (CSC; cells × genes, CSC)."""
        n_major = self.shape[1] if self.encoding == "csc" else self.shape[0]
        if self.encoding == "dense":
            step = max(1, chunk_bytes // max(1, 8 * self.shape[1]))
            for i in range(0, n_major, step):
                j = min(n_major, i + step)
                yield i, j, sp.csr_matrix(np.asarray(self.node[i:j]))
            return
        data, indices = self.node["data"], self.node["indices"]
        i = 0
        while i < n_major:
            # as many rows/columns as fit in chunk_bytes (at least one)
            limit = self.indptr[i] + max(1, chunk_bytes // 12)
            j = int(np.searchsorted(self.indptr, limit, side="right")) - 1
            j = min(n_major, max(j, i + 1))
            a, b = self.indptr[i], self.indptr[j]
            ptr = self.indptr[i:j + 1] - a
            vals, idx = np.asarray(data[a:b]), np.asarray(indices[a:b]).astype(np.int64)
            if self.encoding == "csr":
                block = sp.csr_matrix((vals, idx, ptr), shape=(j - i, self.shape[1]))
            else:
                block = sp.csc_matrix((vals, idx, ptr), shape=(self.shape[0], j - i))
            yield i, j, block
            i = j


@contextlib.contextmanager
def _open(path: str | os.PathLike, layer: str | None) -> Iterator[_Matrix]:
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{Path(path).name} could not be opened as HDF5: {exc}") from None
    with h5:
        yield _Matrix(h5[counts_location(h5, layer)])


def _columns(columns, n_genes: int) -> np.ndarray | None:
    if columns is None:
        return None
    cols = np.asarray(columns)
    cols = np.flatnonzero(cols) if cols.dtype == bool else cols.astype(np.int64)
    return None if cols.size == n_genes and np.array_equal(cols, np.arange(n_genes)) else cols


def library_sizes(path: str | os.PathLike, *, layer: str | None = None, columns=None,
                  chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Per-cell total counts over ``columns`` (bool mask or indices; None: all), float64 (n_cells,)."""
    with _open(path, layer) as m:
        cols = _columns(columns, m.shape[1])
        out = np.zeros(m.shape[0], dtype=np.float64)
        for i, j, block in m.chunks(chunk_bytes=chunk_bytes):
            if m.encoding == "csc":
                sub = block if cols is None else block[:, np.intersect1d(cols, np.arange(i, j)) - i]
                out += np.bincount(sub.indices, weights=sub.data.astype(np.float64), minlength=m.shape[0])
            else:
                sub = block if cols is None else block[:, cols]
                out[i:j] = np.asarray(sub.sum(axis=1), dtype=np.float64).ravel()
        return out


def cell_qc(path: str | os.PathLike, *, layer: str | None = None, mito=None,
            chunk_bytes: int = CHUNK_BYTES) -> dict[str, np.ndarray]:
    """Per-cell quality-control covariates in one pass over the counts, float64 (n_cells,) each:
    ``library_size`` (total counts), ``detected_genes`` (genes with a count > 0) and, when ``mito``
    (bool mask over genes) marks any gene, ``pct_mito`` (100 × their counts / the total)."""
    with _open(path, layer) as m:
        n, g = m.shape
        mito = None if mito is None else np.asarray(mito, dtype=bool)
        if mito is not None and mito.shape != (g,):
            raise InputError(f"the mitochondrial-gene mask has {mito.size} entries for {g} genes")
        has_mito = mito is not None and bool(mito.any())
        total, detected, mt = np.zeros(n), np.zeros(n), np.zeros(n)
        for i, j, block in m.chunks(chunk_bytes=chunk_bytes):
            block.eliminate_zeros()
            vals = block.data.astype(np.float64)
            if m.encoding == "csc":
                rows = block.indices
                total += np.bincount(rows, weights=vals, minlength=n)
                detected += np.bincount(rows, minlength=n)
                if has_mito:
                    cols = np.repeat(np.arange(i, j), np.diff(block.indptr))
                    keep = mito[cols]
                    mt += np.bincount(rows[keep], weights=vals[keep], minlength=n)
            else:
                total[i:j] = np.asarray(block.sum(axis=1)).ravel()
                detected[i:j] = np.diff(block.indptr)
                if has_mito:
                    mt[i:j] = np.asarray(block[:, mito].sum(axis=1)).ravel()
    out = {"library_size": total, "detected_genes": detected}
    if has_mito:
        out["pct_mito"] = 100 * mt / np.maximum(total, 1e-12)
    return out


def count_rows(path: str | os.PathLike, rows, *, layer: str | None = None, columns=None,
               chunk_bytes: int = CHUNK_BYTES) -> sp.csr_matrix:
    """Counts of cells ``rows`` (sorted unique indices) over ``columns``, float32 CSR (len(rows), n_columns).

    CSR and dense files are read row by row (runs of consecutive rows at once); a CSC file is
    read in column chunks, keeping the chosen rows."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0):
        raise InputError("count_rows needs sorted, unique, non-negative cell indices")
    with _open(path, layer) as m:
        if rows.size and rows[-1] >= m.shape[0]:
            raise InputError(f"cell index {int(rows[-1])} out of range for {m.shape[0]} cells")
        cols = _columns(columns, m.shape[1])
        if m.encoding == "dense":
            out = sp.csr_matrix(np.asarray(m.node[rows] if rows.size else np.zeros((0, m.shape[1]))))
        elif m.encoding == "csr":
            breaks = np.flatnonzero(np.diff(rows) != 1) + 1
            parts = []
            for run in np.split(rows, breaks) if rows.size else []:
                a, b = m.indptr[run[0]], m.indptr[run[-1] + 1]
                ptr = m.indptr[run[0]:run[-1] + 2] - a
                parts.append(sp.csr_matrix((np.asarray(m.node["data"][a:b]),
                                            np.asarray(m.node["indices"][a:b]).astype(np.int64), ptr),
                                           shape=(run.size, m.shape[1])))
            out = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, m.shape[1]))
        else:
            parts = [block[rows] for _, _, block in m.chunks(chunk_bytes=chunk_bytes)]
            out = sp.hstack(parts, format="csr") if parts else sp.csr_matrix((rows.size, 0))
        out = out if cols is None else out[:, cols]
        return sp.csr_matrix(out, dtype=np.float32)


def write_csc(path: str | os.PathLike, target: str | os.PathLike, *, layer: str | None = None, columns=None,
              chunk_bytes: int = CHUNK_BYTES, progress: Progress = no_progress,
              should_stop: ShouldStop = never_stop) -> tuple[int, int]:
    """Write the counts (cells × ``columns``) as CSC ``.npy`` files (:data:`CSC_FILES`, float32
    values, int32/int64 indices) into the folder ``target``; returns the shape. Two passes over
    the file, each in chunks of ``chunk_bytes``: non-zeros per gene, then each chunk's values
    placed at their genes' cursors (written pages are handed back to the page cache after each
    chunk). :class:`~core.base.progress.Cancelled` when ``should_stop()`` turns True."""
    target = Path(target)
    with _open(path, layer) as m:
        cols = _columns(columns, m.shape[1])
        n_cells = m.shape[0]
        n_genes = m.shape[1] if cols is None else cols.size
        remap = np.arange(m.shape[1]) if cols is None else np.full(m.shape[1], -1, dtype=np.int64)
        if cols is not None:
            remap[cols] = np.arange(cols.size)
        major = m.shape[1] if m.encoding == "csc" else m.shape[0]

        def blocks(stage: str, lo: float) -> Iterator[tuple[int, np.ndarray, sp.csc_matrix]]:
            """(row offset, output gene of each column, the block as CSC with sorted rows)."""
            for i, j, block in m.chunks(chunk_bytes=chunk_bytes):
                if should_stop():
                    raise Cancelled("cancelled while copying the counts")
                if m.encoding == "csc":
                    keep = np.flatnonzero(remap[i:j] >= 0)
                    sub, genes, offset = block[:, keep].tocsc(), remap[i + keep], 0
                else:
                    sub = (block if cols is None else block[:, cols]).tocsc()
                    genes, offset = np.arange(n_genes), i
                sub.eliminate_zeros()
                sub.sort_indices()
                yield offset, genes, sub
                progress(lo + 0.5 * j / max(1, major), 1, stage)

        per_gene = np.zeros(n_genes, dtype=np.int64)
        for _, genes, sub in blocks("counting non-zeros per gene", 0.0):
            per_gene[genes] += np.diff(sub.indptr)
        indptr = np.concatenate([[0], np.cumsum(per_gene)])
        nnz = int(indptr[-1])
        itype = np.int32 if max(nnz, n_cells) < 2**31 - 1 else np.int64
        data = np.lib.format.open_memmap(target / CSC_FILES[0], mode="w+", dtype=np.float32, shape=(nnz,))
        indices = np.lib.format.open_memmap(target / CSC_FILES[1], mode="w+", dtype=itype, shape=(nnz,))
        cursor = indptr[:-1].copy()
        span = max(1, chunk_bytes // 8)  # values written between two releases of the mapped pages
        for offset, genes, sub in blocks("copying the counts by gene", 0.5):
            if genes.size:
                _place(sub, genes, offset, indptr=indptr, cursor=cursor, data=data, indices=indices, span=span)
        del data, indices
        np.save(target / CSC_FILES[2], indptr.astype(itype))
        return n_cells, n_genes


def _place(sub: sp.csc_matrix, genes: np.ndarray, offset: int, *, indptr: np.ndarray, cursor: np.ndarray,
           data: np.memmap, indices: np.memmap, span: int) -> None:
    """Copy one chunk (CSC, column k = output gene ``genes[k]``, rows from ``offset``) to its genes'
    ``cursor`` positions in the mapped ``data``/``indices``, and advance the cursors.

    Windows of genes whose segments in the output lie within ``span`` values of each other are
    written between two releases, so the pages touched stay bounded (one chunk reaches every gene)."""
    window = (indptr[genes] - indptr[genes[0]]) // span
    cuts = np.flatnonzero(np.diff(window)) + 1
    for k0, k1 in zip([0, *cuts], [*cuts, genes.size]):
        a, b = sub.indptr[k0], sub.indptr[k1]
        counts = np.diff(sub.indptr[k0:k1 + 1])
        # the k-th value of gene g's column in this chunk goes to cursor[g] + k
        pos = np.arange(a, b, dtype=np.int64) + np.repeat(cursor[genes[k0:k1]] - sub.indptr[k0:k1], counts)
        data[pos] = sub.data[a:b]
        indices[pos] = sub.indices[a:b] + offset
        cursor[genes[k0:k1]] += counts
        _release(data, indices)


def _release(*maps: np.memmap) -> None:
    """Write the maps' dirty pages and drop them from this process (they stay in the file)."""
    import mmap

    for mm in maps:
        mm.flush()
        raw = getattr(mm, "_mmap", None)
        if raw is not None and hasattr(mmap, "MADV_DONTNEED"):
            raw.madvise(mmap.MADV_DONTNEED)


def load_csc(folder: str | os.PathLike, shape: tuple[int, int]) -> sp.csc_matrix:
    """The CSC copy of :func:`write_csc`, memory-mapped read-only (no copy of the arrays)."""
    folder = Path(folder)
    data, indices, indptr = (np.load(folder / name, mmap_mode="r") for name in CSC_FILES)
    return sp.csc_matrix((data, indices, indptr), shape=tuple(shape), copy=False)



def write_csr_of_csc(matrix: sp.csc_matrix, target: str | os.PathLike) -> None:
    """Write the CSR form of a (memory-mapped) CSC ``matrix`` (n, G) as :data:`CSR_FILES` in the folder
    ``target``, for fast row access (a few cells' counts: the Explorer card's DE). Two passes over the
    stored values (non-zeros per row, then placement in gene order, so each row's genes are sorted);
    the output is written through memory maps, never held in memory."""
    target = Path(target)
    indptr, indices, values = np.asarray(matrix.indptr), np.asarray(matrix.indices), np.asarray(matrix.data)
    n_rows = matrix.shape[0]
    per_row = np.zeros(n_rows, dtype=np.int64)
    step = 1 << 24
    for a in range(0, int(indptr[-1]), step):
        per_row += np.bincount(indices[a:a + step], minlength=n_rows)
    row_ptr = np.concatenate([[0], np.cumsum(per_row)])
    nnz = int(row_ptr[-1])
    itype = np.int32 if max(nnz, matrix.shape[1]) < 2**31 - 1 else np.int64
    data = np.lib.format.open_memmap(target / CSR_FILES[0], mode="w+", dtype=np.float32, shape=(nnz,))
    cols = np.lib.format.open_memmap(target / CSR_FILES[1], mode="w+", dtype=itype, shape=(nnz,))
    _place_by_row(indptr, indices, values, row_ptr[:-1].copy(), data, cols)
    _release(data, cols)
    del data, cols
    np.save(target / CSR_FILES[2], row_ptr.astype(itype))


@njit(cache=True)
def _place_by_row(indptr, indices, values, cursor, data, cols):
    for j in range(indptr.size - 1):
        for e in range(indptr[j], indptr[j + 1]):
            r = indices[e]
            c = cursor[r]
            data[c] = values[e]
            cols[c] = j
            cursor[r] = c + 1


def load_csr(folder: str | os.PathLike, shape: tuple[int, int]) -> sp.csr_matrix:
    """The CSR copy of :func:`write_csr_of_csc`, memory-mapped read-only (no copy of the arrays)."""
    folder = Path(folder)
    data, indices, indptr = (np.load(folder / name, mmap_mode="r") for name in CSR_FILES)
    return sp.csr_matrix((data, indices, indptr), shape=tuple(shape), copy=False)
