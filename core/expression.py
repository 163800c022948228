"""The expression matrix annotation runs on: predicted (decoder × library size) or observed counts.

docs/method.md §4 step 2: the model's predicted expression when it has a decoder; observed counts
otherwise (as the paper did for Geneformer).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.data import file_sha256, read_anndata
from core.errors import InputError

__all__ = ["ExpressionSource", "resolve_expression", "load_analysis_dataset", "observed_counts"]

OBSERVED_STEP = "observed_counts"
OBSERVED_DIR = "observed_counts"


@dataclass
class ExpressionSource:
    matrix: Any            # (n_cells, n_genes): ndarray, memmap or scipy sparse
    gene_names: pd.Index
    label: str             # "observed counts (.X)" / "predicted by <decoder>"
    key: str               # content key for caching


def load_analysis_dataset(analysis, *, check_hash: bool = True, backed: bool = False):
    """The AnnData an analysis was made from; refuses a file that changed since. ``backed``: opened
    read-only with ``.X`` left on disk (close it with ``adata.file.close()``)."""
    ref = analysis.config.get("dataset", {})
    path = Path(ref.get("path", ""))
    if ref.get("format") != "h5ad":
        raise InputError(f"{analysis.path} was made from an embedding file without expression",
                         fix="annotation needs counts: train the SAE from an .h5ad that holds them")
    if not path.is_file():
        raise InputError(f"the analysis's dataset {path} is missing", fix="restore the file at that path")
    if check_hash and ref.get("sha256") and file_sha256(path) != ref["sha256"]:
        raise InputError(f"{path.name} changed since this analysis was made (content hash differs)",
                         fix="re-run `featurelens train` on the new file, or restore the original")
    return read_anndata(path, backed=backed)


def resolve_expression(analysis, *, mode: str = "auto") -> ExpressionSource:
    """Expression for annotating ``analysis``: ``predicted``, ``observed`` or ``auto``."""
    if mode in ("auto", "predicted"):
        from core.model.predict import analysis_decoder  # noqa: PLC0415

        decoder = analysis_decoder(analysis)
        if decoder is not None:
            from core.model.predict import predicted_expression_for_analysis

            return predicted_expression_for_analysis(analysis, decoder)
        if mode == "predicted":
            raise InputError("this analysis has no model decoder, so there is no predicted expression",
                             fix="fit the built-in model (`featurelens fit-model`) or use --expression observed")
    adata = load_analysis_dataset(analysis, backed=True)
    try:
        genes = pd.Index(adata.var_names.astype(str))
    finally:
        adata.file.close()
    ref = analysis.config["dataset"]
    layer = ref.get("counts_layer")
    return ExpressionSource(matrix=observed_counts(analysis), gene_names=genes,
                            label=f"observed counts ({'.layers[' + repr(layer) + ']' if layer else '.X'})",
                            key=f"observed:{ref.get('sha256')}:{layer}")


def observed_counts(analysis):
    """The analysis dataset's counts as a read-only, memory-mapped CSC matrix (cells × genes, float32).

    Made once per dataset file and layer (``observed_counts/`` in the analysis), by reading the
    .h5ad in chunks (:mod:`core.counts`): the counts are never all in memory.
    """
    from core.counts import CSC_FILES, load_csc, write_csc

    ref = analysis.config["dataset"]
    layer = ref.get("counts_layer")
    inputs = {"dataset_sha256": ref.get("sha256"), "layer": layer}
    names = [f"{OBSERVED_DIR}/{f}" for f in CSC_FILES]
    if not analysis.cached(OBSERVED_STEP, inputs=inputs):
        with analysis.step(OBSERVED_STEP, inputs=inputs) as w:
            folder = [w.path(n) for n in names][0].parent
            shape = write_csc(ref["path"], folder, layer=layer)
            w.write_json(f"{OBSERVED_DIR}/shape.json", list(shape))
    shape = analysis.read_json(f"{OBSERVED_DIR}/shape.json")
    return load_csc(analysis.file(OBSERVED_DIR), tuple(shape))
