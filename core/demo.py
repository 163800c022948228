"""The built-in demo analysis, built from the shipped PBMC dataset:

1. fit the built-in expression model (embedding ``X_featurelens`` + decoder), saved beside a copy
   of the data inside the analysis folder;
2. train an SAE on that embedding (features characterised by cell type);
3. annotate every live feature with GO BP + MF on the model's predicted expression, and build
   the concept map.

Every step is cached by its inputs, so the second ``make demo`` starts at once.
"""
from __future__ import annotations

import os
from pathlib import Path

from .analysis import Analysis
from .data import load_dataset
from .datasets import shipped
from .paths import analyses_dir
from .progress import Progress, no_progress

__all__ = ["build_demo", "default_demo_path", "DEMO_DATASET", "DEMO_EMBEDDING"]

DEMO_DATASET = "pbmc68k"
DEMO_EMBEDDING = "X_featurelens"


def default_demo_path() -> Path:
    return analyses_dir() / f"demo-{DEMO_DATASET}"


def _stage(progress: Progress, i: int, n: int, label: str) -> Progress:
    """Map a step's own progress onto stage ``i`` of ``n`` of the whole build."""
    def sub(done: float, total: float, message: str = "") -> None:
        progress(i + (done / total if total else 0.0), n, f"{label}: {message}")

    return sub


def _fit_model(src: Path, data: Path, *, seed: int, progress: Progress) -> None:
    """The demo's data copy with the built-in model's embedding, and the model beside it."""
    from .model import ModelConfig, fit_h5ad
    from .model.store import default_model_dir, is_model_dir

    marker = data.with_suffix(".source")
    key = f"{src.name}:{os.path.getsize(src)}:{seed}"
    if data.is_file() and is_model_dir(default_model_dir(data)) and marker.is_file() and marker.read_text() == key:
        return
    fit_h5ad(src, config=ModelConfig(seed=seed), key=DEMO_EMBEDDING, output_h5ad=data,
             out=default_model_dir(data), overwrite=True, progress=progress)
    marker.write_text(key)


def build_demo(out: str | os.PathLike, *, seed: int = 0, progress: Progress = no_progress) -> Analysis:
    from .annotate.pipeline import AnnotationConfig, annotate_analysis
    from .sae import TrainConfig, VanillaConfig
    from .training import train_into_analysis

    spec = shipped(DEMO_DATASET)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data" / f"{DEMO_DATASET}.h5ad"
    data.parent.mkdir(exist_ok=True)
    n = 3
    _fit_model(spec.path, data, seed=seed, progress=_stage(progress, 0, n, "fitting the expression model"))
    ds = load_dataset(data, embedding=DEMO_EMBEDDING, cell_type=spec.cell_type)
    analysis = Analysis.open_or_create(out, dataset={**ds.source, "shipped": spec.name}, seed=seed,
                                       replace_other=True)
    train_into_analysis(analysis, ds.embedding, sae_config=VanillaConfig(expansion=16, l1=1e-3),
                        train_config=TrainConfig(seed=seed, epochs=300, batch_size=64, lr=1e-3),
                        data_ref=ds.source, cell_types=ds.cell_types,
                        progress=_stage(progress, 1, n, "training the SAE"))
    annotate_analysis(analysis, config=AnnotationConfig(concepts=("go-bp", "go-mf"), expression="predicted",
                                                        percentile=90.0, n_low=300),
                      progress=_stage(progress, 2, n, "annotating features"))
    progress(n, n, "demo ready")
    return analysis
