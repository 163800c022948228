"""Annotate every live feature of an analysis: groups → batched DE → enrichment → concept map.

:func:`annotate` works on arrays (a notebook can call it); :func:`annotate_analysis` runs it on an
analysis folder and writes ``annotations.parquet``, ``annotation_groups.parquet`` and
``concept_map.parquet`` as one atomic, cached step.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..concept_map import ConceptMapConfig, concept_map
from ..concepts import ConceptDB, load_go, read_gmt
from ..concepts.go import NAMESPACES, term_names
from ..concepts.match import prepare_concepts
from ..errors import InputError
from ..progress import Cancelled, Progress, ShouldStop, never_stop, no_progress
from .de import batched_de
from .enrich import COLUMNS, enrich
from .groups import select_groups

METHODS = ("calibrated", "paper")

__all__ = ["METHODS", "AnnotationConfig", "AnnotationResult", "annotate", "load_concepts", "annotate_analysis"]


@dataclass(frozen=True)
class AnnotationConfig:
    """Settings of the annotation step. ``method``: "calibrated" (default; docs/method.md) or
    "paper" (the paper's statistics and thresholds, unchanged)."""

    method: str = "calibrated"
    concepts: tuple = ("go-bp", "go-mf")
    gmt: tuple = ()
    propagate: bool = True
    expression: str = "auto"       # "predicted" (decoder) | "observed" (counts) | "auto"
    percentile: float = 99.0
    n_low: int = 1000
    min_cells: int = 3
    min_term_size: int = 10
    max_term_size: int = 500
    q_strict: float = 1e-5
    min_fold: float = 2.0
    q_fallback: float = 0.05
    binom_p_max: float = 0.01
    mwu_p_max: float = 0.01
    block_size: int = 256
    concept_map: ConceptMapConfig = field(default_factory=ConceptMapConfig)

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"unknown annotation method {self.method!r}", fix="use --method calibrated or --method paper")
        bad = [c for c in self.concepts if c not in NAMESPACES]
        if bad:
            raise InputError(f"unknown concept database {bad[0]!r}", fix=f"choose from {', '.join(NAMESPACES)} "
                             "or add a gene-set file with --gmt")
        if not self.concepts and not self.gmt:
            raise InputError("no concept database selected", fix="use --concepts go-bp and/or --gmt FILE")
        if self.expression not in ("auto", "predicted", "observed"):
            raise InputError(f"expression must be predicted, observed or auto, not {self.expression!r}")
        if not 0 < self.percentile < 100:
            raise InputError(f"percentile must lie in (0, 100), got {self.percentile}")
        if self.n_low < 1 or self.min_cells < 2:
            raise InputError("n_low must be ≥ 1 and min_cells ≥ 2")
        if not 1 <= self.min_term_size <= self.max_term_size:
            raise InputError(f"term sizes must satisfy 1 ≤ min ({self.min_term_size}) ≤ max ({self.max_term_size})")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["concepts"], d["gmt"] = list(self.concepts), [str(g) for g in self.gmt]
        return d


@dataclass
class AnnotationResult:
    annotations: pd.DataFrame   # feature × term rows (core.annotate.enrich.COLUMNS)
    groups: pd.DataFrame        # per feature: threshold, n_active, n_high, n_low, reason, n_significant, de_rule
    concepts: ConceptDB

    def summary(self, n_live: int | None = None) -> dict:
        ann = self.annotations
        n_feat = int(ann["feature"].nunique()) if len(ann) else 0
        per = ann.groupby("feature").size() if len(ann) else pd.Series(dtype=int)
        out = {"features_tested": int((self.groups["reason"] == "").sum()),
               "features_skipped": int((self.groups["reason"] != "").sum()),
               "features_annotated": n_feat, "unique_terms": int(ann["term_id"].nunique()) if len(ann) else 0,
               "terms_per_feature_mean": float(per.mean()) if len(per) else 0.0,
               "terms_per_feature_min": int(per.min()) if len(per) else 0,
               "terms_per_feature_max": int(per.max()) if len(per) else 0,
               "concept_terms_tested": int(self.concepts.n_terms), "gene_match": self.concepts.match.describe()
               if self.concepts.match else ""}
        if n_live:
            out["annotated_fraction_of_live"] = n_feat / n_live
        return out


def load_concepts(config: AnnotationConfig, gene_names) -> ConceptDB:
    """The configured databases, restricted to ``gene_names`` and filtered by term size."""
    dbs = []
    namespaces = [NAMESPACES[c] for c in config.concepts]
    if namespaces:
        dbs.append(load_go(namespaces, propagate=config.propagate))
    dbs += [read_gmt(p) for p in config.gmt]
    return prepare_concepts(dbs, gene_names, min_size=config.min_term_size, max_size=config.max_term_size)


def annotate(activations, expression, gene_names, *, concepts: ConceptDB, seed: int,
             config: AnnotationConfig = AnnotationConfig(), progress: Progress = no_progress,
             should_stop: ShouldStop = never_stop) -> AnnotationResult:
    """Annotate every live feature of ``activations`` (cells × features, CSR ≥ 0).

    ``expression``: cells × genes (dense, memmap or sparse) of the same cells; ``gene_names``: its
    columns; ``concepts``: from :func:`load_concepts`. Dead features and features with too few
    high/low cells are skipped with a reason in ``groups``.
    """
    if expression.shape[0] != activations.shape[0]:
        raise InputError(f"expression has {expression.shape[0]} cells, activations {activations.shape[0]}",
                         fix="the analysis's dataset must be the one its SAE was encoded on")
    if expression.shape[1] != len(gene_names):
        raise InputError(f"{len(gene_names)} gene names for {expression.shape[1]} expression columns")
    progress(0, 1, "selecting high and low cells")
    groups = select_groups(activations, seed=seed, percentile=config.percentile, n_low=config.n_low,
                           min_cells=config.min_cells, should_stop=should_stop)
    summary = groups.summary()
    summary["n_significant"] = 0
    summary["de_rule"] = ""
    tables = []
    row_of = {f: i for i, f in enumerate(groups.feature.tolist())}
    n_test = int(groups.testable.sum())
    done = 0
    for block in groups.blocks(config.block_size):
        if should_stop():
            raise Cancelled("annotation cancelled")
        de = batched_de(expression, block, q_strict=config.q_strict, min_fold=config.min_fold,
                        q_fallback=config.q_fallback, should_stop=should_stop)
        tables.append(enrich(de, concepts, binom_p_max=config.binom_p_max, mwu_p_max=config.mwu_p_max,
                             should_stop=should_stop))
        rows = [row_of[f] for f in de.feature.tolist()]
        summary.loc[rows, "n_significant"] = de.n_significant
        summary.loc[rows, "de_rule"] = de.rule
        done += len(block)
        progress(done, max(n_test, 1), f"annotated {done}/{n_test} features")
    ann = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
    return AnnotationResult(annotations=ann, groups=summary, concepts=concepts)


def annotate_analysis(analysis, *, config: AnnotationConfig = AnnotationConfig(), progress: Progress = no_progress,
                      should_stop: ShouldStop = never_stop, force: bool = False) -> dict:
    """Run :func:`annotate` on an analysis folder; returns the summary (also stored in annotation.json)."""
    from .. import io
    from ..expression import resolve_expression

    acts_file = analysis.file("activations.npz")
    if not acts_file.is_file():
        raise InputError(f"{analysis.path} has no SAE activations yet", fix="run `featurelens train` first")
    expr = resolve_expression(analysis, mode=config.expression)
    inputs = {"activations": io.content_hash(acts_file), "expression": expr.key, "seed": analysis.seed,
              "config": config.to_dict(), "gmt": [io.content_hash(Path(g)) for g in config.gmt]}
    if not force and analysis.cached("annotate", inputs=inputs):
        return analysis.read_json("annotation.json")
    acts = analysis.read_npz_sparse("activations.npz")
    n_live = int((np.diff(acts.tocsc().indptr) > 0).sum())
    if n_live == 0:
        raise InputError(f"the SAE of {analysis.path.name} has no live features (all {acts.shape[1]} latents "
                         "are dead), so there is nothing to annotate",
                         fix="re-train with a smaller --l1, or with --arch topk --k K so that latents fire")
    concepts = load_concepts(config, expr.gene_names)
    result = annotate(acts, expr.matrix, expr.gene_names, concepts=concepts, seed=analysis.seed, config=config,
                      progress=progress, should_stop=should_stop)
    summary = {**result.summary(n_live=n_live), "expression": expr.label}
    cmap = None
    if len(result.annotations):
        progress(0, 1, "building the concept map (UMAP)")
        level1 = dict(zip(concepts.terms["id"], concepts.terms["level1"]))
        cmap = concept_map(result.annotations, level1=level1, names=term_names(), config=config.concept_map)
    with analysis.step("annotate", inputs=inputs) as w:
        w.write_parquet("annotations.parquet", result.annotations)
        w.write_parquet("annotation_groups.parquet", result.groups)
        if cmap is not None:
            w.write_parquet("concept_map.parquet", cmap)
        w.write_json("annotation.json", summary)
    return summary
