"""Calibrated DE of high vs low cells for a block of features (the default method; docs/method.md).

Input: log-normalised expression (:func:`core.annotate.normalise.log_normalise`: counts per cell
scaled to the median library size, then log1p). Per feature and gene:

- **tested genes**: non-zero pooled variance and, for observed counts, detected (x > 0) in at
  least ``min_detect`` (10 %) of the high or of the low cells (Seurat's ``min.pct``): a gene seen
  in a handful of cells carries no information about the feature, and its t is the least normal;
- **moderated t**: pooled variance s² (df d = n₁ + n₂ − 2) shrunk towards a trend in average
  expression by limma's empirical Bayes (:func:`core.annotate.moderated.squeeze_variances`), fitted
  per feature over its tested genes; t = Δ / √(s̃²(1/n₁ + 1/n₂)) with d + d₀ degrees of freedom.
  A group that is all zeros no longer makes the test one-sample (Welch's failure on sparse counts);
- **BH** across the tested genes of the feature;
- **effect size** ``lfc`` = (mean_high − mean_low)/ln 2 of the log-normalised values (log2 units;
  close to log2 fold change for expressed genes, shrunk towards 0 near zero);
- **significant**: q < ``q_max`` and |lfc| ≥ ``min_lfc`` (0.5, a 1.4-fold change); ``up`` = significant
  with t > 0 (higher in the feature's high cells), ``down`` = t < 0;
- **predicted expression** is noise-free, so every difference gets a tiny q: there the rule is effect
  size first, and a gene must also separate the groups, |Cohen's d| = |Δ|/s_pooled ≥ ``min_effect``
  (0.5). For random cell sets d is ~N(0, 1/n_high), so 0.5 is many standard errors away even for
  the smallest groups, while a program's genes in the cells that run it have d of several units.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numba import njit, prange
from scipy import special

from core.base.errors import InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress
from core.annotate.de import FeatureBlock
from core.annotate.groups import Groups
from core.annotate.moderated import bh_masked, squeeze_variances, trend_basis
from core.annotate.moments import check_inputs, chunk_sums
from core.base.parallel import one_at_a_time
from core.annotate.stats import moments_chunk, t_two_sided

__all__ = ["CalibratedDE", "calibrated_de", "de_of_cells", "KINDS", "DEFAULT_MIN_LFC", "DEFAULT_MIN_EFFECT"]

KINDS = ("observed", "predicted")
DEFAULT_MIN_LFC = 0.5
DEFAULT_MIN_EFFECT = {"observed": 0.0, "predicted": 0.5}


@dataclass
class CalibratedDE(FeatureBlock):
    """Calibrated DE of F features × G genes; arrays (F, G) unless noted.

    ``mean_high``/``mean_low``: means of log-normalised expression; ``lfc`` (log2 units); ``t``
    moderated (NaN where not tested), ``df`` (F,) = d + d₀; ``p``, ``q`` (1 where not tested);
    ``tested``, ``up``, ``down`` bool; ``detect_high``/``detect_low``: fraction of cells with x > 0
    (None without a detection filter); ``d0`` (F,) prior df.
    """

    feature: np.ndarray
    n_high: np.ndarray
    n_low: np.ndarray
    mean_high: np.ndarray
    mean_low: np.ndarray
    lfc: np.ndarray
    t: np.ndarray
    df: np.ndarray
    p: np.ndarray
    q: np.ndarray
    tested: np.ndarray
    up: np.ndarray
    down: np.ndarray
    d0: np.ndarray
    detect_high: np.ndarray | None = None
    detect_low: np.ndarray | None = None
    kind: str = "observed"
    params: dict = field(default_factory=dict)

    @property
    def significant(self) -> np.ndarray:
        return self.up | self.down

    @property
    def rule(self) -> np.ndarray:
        """Per feature, the rule's name ("calibrated-observed" / "calibrated-predicted")."""
        return np.full(len(self), f"calibrated-{self.kind}", dtype=object)

    def table(self, feature: int, *, genes=None) -> pd.DataFrame:
        """One feature's DE table in gene order: gene, mean_high, mean_low, lfc, t, p, q, tested,
        direction ("up"/"down"/""), detect_high, detect_low."""
        i = self.position(feature)
        genes = pd.Index(genes if genes is not None else np.arange(self.n_genes))
        if len(genes) != self.n_genes:
            raise InputError(f"{len(genes)} gene names for {self.n_genes} genes")
        direction = np.where(self.up[i], "up", np.where(self.down[i], "down", ""))
        out = {"gene": genes, "mean_high": self.mean_high[i], "mean_low": self.mean_low[i], "lfc": self.lfc[i],
               "t": self.t[i], "p": self.p[i], "q": self.q[i], "tested": self.tested[i], "direction": direction}
        if self.detect_high is not None:
            out["detect_high"], out["detect_low"] = self.detect_high[i], self.detect_low[i]
        return pd.DataFrame(out)


def detection(detected: sp.csr_matrix, groups: Groups) -> tuple[np.ndarray, np.ndarray]:
    """Fractions (F, G) of high and of low cells with x > 0, from the binary cells × genes ``detected``."""
    hi = np.asarray((groups.selection("high") @ detected).todense()) / groups.n_high[:, None]
    lo = np.asarray((groups.selection("low") @ detected).todense()) / groups.n_low[:, None]
    return hi, lo


def calibrated_de(
    expression,
    groups: Groups,
    *,
    kind: str = "observed",
    detected: sp.spmatrix | None = None,
    min_detect: float = 0.1,
    q_max: float = 0.05,
    min_lfc: float = DEFAULT_MIN_LFC,
    min_effect: float | None = None,
    exact_p: bool = True,
    gene_chunk: int = 1024,
    tile: int = 256,
    progress: Progress = no_progress,
    should_stop: ShouldStop = never_stop,
) -> CalibratedDE:
    """Calibrated high-vs-low DE of every (testable) feature in ``groups`` (module docstring).

    ``expression``: (n_cells, G) log-normalised, dense/memmap or sparse. ``kind``: "observed" or
    "predicted" (sets the default ``min_effect``: 0 observed, 0.5 predicted). ``detected``: (n_cells, G) sparse x > 0 of the
    observed counts for the detection filter (None: no filter, as for predicted expression).
    ``exact_p=False`` (the annotation's bulk path): p from the t distribution only where it decides
    q < ``q_max`` (:func:`_decisive_p`), and q only below ``q_max`` (others read 1); the significant
    genes are the same.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    check_inputs(expression, groups)
    n_feat, n_genes = len(groups), expression.shape[1]
    n1 = groups.n_high.astype(np.float64)
    n2 = groups.n_low.astype(np.float64)
    mh, ml, ssh, ssl = (np.empty((n_feat, n_genes)) for _ in range(4))
    level = np.empty(n_genes)
    for c in chunk_sums(expression, groups, gene_chunk=gene_chunk, tile=tile, progress=progress,
                        should_stop=should_stop):
        moments_chunk(c.s1, c.s2, c.p1, c.p2, c.stop_pos, c.skip_row, n1, n2, c.shift, c.g0, mh, ml, ssh, ssl)
        level[c.g0:c.g1] = c.shift   # average expression of ~1,000 random cells: the trend's covariate
    det_h = det_l = None
    if detected is not None:
        if detected.shape != expression.shape:
            raise InputError(f"detected has shape {detected.shape}, expression {expression.shape}")
        det_h, det_l = detection(sp.csr_matrix(detected), groups)
    return _from_moments(groups.feature.copy(), n1, n2, mh, ml, ssh, ssl, level, det_h, det_l, kind=kind,
                         min_detect=min_detect, q_max=q_max, min_lfc=min_lfc, min_effect=min_effect,
                         exact_p=exact_p)


def de_of_cells(high, low, level: np.ndarray, *, feature: int = 0,
                detected_high: np.ndarray | None = None, detected_low: np.ndarray | None = None,
                kind: str = "observed", min_detect: float = 0.1, q_max: float = 0.05,
                min_lfc: float = DEFAULT_MIN_LFC, min_effect: float | None = None) -> CalibratedDE:
    """:func:`calibrated_de` of one feature from its cells' log-normalised values, high (n₁, G) and
    low (n₂, G), dense or sparse, with the trend covariate ``level`` (G,) (the float32-rounded mean of
    the same 1,000 reference cells the batched DE uses: the first 1,000 of the groups' random order)
    and, for the detection filter, the cells' x > 0 (bool, same shapes; for sparse input, ``True``:
    the stored non-zeros). Same numbers as the batched DE."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    level = np.asarray(level, np.float64)
    (mh, ssh), (ml, ssl) = _group_moments(high, level), _group_moments(low, level)
    n1, n2 = np.array([high.shape[0]], np.float64), np.array([low.shape[0]], np.float64)
    det_h = det_l = None
    if detected_high is not None:
        det_h, det_l = _detected_fraction(high, detected_high), _detected_fraction(low, detected_low)
    return _from_moments(np.array([feature]), n1, n2, mh[None], ml[None], ssh[None], ssl[None], level, det_h, det_l,
                         kind=kind, min_detect=min_detect, q_max=q_max, min_lfc=min_lfc, min_effect=min_effect)


def _group_moments(x, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sum of squared deviations (G,) of the rows of ``x`` (n, G). Sparse ``x`` is never
    densified: sums of ``x − shift`` over the stored values plus the zeros' share, as the batched DE
    accumulates them (the shift, about the mean, keeps the one-pass sums accurate)."""
    n = x.shape[0]
    if not sp.issparse(x):
        x = np.asarray(x, np.float64)
        mean = x.mean(axis=0)
        return mean, ((x - mean) ** 2).sum(axis=0)
    c = sp.csc_matrix(x)
    cols = np.repeat(np.arange(c.shape[1]), np.diff(c.indptr))
    dev = np.asarray(c.data, np.float64) - shift[cols]
    zeros = n - np.diff(c.indptr)
    s1 = np.bincount(cols, dev, minlength=c.shape[1]) - zeros * shift
    s2 = np.bincount(cols, dev * dev, minlength=c.shape[1]) + zeros * shift ** 2
    return shift + s1 / n, np.maximum(s2 - s1 * s1 / n, 0.0)


def _detected_fraction(x, detected) -> np.ndarray:
    """Fraction of rows with x > 0 per gene: from ``detected`` (n, G), or the stored positive values
    of a sparse ``x`` when ``detected`` is ``True``."""
    if detected is True:
        c = sp.csc_matrix(x)
        cols = np.repeat(np.arange(c.shape[1]), np.diff(c.indptr))
        return (np.bincount(cols, np.asarray(c.data) > 0, minlength=c.shape[1]) / x.shape[0])[None]
    return np.asarray(detected).mean(axis=0)[None]


def _from_moments(feature, n1, n2, mh, ml, ssh, ssl, level, det_h, det_l, *, kind, min_detect, q_max, min_lfc,
                  min_effect, exact_p: bool = True) -> CalibratedDE:
    """The tests and the rule from group moments (F,) sizes, (F, G) means and sums of squared deviations.
    ``exact_p=False``: :func:`_decisive_p`."""
    if not 0 <= min_detect < 1:
        raise InputError(f"min_detect must lie in [0, 1), got {min_detect}")
    min_lfc = float(min_lfc)
    min_effect = DEFAULT_MIN_EFFECT[kind] if min_effect is None else float(min_effect)
    n_feat, n_genes = mh.shape
    d = n1 + n2 - 2
    s2 = (ssh + ssl) / d[:, None]
    tested = np.isfinite(s2) & (s2 > 0) & np.isfinite(mh) & np.isfinite(ml)
    if det_h is not None:
        tested &= (det_h >= min_detect) | (det_l >= min_detect)
    diff = mh - ml
    d0 = np.zeros(n_feat)
    enough = tested.sum(axis=1) >= 20  # a prior needs genes to be fitted on; fewer: no shrinkage (d0 = 0)
    if n_feat:
        basis = trend_basis(level)
        _, d0_fit, s0 = squeeze_variances(np.where(tested, s2, 1.0), d, tested & enough[:, None], basis)
        d0 = np.where(enough, d0_fit, 0.0)
    else:
        s0 = np.ones((0, n_genes))
    t = np.empty((n_feat, n_genes))
    df_tot = np.empty((n_feat, n_genes))
    effect = np.empty((n_feat, n_genes))
    _moderated_welch(mh, ml, ssh, ssl, s2, n1, n2, d0, s0, tested, t, df_tot, effect)
    if exact_p:
        p = t_two_sided(t, df_tot)
    else:
        p = _decisive_p(t, df_tot, tested, q_max)
    q = bh_masked(p, tested, cut=1.0 if exact_p else q_max)
    lfc = diff / np.log(2)
    sig = tested & (q < q_max) & (np.abs(lfc) >= min_lfc) & (effect >= min_effect)
    params = {"kind": kind, "min_detect": float(min_detect) if det_h is not None else None, "q_max": float(q_max),
              "min_lfc": min_lfc, "min_effect": min_effect}
    return CalibratedDE(feature, n1.astype(np.int64), n2.astype(np.int64), mh, ml, lfc, t, df_tot, p, q, tested,
                        sig & (t > 0), sig & (t < 0), d0, det_h, det_l, kind, params)


def _decisive_p(t, df, tested, q_max):
    """Two-sided p (F, G) exact where it decides BH at ``q_max``; elsewhere the normal p, a lower bound.

    The t tail is heavier than the normal one and heavier for fewer df, so with m tested genes:
    - normal p ≥ q_max ⇒ t p ≥ q_max ⇒ q ≥ q_max: not significant whatever the exact value;
    - |t| ≥ t* = the t quantile at q_max/m for the feature's smallest df ⇒ t p ≤ q_max/m ⇒ q ≤ q_max.
    Only genes between the two (few: 2·stdtr costs ~0.3 µs a gene) get the t distribution's p. The
    ranks BH uses keep the order that matters, so q < q_max holds for exactly the same genes.
    """
    p = np.where(np.isnan(t), 1.0, np.minimum(2 * special.ndtr(-np.abs(t)), 1.0))
    m = np.maximum(tested.sum(axis=1), 1)
    df_min = np.nanmin(np.where(tested, df, np.inf), axis=1, initial=np.inf)
    t_star = special.stdtrit(np.where(np.isfinite(df_min), df_min, 1e12), 1 - q_max / (2 * m))
    zone = (p < q_max) & (np.abs(t) < t_star[:, None])
    if zone.any():
        p[zone] = t_two_sided(t[zone][None, :], df[zone][None, :])[0]
    return p


@one_at_a_time  # numba's workqueue layer aborts on parallel regions from two threads
@njit(parallel=True, cache=True)
def _moderated_welch(mh, ml, ss_high, ss_low, s2, n1, n2, d0, s0, tested, t, df, effect):
    """Welch's t with each group's variance shrunk towards the prior s0² with d0 df, in place (F, G):
    v = (d0·s0² + SS)/(d0 + n − 1); t = Δ/√(v_h/n₁ + v_l/n₂), Welch–Satterthwaite df from d0 + n − 1
    per group (d0 = ∞: v = s0², df = ∞); NaN where not tested. ``effect`` = |Δ|/√s² (Cohen's d).
    An all-zero group keeps a variance of d0·s0²/(d0 + n − 1) > 0; a group with a few large values
    keeps its own large variance (the self-correction Welch has and a pooled t lacks)."""
    n_feat, n_genes = mh.shape
    for f in prange(n_feat):
        a = n1[f] - 1.0
        b = n2[f] - 1.0
        prior = d0[f]
        inf = not np.isfinite(prior)
        for j in range(n_genes):
            diff = mh[f, j] - ml[f, j]
            effect[f, j] = abs(diff) / np.sqrt(s2[f, j]) if s2[f, j] > 0 else np.inf if diff != 0 else 0.0
            if not tested[f, j]:
                t[f, j] = np.nan
                df[f, j] = np.nan
                continue
            if inf:
                vh = s0[f, j] / n1[f]
                vl = s0[f, j] / n2[f]
                se2 = vh + vl
                t[f, j] = diff / np.sqrt(se2) if se2 > 0 else np.nan
                df[f, j] = np.inf
                continue
            vh = (prior * s0[f, j] + ss_high[f, j]) / (prior + a) / n1[f]
            vl = (prior * s0[f, j] + ss_low[f, j]) / (prior + b) / n2[f]
            se2 = vh + vl
            if se2 > 0:
                t[f, j] = diff / np.sqrt(se2)
                df[f, j] = se2 * se2 / (vh * vh / (prior + a) + vl * vl / (prior + b))
            else:
                t[f, j] = np.nan
                df[f, j] = np.nan
