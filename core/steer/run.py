"""Steering experiments (docs/method.md §6): set SAE features in chosen cells, re-decode, compare.

For the selected cells x (n, d) of the embedding the SAE gives latents z = encode(x). Each steered
feature f is set to its target t_f: Δz = t − z_F (n, k). The steered embedding is

- with the error term (default): x' = x + s·W_dec[:, F] Δz — the SAE reconstruction of the
  steered latents plus the cell's own reconstruction error (x − x̂), computed as the change only,
  so an unchanged latent leaves the cell exactly as it was;
- without (``error_term=False``, the paper): x' = decode(z with z_F = t), the SAE reconstruction,
  compared with the original cell x — the difference then also holds the SAE's reconstruction error.

(s: the SAE's stored input scale.) Both x and x' go through the expression model's decoder ×
library size (the normal expression is read from the analysis's cached predicted expression when
annotation made it; cells whose latent did not change are not decoded again: their steered
expression is their normal expression, exactly), then paired DE, BH, up/down enrichment, and the nearest
cell-type centroid before and after.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress
from core.steer.cells import describe_selection, select_cells
from core.steer.centroids import centroid_shift, centroid_summary
from core.steer.config import SteerConfig
from core.steer.context import SteeringContext, steering_context
from core.steer.enrichment import steering_concepts, up_down_enrichment
from core.steer.paired_de import de_table, paired_log_test
from core.steer.targets import resolve_targets
from core.model.decoders import decode_all

__all__ = ["SteeringResult", "steer", "steer_latents"]


@dataclass
class SteeringResult:
    """One steering run. n = steered cells, k = features, d = embedding dimensions, G = genes.

    ``cells`` (n,) indices into the data; ``cell_names`` (n,); ``cell_types`` (n,) or None;
    ``targets`` (k,) the value each feature was set to; ``activations_before`` (n, k) the
    features' activations before; ``latent_before`` / ``latent_after`` (n, d);
    ``expression_normal`` / ``expression_steered`` (n, G) float32 expected counts (None when a
    stored run was saved without them); ``de`` one row per gene (gene, mean_normal,
    mean_steered, log2fc, stat, pvalue, qvalue, significant, direction); ``enrichment_up`` /
    ``enrichment_down`` one row per kept term; ``centroid_shift`` one row per cell.
    """

    features: list[int]
    cells: np.ndarray
    cell_names: list[str]
    cell_types: np.ndarray | None
    targets: np.ndarray
    target_labels: list[str]
    activations_before: np.ndarray
    latent_before: np.ndarray
    latent_after: np.ndarray
    expression_normal: np.ndarray | None
    expression_steered: np.ndarray | None
    genes: list[str]
    de: pd.DataFrame
    enrichment_up: pd.DataFrame
    enrichment_down: pd.DataFrame
    centroid_shift: pd.DataFrame
    config: SteerConfig
    info: dict = field(default_factory=dict)
    run_id: str | None = None

    @property
    def n_cells(self) -> int:
        return int(self.cells.size)

    def centroid_summary(self) -> pd.DataFrame:
        """Per cell type: mean distance before/after and nearest-type counts (see :func:`centroid_summary`)."""
        return centroid_summary(self.centroid_shift)

    def summary(self, *, top: int = 5) -> dict:
        """Small JSON-able digest: what was steered, how many genes moved, top genes and terms, moves."""
        de = self.de
        up = de[de["direction"] == "up"].sort_values("log2fc", ascending=False)
        down = de[de["direction"] == "down"].sort_values("log2fc")
        out: dict[str, Any] = {
            "run_id": self.run_id, "features": [int(f) for f in self.features],
            "targets": [float(t) for t in self.targets], "target_labels": list(self.target_labels),
            "cells": self.info.get("cells", ""), "n_cells": self.n_cells,
            "n_selected": int(self.info.get("n_selected", self.n_cells)),
            "error_term": bool(self.config.error_term), "test": self.config.test, "n_genes": int(len(de)),
            "n_significant": int(de["significant"].sum()), "n_up": int(len(up)), "n_down": int(len(down)),
            "top_up_genes": up["gene"].head(top).tolist(), "top_down_genes": down["gene"].head(top).tolist(),
            "top_up_terms": self.enrichment_up["term_name"].head(top).tolist(),
            "top_down_terms": self.enrichment_down["term_name"].head(top).tolist(),
            "n_terms_up": int(len(self.enrichment_up)), "n_terms_down": int(len(self.enrichment_down)),
            "mean_activation_before": [float(v) for v in self.activations_before.mean(0)]
            if self.n_cells else [],
            "mean_latent_shift": float(self.centroid_shift["shift"].mean()) if self.n_cells else 0.0,
            "cells_changed": int(self.info.get("cells_changed", 0)),
        }
        if "moved" in self.centroid_shift:
            cs = self.centroid_shift
            moved = cs[cs["moved"]]
            pairs = (moved["nearest_before"] + " → " + moved["nearest_after"]).value_counts()
            out["cells_moved_type"] = int(len(moved))
            out["moves"] = {str(k): int(v) for k, v in pairs.items()}
            cs_sum = self.centroid_summary()
            out["closest_approach"] = (str(cs_sum["cell_type"].iloc[0]) if len(cs_sum) else None)
        return out


def _check_features(features, ctx: SteeringContext) -> list[int]:
    if isinstance(features, (int, np.integer)):
        features = [features]
    try:
        feats = [int(f) for f in features]
    except (TypeError, ValueError):
        raise InputError(f"features must be integers, got {features!r}", fix="e.g. --feature 12 or 12,40") from None
    if not feats:
        raise InputError("no feature to steer", fix="give at least one feature id")
    if len(set(feats)) != len(feats):
        raise InputError(f"feature listed twice in {feats}", fix="list each feature once")
    hidden = ctx.sae.hidden
    for f in feats:
        if not 0 <= f < hidden:
            raise InputError(f"feature {f} does not exist (the SAE has {hidden} features, 0–{hidden - 1})")
    fired = np.diff(ctx.activations.indptr)
    dead = [f for f in feats if fired[f] == 0]
    if dead:
        raise InputError(f"feature {dead[0]} is dead: it fires on none of the {ctx.n_cells:,} cells, so its "
                         "decoder direction was never trained and steering it means nothing",
                         fix="choose a live feature (features.parquet, column 'live')")
    return feats


def steer_latents(sae, x: np.ndarray, *, features: list[int], targets: np.ndarray,
                  error_term: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steer SAE features of embeddings ``x`` (n, d). Returns ``(z_before (n, k), x_before (n, d),
    x_after (n, d))``, float32: with ``error_term`` x_before = x and x_after = x + s·W_dec[:, F] Δz;
    without it x_before = x and x_after = the SAE reconstruction of the steered latents."""
    import torch

    x = np.ascontiguousarray(x, np.float32)
    feats = torch.as_tensor(np.asarray(features, np.int64))
    with torch.inference_mode():
        xt = torch.from_numpy(x).to(sae.W_enc.device)
        z = sae.encode(xt)
        z_f = z[:, feats]
        t = torch.as_tensor(np.asarray(targets, np.float32), device=z.device)
        dz = t[None, :] - z_f
        w = sae.W_dec[:, feats]  # (d, k)
        if error_term:
            after = xt + (dz @ w.T) * sae.input_scale
        else:
            z2 = z.clone()
            z2[:, feats] = t[None, :].expand_as(z_f)
            after = sae.decode(z2)
    return z_f.cpu().numpy().astype(np.float32), x, after.cpu().numpy().astype(np.float32)


def _decode(decoder, latent, lib, cov, rows) -> np.ndarray:
    return decode_all(decoder, latent, None if lib is None else lib[rows], None if cov is None else cov[rows])


def steer(analysis, *, features, cells, config: SteerConfig = SteerConfig(), progress: Progress = no_progress,
          should_stop: ShouldStop = never_stop) -> SteeringResult:
    """Steer ``features`` in ``cells`` of ``analysis`` (an Analysis or a :class:`SteeringContext`).

    ``features``: an id or a list of ids; ``cells``: a selection (``"cell_type=A,B"``,
    ``"cells=n1,n2"``, ``"all"``, indices, a mask or names; see :func:`select_cells`).
    Raises InputError for a missing decoder, an unknown feature / cell type / cell, a dead
    feature or an empty selection; :class:`~core.base.progress.Cancelled` when ``should_stop()``.
    """
    stages = 6

    def stage(i: int, message: str) -> None:
        if should_stop():
            raise Cancelled("steering cancelled")
        progress(i, stages, message)

    stage(0, "loading the SAE, decoder and data")
    ctx = analysis if isinstance(analysis, SteeringContext) else steering_context(analysis)
    feats = _check_features(features, ctx)
    if config.test == "nb-glm" and ctx.dispersion is None:
        raise InputError("the NB GLM test needs the model's gene dispersions, and this decoder has none "
                         f"({ctx.decoder.kind})",
                         fix="use the paired log test (test='paired-log', the default), or the built-in model")
    targets = resolve_targets(config.targets_for(len(feats)), feats, activations_csc=ctx.activations,
                              cell_types=ctx.cell_types)
    idx, n_selected = _steered_cells(ctx, cells, config)

    stage(1, f"steering {len(feats)} feature(s) in {idx.size:,} cells")
    z_f, before, after = steer_latents(ctx.sae, ctx.embedding[idx], features=feats, targets=targets,
                                       error_term=config.error_term)

    stage(2, "decoding normal and steered cells")
    normal, steered, changed = _normal_and_steered(ctx, idx, before, after)

    stage(3, f"paired DE ({config.test}) over {normal.shape[1]:,} genes")
    de = _paired_de(ctx, normal, steered, config)

    stage(4, "enrichment of up- and down-regulated genes")
    concepts = steering_concepts(ctx.gene_names, databases=config.databases, gmt=config.gmt,
                                 propagate=config.propagate, min_size=config.min_term_size,
                                 max_size=config.max_term_size)
    enr_up, enr_down = up_down_enrichment(de, concepts, q_max=config.enrich_q, min_shift=config.min_term_shift)

    stage(5, "distances to cell-type centroids")
    types = ctx.cell_types
    shift = centroid_shift(before, after, cell_index=idx, cell_names=ctx.obs.index[idx],
                           cell_types=None if types is None else types[idx], centroids=ctx.centroids())
    info = {"cells": describe_selection(cells, n_selected), "n_selected": n_selected,
            "subsampled": bool(idx.size < n_selected), "cells_changed": int(changed.size),
            "gene_match": concepts.match.describe() if concepts is not None and concepts.match else "",
            "concept_terms_tested": int(concepts.n_terms) if concepts is not None else 0,
            **ctx.info}
    progress(stages, stages, "steering done")
    return SteeringResult(
        features=feats, cells=idx, cell_names=[str(c) for c in ctx.obs.index[idx]],
        cell_types=None if types is None else types[idx], targets=targets,
        target_labels=[t.text for t in config.targets_for(len(feats))], activations_before=z_f,
        latent_before=before, latent_after=after, expression_normal=normal, expression_steered=steered,
        genes=list(ctx.gene_names), de=de, enrichment_up=enr_up, enrichment_down=enr_down,
        centroid_shift=shift, config=config, info=info)


def _steered_cells(ctx: SteeringContext, cells, config: SteerConfig) -> tuple[np.ndarray, int]:
    """``(the cells to steer, how many the selection held)``: at most ``config.max_cells``, a seeded sample."""
    idx = select_cells(ctx, cells)
    n_selected = int(idx.size)
    if config.max_cells is not None and idx.size > config.max_cells:
        rng = np.random.default_rng(ctx.seed if config.seed is None else config.seed)
        idx = np.sort(rng.choice(idx, size=config.max_cells, replace=False))
    return idx, n_selected


def _normal_and_steered(ctx: SteeringContext, idx: np.ndarray, before: np.ndarray,
                        after: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(normal expression, steered expression, cells whose latent changed)``; only those are decoded again."""
    normal = ctx.normal_expression(idx)  # the analysis's cached predicted expression of these cells, if any
    if normal is None:
        normal = _decode(ctx.decoder, before, ctx.library_size, ctx.covariates, idx)
    changed = np.flatnonzero((after != before).any(axis=1))
    steered = normal.copy()
    if changed.size:
        steered[changed] = _decode(ctx.decoder, after[changed], ctx.library_size, ctx.covariates, idx[changed])
    return normal, steered, changed


def _paired_de(ctx: SteeringContext, normal: np.ndarray, steered: np.ndarray, config: SteerConfig):
    """The DE table of steered vs normal cells (paired log test, or the NB GLM with the model's dispersions)."""
    if config.test == "nb-glm":
        from core.steer.glm import nb_glm_paired

        stats = nb_glm_paired(normal, steered, theta=ctx.dispersion)
    else:
        stats = paired_log_test(normal, steered, pseudocount=config.pseudocount)
    return de_table(ctx.gene_names, stats, alpha=config.alpha, min_abs_log2fc=config.min_abs_log2fc)
