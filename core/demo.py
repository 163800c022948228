"""The built-in demo analysis: the shipped PBMC dataset, validated, with an SAE trained on it.

Every step is cached in the analysis folder by its inputs, so the second ``make demo`` starts at once.
"""
from __future__ import annotations

import os
from pathlib import Path

from .analysis import Analysis
from .data import load_dataset
from .datasets import shipped
from .errors import InputError
from .paths import analyses_dir
from .progress import Progress, no_progress

__all__ = ["build_demo", "default_demo_path", "DEMO_DATASET"]

DEMO_DATASET = "pbmc68k"


def default_demo_path() -> Path:
    return analyses_dir() / f"demo-{DEMO_DATASET}"


def open_or_create(path: Path, *, dataset: dict, seed: int) -> Analysis:
    """Reopen the analysis at ``path`` if it is of the same dataset, else start it afresh."""
    if (path / "analysis.json").is_file():
        try:
            analysis = Analysis.open(path)
        except InputError:
            analysis = None
        if analysis is not None and analysis.config.get("dataset", {}).get("sha256") == dataset["sha256"] \
                and analysis.seed == seed:
            return analysis
    return Analysis.create(path, dataset=dataset, seed=seed, overwrite=True)


def build_demo(out: str | os.PathLike, *, seed: int = 0, progress: Progress = no_progress) -> Analysis:
    spec = shipped(DEMO_DATASET)
    progress(0, 2, "loading the PBMC dataset")
    ds = load_dataset(spec.path, embedding=spec.embedding, cell_type=spec.cell_type)
    analysis = open_or_create(Path(out), dataset={**ds.source, "shipped": spec.name}, seed=seed)
    inputs = {"dataset": ds.source["sha256"], "embedding": spec.embedding, "cell_type": spec.cell_type}
    if not analysis.cached("validate", inputs=inputs):
        with analysis.step("validate", inputs=inputs) as w:
            w.write_json("validation.json", {"facts": {k: str(v) for k, v in ds.report.facts.items()},
                                             "issues": [vars(i) for i in ds.report.issues]})
    progress(1, 2, "dataset validated")
    progress(2, 2, "done")
    return analysis
