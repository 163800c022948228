"""Automated feature annotation (REFERENCE.md §4): high/low cell groups, batched DE, batched enrichment.

    groups = select_groups(activations, seed=seed)
    for block in groups.blocks(1000):
        de = batched_de(expression, block)
        table = enrich(de, concepts)
"""
from .de import DEResult, batched_de, significant_genes
from .enrich import COLUMNS, enrich, enrichment_stats
from .groups import Groups, select_groups
from .stats import binom_two_sided, bh, mwu_from_rank_sums, rank_rows, welch_from_moments

__all__ = ["Groups", "select_groups", "DEResult", "batched_de", "significant_genes", "enrich",
           "enrichment_stats", "COLUMNS", "bh", "welch_from_moments", "binom_two_sided", "rank_rows",
           "mwu_from_rank_sums"]
