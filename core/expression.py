"""The expression matrix annotation runs on: predicted (decoder × library size) or observed counts.

REFERENCE.md §4 step 2: the model's predicted expression when it has a decoder; observed counts
otherwise (as the paper did for Geneformer).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .data import file_sha256, read_anndata
from .errors import InputError

__all__ = ["ExpressionSource", "resolve_expression", "load_analysis_dataset"]


@dataclass
class ExpressionSource:
    matrix: Any            # (n_cells, n_genes): ndarray, memmap or scipy sparse
    gene_names: pd.Index
    label: str             # "observed counts (.X)" / "predicted by <decoder>"
    key: str               # content key for caching


def load_analysis_dataset(analysis, *, check_hash: bool = True):
    """The AnnData an analysis was made from; refuses a file that changed since."""
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
    return read_anndata(path)


def resolve_expression(analysis, *, mode: str = "auto") -> ExpressionSource:
    """Expression for annotating ``analysis``: ``predicted``, ``observed`` or ``auto``."""
    if mode in ("auto", "predicted"):
        from .model.predict import analysis_decoder  # noqa: PLC0415

        decoder = analysis_decoder(analysis)
        if decoder is not None:
            from .model.predict import predicted_expression_for_analysis

            return predicted_expression_for_analysis(analysis, decoder)
        if mode == "predicted":
            raise InputError("this analysis has no model decoder, so there is no predicted expression",
                             fix="fit the built-in model (`featurelens fit-model`) or use --expression observed")
    adata = load_analysis_dataset(analysis)
    layer = analysis.config.get("dataset", {}).get("counts_layer")
    X = adata.layers[layer] if layer else adata.X
    import scipy.sparse as sp

    X = sp.csc_matrix(X, dtype="float32") if sp.issparse(X) else X  # DE reads genes column-wise
    ref = analysis.config["dataset"]
    return ExpressionSource(matrix=X, gene_names=pd.Index(adata.var_names.astype(str)),
                            label=f"observed counts ({'.layers[' + repr(layer) + ']' if layer else '.X'})",
                            key=f"observed:{ref.get('sha256')}:{layer}")
