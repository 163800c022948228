"""Expression models: the built-in model, decoders (built-in, scvi-tools, TorchScript, none), predicted
expression, external embeddings and a second modality.

Names are re-exported lazily from the private modules, so ``import core.model`` stays light
(torch is imported only by what needs it).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # config, likelihoods, model
    "ModelConfig": "config",
    "nb_log_prob": "nb", "poisson_log_prob": "nb", "gaussian_log_prob": "nb", "nb_log_prob_rows": "nb",
    "ExpressionModel": "vae", "ExpressionDecoder": "vae",
    # fitting
    "FittedModel": "fit", "fit_expression_model": "fit", "check_counts": "fit", "library_size": "fit",
    "one_hot": "fit", "encode_cells": "fit",
    "fit_anndata": "api", "fit_h5ad": "api", "FitReport": "api", "write_h5ad_atomic": "api",
    "save_model": "store", "load_model": "store", "default_model_dir": "store", "is_model_dir": "store",
    # decoders
    "Decoder": "decoders", "BuiltinDecoder": "decoders", "TorchScriptDecoder": "decoders", "NoDecoder": "decoders",
    "DecodedChunk": "decoders", "load_decoder": "decoders", "decode_into": "decoders", "decode_all": "decoders",
    "decode_to_memmap": "decoders", "decode_to_npy": "decoders", "STEERING_NEEDS_DECODER": "decoders",
    # scvi-tools models (the optional extra featurelens[scvi])
    "SCVIDecoder": "scvi", "load_scvi_model": "scvi", "is_scvi_model_dir": "scvi", "scvi_latent": "scvi",
    # predicted expression
    "predicted_expression": "predict", "cached_predicted_expression": "predict", "expression_source": "predict",
    "ExpressionSource": "predict", "iter_blocks": "predict", "Block": "predict", "PREDICTED_STEP": "predict",
    "analysis_decoder": "predict", "predicted_expression_for_analysis": "predict",
    # embeddings
    "list_embeddings": "embeddings", "get_embedding": "embeddings", "attach_embedding": "embeddings",
    "read_embedding": "embeddings",
    # multi-omics
    "Modality": "multiomics", "find_modalities": "multiomics", "get_modality": "multiomics",
    "expression_columns": "multiomics", "high_low_cells": "multiomics", "selection_matrices": "multiomics",
    "compare_modality": "multiomics", "peak_comparison": "multiomics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
