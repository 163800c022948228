"""Every component ID of the app, in one place: ``<page>-<widget>-<role>``."""
from __future__ import annotations

URL = "app-url"
NAVBAR = "app-navbar"
PAGE_CONTENT = "app-page-content"
STORE_SOURCE = "app-source-store"  # small JSON: the chosen source name only
STORE_CELLS = "app-cells-store"    # session: cells carried from the Explorer to Steering
#                                    {"source", "cells": [int, ...] (≤ 5,000), "n"}

PICKER_DROPDOWN = "picker-source-dropdown"
PICKER_REFRESH = "picker-source-refresh"
PICKER_CARD = "picker-source-card"            # the one-line summary of the source (details on demand)
PICKER_BAR = "picker-source-bar"
PICKER_DETAILS = "picker-source-details"      # html.Details: the facts table, opened by its summary

DATA_PAGE = "data-page"
EXPLORER_PAGE = "explorer-page"
STEERING_PAGE = "steering-page"
COMPARE_PAGE = "compare-page"
SIMULATION_PAGE = "simulation-page"
NOT_FOUND_PAGE = "notfound-page"

# --- background jobs: app-wide alert and job-health footer (jobs-*) ---
JOBS_ALERT = "jobs-lost-alert"          # app-wide: a job whose process or worker died
JOBS_FOOTER = "jobs-footer"
JOBS_CHECK_BUTTON = "jobs-check-button"
JOBS_CHECK_HOLD = "jobs-check-hold"      # dcc.Store: seconds the probe job holds its worker (0)
JOBS_CHECK_RESULT = "jobs-check-result"
JOBS_CHECK_PROGRESS = "jobs-check-progress"

# --- data page (data-*) ---
DATA_SOURCE_INFO = "data-source-info"          # what is chosen, or why it cannot be used
DATA_SOURCE = "data-source-store"              # store: the source this page shows (the jobs' input)
DATA_UPLOAD = "data-upload"                    # dcc.Upload (.h5ad only, size-capped)
DATA_UPLOAD_CHECKED = "data-upload-checked"    # store: the upload after the browser-side size check
DATA_UPLOAD_CAP = "data-upload-cap"            # store: the cap in bytes
DATA_UPLOAD_ALERT = "data-upload-alert"
DATA_EMBEDDING = "data-embedding-select"
DATA_CELL_TYPE = "data-celltype-select"
DATA_DECODER = "data-decoder-select"
DATA_FIT_LATENT = "data-fit-latent"
DATA_FIT_INFO = "data-fit-info"
DATA_FIT_JOB = "data-fit"                      # job panel prefix (components/job_panel.JobIds)
DATA_ANALYSIS_NAME = "data-analysis-name"
DATA_PRESET = "data-preset-select"
DATA_PRESET_HELP = "data-preset-help"
DATA_ARCH = "data-arch-select"
DATA_EXPANSION = "data-expansion-input"
DATA_SIZE_HELP = "data-size-help"
DATA_SPARSITY = "data-sparsity-input"          # L1 weight (vanilla, relu) or k (topk, batchtopk)
DATA_SPARSITY_LABEL = "data-sparsity-label"
DATA_SPARSITY_HELP = "data-sparsity-help"
DATA_EPOCHS = "data-epochs-input"
DATA_SEED = "data-seed-input"
DATA_SEEDS = "data-seeds-radio"                # 1 or 3 SAEs (TrainRequest.seeds)
DATA_TRAIN_JOB = "data-train"                  # job panel prefix
DATA_TRAIN_LIVE_CHART = "data-train-live-chart"
DATA_ANN_METHOD = "data-annotate-method"        # calibrated | paper (AnnotationConfig.method)
DATA_ANN_CONCEPTS = "data-annotate-concepts"
DATA_ANN_EXPRESSION = "data-annotate-expression"
DATA_ANN_PERCENTILE = "data-annotate-percentile"
DATA_ANN_NLOW = "data-annotate-nlow"
DATA_ANNOTATE_JOB = "data-annotate"            # job panel prefix
DATA_SUMMARY = "data-summary"                  # the analysis summary card's body
DATA_QUALITY = "data-quality-table"            # the summary's SAE-quality table
DATA_QUALITY_DENSITY = "data-quality-density"  # the summary's feature-density histogram
DATA_SWEEP_FRONTIER = "data-sweep-frontier"  # the auto preset's FVU–L0 frontier
DATA_OPEN_ANALYSIS = "data-open-analysis"      # button: make the analysis the app's source

# --- explorer page, feature card, search (explorer-*, card-*, search-*) ---
STORE_RENDERED = "app-rendered-store"          # small JSON: {"page", "source"} the page slot shows
EXPLORER_SOURCE = "explorer-source-store"      # the source the page was rendered for
EXPLORER_STATE = "explorer-state-store"        # {"feature": int | None, "features": [int, ...]}
EXPLORER_HITS = "explorer-hits-store"          # feature numbers matching the search (≤ 500)
EXPLORER_ALERT = "explorer-page-alert"
EXPLORER_MAP = "explorer-map-graph"
EXPLORER_MAP_COLOUR = "explorer-map-colour"
EXPLORER_MAP_META = "explorer-map-meta"        # {"source", "colour_by", "overlay": first overlay trace}
EXPLORER_MAP_ALERT = "explorer-map-alert"
EXPLORER_LATENT = "explorer-latent-graph"
EXPLORER_LATENT_COLOUR = "explorer-latent-colour"
EXPLORER_LATENT_META = "explorer-latent-meta"  # {"source", "colour_by"} of the figure shown
EXPLORER_LATENT_ALERT = "explorer-latent-alert"
EXPLORER_LATENT_VIEW = "explorer-latent-view"            # PCA / UMAP switch
EXPLORER_LATENT_VIEW_NOTE = "explorer-latent-view-note"  # which view is shown first, and why
EXPLORER_VIEWS_NEEDED = "explorer-views-needed"          # source whose UMAP the background job computes
EXPLORER_VIEWS_READY = "explorer-views-ready"            # bumped when the job has stored it
EXPLORER_SELECTION = "explorer-selection-chips"
EXPLORER_LOOKUP_STATUS = "explorer-lookup-status"
EXPLORER_LOOKUP_FEATURES = "explorer-lookup-features-grid"
EXPLORER_LOOKUP_TERMS = "explorer-lookup-terms-grid"
EXPLORER_CELLS = "explorer-lasso-cells-store"   # cell indices of the current lasso (≤ 5,000; else null)
EXPLORER_STEER_CELLS = "explorer-steer-cells-button"  # "Steer in these N cells →"
EXPLORER_STEER_CELLS_NOTE = "explorer-steer-cells-note"
EXPLORER_STEER_CELLS_BOX = "explorer-steer-cells-box"
EXPLORER_URL_WRITTEN = "explorer-url-written-store"   # the last URL search this page wrote (back/forward)
SEARCH_MODE = "search-mode-radio"
SEARCH_INPUT = "search-query-input"
SEARCH_SUGGESTIONS = "search-query-suggestions"
SEARCH_STATUS = "search-results-status"
SEARCH_RESULTS = "search-results-grid"
SEARCH_BUILD_GENES = "search-build-genes-button"
SEARCH_BUILD_PROGRESS = "search-build-genes-progress"
SEARCH_BUILD_BOX = "search-build-genes-box"
SEARCH_GENES_READY = "search-genes-ready-store"  # bumped when the gene index is built
CARD = "card-feature"
CARD_HEADER = "card-feature-header"
CARD_BODY = "card-feature-body"
CARD_ALERT = "card-feature-alert"
CARD_HISTOGRAM = "card-histogram-graph"
CARD_PROFILE = "card-profile-graph"
CARD_TERMS = "card-terms-grid"
CARD_TERMS_NOTE = "card-terms-note"
CARD_TERMS_ALL = "card-terms-all-switch"        # on: every nominal row, not only the reported terms
CARD_VOLCANO = "card-volcano-graph"
CARD_DE = "card-de-grid"
CARD_DE_NOTE = "card-de-note"
CARD_EXPORT_TERMS = "card-export-terms-button"
CARD_EXPORT_DE = "card-export-de-button"
CARD_DOWNLOAD = "card-download"
CARD_STEER = "card-steer-link"
CARD_STEER_EXPERIMENT = "card-steer-experiment-link"  # the same, opening the dose–response sweep with controls
CARD_STABILITY = "card-stability"                # the card's "stable across seeds" line


def explorer_pick(feature: int) -> dict:
    """Pattern-matching ID of a chip that makes ``feature`` the card's feature."""
    return {"type": "explorer-pick", "index": int(feature)}


# --- steering page (steer-*) ---
STEER_SOURCE = "steer-source-store"            # the source the page was rendered for
STEER_SHOWN = "steer-shown-store"              # {"run_id": str | None, "features": [int]}: the run shown
STEER_LASSO = "steer-lasso-store"              # cell indices lassoed in the latent view
STEER_ALERT = "steer-page-alert"
STEER_FEATURES = "steer-features-select"
STEER_CELL_MODE = "steer-cells-mode"
STEER_CELL_TYPES = "steer-celltypes-select"
STEER_CELL_TYPES_BOX = "steer-celltypes-box"
STEER_CELL_HELP = "steer-cells-help"
STEER_TARGET = "steer-target-radio"
STEER_FACTOR = "steer-factor-slider"
STEER_FACTOR_BOX = "steer-factor-box"
STEER_PERCENTILE = "steer-percentile-slider"
STEER_PERCENTILE_BOX = "steer-percentile-box"
STEER_TARGET_HELP = "steer-target-help"
STEER_MEAN_BOX = "steer-mean-box"
STEER_MEAN_TYPE = "steer-mean-celltype-select"   # target "mean:TYPExF": the cell type
STEER_MEAN_FACTOR = "steer-mean-factor-input"     # … and F (default 1.5)
STEER_VALUE_BOX = "steer-value-box"
STEER_VALUE = "steer-value-input"                 # target: an absolute activation
STEER_ERROR_TERM = "steer-errorterm-switch"
STEER_TEST = "steer-test-radio"
STEER_RUN_JOB = "steer-run"                    # job panel prefix (components/job_panel.JobIds)
STEER_LATENT = "steer-latent-graph"
STEER_RESULTS = "steer-results-card"
STEER_SUMMARY = "steer-results-summary"
STEER_VOLCANO = "steer-volcano-graph"
STEER_EXPORT_DE = "steer-export-de-button"
STEER_CHANGES = "steer-changes-table"            # largest changes (top up and down by log2 FC)
STEER_CHANGES_NOTE = "steer-changes-note"
STEER_DOWNLOAD = "steer-download"
STEER_SHIFT = "steer-shift-graph"
STEER_MOVES = "steer-moves-table"
STEER_TERMS_UP = "steer-terms-up-table"
STEER_TERMS_UP_NOTE = "steer-terms-up-note"
STEER_TERMS_DOWN = "steer-terms-down-table"
STEER_TERMS_DOWN_NOTE = "steer-terms-down-note"
STEER_HISTORY = "steer-history-table"
STEER_HISTORY_NOTE = "steer-history-note"
STEER_MODE = "steer-mode-radio"                # one run | dose–response with controls (URL ?mode=experiment)
STEER_TARGET_SECTION = "steer-target-section"  # hidden in experiment mode (the sweep sets the strengths)
STEER_RUN_BOX = "steer-run-box"                # the one-run job panel
STEER_EXP_BOX = "steer-exp-box"                # strengths, controls and the experiment job panel
STEER_EXP_SETTINGS = "steer-exp-settings"     # strengths and controls (shown in experiment mode)
STEER_EXP_STRENGTHS = "steer-exp-strengths-input"
STEER_EXP_CONTROLS = "steer-exp-controls-input"
STEER_EXP_HYPOTHESES = "steer-exp-hypotheses-input"
STEER_EXP_JOB = "steer-exp"                    # job panel prefix: the sweep with controls
STEER_EXP_SHOWN = "steer-exp-shown-store"      # {"experiment_id": str | None}: the experiment shown
STEER_LOWER_TABS = "steer-lower-tabs"          # experiment | toward | compare
STEER_EXP_SUMMARY = "steer-exp-summary"
STEER_EXP_CHANGED = "steer-exp-changed-graph"  # changed genes vs strength
STEER_EXP_TERMS = "steer-exp-terms-graph"      # top up terms' scores vs strength
STEER_EXP_TOWARD = "steer-exp-toward-graph"    # shift toward each cell type vs strength
STEER_EXP_VERDICTS = "steer-exp-verdicts-table"
STEER_EXP_HISTORY = "steer-exp-history-table"
STEER_EXP_HISTORY_NOTE = "steer-exp-history-note"
STEER_TOWARD_FROM = "steer-toward-from-select"  # cells of type A
STEER_TOWARD_TO = "steer-toward-to-select"      # target type B
STEER_TOWARD_RANK_JOB = "steer-toward-rank"     # job panel prefix: rank the features
STEER_TOWARD_RUN_JOB = "steer-toward-run"       # job panel prefix: steer the best
STEER_TOWARD_TABLE = "steer-toward-table"
STEER_TOWARD_NOTE = "steer-toward-note"
STEER_CMP_A = "steer-compare-a-select"          # a stored run (run:<id> or exp:<id>:<label>)
STEER_CMP_B = "steer-compare-b-select"
STEER_CMP_ALERT = "steer-compare-alert"
STEER_CMP_VOLCANO_A = "steer-compare-volcano-a-graph"
STEER_CMP_VOLCANO_B = "steer-compare-volcano-b-graph"
STEER_CMP_TERMS = "steer-compare-terms-table"
STEER_CMP_SHIFT = "steer-compare-shift-graph"

# --- compare page (compare-*) ---
COMPARE_A = "compare-a-select"                 # analysis A (dropdown of analyses)
COMPARE_B = "compare-b-select"                 # analysis B
COMPARE_ALERT = "compare-alert"
COMPARE_RESULTS = "compare-results"            # everything below the pickers (hidden on error)
COMPARE_SUMMARY = "compare-summary"
COMPARE_MATCHES = "compare-matches-grid"
COMPARE_SCATTER = "compare-counts-graph"
COMPARE_TERMS_SHARED = "compare-terms-shared-grid"
COMPARE_TERMS_ONLY_A = "compare-terms-only-a-grid"
COMPARE_TERMS_ONLY_B = "compare-terms-only-b-grid"
COMPARE_TERMS_TABS = "compare-terms-tabs"
COMPARE_TAB_BOTH = "compare-tab-both"
COMPARE_TAB_ONLY_A = "compare-tab-only-a"
COMPARE_TAB_ONLY_B = "compare-tab-only-b"
COMPARE_EXPORT_MATCHES = "compare-export-matches-button"
COMPARE_EXPORT_TERMS = "compare-export-terms-button"
COMPARE_DOWNLOAD = "compare-download"

# --- simulation page (sim-*) ---
SIM_CELLS = "sim-cells-input"
SIM_GENES = "sim-genes-input"
SIM_SEED = "sim-seed-input"
SIM_EPOCHS = "sim-epochs-input"
SIM_RUN_JOB = "sim-run"                        # job panel prefix (components/job_panel.JobIds)
SIM_RUNS = "sim-runs-select"                   # stored runs (value = run id)
SIM_RUNS_REFRESH = "sim-runs-refresh"
SIM_RESULTS = "sim-results"                    # the chosen run's tables, figure and findings
SIM_BAR = "sim-recovery-graph"
SIM_PLANTED_ANALYSIS = "sim-planted-analysis-select"
SIM_PLANTED_BODY = "sim-planted-body"
SIM_PLANTED_JOB = "sim-planted"                # job panel prefix


def nav_link(page: str) -> str:
    return f"app-navlink-{page}"


def all_ids() -> list[str]:
    """Every string ID defined above (for the uniqueness test)."""
    return [v for k, v in globals().items() if k.isupper() and isinstance(v, str)]

# --- explorer: feature-card sections and the cell type × feature heatmap (issue 16) ---
CARD_UP_SECTION = "card-up-terms-section"        # reported (up-regulated) terms
CARD_DOWN_SECTION = "card-down-terms-section"    # terms of the genes down in the high cells
CARD_DOWN_TERMS = "card-down-terms-grid"
CARD_DOWN_NOTE = "card-down-terms-note"
CARD_STABILITY_SECTION = "card-stability-section"
CARD_CONFOUNDERS = "card-confounders-section"    # technical-variable flags (confounders.parquet)
CARD_PROFILES_SECTION = "card-profiles-section"  # activation histogram and cell-type profile
CARD_DE_SECTION = "card-de-section"
EXPLORER_HEATMAP = "explorer-heatmap-graph"      # cell type × feature mean activation
EXPLORER_HEATMAP_ALERT = "explorer-heatmap-alert"
CARD_TECHNICAL_BADGE = "card-technical-badge"    # header badge: "may be technical"
CARD_TECHNICAL_ALERT = "card-technical-alert"    # "Mostly tracks library size: may be technical"
CARD_CONFOUNDER_TABLE = "card-confounder-table"

# --- trajectories page (trajectories-*) ---
TRAJECTORIES_PAGE = "trajectories-page"
TRAJ_SOURCE = "trajectories-source-store"         # store: the analysis this page shows (the job's input)
TRAJ_STAGES = "trajectories-stages-select"        # ordered multi-select: the lineage, first stage first
TRAJ_ORDER = "trajectories-order-text"            # "HSC → MPP → …" as chosen
TRAJ_STRICT = "trajectories-strict-switch"        # rise at every step (the paper's rule)
TRAJ_FIND_JOB = "trajectories-find"               # job panel prefix (components/job_panel.JobIds)
TRAJ_SHOWN = "trajectories-shown-store"           # store: {"source", "lineage", "n_cells"} of the table shown
TRAJ_RESULTS = "trajectories-results"
TRAJ_SUMMARY = "trajectories-summary"
TRAJ_TABLE = "trajectories-table"
TRAJ_PLOT = "trajectories-stage-graph"
TRAJ_CARD_LINK = "trajectories-card-link"         # the clicked feature's Explorer card
