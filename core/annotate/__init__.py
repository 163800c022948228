"""Automated feature annotation (docs/method.md §4, §4b): high/low cell groups, batched DE, enrichment.

Two methods share the groups and the batched group moments (:mod:`.moments`):

- calibrated (default): :func:`log_normalise` → :func:`calibrated_de` → :func:`enrich_calibrated`
  (up/down over-representation, correlation-adjusted rank test, most specific terms, ``reported``);
- paper: :func:`batched_de` → :func:`enrich`, the paper's statistics unchanged.

    groups = select_groups(activations, seed=seed)
    for block in groups.blocks(256):
        de = calibrated_de(log_normalise(counts), block, detected=detected_matrix(counts))
        table = enrich_calibrated(de, concepts, correlation=rho, dag=go_dag())

:func:`core.annotate.pipeline.annotate` runs either, with the null self-check.
"""
from core.annotate.calibrated_de import CalibratedDE, calibrated_de, de_of_cells
from core.annotate.calibrated_enrich import CALIBRATED_COLUMNS, enrich_calibrated
from core.annotate.de import DEResult, batched_de, significant_genes
from core.annotate.enrich import COLUMNS, enrich, enrichment_stats
from core.annotate.groups import Groups, select_groups
from core.annotate.normalise import detected_matrix, library_sizes, log_normalise
from core.annotate.reported import findable, headline_p, is_reported, ordered, reported
from core.annotate.stats import binom_two_sided, bh, mwu_from_rank_sums, rank_rows, welch_from_moments

__all__ = ["Groups", "select_groups", "DEResult", "batched_de", "significant_genes", "enrich",
           "enrichment_stats", "COLUMNS", "bh", "welch_from_moments", "binom_two_sided", "rank_rows",
           "mwu_from_rank_sums", "CalibratedDE", "calibrated_de", "de_of_cells", "CALIBRATED_COLUMNS",
           "enrich_calibrated", "log_normalise", "library_sizes", "detected_matrix", "reported", "findable",
           "is_reported", "headline_p", "ordered"]
