"""The expression matrix annotation runs on: predicted (decoder × library size) or observed counts.

docs/method.md §4 step 2: the model's predicted expression when it has a decoder; observed counts
otherwise (as the paper did for Geneformer).
"""
from __future__ import annotations

import pandas as pd

from core.base.errors import InputError
from core.data.counts import CSC_FILES, CSR_FILES, load_csc, load_csr, write_csc, write_csr_of_csc
from core.model.predict import ExpressionSource, analysis_decoder, predicted_expression_for_analysis
from core.store.dataset import load_analysis_dataset

__all__ = ["resolve_expression", "observed_counts", "observed_rows"]

OBSERVED_STEP = "observed_counts"
OBSERVED_DIR = "observed_counts"
ROWS_STEP = "observed_rows"


def resolve_expression(analysis, *, mode: str = "auto") -> ExpressionSource:
    """Expression for annotating ``analysis``: ``predicted``, ``observed`` or ``auto``."""
    if mode in ("auto", "predicted"):
        decoder = analysis_decoder(analysis)
        if decoder is not None:
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
    return ExpressionSource(matrix=observed_counts(analysis), kind="observed", gene_names=genes,
                            label=f"observed counts ({'.layers[' + repr(layer) + ']' if layer else '.X'})",
                            key=f"observed:{ref.get('sha256')}:{layer}")


def observed_counts(analysis):
    """The analysis dataset's counts as a read-only, memory-mapped CSC matrix (cells × genes, float32).

    Made once per dataset file and layer (``observed_counts/`` in the analysis), by reading the
    .h5ad in chunks (:mod:`core.data.counts`): the counts are never all in memory.
    """
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


def observed_rows(analysis, *, make: bool = True):
    """The observed counts again, as a read-only memory-mapped CSR matrix, for reading a few cells
    fast (the Explorer card's DE); made once from :func:`observed_counts` (in ``observed_counts/``,
    next to it) when ``make``, else None until then."""
    ref = analysis.config.get("dataset") or {}
    inputs = {"dataset_sha256": ref.get("sha256"), "layer": ref.get("counts_layer")}
    if not analysis.cached(ROWS_STEP, inputs=inputs):
        if not make:
            return None
        csc = observed_counts(analysis)
        with analysis.step(ROWS_STEP, inputs=inputs) as w:
            folder = [w.path(f"{OBSERVED_DIR}/{f}") for f in CSR_FILES][0].parent
            write_csr_of_csc(csc, folder)
    return load_csr(analysis.file(OBSERVED_DIR), analysis.read_json(f"{OBSERVED_DIR}/shape.json"))
