"""Settings of a steering experiment: one frozen dataclass for the CLI, the app and the stored run."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from core.concepts.go import NAMESPACES
from core.base.configs import config_from_dict
from core.base.errors import InputError
from core.steer.targets import Target, parse_target

__all__ = ["SteerConfig", "TESTS"]

TESTS = ("paired-log", "nb-glm")


@dataclass(frozen=True)
class SteerConfig:
    """How to steer, test and enrich (docs/method.md §6).

    ``target``: one spec for every steered feature, or a tuple with one per feature (forms in
    :mod:`core.steer.targets`: ``max``, ``x2``, ``p99``, ``mean:B cellx1.5``, ``off``, a number).
    ``error_term``: add the SAE's reconstruction error back (steered = x + W_dec·Δz, so the
    unsteered part of each cell is kept exactly); False decodes the SAE reconstruction of the
    steered latents and compares it with the original cells, as the paper did.
    ``test``: ``"paired-log"`` (paired t-test per gene on log2(expected + ``pseudocount``)) or
    ``"nb-glm"`` (the paper's negative-binomial GLM with pair and condition terms, the model's
    gene dispersions). Significant genes: BH q < ``alpha`` and |log2fc| ≥ ``min_abs_log2fc``.
    Enrichment of the up- and down-regulated genes: ``databases`` (go-bp, go-mf, go-cc) and
    ``gmt`` files, terms of ``min_term_size``–``max_term_size`` data genes, kept when they are
    over-represented among the direction's significant genes with binomial BH q below
    ``enrich_q``, or shifted towards the changed end (Mann–Whitney BH q below ``enrich_q``) by at
    least ``min_term_shift`` log2 units on average beyond all genes (without that floor the rank
    test lists hundreds of terms for a change too small to move one gene). ``max_cells``: a larger selection is subsampled with ``seed`` (None:
    the analysis seed); None keeps every selected cell. ``save_expression``: store the
    per-cell expected expression (normal and steered, cells × genes float32) with the run
    (off by default: 1,000 cells × 13,431 genes take 107 MB).
    """

    target: str | float | tuple = "max"
    error_term: bool = True
    test: str = "paired-log"
    alpha: float = 0.05
    min_abs_log2fc: float = 1.0
    pseudocount: float = 0.1
    databases: tuple = ("go-bp",)
    gmt: tuple = ()
    propagate: bool = True
    min_term_size: int = 10
    max_term_size: int = 500
    enrich_q: float = 0.05
    min_term_shift: float = 0.25
    max_cells: int | None = 5000
    seed: int | None = None
    save_expression: bool = False

    def __post_init__(self):
        raw = self.target if isinstance(self.target, (tuple, list)) else (self.target,)
        if not raw:
            raise InputError("no steering target given", fix="e.g. target='max'")
        targets = tuple(parse_target(t) for t in raw)  # validates
        object.__setattr__(self, "target", tuple(t.text for t in targets) if len(targets) > 1 else targets[0].text)
        object.__setattr__(self, "databases", tuple(str(d).strip().lower() for d in self.databases if str(d).strip()))
        object.__setattr__(self, "gmt", tuple(str(g) for g in self.gmt))
        if not isinstance(self.error_term, bool):
            raise InputError(f"error_term must be true or false, not {self.error_term!r}")
        if self.test not in TESTS:
            raise InputError(f"unknown test {self.test!r}", fix=f"choose one of: {', '.join(TESTS)}")
        if not (_num(self.alpha) and 0 < self.alpha < 1):
            raise InputError(f"alpha must lie in (0, 1), got {self.alpha!r}", fix="e.g. 0.05")
        if not (_num(self.min_abs_log2fc) and self.min_abs_log2fc >= 0):
            raise InputError(f"min_abs_log2fc must be ≥ 0, got {self.min_abs_log2fc!r}", fix="e.g. 1 (a 2-fold change)")
        if not (_num(self.pseudocount) and self.pseudocount > 0):
            raise InputError(f"pseudocount must be > 0, got {self.pseudocount!r}", fix="e.g. 0.1 expected counts")
        bad = [d for d in self.databases if d not in NAMESPACES]
        if bad:
            raise InputError(f"unknown concept database {bad[0]!r}",
                             fix=f"choose from {', '.join(NAMESPACES)} or add a gene-set file (gmt)")
        if not 1 <= self.min_term_size <= self.max_term_size:
            raise InputError(f"term sizes must satisfy 1 ≤ min ({self.min_term_size}) ≤ max ({self.max_term_size})")
        if not (_num(self.enrich_q) and 0 < self.enrich_q <= 1):
            raise InputError(f"enrich_q must lie in (0, 1], got {self.enrich_q!r}")
        if not (_num(self.min_term_shift) and self.min_term_shift >= 0):
            raise InputError(f"min_term_shift must be ≥ 0 (log2 units), got {self.min_term_shift!r}", fix="e.g. 0.25")
        if self.max_cells is not None and not (isinstance(self.max_cells, int) and self.max_cells >= 1):
            raise InputError(f"max_cells must be a positive integer or None, got {self.max_cells!r}")

    @property
    def targets(self) -> tuple[Target, ...]:
        raw = self.target if isinstance(self.target, tuple) else (self.target,)
        return tuple(parse_target(t) for t in raw)

    def targets_for(self, n_features: int) -> list[Target]:
        """One target per steered feature (a single spec applies to all)."""
        t = self.targets
        if len(t) == 1:
            return list(t) * n_features
        if len(t) != n_features:
            raise InputError(f"{len(t)} targets for {n_features} features",
                             fix="give one target for all features, or exactly one per feature")
        return list(t)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["target"] = list(self.target) if isinstance(self.target, tuple) else self.target
        d["databases"], d["gmt"] = list(self.databases), list(self.gmt)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SteerConfig":
        d = dict(d)
        d.pop("enrich_p", None)  # runs stored before 2026-12-01 kept terms at p < enrich_p (now enrich_q)
        for k in ("target", "databases", "gmt"):
            if isinstance(d.get(k), list):
                d[k] = tuple(d[k])
        return config_from_dict(cls, d, what="steering")


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
