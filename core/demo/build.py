"""The built-in demo analysis. By default it is built from the simulated haematopoietic dataset
(:mod:`core.demo.data`, generated on the fly, ground truth included); ``dataset="pbmc68k"``
builds it from the shipped real PBMC data instead.

1. make the data (simulate it, or copy the shipped file) and fit the built-in expression model
   on it (embedding ``X_featurelens`` + decoder), saved beside the data inside the analysis folder;
2. train an SAE on that embedding (features characterised by cell type);
3. annotate every live feature with GO BP + MF on the model's predicted expression, and build
   the concept map; for the simulated data, score how many planted GO programs were recovered
   (``planted_score.json``, :mod:`core.demo.planted`).

Every step is cached by its inputs, so the second ``make demo`` starts at once.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.store.analysis import Analysis
from core.data.load import load_dataset
from core.data.datasets import shipped
from core.base.errors import InputError
from core.base.io import content_hash
from core.base.paths import analyses_dir
from core.base.progress import Progress, no_progress
from core.base.threads import torch_threads
from core.demo.planted import planted_concept_score, planted_score_step
from core.annotate.pipeline import annotate_analysis, AnnotationConfig
from core.demo.data import DemoDataConfig
from core.model import fit_h5ad, ModelConfig

__all__ = ["build_demo", "default_demo_path", "demo_settings", "DemoSettings", "DEMO_DATASETS", "DEFAULT_DEMO",
           "DEMO_EMBEDDING", "run_planted_benchmark"]

DEMO_DATASETS = ("simulated", "pbmc68k")
DEFAULT_DEMO = "simulated"
DEMO_EMBEDDING = "X_featurelens"
_FOLDER = {"simulated": "demo", "pbmc68k": "demo-pbmc68k"}


@dataclass(frozen=True)
class DemoSettings:
    """Everything the demo build depends on for one dataset (the same objects the CLI would build)."""

    dataset: str
    model: object          # core.model.ModelConfig
    sae: object            # core.sae.VanillaConfig
    train: object          # core.sae.TrainConfig
    annotation: object     # core.annotate.pipeline.AnnotationConfig
    data: object = None    # core.demo.data.DemoDataConfig (simulated only)
    batch_key: str | None = None

    def to_dict(self) -> dict:
        d = {"dataset": self.dataset, "model": self.model.to_dict(), "sae": self.sae.to_dict(),
             "train": self.train.to_dict(), "annotation": self.annotation.to_dict(), "batch_key": self.batch_key}
        if self.data is not None:
            d["data"] = self.data.to_dict()
        return d


def demo_settings(dataset: str = DEFAULT_DEMO, *, seed: int = 0) -> DemoSettings:
    """The demo's settings. Simulated: 10,000 cells × 2,500 genes, model with a batch covariate,
    the default preset's SAE and training at 16 × 20 latents, the paper's annotation defaults (99th
    percentile, 1,000 low cells). PBMC (700 cells): the default preset, 90th percentile and 300 low
    cells, so that every feature has enough high cells. Only the size (16 × rather than 50 ×, for
    speed), the epochs (exact: no step floor) and PBMC's batch size are set by hand."""
    from core.sae import preset

    sae, train = preset("default")
    sae = sae.replace(expansion=16)
    if dataset not in DEMO_DATASETS:
        raise InputError(f"no demo dataset named {dataset!r}", fix=f"choose one of: {', '.join(DEMO_DATASETS)}")
    if dataset == "pbmc68k":
        return DemoSettings(dataset, ModelConfig(seed=seed), sae,
                            train.replace(seed=seed, epochs=300, batch_size=64, min_steps=None),
                            AnnotationConfig(concepts=("go-bp", "go-mf"), expression="predicted",
                                             percentile=90.0, n_low=300))

    return DemoSettings(dataset, ModelConfig(seed=seed), sae,
                        train.replace(seed=seed, epochs=30, min_steps=None),
                        AnnotationConfig(concepts=("go-bp", "go-mf"), expression="predicted"),
                        data=DemoDataConfig(), batch_key="batch")


def default_demo_path(dataset: str = DEFAULT_DEMO) -> Path:
    """``analyses/demo`` (simulated) or ``analyses/demo-<dataset>``."""
    if dataset not in _FOLDER:
        raise InputError(f"no demo dataset named {dataset!r}", fix=f"choose one of: {', '.join(DEMO_DATASETS)}")
    return analyses_dir() / _FOLDER[dataset]


def _stage(progress: Progress, i: int, n: int, label: str) -> Progress:
    """Map a step's own progress onto stage ``i`` of ``n`` of the whole build."""
    def sub(done: float, total: float, message: str = "") -> None:
        progress(i + (min(done / total, 1.0) if total else 0.0), n, f"{label}: {message}")

    return sub


def _make_data(settings: DemoSettings, data: Path, *, seed: int, progress: Progress) -> None:
    """The demo's data file with the built-in model's embedding, and the model beside it.

    Cached by a marker file next to the data holding the key of what made it.
    """
    from core.model.store import default_model_dir, is_model_dir

    marker = data.with_suffix(".source")
    if settings.dataset == "simulated":
        src = None
        key = {"simulated": settings.data.to_dict(), "seed": seed}
    else:
        src = shipped(settings.dataset).path
        key = {"file": src.name, "size": os.path.getsize(src), "seed": seed}
    key = content_hash(json.dumps({**key, "model": settings.model.to_dict(), "batch_key": settings.batch_key},
                                  sort_keys=True, default=str))
    if data.is_file() and is_model_dir(default_model_dir(data)) and marker.is_file() and marker.read_text() == key:
        return
    if src is None:
        from core.demo.data import write_demo_dataset

        write_demo_dataset(data, seed=seed, config=settings.data,
                           progress=lambda d, t, m="": progress(0.1 * d / t if t else 0, 1, f"simulating: {m}"))
        src = data

    def fit_progress(d, t, m=""):
        progress(0.1 + 0.9 * (d / t if t else 0) if settings.dataset == "simulated" else (d / t if t else 0), 1, m)

    fit_h5ad(src, config=settings.model, key=DEMO_EMBEDDING, output_h5ad=data, out=default_model_dir(data),
             batch_key=settings.batch_key, overwrite=True, progress=fit_progress)
    marker.write_text(key)


def build_demo(out: str | os.PathLike | None = None, *, dataset: str = DEFAULT_DEMO, seed: int = 0,
               progress: Progress = no_progress) -> Analysis:
    """Build (or reuse) the demo analysis of ``dataset`` in ``out`` (default :func:`default_demo_path`)."""
    from core.sae.pipeline import train_into_analysis

    settings = demo_settings(dataset, seed=seed)
    out = Path(out) if out is not None else default_demo_path(dataset)
    out.mkdir(parents=True, exist_ok=True)
    name = "simulated-haematopoiesis" if dataset == "simulated" else dataset
    data = out / "data" / f"{name}.h5ad"
    data.parent.mkdir(exist_ok=True)
    n = 3
    _make_data(settings, data, seed=seed, progress=_stage(progress, 0, n, "data and expression model"))
    cell_type = "cell_type" if dataset == "simulated" else shipped(dataset).cell_type
    ds = load_dataset(data, embedding=DEMO_EMBEDDING, cell_type=cell_type)
    tag = {"demo": dataset} if dataset == "simulated" else {"demo": dataset, "shipped": dataset}
    analysis = Analysis.open_or_create(out, dataset={**ds.source, **tag}, seed=seed, replace_other=True)
    with torch_threads(1):  # the same demo on every machine (thread counts can change the last bits)
        train_into_analysis(analysis, ds.embedding, sae_config=settings.sae, train_config=settings.train,
                            data_ref=ds.source, cell_types=ds.cell_types,
                            progress=_stage(progress, 1, n, "training the SAE"))
        annotate_analysis(analysis, config=settings.annotation,
                          progress=_stage(progress, 2, n, "annotating features"))
    if dataset == "simulated":

        progress(n - 0.01, n, "scoring the planted GO programs")
        planted_score_step(analysis)
    progress(n, n, "demo ready")
    return analysis


def run_planted_benchmark(*, seed: int = 0, out: str | os.PathLike | None = None, top: int = 10,
                          progress: Progress = no_progress) -> dict:
    """Build (or reuse: every step is cached) the default simulated demo analysis and score it.

    ``out``: the analysis folder (default: the demo's, ``analyses/demo``). Returns the score
    (:meth:`PlantedScore.to_dict`) with ``lines`` (a printable report), the build time and the
    demo's settings.
    """
    out = Path(out) if out is not None else default_demo_path("simulated")
    t0 = time.perf_counter()
    analysis = build_demo(out, dataset="simulated", seed=seed, progress=progress)
    build_s = time.perf_counter() - t0
    score = planted_concept_score(analysis, top=top)
    return {**score.to_dict(), "seed": seed, "build_seconds": build_s, "analysis": str(analysis.path),
            "settings": demo_settings("simulated", seed=seed).to_dict(), "lines": score.lines()}
