"""Differential expression of high vs low cells, for a block of features at once (docs/method.md §4 step 3).

Per feature and gene: Welch t-test (``scipy.stats.ttest_ind(equal_var=False)`` numbers),
Benjamini–Hochberg across the genes of the feature, fold change = mean(high)/(mean(low) + 1e-8).
Significant genes: q < 1e-5 and (FC > 2 or FC < 0.5) — rule "strict"; if a feature has none,
q < 0.05 without the fold-change filter — rule "fallback".

How it is computed: the expression matrix is read in chunks of genes; for each chunk, the
sums Σ(x − c) and Σ(x − c)² over every feature's high cells come from one pass over the
cells (a parallel sparse-selection × dense-chunk kernel, float64 accumulation), with c a
per-gene shift (the mean of up to 1,000 random cells) so that the sum of squared deviations
S2 − S1²/n cancels only to the extent (group mean − c)² exceeds the group variance, not
mean² (E[x²] − E[x]² on raw values); t and p agree with scipy's two-pass variance to ~1e-11. Low-cell sums are prefix sums along the shared
random cell order (see :mod:`core.annotate.groups`) minus the few active cells inside the
prefix. Memory: a few (features × genes) float64 arrays plus one gene chunk.

Untestable genes: a gene whose standard error is zero (both groups constant, or variances at
float rounding level, below 2·n·eps of Σ(x − c)²) or non-finite (NaN/inf expression) gets
t = NaN and p = 1, as the reference's "zero-variance or NaN genes: p = 1". A gene constant in
only one group is tested (Welch's df then comes from the other group), as scipy does; the
reference would give it p = 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.base.errors import InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress
from core.annotate.groups import Groups
from core.annotate.moments import check_inputs, chunk_sums
from core.annotate.stats import bh, t_two_sided, welch_chunk

__all__ = ["FeatureBlock", "DEResult", "batched_de", "significant_genes"]

FC_EPS = 1e-8


class FeatureBlock:
    """What both DE results share: ``feature`` (F,), ``p`` (F, G) and ``significant`` (F, G)."""

    def __len__(self) -> int:
        return int(self.feature.size)

    @property
    def n_genes(self) -> int:
        return int(self.p.shape[1])

    @property
    def n_significant(self) -> np.ndarray:
        """Significant genes per feature, (F,)."""
        return self.significant.sum(axis=1)

    def position(self, feature: int) -> int:
        hit = np.flatnonzero(self.feature == feature)
        if hit.size == 0:
            raise InputError(f"feature {feature} is not in this DE block")
        return int(hit[0])


@dataclass
class DEResult(FeatureBlock):
    """DE of F features × G genes. Arrays are (F, G) float64 unless noted.

    ``feature``, ``n_high``, ``n_low``: (F,). ``mean_high``, ``mean_low``, ``fold_change``,
    ``t``, ``p`` (two-sided), ``q`` (BH per feature). ``significant``: (F, G) bool by ``rule``
    (F,) — "strict" (q < q_strict and FC beyond min_fold) or "fallback" (q < q_fallback).
    """

    feature: np.ndarray
    n_high: np.ndarray
    n_low: np.ndarray
    mean_high: np.ndarray
    mean_low: np.ndarray
    fold_change: np.ndarray
    t: np.ndarray
    p: np.ndarray
    q: np.ndarray
    significant: np.ndarray
    rule: np.ndarray
    params: dict = field(default_factory=dict)


    def table(self, feature: int, *, genes=None) -> pd.DataFrame:
        """One feature's full DE table in gene order: gene, mean_high, mean_low, fold_change, t, p, q,
        significant. ``genes``: gene names (default 0..G−1)."""
        i = self.position(feature)
        genes = pd.Index(genes if genes is not None else np.arange(self.n_genes))
        if len(genes) != self.n_genes:
            raise InputError(f"{len(genes)} gene names for {self.n_genes} genes")
        return pd.DataFrame({"gene": genes, "mean_high": self.mean_high[i], "mean_low": self.mean_low[i],
                             "fold_change": self.fold_change[i], "t": self.t[i], "p": self.p[i],
                             "q": self.q[i], "significant": self.significant[i]})


def significant_genes(q: np.ndarray, fold_change: np.ndarray, *, q_strict: float = 1e-5,
                      min_fold: float = 2.0, q_fallback: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Significant genes (F, G) bool and the rule used per feature (F,) ("strict"/"fallback")."""
    strict = (q < q_strict) & ((fold_change > min_fold) | (fold_change < 1.0 / min_fold))
    has = strict.any(axis=1)
    sig = np.where(has[:, None], strict, q < q_fallback)
    return sig, np.where(has, "strict", "fallback").astype(object)


def batched_de(
    expression,
    groups: Groups,
    *,
    gene_chunk: int = 1024,
    q_strict: float = 1e-5,
    min_fold: float = 2.0,
    q_fallback: float = 0.05,
    tile: int = 256,
    progress: Progress = no_progress,
    should_stop: ShouldStop = never_stop,
) -> DEResult:
    """High-vs-low DE of every feature in ``groups`` (all must be testable) over all genes.

    ``expression``: (n_cells, G) dense ndarray, float32 ``np.memmap`` or scipy sparse (CSC is
    read directly; other formats are converted once per call). ``gene_chunk``: genes per pass.
    ``q_strict``, ``min_fold``, ``q_fallback``: the significance rule (module docstring).
    Raises :class:`core.base.progress.Cancelled` when ``should_stop()`` turns true.
    """
    check_inputs(expression, groups)
    if min_fold <= 0:
        raise InputError(f"min_fold must be > 0, got {min_fold}")
    n_feat, n_genes = len(groups), expression.shape[1]
    n1 = groups.n_high.astype(np.float64)
    n2 = groups.n_low.astype(np.float64)
    out = {k: np.empty((n_feat, n_genes)) for k in ("mean_high", "mean_low", "fold_change", "t", "p")}
    for c in chunk_sums(expression, groups, gene_chunk=gene_chunk, tile=tile, progress=progress,
                         should_stop=should_stop):
        # df goes into out["p"] first, then becomes the p-value
        welch_chunk(c.s1, c.s2, c.p1, c.p2, c.stop_pos, c.skip_row, n1, n2, c.shift, c.g0, FC_EPS,
                     out["mean_high"], out["mean_low"], out["fold_change"], out["t"], out["p"])
        out["p"][:, c.g0:c.g1] = t_two_sided(out["t"][:, c.g0:c.g1], out["p"][:, c.g0:c.g1])
    q = bh(out["p"], axis=1) if n_feat else np.empty((0, n_genes))
    sig, rule = significant_genes(q, out["fold_change"], q_strict=q_strict, min_fold=min_fold,
                                  q_fallback=q_fallback)
    params = {"q_strict": q_strict, "min_fold": min_fold, "q_fallback": q_fallback, "fc_eps": FC_EPS}
    return DEResult(groups.feature.copy(), groups.n_high.copy(), groups.n_low.copy(), out["mean_high"],
                    out["mean_low"], out["fold_change"], out["t"], out["p"], q, sig, rule, params)

