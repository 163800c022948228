"""Train an SAE into an analysis folder: train → encode → metrics → characterise → one atomic step.

The CLI (`featurelens train`), the demo and the app all call :func:`train_into_analysis`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .characterise import characterise
from .io import content_hash
from .progress import Progress, ShouldStop, never_stop, no_progress

__all__ = ["train_into_analysis", "sae_step_inputs"]


def sae_step_inputs(x: np.ndarray, *, sae_config, train_config, seeds, data_ref: dict, cell_types=None) -> dict:
    """What the ``sae`` step depends on (its cache key)."""
    return {"data": {"sha256": data_ref.get("sha256"), "embedding": data_ref.get("embedding"),
                     "values": content_hash(np.ascontiguousarray(x))},
            "cell_types": content_hash(np.asarray(cell_types).astype(str)) if cell_types is not None else None,
            "sae": sae_config.to_dict(), "train": train_config.to_dict(), "seeds": list(seeds) if seeds else None}


def _fidelity(analysis, x: np.ndarray, result) -> dict | None:
    """Expression-space fidelity of ``result``'s SAE on its validation cells (:mod:`core.model.fidelity`):
    None without a decoder; ``{"unavailable": reason}`` when the decoder cannot score these data."""
    from .errors import InputError
    from .model.fidelity import analysis_fidelity
    from .sae import reconstruct

    try:
        return analysis_fidelity(analysis, x, result.val_index, reconstruct=lambda rows: reconstruct(result.sae, rows),
                                 seed=result.train_config.seed)
    except InputError as exc:
        return {"unavailable": exc.message}


def train_into_analysis(analysis, x: np.ndarray, *, sae_config, train_config, seeds: Sequence[int] | None = None,
                        data_ref: dict, cell_types=None, progress: Progress = no_progress,
                        should_stop: ShouldStop = never_stop, force: bool = False,
                        on_eval=None) -> dict[str, Any]:
    """Train (or reuse) the SAE of ``analysis`` on ``x`` (n_cells, d); returns ``metrics.json``'s content.

    Writes ``sae.pt``, ``sae.json``, ``metrics.json``, ``features.parquet`` (activation statistics
    + cell-type characterisation) and ``activations.npz`` as step ``sae``. ``seeds``: train one SAE
    per seed and store their stability in ``metrics["robustness"]`` (the first seed's SAE is kept).
    ``on_eval(row)``: called with each validation row of a single-seed run (see ``train_sae``).
    ``summary["fidelity"]``: the expression model's log-likelihood of held-out cells' counts with the
    SAE reconstruction in place of the embedding (None when the analysis has no decoder).
    """
    from .sae import encode_activations, sae_metrics, save_sae, train_sae
    from .sae.robustness import robustness_report, train_seeds

    inputs = sae_step_inputs(x, sae_config=sae_config, train_config=train_config, seeds=seeds,
                             data_ref=data_ref, cell_types=cell_types)
    if not force and analysis.cached("sae", inputs=inputs):
        return analysis.read_json("metrics.json")
    if seeds:
        results = train_seeds(x, config=sae_config, train=train_config, seeds=seeds, progress=progress,
                              should_stop=should_stop)
    else:
        results = [train_sae(x, config=sae_config, train=train_config, progress=progress, should_stop=should_stop,
                             on_eval=on_eval)]
    if any(r.stop_reason == "should_stop" for r in results):  # a partial SAE must not be cached as done
        from .progress import Cancelled

        raise Cancelled("training cancelled; the analysis was not changed")
    measured, acts_by_seed = {}, {}
    for res in results:
        seed = res.train_config.seed
        progress(0, 1, f"encoding all cells (seed {seed})")
        acts_by_seed[seed] = encode_activations(res.sae, x)
        measured[seed] = sae_metrics(res.sae, x, activations=acts_by_seed[seed], val_index=res.val_index)
    primary = results[0]
    acts = acts_by_seed[primary.train_config.seed]
    summary, features = measured[primary.train_config.seed]
    char = characterise(acts, cell_types)
    features = features.join(char, on="feature") if "feature" in features else features.join(char)
    summary = {**summary, "local": int((char["locality"] == "local").sum()),
               "global": int((char["locality"] == "global").sum())}
    progress(0, 1, "expression fidelity on held-out cells")
    summary["fidelity"] = _fidelity(analysis, x, primary)
    metrics: dict[str, Any] = {"summary": summary, "training": primary.summary(), "history": primary.history,
                               "val_cells": int(len(primary.val_index)), "robustness": None}
    if seeds and len(results) >= 2:
        def local_global(_sae, a) -> dict:
            loc = characterise(a, cell_types)["locality"]
            return {"n_local": int((loc == "local").sum()), "n_global": int((loc == "global").sum())}

        report = robustness_report({r.train_config.seed: r.sae for r in results}, x, metrics=measured,
                                   val_loss={r.train_config.seed: r.best.get("val_loss") for r in results},
                                   characterise=local_global if cell_types is not None else None)
        metrics["robustness"] = report.to_dict()
    with analysis.step("sae", inputs=inputs) as w:
        save_sae(primary.sae, w, extra={"train": train_config.to_dict(),
                                        "data": {"n_cells": int(x.shape[0]), **data_ref}})
        w.write_json("metrics.json", metrics)
        w.write_parquet("features.parquet", features)
        w.write_npz_sparse("activations.npz", acts)
    return metrics
