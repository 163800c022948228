"""Sparse autoencoders: architectures, training, metrics, persistence, seed robustness.

Typical use::

    from core.sae import VanillaConfig, TrainConfig, train_sae, sae_metrics, encode_activations
    result = train_sae(embedding, config=VanillaConfig(hidden=10_000), train=TrainConfig(seed=0))
    metrics, features = sae_metrics(result.sae, embedding)
    acts = encode_activations(result.sae, embedding)   # CSR cells × features

Reference method: docs/method.md §1. ``preset("paper")`` reproduces the paper's case study.
"""
from core.sae.config import (
    DECODER_NORMS,
    INITS,
    LR_SCHEDULES,
    PRESETS,
    BatchTopKConfig,
    JumpReLUConfig,
    MatryoshkaConfig,
    ReLUConfig,
    SAEConfig,
    TopKConfig,
    TrainConfig,
    VanillaConfig,
    preset,
)
from core.sae.data import as_matrix, check_trainable, resolve_device
from core.sae.encode import encode_activations, reconstruct
from core.sae.metrics import (
    activation_metrics,
    activation_stats,
    frequency_histogram,
    reconstruction_metrics,
    redundant_latents,
    sae_metrics,
)
from core.sae.models import (
    BatchTopKSAE,
    JumpReLUSAE,
    MatryoshkaSAE,
    ReLUSAE,
    SparseAutoencoder,
    TopKSAE,
    VanillaSAE,
)
from core.sae.persist import load_sae, save_sae
from core.sae.registry import available_architectures, build_sae, config_from_dict, get_architecture, register_architecture
from core.sae.request import SAERequest
from core.sae.robustness import RobustnessReport, match_features, robustness_report, seed_robustness, train_seeds
from core.sae.synthetic import PlantedData, planted_programs, planted_sparse_data
from core.sae.train import TrainResult, split_indices, train_sae

__all__ = [
    # configs
    "SAEConfig", "VanillaConfig", "ReLUConfig", "TopKConfig", "BatchTopKConfig", "MatryoshkaConfig",
    "JumpReLUConfig", "TrainConfig",
    "PRESETS", "preset", "DECODER_NORMS", "INITS", "LR_SCHEDULES", "SAERequest",
    # models and registry
    "SparseAutoencoder", "VanillaSAE", "ReLUSAE", "TopKSAE", "BatchTopKSAE", "MatryoshkaSAE", "JumpReLUSAE",
    "register_architecture", "get_architecture", "available_architectures", "build_sae", "config_from_dict",
    # training and inference
    "train_sae", "TrainResult", "split_indices", "encode_activations", "reconstruct",
    "as_matrix", "check_trainable", "resolve_device",
    # metrics
    "sae_metrics", "activation_metrics", "reconstruction_metrics", "activation_stats", "redundant_latents",
    "frequency_histogram",
    # persistence and robustness
    "save_sae", "load_sae", "seed_robustness", "train_seeds", "robustness_report", "match_features",
    "RobustnessReport",
    # synthetic data
    "planted_sparse_data", "planted_programs", "PlantedData",
]
