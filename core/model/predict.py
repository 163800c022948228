"""Predicted expression for annotation (docs/method.md §4 step 2) and blocks for the annotation engine.

Expression source of the annotation: the decoder's output × library size when the model has a
decoder, else the observed counts (as the paper did for Geneformer). Predicted expression is
computed in cell chunks and cached in the analysis as ``predicted_expression.npy`` (float32,
cells × genes), keyed by the decoder's fingerprint and the hashes of the embedding, library
sizes and covariates: a re-run with the same inputs reuses the file (memory-mapped).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd

from core.base.errors import InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress
from core.model.decoders import BuiltinDecoder, decode_into, decode_to_npy, Decoder, load_decoder
from core.store.dataset import decoder_reference, load_analysis_dataset, record_decoder
from core.base import io
from core.base.io import content_hash
from core.data.load import file_sha256
from core.model.embeddings import get_embedding
from core.model.multiomics import expression_columns
from core.model.scvi import DeferredSCVI, is_scvi_model_dir

__all__ = [
    "PREDICTED_STEP", "PREDICTED_FILE", "ExpressionSource", "Block", "predicted_expression",
    "cached_predicted_expression", "expression_source", "iter_blocks", "predicted_inputs",
    "analysis_decoder", "predicted_expression_for_analysis", "set_analysis_decoder",
]

PREDICTED_STEP = "predicted_expression"
PREDICTED_FILE = "predicted_expression.npy"


@dataclass
class Block:
    """One block of an expression matrix: rows ``cells`` (of the selection), columns ``genes``."""

    cells: slice  # positions within the selected rows
    genes: slice
    values: np.ndarray  # float32 (n_cells_in_block, n_genes_in_block), dense


@dataclass
class ExpressionSource:
    """The cells × genes matrix the annotation tests: predicted (decoder) or observed counts."""

    matrix: Any            # (n_cells, n_genes): ndarray, memmap (predicted) or scipy sparse (observed)
    kind: str              # "predicted" | "observed"
    gene_names: pd.Index
    label: str = ""        # for people: "observed counts (.X)" / "predicted by the builtin decoder"
    key: str = ""          # content key for caching ("" in memory: not cached)
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)

    def blocks(self, rows: np.ndarray | None = None, *, cell_chunk: int = 4096, gene_chunk: int = 2048):
        return iter_blocks(self.matrix, rows=rows, cell_chunk=cell_chunk, gene_chunk=gene_chunk)


def predicted_expression(decoder: Decoder, latent, library_size=None, covariates=None, *,
                         out: np.ndarray | None = None, progress: Progress = no_progress,
                         should_stop: ShouldStop = never_stop, **kwargs) -> np.ndarray:
    """Decoder output × library size for every cell, float32 (n_cells, n_genes), filled chunk by chunk."""
    if out is None:
        out = np.empty((np.asarray(latent).shape[0], decoder.n_genes), dtype=np.float32)
    return decode_into(decoder, latent, library_size, covariates, out=out, progress=progress,
                       should_stop=should_stop, **kwargs)


def predicted_inputs(decoder: Decoder, latent, library_size=None, covariates=None) -> dict:
    """The cache key of the predicted-expression step (small JSON of hashes)."""

    return {
        "decoder": decoder.fingerprint(),
        "embedding": content_hash(np.ascontiguousarray(latent, dtype=np.float32)),
        "library_size": None if library_size is None else content_hash(np.asarray(library_size, dtype=np.float64)),
        "covariates": None if covariates is None else content_hash(np.asarray(covariates, dtype=np.float32)),
    }


def cached_predicted_expression(analysis, decoder: Decoder, latent, library_size=None, covariates=None, *,
                                progress: Progress = no_progress, should_stop: ShouldStop = never_stop,
                                **kwargs) -> np.ndarray:
    """Predicted expression from the analysis if its inputs match, else computed and stored; read-only memmap.

    The file is written into the step's staging folder and committed only when every chunk
    decoded without error: a NaN output or a cancel leaves the analysis as it was.
    """
    inputs = predicted_inputs(decoder, latent, library_size, covariates)
    if not analysis.cached(PREDICTED_STEP, inputs=inputs):
        with analysis.step(PREDICTED_STEP, inputs=inputs) as w:
            # stream the .npy straight into the staging folder
            decode_to_npy(decoder, latent, library_size, covariates, target=w.path(PREDICTED_FILE),
                          progress=progress, should_stop=should_stop, **kwargs)
    return np.load(analysis.file(PREDICTED_FILE), mmap_mode="r")


def expression_source(*, decoder: Decoder, gene_names, counts=None, latent=None, library_size=None,
                      covariates=None, analysis=None, progress: Progress = no_progress,
                      should_stop: ShouldStop = never_stop) -> ExpressionSource:
    """What the annotation should test: predicted expression if ``decoder`` can decode, else ``counts``.

    With an ``analysis`` the predicted matrix is cached there; without, it is computed in memory.
    """
    genes = [str(g) for g in gene_names]
    if decoder.available:
        if latent is None:
            raise InputError("predicted expression needs the embedding (latent) of every cell")
        if analysis is not None:
            m = cached_predicted_expression(analysis, decoder, latent, library_size, covariates,
                                            progress=progress, should_stop=should_stop)
        else:
            m = predicted_expression(decoder, latent, library_size, covariates, progress=progress,
                                     should_stop=should_stop)
        return ExpressionSource(m, "predicted", pd.Index(genes), label=f"predicted by the {decoder.kind} decoder",
                                info={"decoder": decoder.describe()})
    if counts is None or counts.shape[1] == 0:
        raise InputError("this model has no decoder and the data has no expression matrix to fall back on",
                         fix="load the .h5ad with the counts, or supply a decoder (see docs/decoders.md)")
    if counts.shape[1] != len(genes):
        raise InputError(f"{counts.shape[1]} expression columns for {len(genes)} gene names")
    return ExpressionSource(counts, "observed", pd.Index(genes), label="observed counts",
                            info={"decoder": {"kind": "none"}})


def iter_blocks(matrix, *, rows: np.ndarray | None = None, cell_chunk: int = 4096,
                gene_chunk: int = 2048) -> Iterator[Block]:
    """Dense float32 blocks of ``matrix[rows]``: for each gene chunk, each cell chunk.

    ``matrix``: ndarray, memmap or scipy sparse (cells × genes); ``rows``: selected cell indices
    (None: all). Gene chunks are the outer loop, so a consumer can finish one gene chunk (e.g.
    accumulate selection-matrix products for it) before the next. Memory: one block.
    """
    import scipy.sparse as sp

    if cell_chunk < 1 or gene_chunk < 1:
        raise InputError("cell_chunk and gene_chunk must be positive")
    n_rows, n_genes = matrix.shape
    sel = np.arange(n_rows) if rows is None else np.asarray(rows)
    if sel.dtype == bool:
        sel = np.flatnonzero(sel)
    if sel.size and (sel.min() < 0 or sel.max() >= n_rows):
        raise InputError(f"row indices out of range for {n_rows} cells")
    sparse = sp.issparse(matrix)
    if sparse:
        matrix = matrix.tocsr() if not sp.isspmatrix_csr(matrix) else matrix
    contiguous = rows is None
    for g0 in range(0, n_genes, gene_chunk):
        g1 = min(n_genes, g0 + gene_chunk)
        for c0 in range(0, sel.size, cell_chunk):
            c1 = min(sel.size, c0 + cell_chunk)
            if sparse:
                part = matrix[sel[c0:c1]] if not contiguous else matrix[c0:c1]
                vals = part[:, g0:g1].toarray()
            elif contiguous:
                vals = np.asarray(matrix[c0:c1, g0:g1])
            else:
                vals = np.asarray(matrix[sel[c0:c1], g0:g1])
            yield Block(slice(c0, c1), slice(g0, g1), np.asarray(vals, dtype=np.float32))


# --------------------------------------------------------------------------- analysis hooks (core.annotate.expression)

def _analysis_embedding_key(analysis) -> str | None:
    return analysis.config.get("dataset", {}).get("embedding")


def analysis_decoder(analysis) -> Decoder | None:
    """The decoder of the model behind ``analysis``'s embedding, or None if it has none.

    Looked up in order: :func:`core.store.dataset.decoder_reference` (a model folder, an
    scvi-tools model folder, a TorchScript file, or "none"), then the built-in model that ``featurelens fit-model``
    saved beside the dataset (``<stem>.featurelens-model/``) if it wrote the embedding the
    analysis uses. TorchScript decoders are probed later, against the data.
    """
    from pathlib import Path

    from core.model.store import default_model_dir, is_model_dir

    settings = analysis.config.get("settings", {}) or {}
    dataset = analysis.config.get("dataset", {}) or {}
    ref = decoder_reference(analysis)
    if ref is not None:
        if str(ref).lower() == "none":
            return None
        path = Path(ref)
        if not path.is_absolute() and dataset.get("path"):
            candidate = Path(dataset["path"]).parent / path
            path = candidate if candidate.exists() else path
        if is_model_dir(path):
            return BuiltinDecoder.load(path)
        if is_scvi_model_dir(path):
            return DeferredSCVI(path)
        if not path.is_file():
            raise InputError(f"the analysis's decoder {ref!r} does not exist",
                             fix="restore it, or set the decoder to 'none' to annotate observed counts")
        return _DeferredTorchScript(path, covariate_key=settings.get("decoder_covariate_key"),
                                    output=settings.get("decoder_output", "fractions"))
    if dataset.get("format") != "h5ad" or not dataset.get("path"):
        return None
    folder = default_model_dir(dataset["path"])
    if not is_model_dir(folder):
        return None
    meta = io.read_json(folder / "model.json")
    if meta.get("source", {}).get("obsm_key") != _analysis_embedding_key(analysis):
        return None
    return BuiltinDecoder.load(folder)


class _DeferredTorchScript(Decoder):
    """A TorchScript decoder named by an analysis; loaded and probed once the data is at hand."""

    kind = "torchscript"

    def __init__(self, path, *, covariate_key: str | None, output: str):
        super().__init__(n_latent=None, gene_names=None, n_genes=None)
        self.path, self.covariate_key, self.output = path, covariate_key, output

    def resolve(self, *, n_latent: int, gene_names, probe_latent, n_covariates: int) -> Decoder:
        return load_decoder(self.path, n_latent=n_latent, gene_names=gene_names, n_covariates=n_covariates,
                            output=self.output, probe_latent=probe_latent)

    def fingerprint(self) -> str:
        return file_sha256(self.path)


def predicted_expression_for_analysis(analysis, decoder: Decoder):
    """Predicted expression of every cell of ``analysis``'s dataset, cached in the analysis.

    Returns an :class:`ExpressionSource` (memory-mapped float32 matrix, the
    genes, a label and a content key). Library size: each cell's total counts over the
    modelled genes; covariates: the built-in model's batch column (or, for a TorchScript
    decoder, ``settings['decoder_covariate_key']`` one-hot in sorted category order).
    """

    data = decoding_data(analysis, decoder)
    decoder, z, lib, covariates, genes = data.decoder, data.latent, data.library_size, data.covariates, data.genes
    matrix = cached_predicted_expression(analysis, decoder, z, lib, covariates)
    inputs = predicted_inputs(decoder, z, lib, covariates)
    return ExpressionSource(matrix=matrix, kind="predicted", gene_names=pd.Index(genes),
                              label=f"predicted by the {decoder.kind} decoder (× library size)"
                              if decoder.scales_with_library else f"predicted by the {decoder.kind} decoder",
                              key="predicted:" + content_hash(inputs))


@dataclass
class DecodingData:
    """What decoding an analysis's cells needs: the checked ``decoder``, the ``latent`` (n, d)
    embedding, ``library_size`` (n,) over the modelled genes, ``covariates`` (n, k) or None, the
    ``genes`` and the cells' ``obs``."""

    decoder: Decoder
    latent: np.ndarray
    library_size: np.ndarray
    covariates: np.ndarray | None
    genes: list[str]
    obs: Any
    embedding_key: str


def decoding_data(analysis, decoder: Decoder) -> DecodingData:
    """:class:`DecodingData` of ``analysis``'s dataset, read with ``.X`` left on disk: the library
    sizes are summed in chunks (:func:`core.data.counts.library_sizes`), so the counts are never all in
    memory. Shared by predicted expression and steering."""
    from core.data.counts import library_sizes

    key = _analysis_embedding_key(analysis)
    if not key:
        raise InputError("the analysis names no embedding, so there is no latent to decode")
    adata = load_analysis_dataset(analysis, backed=True)
    try:
        z = np.asarray(get_embedding(adata, key))
        cols = expression_columns(adata)
        genes = [str(g) for g in adata.var_names[cols]]
        ds = analysis.config.get("dataset", {})
        lib = library_sizes(ds["path"], layer=ds.get("counts_layer"), columns=cols)
        decoder, covariates = resolve_decoder_for_data(decoder, adata, z, genes, key=key)
        obs = adata.obs.copy()
    finally:
        adata.file.close()
    return DecodingData(decoder=decoder, latent=z, library_size=lib, covariates=covariates, genes=genes, obs=obs,
                        embedding_key=key)


def resolve_decoder_for_data(decoder, adata, z, genes, *, key: str | None = None):
    """``decoder`` checked against the data (latent size, genes; a deferred TorchScript decoder probed),
    and the cells' covariates (one-hot batch) or None. Shared by predicted expression and steering."""
    from core.model.fit import one_hot

    covariates = None
    if isinstance(decoder, DeferredSCVI):
        decoder = decoder.resolve(adata)
        covariates = decoder.cell_covariates()
    if isinstance(decoder, _DeferredTorchScript):
        ck = decoder.covariate_key
        if ck is not None:
            if ck not in adata.obs.columns:
                raise InputError(f"decoder covariate column {ck!r} not found in .obs")
            labels = adata.obs[ck].astype(str)
            covariates = one_hot(labels, sorted(labels.unique()), key=ck)
        decoder = decoder.resolve(n_latent=z.shape[1], gene_names=genes, probe_latent=z[:8],
                                  n_covariates=0 if covariates is None else covariates.shape[1])
        return decoder, covariates
    if decoder.n_latent is not None and decoder.n_latent != z.shape[1]:
        where = f".obsm[{key!r}]" if key else "the embedding"
        raise InputError(f"the decoder takes a {decoder.n_latent}-dimensional latent but {where} has "
                         f"{z.shape[1]} dimensions", fix="use the embedding the model wrote, or another decoder")
    decoder.match_genes(genes)
    if isinstance(decoder, BuiltinDecoder) and decoder.n_covariates:
        ck = decoder.fitted.covariate["key"]
        if ck not in adata.obs.columns:
            raise InputError(f"the model needs the batch column {ck!r}, which the data lacks")
        covariates = decoder.covariates_for(adata.obs[ck])
    return decoder, covariates


def set_analysis_decoder(analysis, path) -> Decoder:
    """Check that the decoder at ``path`` (a model folder, an scvi-tools model folder or a TorchScript
    file) decodes ``analysis``'s embedding and genes, then record it as the analysis's decoder
    (:func:`core.store.dataset.record_decoder`). Returns the checked decoder; InputError (nothing
    recorded) when it does not fit."""
    from pathlib import Path

    from core.model.store import is_model_dir

    path = Path(path).resolve()
    if is_model_dir(path):
        decoder: Decoder = BuiltinDecoder.load(path)
    elif is_scvi_model_dir(path) or path.is_dir():
        decoder = DeferredSCVI(path)
    elif path.is_file():
        decoder = _DeferredTorchScript(path, covariate_key=None, output="fractions")
    else:
        raise InputError(f"the decoder {path} does not exist", fix="pass an existing model folder or file")
    checked = decoding_data(analysis, decoder).decoder
    record_decoder(analysis, str(path), kind=checked.kind)
    return checked
