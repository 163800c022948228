"""A small annotated analysis of the shipped PBMC data for the explorer tests (≈ 10 s to build).

Topk SAE (k = 8, 128 latents) on the shipped ``X_pca`` embedding, annotated with GO BP on the
observed counts (no model fit), 90th-percentile high cells as the demo does.
"""
from __future__ import annotations

from pathlib import Path


def build_small_analysis(out: Path, *, seed: int = 0):
    from core.store.analysis import Analysis
    from core.annotate.pipeline import AnnotationConfig, annotate_analysis
    from core.data.load import load_dataset
    from core.data.datasets import shipped
    from core.sae import TopKConfig, TrainConfig
    from core.sae.pipeline import train_into_analysis

    spec = shipped("pbmc68k")
    ds = load_dataset(spec.path, embedding=spec.embedding, cell_type=spec.cell_type)
    analysis = Analysis.open_or_create(out, dataset={**ds.source, "shipped": spec.name}, seed=seed)
    train_into_analysis(analysis, ds.embedding, sae_config=TopKConfig(hidden=128, k=8),
                        train_config=TrainConfig(seed=seed, epochs=15, batch_size=64, lr=5e-3),
                        data_ref=ds.source, cell_types=ds.cell_types)
    annotate_analysis(analysis, config=AnnotationConfig(concepts=("go-bp",), expression="observed",
                                                        percentile=90.0, n_low=300))
    return analysis


def small_analysis_path(tmp_path_factory) -> Path:
    """The small analysis, built once per test session (later calls find every step cached)."""
    path = tmp_path_factory.getbasetemp() / "explorer-analyses" / "pbmc-small"
    path.parent.mkdir(parents=True, exist_ok=True)
    build_small_analysis(path)
    return path
