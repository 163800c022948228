"""Train an SAE into an analysis folder: train → encode → metrics → characterise → one atomic step.

The CLI (`featurelens train`), the demo and the app all call :func:`train_into_analysis`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from core.sae.characterise import characterise, check_max_regional_types, locality_counts
from core.base.io import content_hash
from core.base.progress import Cancelled, never_stop, no_progress, Progress, ShouldStop
from core.base.errors import InputError
from core.model.fidelity import analysis_fidelity
from core.sae import check_trainable, encode_activations, reconstruct, sae_metrics, save_sae, train_sae
from core.sae.robustness import robustness_report, train_seeds
from core.sae.stability import seed_stability
from core.sae.sweep import sparsity_sweep

__all__ = ["train_into_analysis", "sae_step_inputs"]


#: Version of the characterisation rule stored in the cache key: analyses characterised with the
#: old local/global rule are re-characterised (retrained) the next time ``train`` runs.
CHARACTERISE_RULE = "local/regional/global"


def sae_step_inputs(x: np.ndarray, *, sae_config, train_config, seeds, data_ref: dict, cell_types=None,
                    max_regional_types: int | None = None, sweep=None) -> dict:
    """What the ``sae`` step depends on (its cache key); ``sweep``: the ``auto`` preset's
    :class:`core.sae.sweep.SweepConfig` (its chosen L1 replaces ``sae_config.l1``)."""
    return {"data": {"sha256": data_ref.get("sha256"), "embedding": data_ref.get("embedding"),
                     "values": content_hash(np.ascontiguousarray(x))},
            "cell_types": content_hash(np.asarray(cell_types).astype(str)) if cell_types is not None else None,
            "sae": sae_config.to_dict(), "train": train_config.to_dict(), "seeds": list(seeds) if seeds else None,
            "characterise": {"rule": CHARACTERISE_RULE, "max_regional_types": max_regional_types},
            **({"sweep": sweep.to_dict()} if sweep is not None else {})}


def _fidelity(analysis, x: np.ndarray, result) -> dict | None:
    """Expression-space fidelity of ``result``'s SAE on its validation cells (:mod:`core.model.fidelity`):
    None without a decoder; ``{"unavailable": reason}`` when the decoder cannot score these data."""

    try:
        return analysis_fidelity(analysis, x, result.val_index, reconstruct=lambda rows: reconstruct(result.sae, rows),
                                 seed=result.train_config.seed)
    except InputError as exc:
        return {"unavailable": exc.message}


def train_into_analysis(analysis, x: np.ndarray, *, sae_config, train_config, seeds: Sequence[int] | None = None,
                        data_ref: dict, cell_types=None, progress: Progress = no_progress,
                        should_stop: ShouldStop = never_stop, force: bool = False,
                        on_eval=None, max_regional_types: int | None = None, sweep=None) -> dict[str, Any]:
    """Train (or reuse) the SAE of ``analysis`` on ``x`` (n_cells, d); returns ``metrics.json``'s content.

    Writes ``sae.pt``, ``sae.json``, ``metrics.json``, ``features.parquet`` (activation statistics
    + cell-type characterisation) and ``activations.npz`` as step ``sae``. ``seeds``: train one SAE
    per seed and store their stability in ``metrics["robustness"]`` (the first seed's SAE is kept),
    and each feature's ``stability`` (:mod:`core.sae.stability`) in ``features.parquet``.
    ``on_eval(row)``: called with each validation row (of the first seed's run; see ``train_sae``).
    ``sweep``: a :class:`core.sae.sweep.SweepConfig` (the ``auto`` preset) first chooses the L1
    strength from a short sweep; the sweep goes to ``metrics["sparsity_sweep"]``.
    ``max_regional_types``: k of the locality rule (:func:`core.sae.characterise.characterise`).
    Raises InputError before anything is trained or written when ``x`` cannot train an SAE
    (:func:`core.sae.check_trainable`).
    ``summary["fidelity"]``: the expression model's log-likelihood of held-out cells' counts with the
    SAE reconstruction in place of the embedding (None when the analysis has no decoder).
    """

    check_trainable(x, what=f"embedding {data_ref.get('embedding') or ''}".strip())
    if max_regional_types is not None:
        max_regional_types = check_max_regional_types(max_regional_types)
    inputs = sae_step_inputs(x, sae_config=sae_config, train_config=train_config, seeds=seeds,
                             data_ref=data_ref, cell_types=cell_types, max_regional_types=max_regional_types,
                             sweep=sweep)
    if not force and analysis.cached("sae", inputs=inputs):
        return analysis.read_json("metrics.json")
    results, swept = _train_all(x, sae_config=sae_config, train_config=train_config, seeds=seeds, sweep=sweep,
                                progress=progress, should_stop=should_stop, on_eval=on_eval)
    measured, acts_by_seed = _measure(results, x, progress=progress)
    primary = results[0]
    acts = acts_by_seed[primary.train_config.seed]
    summary, features = _characterised(*measured[primary.train_config.seed], acts, cell_types=cell_types,
                                       max_regional_types=max_regional_types)
    progress(0, 1, "expression fidelity on held-out cells")
    summary["fidelity"] = _fidelity(analysis, x, primary)
    metrics: dict[str, Any] = {"summary": summary, "training": primary.summary(), "history": primary.history,
                               "val_cells": int(len(primary.val_index)), "robustness": None,
                               "sparsity_sweep": swept}
    if seeds and len(results) >= 2:
        metrics["robustness"], features = _robustness(results, x, measured, features, cell_types=cell_types,
                                                      max_regional_types=max_regional_types)
    with analysis.step("sae", inputs=inputs) as w:
        save_sae(primary.sae, w, extra={"train": train_config.to_dict(),
                                        "data": {"n_cells": int(x.shape[0]), **data_ref}})
        w.write_json("metrics.json", metrics)
        w.write_parquet("features.parquet", features)
        w.write_npz_sparse("activations.npz", acts)
    return metrics


def _train_all(x: np.ndarray, *, sae_config, train_config, seeds, sweep, progress, should_stop, on_eval):
    """``(one TrainResult per seed (or one), the sparsity sweep or None)``; Cancelled on a partial run."""

    swept = None
    if sweep is not None:
        swept = sparsity_sweep(x, config=sae_config, train=train_config, sweep=sweep, progress=progress,
                               should_stop=should_stop)
        sae_config = sae_config.replace(l1=swept["chosen_l1"])
    if seeds:
        results = train_seeds(x, config=sae_config, train=train_config, seeds=seeds, progress=progress,
                              should_stop=should_stop, on_eval=on_eval)
    else:
        results = [train_sae(x, config=sae_config, train=train_config, progress=progress, should_stop=should_stop,
                             on_eval=on_eval)]
    if any(r.stop_reason == "should_stop" for r in results):  # a partial SAE must not be cached as done
        raise Cancelled("training cancelled; the analysis was not changed")
    return results, swept


def _measure(results, x: np.ndarray, *, progress) -> tuple[dict, dict]:
    """``({seed: (summary, features table)}, {seed: activations (n_cells, hidden) CSR})``."""

    measured, acts_by_seed = {}, {}
    for res in results:
        seed = res.train_config.seed
        progress(0, 1, f"encoding all cells (seed {seed})")
        acts_by_seed[seed] = encode_activations(res.sae, x)
        measured[seed] = sae_metrics(res.sae, x, activations=acts_by_seed[seed], val_index=res.val_index)
    return measured, acts_by_seed


def _characterised(summary: dict, features, acts, *, cell_types, max_regional_types):
    """The primary SAE's summary and features table with the cell-type characterisation joined in."""
    char = characterise(acts, cell_types, max_regional_types=max_regional_types)
    features = features.join(char, on="feature") if "feature" in features else features.join(char)
    if cell_types is not None:
        summary = {**summary, **locality_counts(char["locality"]),
                   "max_regional_types": char.attrs["max_regional_types"]}
    else:
        summary = {**summary, "local": 0, "regional": 0, "global": 0}
    return summary, features


def _robustness(results, x: np.ndarray, measured: dict, features, *, cell_types, max_regional_types):
    """``(metrics["robustness"], features with each feature's seed stability)`` for two or more seeds."""

    def local_global(_sae, a) -> dict:
        counts = locality_counts(characterise(a, cell_types, max_regional_types=max_regional_types)["locality"])
        return {f"n_{name}": n for name, n in counts.items()}

    report = robustness_report({r.train_config.seed: r.sae for r in results}, x, metrics=measured,
                               val_loss={r.train_config.seed: r.best.get("val_loss") for r in results},
                               characterise=local_global if cell_types is not None else None)
    robustness = report.to_dict()
    stab, robustness["stability"] = seed_stability(
        [r.sae for r in results], [measured[r.train_config.seed][1]["live"].to_numpy(bool) for r in results])
    features = features.assign(**{c: stab[c].to_numpy()[features["feature"].to_numpy()] for c in stab})
    return robustness, features
