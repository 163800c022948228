"""One feature's DE table and cell groups, exactly as the batched annotation computes them."""
from __future__ import annotations

import pandas as pd

from ..errors import InputError
from .de import batched_de
from .groups import select_groups

__all__ = ["feature_de"]


def feature_de(analysis, feature: int, *, expression: str = "auto", percentile: float = 99.0,
               n_low: int = 1000, min_cells: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(de_table, cells)``: gene, mean_high, mean_low, fold_change, t, p, q, significant; and the
    cells used (feature, group, cell_index, cell). Same seed and rule as ``annotate``."""
    from ..expression import load_analysis_dataset, resolve_expression

    acts = analysis.read_npz_sparse("activations.npz")
    if not 0 <= feature < acts.shape[1]:
        raise InputError(f"feature {feature} does not exist (the SAE has {acts.shape[1]} features, 0–{acts.shape[1] - 1})")
    groups = select_groups(acts, seed=analysis.seed, features=[feature], percentile=percentile, n_low=n_low,
                           min_cells=min_cells)
    if not groups.testable[0]:
        raise InputError(f"feature {feature} cannot be tested: {groups.reason[0]}")
    expr = resolve_expression(analysis, mode=expression)
    de = batched_de(expr.matrix, groups)
    table = de.table(feature, genes=expr.gene_names)
    cells = groups.to_frame()
    names = load_analysis_dataset(analysis, check_hash=False).obs_names
    cells["cell"] = names[cells["cell_index"].to_numpy()]
    return table, cells
