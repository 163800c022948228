"""Steering experiments (docs/method.md §6): set SAE features in chosen cells, re-decode, compare.

    from core.steer import SteerConfig, SteerRequest, steer, save_steering_run, steer_into_analysis
    result = steer(analysis, features=[12], cells="cell_type=Proerythroblast", config=SteerConfig(target="max"))
    result.de                 # paired DE per gene (log2fc, stat, pvalue, qvalue, significant, direction)
    result.enrichment_up      # concepts of the up-regulated genes (enrichment_down: down-regulated)
    result.centroid_shift     # nearest cell-type centroid before/after, per cell
    run_id = save_steering_run(analysis, result)
    # or both in one call, as the CLI and the app do:
    result = steer_into_analysis(analysis, SteerRequest(features=(12,), cells="all"))
"""
from core.steer.cells import SELECTION_HELP, select_cells
from core.steer.centroids import centroid_shift, centroid_summary
from core.steer.config import TESTS, SteerConfig
from core.steer.context import SteeringContext, cell_type_centroids, clear_context_cache, steering_context
from core.steer.enrichment import ENRICH_COLUMNS, steering_concepts, up_down_enrichment
from core.steer.glm import nb_glm_paired
from core.steer.paired_de import DE_COLUMNS, de_table, paired_log_test
from core.steer.request import SteerRequest, steer_into_analysis
from core.steer.run import SteeringResult, steer, steer_latents
from core.steer.store import list_steering_runs, load_steering_run, save_steering_run
from core.steer.targets import TARGET_HELP, Target, parse_target, resolve_targets

__all__ = [
    "SteerConfig", "TESTS", "steer", "steer_latents", "SteeringResult", "select_cells", "SELECTION_HELP",
    "SteeringContext", "steering_context", "clear_context_cache", "cell_type_centroids",
    "Target", "parse_target", "resolve_targets", "TARGET_HELP",
    "paired_log_test", "nb_glm_paired", "de_table", "DE_COLUMNS",
    "steering_concepts", "up_down_enrichment", "ENRICH_COLUMNS", "centroid_shift", "centroid_summary",
    "save_steering_run", "list_steering_runs", "load_steering_run", "SteerRequest", "steer_into_analysis",
]
