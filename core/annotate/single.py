"""One feature's DE table and cell groups, exactly as the batched annotation computes them."""
from __future__ import annotations

import pandas as pd

from core.base.errors import InputError
from core.annotate.calibrated_de import calibrated_de
from core.annotate.de import batched_de
from core.annotate.normalise import prepare
from core.annotate.groups import select_groups
from core.annotate.expression import resolve_expression
from core.store.dataset import load_analysis_dataset

__all__ = ["feature_de"]


def feature_de(analysis, feature: int, *, method: str = "calibrated", expression: str = "auto",
               percentile: float = 99.0, n_low: int = 1000, min_cells: int = 3, min_detect: float = 0.1,
               fdr: float = 0.05, min_lfc: float = 0.5, min_effect: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(de_table, cells)`` of one feature, with the same seed, groups and rule as ``annotate``.

    Paper method: gene, mean_high, mean_low, fold_change, t, p, q, significant. Calibrated method
    (:class:`core.annotate.calibrated_de.CalibratedDE` table): gene, mean_high, mean_low (log-normalised),
    lfc, t (moderated), p, q, tested, direction, detect_high, detect_low, and ``significant``.
    ``cells``: feature, group, cell_index, cell."""

    acts = analysis.read_npz_sparse("activations.npz")
    if not 0 <= feature < acts.shape[1]:
        raise InputError(f"feature {feature} does not exist (the SAE has {acts.shape[1]} features, 0–{acts.shape[1] - 1})")
    groups = select_groups(acts, seed=analysis.seed, features=[feature], percentile=percentile, n_low=n_low,
                           min_cells=min_cells)
    if not groups.testable[0]:
        raise InputError(f"feature {feature} cannot be tested: {groups.reason[0]}")
    expr = resolve_expression(analysis, mode=expression)
    if method == "paper":
        table = batched_de(expr.matrix, groups).table(feature, genes=expr.gene_names)
    elif method == "calibrated":
        kind = expr.kind
        norm, detected = prepare(expr.matrix, kind=kind)
        de = calibrated_de(norm, groups, kind=kind, detected=detected, min_detect=min_detect,
                           q_max=fdr, min_lfc=min_lfc, min_effect=min_effect)
        table = de.table(feature, genes=expr.gene_names)
        table["significant"] = table["direction"] != ""
    else:
        raise InputError(f"unknown method {method!r}", fix="use calibrated or paper")
    cells = groups.to_frame()
    names = load_analysis_dataset(analysis, check_hash=False).obs_names
    cells["cell"] = names[cells["cell_index"].to_numpy()]
    return table, cells
