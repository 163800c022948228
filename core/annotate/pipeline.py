"""Annotate every live feature of an analysis: groups → batched DE → enrichment → concept map.

:func:`annotate` works on arrays (a notebook can call it); :func:`annotate_analysis` runs it on an
analysis folder and writes ``annotations.parquet``, ``annotation_groups.parquet`` and
``concept_map.parquet`` as one atomic, cached step.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.annotate.confounders import FLAG_ETA2, FLAG_R, analysis_confounders, tracking_counts
from core.annotate.concept_map import ConceptMapConfig, concept_map
from core.concepts import ConceptDB, load_go, read_gmt
from core.concepts.go import NAMESPACES
from core.concepts.match import prepare_concepts
from core.base.errors import InputError
from core.base.progress import Cancelled, Progress, ShouldStop, never_stop, no_progress
from core.concepts.dag import go_dag
from core.annotate.calibrated_de import KINDS, calibrated_de
from core.annotate.calibrated_enrich import CALIBRATED_COLUMNS, enrich_calibrated
from core.annotate.de import batched_de
from core.annotate.enrich import COLUMNS, enrich
from core.annotate.groups import select_groups
from core.annotate.moderated import term_correlation
from core.annotate.normalise import prepare
from core.annotate.reported import is_reported, reported
from core.annotate.specific import hierarchy
from core.annotate.expression import observed_rows, resolve_expression
from core.base import io

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
    # calibrated method (docs/method.md)
    fdr: float = 0.05               # BH level for genes and for terms
    min_detect: float = 0.1         # observed counts: detected in ≥ this fraction of high or low cells
    min_lfc: float = 0.5            # |Δ mean log1p| in log2 units (a 1.4-fold change)
    min_effect: float | None = None  # |Cohen's d|; None: 0 for observed counts, 0.5 for predicted expression
    min_hits: int = 2               # a reported term needs at least this many up-regulated genes
    nominal_p: float = 0.01         # rows kept in the table (reported or not)
    n_null: int = 100               # null features of the self-check (0: none)
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
        if not 0 < self.fdr < 1 or not 0 <= self.min_detect < 1 or self.n_null < 0 or self.min_hits < 1:
            raise InputError("fdr must lie in (0, 1), min_detect in [0, 1), n_null ≥ 0 and min_hits ≥ 1")
        if not 1 <= self.min_term_size <= self.max_term_size:
            raise InputError(f"term sizes must satisfy 1 ≤ min ({self.min_term_size}) ≤ max ({self.max_term_size})")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["concepts"], d["gmt"] = list(self.concepts), [str(g) for g in self.gmt]
        return d


@dataclass
class AnnotationResult:
    annotations: pd.DataFrame   # feature × term rows (COLUMNS or CALIBRATED_COLUMNS, with ``reported``)
    groups: pd.DataFrame        # per feature: threshold, n_active, n_high, n_low, reason, n_significant, de_rule
    concepts: ConceptDB
    method: str = "calibrated"
    null: dict = field(default_factory=dict)   # the self-check on random cell sets

    def summary(self, n_live: int | None = None) -> dict:
        ann = self.annotations
        rep = reported(ann) if len(ann) else ann
        n_feat = int(rep["feature"].nunique()) if len(rep) else 0
        per = rep.groupby("feature").size() if len(rep) else pd.Series(dtype=int)
        out = {"method": self.method, "features_tested": int((self.groups["reason"] == "").sum()),
               "features_skipped": int((self.groups["reason"] != "").sum()),
               "features_annotated": n_feat, "unique_terms": int(rep["term_id"].nunique()) if len(rep) else 0,
               "terms_per_feature_mean": float(per.mean()) if len(per) else 0.0,
               "terms_per_feature_median": float(per.median()) if len(per) else 0.0,
               "terms_per_feature_min": int(per.min()) if len(per) else 0,
               "terms_per_feature_max": int(per.max()) if len(per) else 0,
               "rows_in_table": int(len(ann)),
               "concept_terms_tested": int(self.concepts.n_terms), "gene_match": self.concepts.match.describe()
               if self.concepts.match else "", **self.null}
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
             config: AnnotationConfig = AnnotationConfig(), kind: str = "observed", workdir: Path | None = None,
             progress: Progress = no_progress, should_stop: ShouldStop = never_stop) -> AnnotationResult:
    """Annotate every live feature of ``activations`` (cells × features, CSR ≥ 0).

    ``expression``: cells × genes (dense, memmap or sparse) of the same cells; ``gene_names``: its
    columns; ``concepts``: from :func:`load_concepts`; ``kind``: "observed" (counts) or "predicted"
    (a decoder's means; calibrated method only). ``workdir``: where the calibrated method may write its
    log-normalised copy of dense expression (default: in memory). Dead features and features with
    too few high/low cells are skipped with a reason in ``groups``. Both methods end with the null
    self-check (``config.n_null`` random cell sets through the same pipeline).
    """
    if expression.shape[0] != activations.shape[0]:
        raise InputError(f"expression has {expression.shape[0]} cells, activations {activations.shape[0]}",
                         fix="the analysis's dataset must be the one its SAE was encoded on")
    if expression.shape[1] != len(gene_names):
        raise InputError(f"{len(gene_names)} gene names for {expression.shape[1]} expression columns")
    progress(0, 1, "selecting high and low cells")
    groups = select_groups(activations, seed=seed, percentile=config.percentile, n_low=config.n_low,
                           min_cells=config.min_cells, should_stop=should_stop)
    runner = _Runner(expression, concepts, config=config, kind=kind, seed=seed, workdir=workdir, progress=progress)
    summary = groups.summary()
    summary["n_significant"] = 0
    summary["n_up"] = 0
    summary["n_down"] = 0
    summary["de_rule"] = ""
    tables = []
    row_of = {f: i for i, f in enumerate(groups.feature.tolist())}
    n_test = int(groups.testable.sum())
    done = 0
    for block in groups.blocks(config.block_size):
        if should_stop():
            raise Cancelled("annotation cancelled")
        de, table = runner.run(block, should_stop=should_stop)
        tables.append(table)
        rows = [row_of[f] for f in de.feature.tolist()]
        summary.loc[rows, "n_significant"] = de.n_significant
        if hasattr(de, "up"):
            summary.loc[rows, "n_up"] = de.up.sum(axis=1)
            summary.loc[rows, "n_down"] = de.down.sum(axis=1)
        summary.loc[rows, "de_rule"] = de.rule
        done += len(block)
        progress(done, max(n_test, 1), f"annotated {done}/{n_test} features")
    cols = CALIBRATED_COLUMNS if config.method == "calibrated" else PAPER_COLUMNS
    ann = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=cols)
    null = {}
    if config.n_null and n_test:
        progress(0, 1, f"self-check: annotating {config.n_null} null features (random cells)")
        null = runner.null_check(groups, should_stop=should_stop)
    return AnnotationResult(annotations=ann, groups=summary, concepts=concepts, method=config.method, null=null)


PAPER_COLUMNS = COLUMNS + ["de_direction", "reported", "redundant_with"]


class _Runner:
    """DE + enrichment of blocks of features with one method; prepared once per annotation run."""

    def __init__(self, expression, concepts: ConceptDB, *, config: AnnotationConfig, kind: str, seed: int,
                 workdir: Path | None, progress: Progress):
        self.config, self.concepts, self.seed = config, concepts, seed
        self.n_cells = expression.shape[0]
        if config.method == "paper":
            self.expression = expression
            return
        if kind not in KINDS:
            raise InputError(f"expression kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        progress(0, 1, "normalising expression (library size, log1p)")
        out = Path(workdir) / "log_normalised.npy" if workdir is not None else None
        self.expression, self.detected = prepare(expression, kind=kind, out=out)
        progress(0, 1, "inter-gene correlation of each term")
        rng = np.random.default_rng([int(seed), 7])
        cells = rng.choice(self.n_cells, min(self.n_cells, 2000), replace=False)
        self.correlation = term_correlation(self.expression, concepts.matrix, cells=cells)
        ids = concepts.terms["id"].astype(str)
        self.dag = hierarchy(ids.tolist(), go_dag()) if ids.str.startswith("GO:").any() else None

    def run(self, block, *, should_stop: ShouldStop = never_stop):
        cfg = self.config
        if cfg.method == "paper":
            de = batched_de(self.expression, block, q_strict=cfg.q_strict, min_fold=cfg.min_fold,
                            q_fallback=cfg.q_fallback, should_stop=should_stop)
            table = enrich(de, self.concepts, binom_p_max=cfg.binom_p_max, mwu_p_max=cfg.mwu_p_max,
                           should_stop=should_stop)
            table["de_direction"] = "pooled"
            table["reported"] = True
            table["redundant_with"] = ""
            return de, table
        de = calibrated_de(self.expression, block, kind=self.kind, detected=self.detected, min_detect=cfg.min_detect,
                           q_max=cfg.fdr, min_lfc=cfg.min_lfc, min_effect=cfg.min_effect, exact_p=False,
                           should_stop=should_stop)
        table = enrich_calibrated(de, self.concepts, correlation=self.correlation, dag=self.dag, q_max=cfg.fdr,
                                  min_hits=cfg.min_hits, nominal_p=cfg.nominal_p, should_stop=should_stop)
        return de, table

    def null_check(self, groups, *, should_stop: ShouldStop = never_stop) -> dict:
        """Annotate ``n_null`` random cell sets sized like the real features (their n_active drawn from
        the testable features, random activations), with the same groups rule, DE and enrichment."""
        cfg = self.config
        rng = np.random.default_rng([int(self.seed), 99])
        n_active = rng.choice(groups.n_active[groups.testable], cfg.n_null)
        cols, rows, vals = [], [], []
        for j, k in enumerate(n_active):
            cells = rng.choice(self.n_cells, int(k), replace=False)
            rows.append(cells)
            cols.append(np.full(cells.size, j))
            vals.append(rng.random(cells.size) + 1e-3)
        acts = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(self.n_cells, cfg.n_null))
        null_groups = select_groups(acts, seed=rng.integers(2 ** 31), percentile=cfg.percentile, n_low=cfg.n_low,
                                    min_cells=cfg.min_cells, should_stop=should_stop)
        tables = [self.run(b, should_stop=should_stop)[1] for b in null_groups.blocks(cfg.block_size)]
        ann = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["feature"])
        n_tested = int(null_groups.testable.sum())
        hit = int(reported(ann)["feature"].nunique()) if len(ann) else 0
        return {"null_features_tested": n_tested, "null_features_annotated": hit,
                "false_annotation_rate": hit / n_tested if n_tested else 0.0}


def annotate_analysis(analysis, *, config: AnnotationConfig = AnnotationConfig(), progress: Progress = no_progress,
                      should_stop: ShouldStop = never_stop, force: bool = False) -> dict:
    """Run :func:`annotate` on an analysis folder; returns the summary (also stored in annotation.json)."""

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
    kind = expr.kind
    with tempfile.TemporaryDirectory(dir=analysis.path, prefix=".annotate-") as work:
        result = annotate(acts, expr.matrix, expr.gene_names, concepts=concepts, seed=analysis.seed, config=config,
                          kind=kind, workdir=Path(work), progress=progress, should_stop=should_stop)
    summary = {**result.summary(n_live=n_live), "expression": expr.label}
    if kind == "observed":
        progress(0, 1, "a by-cell copy of the counts (for the Explorer's feature cards)")
        observed_rows(analysis)
    progress(0, 1, "checking features against library size, detected genes, %mito and batch")
    confounders = analysis_confounders(analysis, acts)
    if confounders is not None:
        live = np.diff(acts.tocsc().indptr) > 0
        summary["technical"] = {"tracks": tracking_counts(confounders, live=live), **confounders.attrs,
                                "rule": f"|within-cell-type r| ≥ {FLAG_R} or batch η² ≥ {FLAG_ETA2}"}
    cmap = None
    if bool(is_reported(result.annotations).any()) if len(result.annotations) else False:
        progress(0, 1, "building the concept map (UMAP)")
        cmap = concept_map(result.annotations, dag=go_dag(), config=config.concept_map)
    with analysis.step("annotate", inputs=inputs) as w:
        w.write_parquet("annotations.parquet", result.annotations)
        w.write_parquet("annotation_groups.parquet", result.groups)
        if cmap is not None:
            w.write_parquet("concept_map.parquet", cmap)
        if confounders is not None:
            w.write_parquet("confounders.parquet", confounders)
        w.write_json("annotation.json", summary)
    return summary
