"""Steering experiments (docs/method.md §6): set SAE features in chosen cells, re-decode, compare.

    from core.steer import SteerConfig, SteerRequest, steer, save_steering_run, steer_into_analysis
    result = steer(analysis, features=[12], cells="cell_type=Proerythroblast", config=SteerConfig(target="max"))
    result.de                 # paired DE per gene (log2fc, stat, pvalue, qvalue, significant, direction)
    result.enrichment_up      # concepts of the up-regulated genes (enrichment_down: down-regulated)
    result.centroid_shift     # nearest cell-type centroid before/after, per cell
    run_id = save_steering_run(analysis, result)
    # or both in one call, as the CLI and the app do:
    result = steer_into_analysis(analysis, SteerRequest(features=(12,), cells="all"))
    # a dose–response sweep with matched controls and a verdict per term (one stored run group)
    exp = run_experiment(analysis, SteerExperiment(feature=12, cells="cell_type=MEP", strengths=(0.5, 1, 2, 4)))
    save_experiment(analysis, exp); exp.verdicts; exp.dose_response()
    # the features that move MEP cells toward erythroblasts, and a run of the best one
    steer_toward(analysis, cells="cell_type=MEP", toward="Erythroblast").ranking
    # the features that rise along a lineage, ranked by how far steering each moves its first stage to its last
    rank_trajectory(steering_context(analysis), rising_features(acts, cell_types, lineage), lineage=lineage)
    # the analysis back into a copy of the AnnData (obsm X_sae, obs featurelens_<id>, varm, uns)
    export_h5ad(analysis, "pbmc-featurelens.h5ad", top=10)
"""
from core.steer.cells import SELECTION_HELP, select_cells
from core.steer.centroids import centroid_shift, centroid_summary
from core.steer.config import TESTS, SteerConfig
from core.steer.context import SteeringContext, cell_type_centroids, clear_context_cache, steering_context
from core.steer.directions import export_h5ad, gene_directions
from core.steer.experiment import (NOT_ABOVE, SPECIFIC, ExperimentResult, SteerExperiment, evaluate_shift,
                                   list_experiments, load_experiment, matched_controls, parse_strengths,
                                   null_features, run_experiment, save_experiment, term_scores)
from core.steer.enrichment import ENRICH_COLUMNS, steering_concepts, up_down_enrichment
from core.steer.glm import nb_glm_paired
from core.steer.paired_de import DE_COLUMNS, de_table, paired_log_test
from core.steer.request import SteerRequest, steer_into_analysis
from core.steer.run import SteeringResult, steer, steer_latents
from core.steer.store import list_steering_runs, load_steering_run, save_steering_run
from core.steer.targets import TARGET_HELP, Target, parse_target, resolve_targets
from core.steer.toward import TowardResult, rank_toward, steer_toward
from core.steer.trajectory import SHIFT_COLUMNS, TOLERANCE, check_lineage, rank_trajectory, rising_features
from core.steer.verdicts import VERDICT_COLUMNS, empirical_p, hypothesis_terms, judge_terms

__all__ = [
    "SteerConfig", "TESTS", "steer", "steer_latents", "SteeringResult", "select_cells", "SELECTION_HELP",
    "SteeringContext", "steering_context", "clear_context_cache", "cell_type_centroids", "gene_directions", "export_h5ad",
    "Target", "parse_target", "resolve_targets", "TARGET_HELP",
    "paired_log_test", "nb_glm_paired", "de_table", "DE_COLUMNS",
    "steering_concepts", "up_down_enrichment", "ENRICH_COLUMNS", "centroid_shift", "centroid_summary",
    "save_steering_run", "list_steering_runs", "load_steering_run", "SteerRequest", "steer_into_analysis",
    "SteerExperiment", "ExperimentResult", "run_experiment", "save_experiment", "load_experiment", "list_experiments",
    "parse_strengths", "evaluate_shift", "matched_controls", "null_features", "term_scores", "SPECIFIC", "NOT_ABOVE",
    "judge_terms", "empirical_p", "hypothesis_terms", "VERDICT_COLUMNS",
    "rank_toward", "steer_toward", "TowardResult",
    "rising_features", "rank_trajectory", "check_lineage", "SHIFT_COLUMNS", "TOLERANCE",
]
