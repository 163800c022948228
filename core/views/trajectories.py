"""What the Trajectories page shows (and ``featurelens trajectories`` prints): the features whose
activation rises along an ordered lineage of cell types, ranked by the latent shift steering each
produces (:mod:`core.steer.trajectory`; docs/method.md §3, §6b).

:func:`find_trajectories` reads the analysis's activations and its cells' types, lists the rising
features (:func:`core.steer.rising_features`) with their per-stage mean activation and standard
error, adds each feature's top reported terms, and re-ranks them by steering
(:func:`core.steer.rank_trajectory`) when the analysis can be steered; when it cannot (no decoder,
no .h5ad) the features are still listed and ``shift_note`` says why the ranking is missing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from core.annotate.reported import ordered, reported
from core.base.errors import FeatureLensError, InputError
from core.base.progress import Progress, no_progress
from core.data.load import load_dataset, read_anndata
from core.demo.data import LINEAGES
from core.steer import TOLERANCE, rank_trajectory, rising_features, steering_context
from core.store.analysis import Analysis
from core.store.catalog import analysis_source_path, resolve_source
from core.views.problem import PageProblem, error_text
from core.views.steering import cell_type_choices

__all__ = ["KNOWN_LINEAGES", "default_lineage", "cell_labels", "TrajectoryFindings", "find_trajectories",
           "trajectory_rows", "findings_summary", "explorer_link", "TrajectoriesPageData", "trajectories_page_data", "TABLE_COLUMNS"]

#: ordered lineages offered by default when an analysis has all their cell types (first match wins):
#: the demo's branches, then bone-marrow names as the paper's data spells them
KNOWN_LINEAGES: tuple[tuple[str, ...], ...] = (
    *LINEAGES.values(),
    ("HSC", "MPP", "MEP", "Proerythroblast", "Erythroblast"),
    ("HSC", "MEP", "Proerythroblast", "Erythroblast"),
    ("HSC", "MPP", "GMP", "Monocyte"),
)
#: the columns of :attr:`TrajectoryFindings.table` (and the CLI's TSV), before the per-stage ones
TABLE_COLUMNS = ["feature", "top_terms", "rise", "shift_rank", "shift_progress", "shift_change", "mean_lineage",
                 "mean_other"]


def default_lineage(cell_types, query: dict[str, str] | None = None) -> tuple[str, ...]:
    """The URL's ``lineage`` (comma-separated) when every stage is a known type, else the first of
    :data:`KNOWN_LINEAGES` whose types are all in ``cell_types``, else ()."""
    known = set(map(str, cell_types))
    asked = tuple(t.strip() for t in ((query or {}).get("lineage") or "").split(",") if t.strip())
    if len(asked) >= 2 and set(asked) <= known:
        return asked
    return next((lin for lin in KNOWN_LINEAGES if set(lin) <= known), ())


def cell_labels(analysis: Analysis) -> np.ndarray | None:
    """The cell type of every cell (str, (n_cells,)) from the analysis's data, or None without a
    cell-type column; read without the expression matrix."""
    ref = analysis.config.get("dataset", {}) or {}
    col = ref.get("cell_type")
    if not col:
        return None
    path = Path(ref.get("path", ""))
    if not path.is_file():
        raise InputError(f"the analysis's dataset {path} is missing, so its cells' types are unknown",
                         fix="restore the file at that path")
    if ref.get("format") == "h5ad":
        adata = read_anndata(path, backed=True)
        try:
            return adata.obs[col].astype(str).to_numpy() if col in adata.obs else None
        finally:
            adata.file.close()
    ds = load_dataset(path, cell_type=col, obs=ref.get("obs"))
    return ds.obs[ds.cell_type].astype(str).to_numpy() if ds.cell_type else None


@dataclass
class TrajectoryFindings:
    """``table``: one row per rising feature, :data:`TABLE_COLUMNS` then ``mean[<t>]`` and ``se[<t>]``
    per stage, best first (by shift rank when ranked, else by rise); ``shift_note``: why there is no
    shift ranking (None when there is one); ``n_monotone``: candidates before the significance filter."""

    lineage: tuple[str, ...]
    table: pd.DataFrame
    n_cells: dict
    n_monotone: int
    shift_note: str | None
    seconds: float
    strict: bool = False


def _top_terms(analysis: Analysis, features, *, n: int = 2) -> list[str]:
    if not analysis.has("annotations.parquet"):
        return [""] * len(features)
    ann = reported(analysis.read_parquet("annotations.parquet"))
    if ann.empty:
        return [""] * len(features)
    top = ordered(ann).groupby("feature", sort=False)["term_name"].agg(lambda t: "; ".join(map(str, t.iloc[:n])))
    return top.reindex(list(features)).fillna("").astype(str).tolist()


def _shift_ranked(analysis: Analysis, rising: pd.DataFrame, stages, progress: Progress):
    """``(table, note)``: ``rising`` ranked by steering, or unranked with the reason."""
    if rising.empty:
        return rising, None
    progress(1, 3, f"steering {len(rising)} feature(s) in the {stages[0]} cells…")
    try:
        return rank_trajectory(steering_context(analysis), rising, lineage=stages), None
    except FeatureLensError as exc:
        return rising, error_text(exc)


def find_trajectories(analysis, lineage, *, strict: bool = False, tolerance: float = TOLERANCE,
                      significant: bool = True, progress: Progress = no_progress) -> TrajectoryFindings:
    """The rising features of ``analysis`` (an Analysis or folder) along ``lineage`` (cell types,
    first stage first; a list or "A,B,C"), ranked by steering when possible. InputError for no SAE,
    no cell types, fewer than two stages or an unknown type (with the known ones)."""
    t0 = time.perf_counter()
    a = analysis if isinstance(analysis, Analysis) else Analysis.open(analysis)
    if not a.has("activations.npz"):
        raise InputError(f"{a.path.name} has no trained SAE yet", fix="train one first (`featurelens train`)")
    progress(0, 3, "reading the activations and cell types…")
    labels = cell_labels(a)
    rising = rising_features(a.read_npz_sparse("activations.npz"), labels, lineage, strict=strict,
                             tolerance=tolerance, significant=significant)
    stages = tuple(rising.attrs["lineage"])
    table, note = _shift_ranked(a, rising, stages, progress)
    progress(2, 3, "adding the features' terms…")
    table = table.copy()
    table.insert(1, "top_terms", _top_terms(a, table["feature"].tolist()))
    for c in ("shift_rank", "shift_progress", "shift_change"):
        if c not in table:
            table[c] = np.nan
    stage_cols = [f"mean[{t}]" for t in stages] + [f"se[{t}]" for t in stages]
    table = table[TABLE_COLUMNS + stage_cols].reset_index(drop=True)
    progress(3, 3, "done")
    return TrajectoryFindings(lineage=stages, table=table, n_cells=rising.attrs["n_cells"],
                              n_monotone=rising.attrs["n_monotone"], shift_note=note,
                              seconds=time.perf_counter() - t0, strict=strict)


def findings_summary(findings: TrajectoryFindings, *, why: bool = True) -> str:
    """One paragraph: how many features rise along the lineage, how they are ranked (``why``: with the
    reason when not by steering), how long it took."""
    f, stages = findings, findings.lineage
    n = len(f.table)
    cells = ", ".join(f"{t} {f.n_cells.get(t, 0):,}" for t in stages)
    rule = "rising at every step" if f.strict else "rising, up to small dips"
    head = (f"{n} feature{'s' if n != 1 else ''} rise{'' if n != 1 else 's'} along {' → '.join(stages)} "
            f"({rule}, first → last rise significant; {f.n_monotone} before that test). Cells per stage: {cells}.")
    if n == 0:
        rank = " Try fewer stages, or allow small dips."
    elif f.shift_note:
        rank = " Ordered by rise, not by steering" + (f": {f.shift_note}" if why else ".")
    else:
        rank = (f" Ranked by steering each to its maximum in the {stages[0]} cells: how far they move toward the "
                f"centre of {stages[-1]}.")
    return f"{head}{rank} ({f.seconds:.1f} s)"


def explorer_link(source: str, feature: int) -> str:
    """The Explorer URL of ``feature``'s card in ``source``."""
    return f"/explorer?source={quote(source, safe='')}&feature={int(feature)}"


def trajectory_rows(findings: TrajectoryFindings, *, source: str) -> list[dict]:
    """One JSON row per rising feature for the page's table: the table's columns (rounded) plus
    ``mean`` and ``se`` (one value per stage, for the stage plot) and ``card`` (a markdown link)."""
    t = findings.table
    rows = []
    for rec in t.to_dict("records"):
        row = {k: (None if isinstance(v, float) and not np.isfinite(v) else
                   round(v, 4) if isinstance(v, float) else v) for k, v in rec.items() if k in TABLE_COLUMNS}
        row["feature"] = int(rec["feature"])
        row["shift_rank"] = None if row["shift_rank"] is None else int(row["shift_rank"])
        row["mean"] = [float(rec[f"mean[{s}]"]) for s in findings.lineage]
        row["se"] = [float(np.nan_to_num(rec[f"se[{s}]"])) for s in findings.lineage]
        row["card"] = f"[card {row['feature']}]({explorer_link(source, row['feature'])})"
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- the page
@dataclass(frozen=True)
class TrajectoriesPageData:
    """What the Trajectories page's layout shows: ``problem`` when ``source`` has no trajectories to
    find, else the cell types to choose stages from and the ``lineage`` chosen at first."""
    source: str | None
    problem: PageProblem | None = None
    cell_types: tuple[str, ...] = ()
    lineage: tuple[str, ...] = ()


def _page_problem(source: str | None) -> tuple[Analysis | None, PageProblem | None]:
    if not source:
        return None, PageProblem("No analysis chosen.", "Pick an analysis in the list above (entries named "
                                 "“Analysis · …”), or build the demo with `featurelens demo --build-only`.", "info")
    try:
        if resolve_source(source)[0] != "analysis":
            return None, PageProblem("Trajectories are found in analyses.", f"{source} is a dataset: train an SAE "
                                     "on it on the Data & training page, then pick the analysis above.", "info")
        a = Analysis.open(analysis_source_path(source))
    except FeatureLensError as exc:
        return None, PageProblem("This analysis cannot be opened.", error_text(exc), "danger")
    if not a.has("activations.npz"):
        return None, PageProblem("This analysis has no SAE yet.", "Train one on the Data & training page, or with "
                                 "`featurelens train DATA --out ANALYSIS`.", "warning")
    return a, None


def trajectories_page_data(source: str | None, *, query: dict[str, str] | None = None) -> TrajectoriesPageData:
    """The Trajectories page for ``source`` and the URL ``query`` (``lineage``); raises nothing."""
    a, problem = _page_problem(source)
    if problem:
        return TrajectoriesPageData(source=source, problem=problem)
    try:
        types = cell_type_choices(a)
    except (FeatureLensError, OSError, ValueError) as exc:
        return TrajectoriesPageData(source=source, problem=PageProblem(
            "This analysis cannot be opened.", f"Its features table cannot be read ({exc}).", "danger"))
    if not types:
        return TrajectoriesPageData(source=source, problem=PageProblem(
            "No cell types.", "This analysis's data has no cell-type column, so there is no lineage to follow. "
            "Fix: train the SAE on data with a cell-type column (`featurelens train --cell-type COLUMN`).", "warning"))
    return TrajectoriesPageData(source=source, cell_types=tuple(types), lineage=default_lineage(types, query))
