"""A small steerable analysis for the Steering page tests: the planted analysis of
:mod:`steer_data` (3 cell types a, b, c; feature 0 raises the GO "oxygen transport" genes and
moves type-a cells towards type b) plus its features table (as ``featurelens train`` writes it),
so that the Explorer and the Steering page can open it. Builds in about a second."""
from __future__ import annotations

from pathlib import Path

ANALYSIS_NAME = "planted"


def build_steerable(base: Path, *, decoder: bool = True, **kwargs) -> Path:
    """Build into ``base`` (``base/analysis`` is the analysis folder); returns the analysis path.
    ``decoder=False``: the same analysis without the model's decoder (it cannot be steered);
    ``kwargs`` go to :func:`steer_data.build_planted`."""
    from core.sae.characterise import characterise
    from core.data.load import load_dataset
    from core.sae.metrics import activation_stats
    from steer_data import build_planted

    a, _, _, _ = build_planted(base, decoder=decoder, **kwargs)
    acts = a.read_npz_sparse("activations.npz")
    ds = load_dataset(a.config["dataset"]["path"], embedding="X_emb")
    feats = activation_stats(acts)
    if "feature" not in feats:
        feats = feats.rename_axis("feature").reset_index()
    char = characterise(acts, ds.cell_types).reset_index()
    feats = feats.merge(char, on="feature")
    with a.step("features", inputs={"planted": True}) as w:
        w.write_parquet("features.parquet", feats)
    return Path(a.path)
