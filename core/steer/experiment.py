"""Steering as a controlled experiment (docs/method.md §6a): a dose–response sweep of one feature
in the same cells, with matched controls and a verdict per term.

    from core.steer import SteerExperiment, run_experiment, save_experiment
    exp = SteerExperiment(feature=12, cells="cell_type=MEP", strengths=(0.5, 1, 2, 4), controls=2, seed=0)
    res = run_experiment(analysis, exp)    # res.conditions, res.terms, res.verdicts, res.runs[label]
    save_experiment(analysis, res)         # one atomic step: steer-experiments/<id>/

**Sweep.** The feature is set to ``s × its maximum`` for every strength s (0 = off, always the
first point) in the same cells; the normal expression is decoded once.
**Controls** at the reference strength r, each cell's embedding change having the norm
ρ_i = |Δz_i|·‖s_SAE·W_dec[:, f]‖ of the feature's own change in that cell:
(a) ``controls`` random live features of similar firing frequency (drawn from the
``pool`` live features nearest in log firing count), each raised by ρ_i / ‖s_SAE·W_dec[:, g]‖;
(b) ``controls`` random unit directions u (Gaussian, normalised) in the embedding, x' = x + ρ_i u.
**Verdict** (:mod:`core.steer.verdicts`): every hypothesis term (named with ``terms``, else the
feature's reported annotation terms) and every term enriched in the feature's run at r is
judged against ``null_draws`` random similar-frequency features and as many random directions,
scored on ``null_cells`` of the cells: rank p of the term's competitive mean log2 change, BH within
each family; "specific" when q < ``term_q`` against both kinds, else "not above control".
"""
from __future__ import annotations

import dataclasses
import io as _io
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.base import io
from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress
from core.steer.cells import describe_selection, select_cells
from core.steer.centroids import centroid_shift
from core.steer.config import SteerConfig
from core.steer.context import SteeringContext, steering_context
from core.steer.enrichment import steering_concepts, up_down_enrichment
from core.steer.paired_de import de_table, paired_log_test
from core.steer.run import SteeringResult, steer_latents
from core.steer.targets import parse_target, resolve_targets
from core.steer.verdicts import (EXPLORATORY, HYPOTHESIS, NO_CONTROLS, NOT_ABOVE, SPECIFIC, VERDICT_COLUMNS, Scoring,
                                 effects_of, hypothesis_terms, judge_terms, null_effects)
from core.model.decoders import decode_all

__all__ = ["VERDICT_NOTE", "SteerExperiment", "ExperimentResult", "run_experiment", "save_experiment", "load_experiment",
           "list_experiments", "parse_strengths", "evaluate_shift", "matched_controls", "null_features", "term_scores",
           "SPECIFIC", "NOT_ABOVE", "NO_CONTROLS", "EXPERIMENT_PREFIX"]

# Shown wherever verdicts are (CLI, Steering page).
VERDICT_NOTE = ("A term is “specific” when steering the feature moves it more than steering random features of "
                "similar frequency and random directions by the same amount (rank p among the draws, BH within the "
                "hypotheses and within the other terms). With K draws the smallest p is 1/(K + 1), so the other "
                "terms, hundreds of them, need many draws; the hypotheses are the feature's annotated terms.")
EXPERIMENT_PREFIX = "steer-experiment/"
FOLDER = "steer-experiments/"
FORMAT_VERSION = 2
_STRENGTH_FIX = "e.g. --sweep 0.5,1,2,4 (multiples of the feature's maximum; 0 or off switches it off)"


def parse_strengths(text) -> tuple[float, ...]:
    """``"0.5,1,2,4"`` (also ``off``, ``x2``) or a sequence of numbers -> strengths (× the maximum).
    InputError for anything that is not a finite number ≥ 0, or for none."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    out = []
    for t in items:
        if isinstance(t, str):
            low = t.lower()
            if low in ("off", "zero"):
                out.append(0.0)
                continue
            t = low[1:] if low.startswith("x") else low
        try:
            v = float(t)
        except (TypeError, ValueError):
            raise InputError(f"invalid sweep strength {t!r}", fix=_STRENGTH_FIX) from None
        if isinstance(t, bool) or not math.isfinite(v) or v < 0:
            raise InputError(f"invalid sweep strength {t!r}: strengths are multiples of the maximum, ≥ 0",
                             fix=_STRENGTH_FIX)
        out.append(v)
    if not out:
        raise InputError("no sweep strength given", fix=_STRENGTH_FIX)
    if len(set(out)) != len(out):
        raise InputError(f"sweep strength listed twice in {out}", fix="list each strength once")
    return tuple(out)


@dataclass(frozen=True)
class SteerExperiment:
    """One feature steered at several strengths in the same cells, with matched controls.

    ``feature``: the SAE feature; ``cells``: a selection (see :func:`core.steer.select_cells`) or
    cell indices; ``strengths``: multiples of the feature's maximum (0 = off; off is always the
    first point); ``controls``: control runs of EACH kind (random similar-frequency feature,
    random direction; 0 = none); ``reference``: the strength the controls match and the verdicts
    use (None: 1 if swept, else the largest); ``seed``: draws of the controls; ``pool``: the
    control features are drawn from this many live features nearest in firing frequency;
    ``null_draws``: random features and random directions (each) the verdicts are judged against,
    on ``null_cells`` of the cells; ``terms``: the hypotheses (term ids, or one text of them
    separated by commas; ``down:`` for a fall; empty: the feature's reported annotation terms); ``term_q``: the BH bound of "specific";
    ``config``: test, thresholds and enrichment of every run (its ``target`` is not used).
    """

    feature: int
    cells: str | tuple[int, ...]
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    controls: int = 1
    reference: float | None = None
    seed: int = 0
    pool: int = 20
    null_draws: int = 50
    null_cells: int = 64
    terms: tuple[str, ...] = ()
    term_q: float = 0.05
    config: SteerConfig = field(default_factory=SteerConfig)

    def __post_init__(self):
        if isinstance(self.feature, bool) or not isinstance(self.feature, (int, np.integer)):
            raise InputError(f"an experiment steers one feature (an integer id), got {self.feature!r}",
                             fix="e.g. feature=12; steer several features together with `steer()`")
        object.__setattr__(self, "feature", int(self.feature))
        if not isinstance(self.cells, str):
            try:
                object.__setattr__(self, "cells", tuple(int(c) for c in self.cells))
            except (TypeError, ValueError):
                raise InputError(f"cells must be a selection text or cell indices, got {self.cells!r}") from None
        s = tuple(sorted(set(parse_strengths(self.strengths)) | {0.0}))
        object.__setattr__(self, "strengths", s)
        if len(s) < 2:
            raise InputError("the sweep has no strength above off", fix=_STRENGTH_FIX)
        for name in ("controls", "seed", "pool", "null_draws", "null_cells"):
            v = getattr(self, name)
            pos = name in ("pool", "null_cells")
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (1 if pos else 0):
                raise InputError(f"{name} must be a{' positive' if pos else ' non-negative'} integer, "
                                 f"got {v!r}", fix="e.g. controls=2" if name == "controls" else None)
            object.__setattr__(self, name, int(v))
        if self.reference is None:
            object.__setattr__(self, "reference", 1.0 if 1.0 in s else max(s))
        elif float(self.reference) not in s or float(self.reference) == 0:
            raise InputError(f"the reference strength {self.reference!r} is not a swept strength above off",
                             fix=f"choose one of {', '.join(f'{v:g}' for v in s if v > 0)}")
        object.__setattr__(self, "reference", float(self.reference))
        terms = tuple(t for t in re.split(r"[,;]", self.terms) if t.strip()) if isinstance(self.terms, str) \
            else tuple(self.terms or ())
        if not all(isinstance(t, str) and t.strip() for t in terms):
            raise InputError(f"terms must be term ids such as GO:0030218, got {self.terms!r}")
        object.__setattr__(self, "terms", tuple(t.strip() for t in terms))
        if not (_num(self.term_q) and 0 < self.term_q <= 1):
            raise InputError(f"term_q must lie in (0, 1], got {self.term_q!r}", fix="e.g. 0.05")
        if not isinstance(self.config, SteerConfig):
            raise InputError(f"config must be a SteerConfig, not {type(self.config).__name__}")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["cells"] = self.cells if isinstance(self.cells, str) else list(self.cells)
        d["strengths"] = list(self.strengths)
        d["terms"] = list(self.terms)
        d["config"] = self.config.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SteerExperiment:
        d = dict(d)
        d["config"] = SteerConfig.from_dict(d.get("config", {}))
        if isinstance(d.get("cells"), list):
            d["cells"] = tuple(d["cells"])
        d["strengths"] = tuple(d.get("strengths", ()))
        d["terms"] = tuple(d.get("terms", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown experiment setting(s): {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass
class ExperimentResult:
    """Runs of one experiment. ``runs``: label -> :class:`SteeringResult` (labels in
    ``conditions["run"]``); ``conditions``: one row per run (run, kind ∈ feature / control-feature /
    control-direction, strength, feature, target, n_up, n_down, n_changed, n_terms_up,
    n_terms_down, mean_shift, toward[T] = how much closer to type T's centroid on average);
    ``terms``: long table of term scores (run, kind, strength, direction, term_id, term_name,
    score, q) for the terms of the feature's reference run; ``verdicts``: one row per such term."""

    experiment: SteerExperiment
    runs: dict[str, SteeringResult]
    conditions: pd.DataFrame
    terms: pd.DataFrame
    verdicts: pd.DataFrame
    info: dict = field(default_factory=dict)
    experiment_id: str | None = None

    def dose_response(self) -> pd.DataFrame:
        """The feature's rows of :attr:`conditions`, by strength."""
        c = self.conditions
        return c[c["kind"] == "feature"].sort_values("strength").reset_index(drop=True)

    def reference_run(self) -> SteeringResult:
        return self.runs[_label("feature", self.experiment.reference)]

    def summary(self, *, top: int = 5) -> dict:
        v = self.verdicts
        spec = v[v["verdict"] == SPECIFIC]
        return {"experiment_id": self.experiment_id, "feature": self.experiment.feature,
                "cells": self.info.get("cells", ""), "n_cells": int(self.info.get("n_cells", 0)),
                "strengths": list(self.experiment.strengths), "reference": self.experiment.reference,
                "control_features": list(self.info.get("control_features", [])),
                "n_direction_controls": int(self.experiment.controls),
                "n_changed": {r.run: int(r.n_changed) for r in self.conditions.itertuples()},
                "n_terms": int(len(v)), "n_specific": int(len(spec)),
                "n_hypotheses": int((v["family"] == HYPOTHESIS).sum()) if "family" in v else 0,
                "n_specific_hypotheses": int((spec["family"] == HYPOTHESIS).sum()) if "family" in spec else 0,
                "null_draws": int(self.info.get("null_directions", 0)),
                "specific_terms": spec["term_name"].head(top).tolist()}


def _num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _label(kind: str, x) -> str:
    if kind == "feature":
        return "feature-off" if x == 0 else f"feature-x{x:g}"
    return f"{kind}-{x}"


def _check_feature(ctx: SteeringContext, f: int) -> np.ndarray:
    """Firing counts of every feature (cells); InputError for an unknown or dead ``f``."""
    hidden = ctx.sae.hidden
    if not 0 <= f < hidden:
        raise InputError(f"feature {f} does not exist (the SAE has {hidden} features, 0–{hidden - 1})")
    fired = np.diff(ctx.activations.indptr)
    if fired[f] == 0:
        raise InputError(f"feature {f} is dead: it fires on none of the {ctx.n_cells:,} cells",
                         fix="choose a live feature (features.parquet, column 'live')")
    return fired


def _directions(sae) -> np.ndarray:
    """Each feature's change of the embedding per unit of activation, s·W_dec (d, hidden), float64."""
    w = sae.W_dec.detach().cpu().numpy().astype(np.float64)
    scale = sae.input_scale.detach().cpu().numpy().astype(np.float64)
    return w * (scale.reshape(-1, 1) if scale.ndim else float(scale))


def _reconstruction(sae, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(sae.W_enc.device)
        return sae.decode(sae.encode(xt)).cpu().numpy().astype(np.float32)


def evaluate_shift(ctx: SteeringContext, *, cells: np.ndarray, normal: np.ndarray, before: np.ndarray,
                   after: np.ndarray, config: SteerConfig, concepts, features=(), targets=(), target_labels=(),
                   activations_before: np.ndarray | None = None, info: dict | None = None,
                   origin: np.ndarray | None = None) -> tuple[SteeringResult, pd.DataFrame, pd.DataFrame]:
    """Decode any embedding change of ``cells`` and test it as :func:`core.steer.steer` does.

    ``before`` / ``after`` (n, d): what is compared (the cells and their changed embedding);
    ``normal`` (n, G): the normal expression of ``cells``; ``origin``: the embedding the centroid
    shift starts from (default ``before``). Returns ``(result, all_up, all_down)``: the run (its
    enrichment tables filtered with ``config.enrich_q``) and the unfiltered enrichment of every
    term (for scoring terms against controls).
    """

    changed = np.flatnonzero((after != before).any(axis=1))
    steered = normal.copy()
    if changed.size:
        rows = cells[changed]
        lib, cov = ctx.library_size, ctx.covariates
        steered[changed] = decode_all(ctx.decoder, after[changed], None if lib is None else lib[rows],
                                      None if cov is None else cov[rows])
    if changed.size == 0 and cells.size:  # nothing moved: what either test returns for d ≡ 0, without the pass
        mean = normal.mean(0, dtype=np.float64)
        zero = np.zeros(normal.shape[1])
        stats = {"mean_normal": mean, "mean_steered": mean.copy(), "log2fc": zero, "pvalue": zero + 1.0,
                 "stat": zero.copy() if cells.size >= 2 else zero + np.nan}
    elif config.test == "nb-glm":
        from core.steer.glm import nb_glm_paired

        stats = nb_glm_paired(normal, steered, theta=ctx.dispersion)
    else:
        stats = paired_log_test(normal, steered, pseudocount=config.pseudocount)
    de = de_table(ctx.gene_names, stats, alpha=config.alpha, min_abs_log2fc=config.min_abs_log2fc)
    all_up, all_down = up_down_enrichment(de, concepts, q_max=1.0)
    kept = [t[_kept(t, config.enrich_q, config.min_term_shift)].reset_index(drop=True) for t in (all_up, all_down)]
    types = ctx.cell_types
    shift = centroid_shift(before if origin is None else origin, after, cell_index=cells,
                           cell_names=ctx.obs.index[cells], cell_types=None if types is None else types[cells],
                           centroids=ctx.centroids())
    feats = [int(f) for f in features]
    result = SteeringResult(
        features=feats, cells=cells, cell_names=[str(c) for c in ctx.obs.index[cells]],
        cell_types=None if types is None else types[cells], targets=np.asarray(targets, np.float32),
        target_labels=list(target_labels),
        activations_before=np.zeros((cells.size, 0), np.float32) if activations_before is None
        else activations_before, latent_before=before, latent_after=after, expression_normal=normal,
        expression_steered=steered, genes=list(ctx.gene_names), de=de, enrichment_up=kept[0],
        enrichment_down=kept[1], centroid_shift=shift, config=config,
        info={**(info or {}), "cells_changed": int(changed.size), **ctx.info})
    return result, all_up, all_down


def _kept(table: pd.DataFrame, q_max: float, min_shift: float) -> np.ndarray:
    """The rows :func:`up_down_enrichment` keeps at ``q_max`` and ``min_shift``."""
    over = table["hits"].to_numpy(np.float64) > table["expected"].to_numpy(np.float64)
    shifted = (table["mwu_q"].to_numpy() < q_max) & (table["shift"].to_numpy() >= min_shift)
    return ((table["binom_q"].to_numpy() < q_max) & over) | shifted


def term_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per term of an enrichment table: ``score`` = −log10 of the smaller of its binomial p (only
    when over-represented) and its Mann–Whitney p; ``q`` the smaller of the matching BH q-values."""
    over = table["hits"].to_numpy(np.float64) > table["expected"].to_numpy(np.float64)
    p = np.minimum(np.where(over, table["binom_p"].to_numpy(np.float64), 1.0), table["mwu_p"].to_numpy(np.float64))
    q = np.minimum(np.where(over, table["binom_q"].to_numpy(np.float64), 1.0), table["mwu_q"].to_numpy(np.float64))
    return pd.DataFrame({"term_id": table["term_id"].astype(str).to_numpy(),
                         "term_name": table["term_name"].astype(str).to_numpy(),
                         "score": -np.log10(np.clip(p, 1e-300, 1.0)), "q": q})


def matched_controls(ctx: SteeringContext, *, feature: int, n: int, seed: int, pool: int = 20) -> list[int]:
    """``n`` live features (not ``feature``) drawn with ``seed`` from the ``pool`` nearest to it in
    log firing count. InputError when the SAE has fewer than ``n`` other live features."""
    fired = _check_feature(ctx, feature)
    live = np.flatnonzero(fired > 0)
    live = live[live != feature]
    if live.size < n:
        raise InputError(f"{n} control features asked for, but the SAE has only {live.size} other live features",
                         fix=f"use controls={live.size} or fewer")
    if n == 0:
        return []
    gap = np.abs(np.log(fired[live]) - np.log(fired[feature]))
    near = live[np.argsort(gap, kind="stable")[:max(pool, n)]]
    rng = np.random.default_rng([seed, feature, 1])
    return sorted(int(g) for g in rng.choice(near, size=n, replace=False))


def _condition_row(label: str, kind: str, strength: float, feature, target: float, res: SteeringResult) -> dict:
    s = res.summary()
    row = {"run": label, "kind": kind, "strength": float(strength), "feature": -1 if feature is None else int(feature),
           "target": float(target), "n_up": s["n_up"], "n_down": s["n_down"], "n_changed": s["n_up"] + s["n_down"],
           "n_terms_up": s["n_terms_up"], "n_terms_down": s["n_terms_down"],
           "mean_shift": float(res.centroid_shift["shift"].mean()) if res.n_cells else 0.0,
           "cells_changed": int(res.info.get("cells_changed", 0))}
    cs = res.centroid_summary()
    for r in cs.itertuples():
        row[f"toward[{r.cell_type}]"] = -float(r.change)  # > 0: the cells came closer to that type
    return row


@dataclass
class _Cells:
    """What every run of one experiment shares: the cells ``idx`` (sorted), their embedding ``x``
    (n, d), their decoded ``normal`` expression, the concepts and the runs' common info."""

    idx: np.ndarray
    x: np.ndarray
    normal: np.ndarray
    concepts: object
    common: dict


@dataclass
class _Collected:
    """The runs of an experiment as they are made: results by label, condition rows, term scores."""

    runs: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    scores: list = field(default_factory=list)

    def add(self, label, kind, strength, feature, target, res, up, down) -> None:
        self.runs[label] = res
        self.rows.append(_condition_row(label, kind, strength, feature, target, res))
        for direction, table in (("up", up), ("down", down)):
            sc = term_scores(table)
            sc.insert(0, "direction", direction)
            sc.insert(0, "strength", float(strength))
            sc.insert(0, "kind", kind)
            sc.insert(0, "run", label)
            self.scores.append(sc)


def _experiment_cells(ctx: SteeringContext, exp: SteerExperiment) -> _Cells:
    config = exp.config
    idx = select_cells(ctx, exp.cells if isinstance(exp.cells, str) else list(exp.cells))
    n_selected = int(idx.size)
    if config.max_cells is not None and idx.size > config.max_cells:
        rng = np.random.default_rng(ctx.seed if config.seed is None else config.seed)
        idx = np.sort(rng.choice(idx, size=config.max_cells, replace=False))
    x = np.ascontiguousarray(ctx.embedding[idx], np.float32)
    normal = ctx.normal_expression(idx)
    if normal is None:
        lib, cov = ctx.library_size, ctx.covariates
        normal = decode_all(ctx.decoder, x, None if lib is None else lib[idx], None if cov is None else cov[idx])
    concepts = steering_concepts(ctx.gene_names, databases=config.databases, gmt=config.gmt,
                                 propagate=config.propagate, min_size=config.min_term_size,
                                 max_size=config.max_term_size)
    common = {"cells": describe_selection(exp.cells, n_selected) if isinstance(exp.cells, str)
              else f"{n_selected} cells (explicit list)", "n_selected": n_selected,
              "subsampled": bool(idx.size < n_selected)}
    return _Cells(idx=idx, x=x, normal=normal, concepts=concepts, common=common)


def _sweep(ctx, exp: SteerExperiment, cells: _Cells, out: _Collected, stage) -> np.ndarray:
    """The feature at every strength; returns its activation change at the reference strength (n,)."""
    f, config = exp.feature, exp.config
    dz_ref = None
    for k, s in enumerate(exp.strengths):
        stage(1 + k, f"feature {f} at {'off' if s == 0 else f'{s:g}× its maximum'}")
        target = parse_target("off" if s == 0 else f"x{s:g}")
        t = resolve_targets([target], [f], activations_csc=ctx.activations, cell_types=ctx.cell_types)
        z_f, before, after = steer_latents(ctx.sae, cells.x, features=[f], targets=t, error_term=config.error_term)
        cfg = dataclasses.replace(config, target=target.text)
        res, up, down = evaluate_shift(ctx, cells=cells.idx, normal=cells.normal, before=before, after=after,
                                       config=cfg, concepts=cells.concepts, features=[f], targets=t,
                                       target_labels=[target.text], activations_before=z_f,
                                       info={**cells.common, "strength": float(s)})
        out.add(_label("feature", s), "feature", s, f, float(t[0]), res, up, down)
        if s == exp.reference:
            dz_ref = (t[0] - z_f[:, 0]).astype(np.float64)
    return dz_ref


def _controls(ctx, exp: SteerExperiment, cells: _Cells, out: _Collected, stage, *, control_feats, dz_ref) -> None:
    """Matched controls at the reference strength: each moves every cell's embedding as far as the
    feature does (ρᵢ), along a similar-frequency feature's direction or a random one."""
    f, config, x = exp.feature, exp.config, cells.x
    v = _directions(ctx.sae)
    rho, base = _matched_norm(ctx, exp, cells, dz_ref)
    ref_cfg = dataclasses.replace(config, target=f"x{exp.reference:g}")
    acts = ctx.activations
    step = 1 + len(exp.strengths)
    for g in control_feats:
        stage(step, f"control: feature {g} (similar firing frequency)")
        step += 1
        vg = v[:, g]
        dzg = rho / np.linalg.norm(vg)
        after = (base + dzg[:, None] * vg[None, :]).astype(np.float32)
        col = np.zeros(ctx.n_cells, np.float32)
        col[acts.indices[acts.indptr[g]:acts.indptr[g + 1]]] = acts.data[acts.indptr[g]:acts.indptr[g + 1]]
        zg = col[cells.idx]
        res, up, down = evaluate_shift(ctx, cells=cells.idx, normal=cells.normal, before=x, after=after,
                                       config=ref_cfg, concepts=cells.concepts, features=[g],
                                       targets=[float((zg + dzg).mean())], target_labels=["matched shift"],
                                       activations_before=zg[:, None],
                                       info={**cells.common, "control": "feature", "control_of": f}, origin=x)
        out.add(_label("control-feature", g), "control-feature", exp.reference, g, float((zg + dzg).mean()),
                res, up, down)
    for k in range(exp.controls):
        stage(step, f"control: random direction {k + 1}")
        step += 1
        u = np.random.default_rng([exp.seed, f, 2, k]).standard_normal(x.shape[1])
        u /= np.linalg.norm(u)
        after = (base + rho[:, None] * u[None, :]).astype(np.float32)
        res, up, down = evaluate_shift(ctx, cells=cells.idx, normal=cells.normal, before=x, after=after,
                                       config=ref_cfg, concepts=cells.concepts, target_labels=["matched shift"],
                                       info={**cells.common, "control": "direction", "control_of": f,
                                             "direction": u.tolist()}, origin=x)
        out.add(_label("control-direction", k + 1), "control-direction", exp.reference, None, 0.0, res, up, down)


def _matched_norm(ctx, exp: SteerExperiment, cells: _Cells, dz_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ρ (n,), base (n, d)): the norm of the feature's embedding change in each cell at the
    reference strength, and where every control starts (the cells, or their SAE reconstruction
    without the error term)."""
    rho = np.abs(dz_ref) * np.linalg.norm(_directions(ctx.sae)[:, exp.feature])
    return rho, cells.x if exp.config.error_term else _reconstruction(ctx.sae, cells.x)


def null_features(ctx: SteeringContext, *, feature: int, n: int, seed: int, pool: int = 20) -> np.ndarray:
    """``n`` live features (not ``feature``; fewer when the SAE has fewer) drawn with ``seed`` from
    the max(``pool``, ``n``) nearest to it in log firing count: the verdicts' random-feature null."""
    fired = np.diff(ctx.activations.indptr)
    live = np.flatnonzero(fired > 0)
    live = live[live != feature]
    gap = np.abs(np.log(fired[live]) - np.log(fired[feature]))
    near = live[np.argsort(gap, kind="stable")[:max(pool, n)]]
    rng = np.random.default_rng([seed, feature, 3])
    return np.sort(rng.choice(near, size=min(n, near.size), replace=False))


def _reported(analysis) -> pd.DataFrame | None:
    if isinstance(analysis, SteeringContext) or not analysis.has("annotations.parquet"):
        return None
    return analysis.read_parquet("annotations.parquet")


def _verdict_limit(*, n_features: int, n_directions: int, q_max: float) -> str:
    """Why no term can be specific when the fewer null draws of a kind cannot give p < ``q_max``
    (the smallest p is 1/(K + 1)); "" when they can or when there are none."""
    k = min(n_features, n_directions)
    if not n_directions or 1 / (k + 1) < q_max:
        return ""
    why = "the SAE has too few live features" if n_features < n_directions else "use more null draws"
    return (f"only {k} random features or directions to judge against: the smallest p is 1/{k + 1} = "
            f"{1 / (k + 1):.2g}, not below the q bound {q_max:g}, so no term can be called specific ({why})")


def _judge(ctx, exp: SteerExperiment, cells: _Cells, ref: SteeringResult, scores: pd.DataFrame, *, rho, base,
           annotations) -> tuple[pd.DataFrame, dict]:
    """The verdict table of the reference run against the null draws, and what was drawn."""
    concepts = cells.concepts
    hyp = [(d, t, HYPOTHESIS) for d, t in hypothesis_terms(annotations, exp.feature, exp.terms)]
    seen = {(d, t) for d, t, _ in hyp}
    explore = [(d, t, EXPLORATORY) for d, table in (("up", ref.enrichment_up), ("down", ref.enrichment_down))
               for t in table["term_id"].astype(str) if (d, t) not in seen]
    if concepts is None:
        return pd.DataFrame(columns=VERDICT_COLUMNS), {}
    rng = np.random.default_rng([exp.seed, exp.feature, 4])
    n = cells.idx.size
    rows = np.sort(rng.choice(n, size=min(exp.null_cells, n), replace=False))
    lib, cov = ctx.library_size, ctx.covariates
    matrix = concepts.matrix.tocsr().astype(np.float64)
    scoring = Scoring(decoder=ctx.decoder, normal=cells.normal[rows],
                      library=None if lib is None else lib[cells.idx[rows]],
                      covariates=None if cov is None else cov[cells.idx[rows]], matrix=matrix,
                      sizes=np.asarray(matrix.sum(axis=1)).ravel(), pseudocount=exp.config.pseudocount)
    k = exp.null_draws if exp.controls else 0
    feats = null_features(ctx, feature=exp.feature, n=k, seed=exp.seed, pool=exp.pool)
    null = null_effects(scoring, rho=rho[rows], base=base[rows], directions=_directions(ctx.sae), features=feats,
                        n_directions=k, rng=rng)
    effect = effects_of(scoring, ref.latent_after[rows][None])[0]
    table = judge_terms(effect, null, term_ids=concepts.terms["id"].to_numpy(),
                        term_names=concepts.terms["name"].to_numpy() if "name" in concepts.terms
                        else concepts.terms["id"].to_numpy(), judged=hyp + explore, scores=scores, q_max=exp.term_q)
    known = set(concepts.terms["id"].astype(str))
    info = {"verdict_limit": _verdict_limit(n_features=feats.size, n_directions=k, q_max=exp.term_q),
            "null_features": [int(g) for g in feats], "null_directions": int(k),
            "null_cells": int(rows.size),
            "hypotheses": [f"{d}:{t}" for d, t, _ in hyp],
            "hypotheses_not_tested": [f"{d}:{t}" for d, t, _ in hyp if t not in known]}
    return table, info


def run_experiment(analysis, experiment: SteerExperiment, *, progress: Progress = no_progress,
                   should_stop: ShouldStop = never_stop) -> ExperimentResult:
    """Run ``experiment`` on ``analysis`` (an Analysis or a :class:`SteeringContext`); nothing is stored.

    InputError for a missing decoder, an unknown or dead feature, an empty selection, too few live
    features for the controls; :class:`~core.base.progress.Cancelled` when ``should_stop()``.
    """
    exp, config = experiment, experiment.config
    total = len(exp.strengths) + 2 * exp.controls + 2

    def stage(i: int, message: str) -> None:
        if should_stop():
            raise Cancelled("steering experiment cancelled")
        progress(i, total, message)

    stage(0, "loading the SAE, decoder and data")
    ctx = analysis if isinstance(analysis, SteeringContext) else steering_context(analysis)
    _check_feature(ctx, exp.feature)
    if config.test == "nb-glm" and ctx.dispersion is None:
        raise InputError("the NB GLM test needs the model's gene dispersions, and this decoder has none",
                         fix="use the paired log test (test='paired-log', the default)")
    control_feats = matched_controls(ctx, feature=exp.feature, n=exp.controls, seed=exp.seed, pool=exp.pool)
    cells = _experiment_cells(ctx, exp)
    out = _Collected()
    dz_ref = _sweep(ctx, exp, cells, out, stage)
    _controls(ctx, exp, cells, out, stage, control_feats=control_feats, dz_ref=dz_ref)
    stage(total - 1, f"null: {exp.null_draws} random features and {exp.null_draws} random directions"
          if exp.controls and exp.null_draws else "no null draws")
    conditions = pd.DataFrame(out.rows)
    ref_label = _label("feature", exp.reference)
    scores = pd.concat(out.scores, ignore_index=True)
    rho, base = _matched_norm(ctx, exp, cells, dz_ref)
    verdicts, null_info = _judge(ctx, exp, cells, out.runs[ref_label],
                                 scores[scores["run"] == ref_label].set_index(["direction", "term_id"]),
                                 rho=rho, base=base, annotations=_reported(analysis))
    stage(total, "scoring terms against the controls")
    wanted = sorted(set(zip(verdicts["direction"], verdicts["term_id"])))
    terms = _term_grid(scores, conditions, wanted)
    info = {**cells.common, "n_cells": int(cells.idx.size), "control_features": control_feats,
            "reference_run": ref_label, "concept_terms_tested": int(cells.concepts.n_terms)
            if cells.concepts is not None else 0, **null_info, **ctx.info}
    progress(total, total, "experiment done")
    return ExperimentResult(experiment=exp, runs=out.runs, conditions=conditions, terms=terms, verdicts=verdicts,
                            info=info)


def _term_grid(scores: pd.DataFrame, conditions: pd.DataFrame, wanted: list[tuple[str, str]]) -> pd.DataFrame:
    """The scores of the ``wanted`` (direction, term) pairs in every run; a term a run's table lacks
    (both its p-values 1) gets score 0 and q 1."""
    cols = ["run", "kind", "strength", "direction", "term_id", "term_name", "score", "q"]
    if not wanted:
        return pd.DataFrame(columns=cols)
    names = scores.drop_duplicates(["direction", "term_id"]).set_index(["direction", "term_id"])["term_name"]
    grid = pd.DataFrame([(r.run, r.kind, r.strength, d, t) for r in conditions.itertuples() for d, t in wanted],
                        columns=cols[:5])
    grid["term_name"] = [names.get((d, t), "") for d, t in zip(grid["direction"], grid["term_id"])]
    got = scores.set_index(["run", "direction", "term_id"])[["score", "q"]]
    got = got[~got.index.duplicated()]
    key = pd.MultiIndex.from_arrays([grid["run"], grid["direction"], grid["term_id"]])
    found = got.reindex(key)
    grid["score"] = found["score"].fillna(0.0).to_numpy()
    grid["q"] = found["q"].fillna(1.0).to_numpy()
    return grid


# ------------------------------------------------------------------------------------------ storage
def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = _io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _inputs(analysis, result: ExperimentResult) -> dict:
    ref = result.reference_run()
    return {"sae": analysis.config.get("steps", {}).get("sae", {}).get("inputs_hash"),
            "dataset": analysis.config.get("dataset", {}).get("sha256"), "experiment": result.experiment.to_dict(),
            "cells": io.content_hash(np.asarray(ref.cells, np.int64)),
            "decoder": result.info.get("decoder", {}).get("fingerprint")}


def save_experiment(analysis, result: ExperimentResult) -> str:
    """Store ``result`` in ``analysis`` as ONE atomic step ``steer-experiment/<id>`` (files under
    ``steer-experiments/<id>/``); returns the id (``x<feature>-<hash of the inputs>``, also set on
    ``result``). The same experiment on the same analysis is not written twice."""
    inputs = _inputs(analysis, result)
    eid = f"x{result.experiment.feature}-{io.content_hash(inputs)[:10]}"
    result.experiment_id = eid
    step = EXPERIMENT_PREFIX + eid
    if analysis.cached(step, inputs=inputs):
        return eid
    base = f"{FOLDER}{eid}/"
    ref = result.reference_run()
    meta = {"format_version": FORMAT_VERSION, "experiment_id": eid, "experiment": result.experiment.to_dict(),
            "info": result.info, "summary": result.summary(), "genes": list(ref.genes), "runs": {}}
    with analysis.step(step, inputs=inputs) as w:
        cells = pd.DataFrame({"cell_index": np.asarray(ref.cells, np.int64), "cell": ref.cell_names})
        if ref.cell_types is not None:
            cells["cell_type"] = np.asarray(ref.cell_types).astype(str)
        w.write_parquet(base + "cells.parquet", cells)
        w.write_bytes(base + "latent_before.npy", _npy_bytes(ref.latent_before.astype(np.float32)))
        w.write_parquet(base + "conditions.parquet", result.conditions)
        w.write_parquet(base + "terms.parquet", result.terms)
        w.write_parquet(base + "verdicts.parquet", result.verdicts)
        for label, res in result.runs.items():
            rb = f"{base}runs/{label}/"
            meta["runs"][label] = {"features": [int(f) for f in res.features],
                                   "targets": [float(t) for t in res.targets], "target_labels": res.target_labels,
                                   "activations_before": res.activations_before.astype(float).tolist(),
                                   "config": res.config.to_dict(), "info": res.info}
            w.write_bytes(rb + "latent_after.npy", _npy_bytes(res.latent_after.astype(np.float32)))
            w.write_parquet(rb + "de.parquet", res.de)
            w.write_parquet(rb + "enrichment_up.parquet", res.enrichment_up)
            w.write_parquet(rb + "enrichment_down.parquet", res.enrichment_down)
            w.write_parquet(rb + "centroid_shift.parquet", res.centroid_shift)
        w.write_json(base + "experiment.json", meta)
    return eid


def list_experiments(analysis) -> pd.DataFrame:
    """One row per stored experiment: experiment_id, completed, feature, cells, n_cells, strengths,
    control_features, n_specific, n_terms."""
    cols = ["experiment_id", "completed", "feature", "cells", "n_cells", "strengths", "control_features",
            "n_specific", "n_terms"]
    rows = []
    for step, rec in analysis.config.get("steps", {}).items():
        if not step.startswith(EXPERIMENT_PREFIX):
            continue
        eid = step[len(EXPERIMENT_PREFIX):]
        if not analysis.has(f"{FOLDER}{eid}/experiment.json"):
            continue
        s = analysis.read_json(f"{FOLDER}{eid}/experiment.json").get("summary", {})
        rows.append({"experiment_id": eid, "completed": rec.get("completed"), "feature": s.get("feature"),
                     "cells": s.get("cells"), "n_cells": s.get("n_cells"),
                     "strengths": ",".join(f"{v:g}" for v in s.get("strengths", [])),
                     "control_features": ",".join(str(g) for g in s.get("control_features", [])),
                     "n_specific": s.get("n_specific"), "n_terms": s.get("n_terms")})
    return pd.DataFrame(rows, columns=cols).sort_values("completed", kind="stable").reset_index(drop=True)


def load_experiment(analysis, experiment_id: str) -> ExperimentResult:
    """Reopen a stored experiment (the runs without per-cell expression)."""
    base = f"{FOLDER}{experiment_id}/"
    if EXPERIMENT_PREFIX + str(experiment_id) not in analysis.config.get("steps", {}) \
            or not analysis.has(base + "experiment.json"):
        known = list_experiments(analysis)["experiment_id"].tolist()
        raise InputError(f"no steering experiment {experiment_id!r} in {analysis.path}",
                         fix=f"stored experiments: {', '.join(known[-10:])}" if known
                         else "run `featurelens steer --sweep ...` first")
    meta = analysis.read_json(base + "experiment.json")
    version = int(meta.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise InputError(f"steering experiment {experiment_id} was saved by a newer FeatureLens",
                         fix="upgrade FeatureLens")
    if version < FORMAT_VERSION:
        raise InputError(f"steering experiment {experiment_id} was saved by an older FeatureLens whose verdicts "
                         "were not calibrated", fix="run the experiment again (its runs are not reused)")
    cells = analysis.read_parquet(base + "cells.parquet")
    before = np.load(analysis.file(base + "latent_before.npy"), allow_pickle=False)
    types = cells["cell_type"].to_numpy(str) if "cell_type" in cells else None
    runs: dict[str, Any] = {}
    for label, m in meta["runs"].items():
        rb = f"{base}runs/{label}/"
        runs[label] = SteeringResult(
            features=list(m["features"]), cells=cells["cell_index"].to_numpy(np.int64),
            cell_names=cells["cell"].astype(str).tolist(), cell_types=types,
            targets=np.asarray(m["targets"], np.float32), target_labels=list(m["target_labels"]),
            activations_before=np.asarray(m["activations_before"], np.float32).reshape(len(cells), -1),
            latent_before=before, latent_after=np.load(analysis.file(rb + "latent_after.npy"), allow_pickle=False),
            expression_normal=None, expression_steered=None, genes=list(meta["genes"]),
            de=analysis.read_parquet(rb + "de.parquet"), enrichment_up=analysis.read_parquet(rb + "enrichment_up.parquet"),
            enrichment_down=analysis.read_parquet(rb + "enrichment_down.parquet"),
            centroid_shift=analysis.read_parquet(rb + "centroid_shift.parquet"),
            config=SteerConfig.from_dict(m["config"]), info=dict(m.get("info", {})))
    return ExperimentResult(experiment=SteerExperiment.from_dict(meta["experiment"]), runs=runs,
                            conditions=analysis.read_parquet(base + "conditions.parquet"),
                            terms=analysis.read_parquet(base + "terms.parquet"),
                            verdicts=analysis.read_parquet(base + "verdicts.parquet"), info=dict(meta["info"]),
                            experiment_id=experiment_id)

