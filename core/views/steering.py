"""What the Steering page shows around a run: the features and cell types to choose from, whether
an analysis can be steered at all, and the 2-D axes that place steered cells in the latent view.

The latent view is the Explorer's PCA of the embedding (:func:`core.views.explorer.ensure_latent`). A
steered cell moves in the embedding from x to x'; on the view it moves from (x − μ)·C to
(x' − μ)·C, where C (d, 2) are the PCA axes. :func:`latent_axes` recovers μ and C exactly from
the stored 2-D coordinates (least squares of the coordinates on the centred embedding) and keeps
them as the small cached step ``latent_axes`` (``latent_axes.npz``), so runs made from the CLI
can be drawn too.
"""
from __future__ import annotations

import io as _io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.store.analysis import Analysis
from core.store.catalog import resolve_source
from core.annotate.reported import ordered, reported
from core.base.errors import FeatureLensError, InputError
from core.steer.experiment import (EXPERIMENT_PREFIX, VERDICT_NOTE, ExperimentResult, SteerExperiment, list_experiments,
                                   load_experiment, parse_strengths, term_scores)
from core.steer.request import MAX_FEATURES, SteerRequest
from core.steer.run import SteeringResult
from core.steer.store import list_steering_runs, load_steering_run
from core.steer.targets import parse_target
from core.views.problem import PageProblem, error_text
from core.base import io
from core.data.load import load_dataset
from core.model.decoders import HOW_TO_ADD_DECODER, STEERING_NEEDS_DECODER

__all__ = ["VERDICT_NOTE", "steerability", "feature_choices", "cell_type_choices", "LatentAxes", "latent_axes", "largest_changes",
           "AXES_STEP", "AXES_FILE", "CHANGE_COLUMNS", "SteeringPageData", "steering_page_data", "open_steerable",
           "initial_features", "FORM_DEFAULTS", "target_form", "run_form", "INITIAL_FEATURE_OPTIONS", "MODES",
           "experiment_request", "experiment_rows", "top_terms", "verdict_rows", "run_choices", "load_any_run",
           "compare_terms", "compare_shift", "toward_rows", "COMPARE_TERM_COLUMNS", "page_mode", "toward_choice",
           "experiment_line"]

AXES_STEP = "latent_axes"
AXES_FILE = "latent_axes.npz"

_LOCK = threading.Lock()
_CHOICES: "OrderedDict[tuple, pd.DataFrame]" = OrderedDict()
_AXES: "OrderedDict[tuple, LatentAxes]" = OrderedDict()


def steerability(analysis: Analysis) -> tuple[str, str] | None:
    """None when ``analysis`` can be steered, else ``(problem, what to do)``: it needs a trained SAE,
    an .h5ad dataset, the expression model's decoder and the features table.

    Reads only small files: the decoder is looked up as :func:`core.model.predict.analysis_decoder`
    does, but its weights are not loaded (the app calls this in its server process, which must not
    run torch: a background job forked after a parallel torch operation in the server can hang in
    OpenMP). The steering job itself loads and checks the decoder fully."""

    for name in ("sae.pt", "activations.npz"):
        if not analysis.has(name):
            return (f"{analysis.path.name} has no trained SAE yet ({name} is missing).",
                    "Train one on the Data & training page, or with `featurelens train DATA --out ANALYSIS`.")
    ds = analysis.config.get("dataset", {}) or {}
    if ds.get("format") != "h5ad":
        return ("Steering needs the analysis's .h5ad (counts for library sizes, cell names and types); "
                "this analysis was made from an embedding file.",
                "Train the SAE from an .h5ad (`featurelens train DATA.h5ad ...`).")
    problem = _decoder_problem(analysis)
    if problem == "none":
        return (f"This analysis cannot be steered: {STEERING_NEEDS_DECODER}.",
                f"{HOW_TO_ADD_DECODER}; then train an SAE on that embedding.")
    if problem:
        return problem, "restore the decoder file, or fit the built-in model with `featurelens fit-model DATA.h5ad`"
    if not analysis.has("features.parquet"):
        return (f"{analysis.path.name} has no features table (features.parquet is missing).",
                "Train the SAE again with `featurelens train` (it writes the table with the SAE).")
    return None


def _decoder_problem(analysis: Analysis) -> str | None:
    """None if the analysis names a decoder that exists, "none" if it has none, else what is wrong
    (the lookup order of ``analysis_decoder``; no weights are read)."""
    from core.model.scvi import is_scvi_model_dir
    from core.model.store import default_model_dir, is_model_dir
    from core.store.dataset import decoder_reference

    dataset = analysis.config.get("dataset", {}) or {}
    ref = decoder_reference(analysis)
    if ref is not None:
        if str(ref).lower() == "none":
            return "none"
        path = Path(ref)
        if not path.is_absolute() and dataset.get("path"):
            candidate = Path(dataset["path"]).parent / path
            path = candidate if candidate.exists() else path
        return None if is_model_dir(path) or is_scvi_model_dir(path) or path.is_file() else f"the analysis's decoder {ref!r} does not exist."
    if not dataset.get("path"):
        return "none"
    folder = default_model_dir(dataset["path"])
    if not is_model_dir(folder):
        return "none"
    try:
        meta = io.read_json(folder / "model.json")
    except (OSError, ValueError):
        return f"the model description {folder / 'model.json'} cannot be read."
    return None if meta.get("source", {}).get("obsm_key") == dataset.get("embedding") else "none"


def _stamp(analysis: Analysis, names) -> tuple:
    return (str(Path(analysis.path).resolve()),
            *(analysis.file(n).stat().st_mtime_ns if analysis.has(n) else 0 for n in names))


def feature_choices(analysis: Analysis) -> pd.DataFrame:
    """The live features to steer, one row each: ``feature``, ``n_cells`` (cells where it fires),
    ``top_term`` (best reported term, "" without one), ``top_cell_type`` and ``label``
    (``"12 · oxygen transport"``, or the top cell type without annotation), ordered by feature.
    Cached in memory until features.parquet or annotations.parquet change."""
    key = _stamp(analysis, ("features.parquet", "annotations.parquet"))
    with _LOCK:
        if key in _CHOICES:
            _CHOICES.move_to_end(key)
            return _CHOICES[key]
    feats = analysis.read_parquet("features.parquet")
    if "feature" not in feats:
        feats = feats.reset_index().rename(columns={"index": "feature"})
    live = feats["live"].to_numpy(bool) if "live" in feats else np.ones(len(feats), bool)
    df = pd.DataFrame({"feature": feats["feature"].to_numpy(np.int64)[live],
                       "n_cells": feats["n_cells"].to_numpy(np.int64)[live] if "n_cells" in feats else 0,
                       "top_cell_type": feats["top_cell_type"].fillna("").astype(str).to_numpy()[live]
                       if "top_cell_type" in feats else ""})
    df["top_term"] = ""
    if analysis.has("annotations.parquet"):
        ann = reported(analysis.read_parquet("annotations.parquet"))
        if len(ann):
            best = ordered(ann).drop_duplicates("feature")
            df["top_term"] = df["feature"].map(best.set_index("feature")["term_name"].astype(str)).fillna("")
    what = np.where(df["top_term"] != "", df["top_term"],
                    np.where(df["top_cell_type"] != "", "top cell type " + df["top_cell_type"], ""))
    df["label"] = [f"{f} · {w}" if w else str(f) for f, w in zip(df["feature"], what)]
    df = df.sort_values("feature", kind="stable").reset_index(drop=True)
    with _LOCK:
        _CHOICES[key] = df
        while len(_CHOICES) > 4:
            _CHOICES.popitem(last=False)
    return df


CHANGE_COLUMNS = ["direction", "gene", "mean_normal", "mean_steered", "log2fc", "qvalue", "significant"]


def largest_changes(de: pd.DataFrame, *, n: int = 10) -> pd.DataFrame:
    """The ``n`` largest increases and the ``n`` largest decreases of a steering run's DE table,
    whether or not they pass the significance thresholds.

    ``de``: one row per gene (G rows) with at least ``gene``, ``mean_normal``, ``mean_steered``,
    ``log2fc``, ``qvalue`` and ``significant`` (:attr:`core.steer.SteeringResult.de`). Returns at
    most 2·n rows, columns :data:`CHANGE_COLUMNS`: first the genes with log2fc > 0, largest first
    (``direction`` "up"), then those with log2fc < 0, most negative first ("down"); ties are
    broken by q-value, then gene. Genes with log2fc 0 or NaN are left out.
    """
    if n < 0:
        raise InputError(f"n must be ≥ 0, got {n}")
    missing = [c for c in CHANGE_COLUMNS[1:] if c not in de]
    if missing:
        raise InputError(f"the DE table has no column {missing[0]!r}", fix="pass SteeringResult.de")
    fc = pd.to_numeric(de["log2fc"], errors="coerce")
    parts = []
    for direction, mask, ascending in (("up", fc > 0, False), ("down", fc < 0, True)):
        part = de.loc[mask, CHANGE_COLUMNS[1:]].assign(_fc=fc[mask])
        part = part.sort_values(["_fc", "qvalue", "gene"], ascending=[ascending, True, True], kind="stable").head(n)
        parts.append(part.drop(columns="_fc").assign(direction=direction))
    out = pd.concat(parts, ignore_index=True)[CHANGE_COLUMNS]
    out["significant"] = out["significant"].astype(bool)
    return out


def cell_type_choices(analysis: Analysis) -> list[str]:
    """The cell types the SAE's features were characterised by (the ``mean[<type>]`` columns of
    features.parquet), sorted; [] when the analysis has no cell types."""
    import pyarrow.parquet as pq

    if not analysis.has("features.parquet") or not (analysis.config.get("dataset", {}) or {}).get("cell_type"):
        return []
    names = pq.read_schema(analysis.file("features.parquet")).names
    return sorted(n[len("mean["):-1] for n in names if n.startswith("mean[") and n.endswith("]"))


@dataclass(frozen=True)
class LatentAxes:
    """The latent view's map: 2-D coordinates = (x − ``mean``) @ ``components``;
    ``mean`` (d,), ``components`` (d, 2), float64."""

    mean: np.ndarray
    components: np.ndarray

    def project(self, x: np.ndarray) -> np.ndarray:
        """Coordinates (n, 2) float32 of embeddings ``x`` (n, d)."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.size:
            raise InputError(f"cannot place {x.shape} embeddings on a view of {self.mean.size}-dimensional cells")
        return ((x - self.mean) @ self.components).astype(np.float32)


def _axes_inputs(analysis: Analysis) -> dict:
    ds = analysis.config.get("dataset", {}) or {}
    latent = analysis.config.get("steps", {}).get("latent", {})
    return {"dataset": ds.get("sha256"), "embedding": ds.get("embedding"), "latent": latent.get("inputs_hash")}


def _embedding_of(analysis: Analysis) -> np.ndarray:
    ref = analysis.config.get("dataset", {}) or {}
    path = Path(ref.get("path", ""))
    if not path.is_file():
        raise InputError(f"the analysis's dataset {path} is missing", fix="restore the file at that path")
    is_h5ad = ref.get("format") == "h5ad"
    ds = load_dataset(path, embedding=ref.get("embedding") if is_h5ad else None, cell_type=ref.get("cell_type"),
                      counts_layer=ref.get("counts_layer") if is_h5ad else None, obs=ref.get("obs"))
    if ds.embedding is None:
        raise InputError(f"{path.name} has no embedding {ref.get('embedding')!r}")
    return np.asarray(ds.embedding)


def _fit_axes(embedding: np.ndarray, coords: np.ndarray) -> LatentAxes:
    x = np.asarray(embedding, np.float64)
    if x.shape[0] != coords.shape[0]:
        raise InputError(f"the latent view has {coords.shape[0]} cells, the embedding {x.shape[0]}",
                         fix="open the analysis in the Explorer once to rebuild its latent view")
    mean = x.mean(axis=0)
    comps, *_ = np.linalg.lstsq(x - mean, np.asarray(coords, np.float64), rcond=None)
    return LatentAxes(mean, comps)


def latent_axes(analysis: Analysis, *, embedding: np.ndarray | None = None, persist: bool = False) -> LatentAxes:
    """The axes of ``analysis``'s latent view (cached in memory; from ``latent_axes.npz`` when stored).

    ``embedding`` (n_cells, d): the analysis's embedding if already in memory (else it is read from
    the dataset); ``persist``: store the axes as the step ``latent_axes`` (do this from a fresh
    :class:`Analysis`; the app does it in the steering job, never from a request thread).
    """
    from core.views.explorer import LATENT_FILE, ensure_latent

    ensure_latent(analysis)
    inputs = _axes_inputs(analysis)
    key = (str(Path(analysis.path).resolve()), Analysis.inputs_hash(inputs))
    with _LOCK:
        hit = _AXES.get(key)
    if hit is None and analysis.cached(AXES_STEP, inputs=inputs):
        with np.load(analysis.file(AXES_FILE), allow_pickle=False) as z:
            hit = LatentAxes(z["mean"].astype(np.float64), z["components"].astype(np.float64))
    if hit is None:
        coords = np.load(analysis.file(LATENT_FILE), allow_pickle=False)
        hit = _fit_axes(_embedding_of(analysis) if embedding is None else embedding, coords)
    if persist and not analysis.cached(AXES_STEP, inputs=inputs):
        buf = _io.BytesIO()
        np.savez(buf, mean=hit.mean, components=hit.components)
        with analysis.step(AXES_STEP, inputs=inputs) as w:
            w.write_bytes(AXES_FILE, buf.getvalue())
    with _LOCK:
        _AXES[key] = hit
        while len(_AXES) > 8:
            _AXES.popitem(last=False)
    return hit


# ----------------------------------------------------------------------------- the page
INITIAL_FEATURE_OPTIONS = 200     # options sent with the page; typing searches all live features
FORM_DEFAULTS = {"features": [], "cell_mode": "types", "cell_types": [], "target": "max", "factor": 2.0,
                 "percentile": 99.0, "mean_type": None, "mean_factor": 1.5, "value": 1.0, "error_term": True,
                 "test": "paired-log", "strengths": "0.5, 1, 2, 4", "controls": 2}
MODES = ("run", "experiment", "toward", "compare")   # ?mode=: one run (default), dose–response, toward, compare


@dataclass(frozen=True)
class SteeringPageData:
    """What the Steering page's layout shows: ``problem`` when ``source`` cannot be steered; else
    ``offered`` (the feature choices sent with the page: columns feature, label; the chosen first),
    ``n_live`` live features, the cell ``types``, the ``form`` values (keys of :data:`FORM_DEFAULTS`),
    the ``run`` shown (URL ``?run=``), the chosen ``features``, link ``warnings`` and the ``mode``
    (one of :data:`MODES`, URL ``?mode=``)."""
    source: str | None
    problem: PageProblem | None = None
    offered: pd.DataFrame | None = None
    n_live: int = 0
    types: tuple[str, ...] = ()
    form: dict | None = None
    run: str | None = None
    features: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()
    mode: str = "run"


def open_steerable(source: str | None) -> tuple[Analysis | None, PageProblem | None]:
    """``(analysis, None)`` when ``source`` can be steered, else ``(None, problem)``; raises nothing."""
    if not source:
        return None, PageProblem("No analysis chosen.", "Pick an analysis in the list above (entries named "
                                 "“Analysis · …”), or build the demo with `featurelens demo --build-only`.", "info")
    try:
        kind, path = resolve_source(source)
        if kind != "analysis":
            return None, PageProblem("Steering works on analyses.",
                                     f"{source} is a dataset: fit the built-in model and train an SAE on it on the "
                                     "Data & training page, then pick the analysis above.", "info")
        analysis = Analysis.open(path)
        problem = steerability(analysis)
    except FeatureLensError as exc:
        return None, PageProblem("This analysis cannot be opened.", error_text(exc), "danger")
    if problem:
        return None, PageProblem("This analysis cannot be steered.", f"{problem[0]} Fix: {problem[1]}", "warning")
    return analysis, None


def initial_features(query: dict[str, str], live: set[int]) -> tuple[list[int], list[str]]:
    """The features a URL asks for (``?feature=12`` or ``12,40``) and warnings about the rest."""
    raw = (query.get("feature") or "").strip()
    if not raw:
        return [], []
    out, warnings = [], []
    for part in raw.split(","):
        part = part.strip()
        try:
            f = int(part)
        except ValueError:
            warnings.append(f"The link asks for feature {part!r}, which is not a feature number; it is ignored.")
            continue
        if f not in live:
            warnings.append(f"Feature {f} is not a live feature of this SAE, so it cannot be steered; choose another.")
        elif f not in out:
            out.append(f)
    return out[:MAX_FEATURES], warnings


def target_form(target, *, types: list[str]) -> dict:
    """The target controls (keys ``target``, ``factor``, ``percentile``, ``mean_type``, ``mean_factor``,
    ``value`` of :data:`FORM_DEFAULTS`) that write ``target`` (a stored run's target text); {} when
    the form cannot write it (e.g. different targets per feature)."""
    if isinstance(target, (list, tuple)):
        if len(set(target)) != 1:
            return {}
        target = target[0]
    try:
        t = parse_target(target)
    except FeatureLensError:
        return {}
    if t.kind == "off":
        return {"target": "off"}
    if t.kind == "max":
        return {"target": "max"} if t.factor == 1 and t.text == "max" else {"target": "factor", "factor": t.factor}
    if t.kind == "percentile":
        return {"target": "percentile", "percentile": t.percentile}
    if t.kind == "value":
        return {"target": "value", "value": t.value}
    whole = t.text[len("mean:"):]
    if whole in types:  # a type literally named like "TYPE x2" wins, as in core.steer.targets
        return {"target": "mean", "mean_type": whole, "mean_factor": 1.0}
    return {"target": "mean", "mean_type": t.cell_type, "mean_factor": t.factor} if t.cell_type in types else {}


def run_form(analysis: Analysis, run_id: str | None, *, types: list[str]) -> dict | None:
    """The form values that reproduce stored run ``run_id`` (keys of :data:`FORM_DEFAULTS`), or None
    when there is no such run. Lassoed cells (here or in the Explorer) cannot be restored: such a run
    leaves the cells as they are."""
    if not run_id or not analysis.has(f"steering/{run_id}/run.json"):
        return None
    meta = analysis.read_json(f"steering/{run_id}/run.json")
    cfg = meta.get("config", {})
    form = dict(FORM_DEFAULTS, features=[int(f) for f in meta.get("features", [])],
                error_term=bool(cfg.get("error_term", True)), test=cfg.get("test", "paired-log"))
    form.update(target_form(cfg.get("target", "max"), types=types))
    cells = str(meta.get("info", {}).get("cells", ""))
    if cells == "all":
        form["cell_mode"] = "all"
    elif cells.startswith("cell_type="):
        value = cells[len("cell_type="):]
        chosen = [value] if value in types else [t for t in value.split(",") if t in types]
        form["cell_mode"], form["cell_types"] = "types", chosen
    else:
        form.pop("cell_mode"), form.pop("cell_types")
    return form


def steering_page_data(source: str | None, *, query: dict[str, str] | None = None) -> SteeringPageData:
    """The Steering page for ``source`` and the URL ``query`` (feature, run, cells); raises nothing
    for a bad source (it becomes ``problem``)."""
    query = query or {}
    analysis, problem = open_steerable(source)
    if problem:
        return SteeringPageData(source=source, problem=problem)
    try:
        choices = feature_choices(analysis)
        types = cell_type_choices(analysis)
    except FeatureLensError as exc:
        return SteeringPageData(source=source, problem=PageProblem("This analysis cannot be opened.", exc.message,
                                                                   "danger"))
    except (OSError, ValueError) as exc:  # a damaged features.parquet (pyarrow's errors are ValueErrors)
        return SteeringPageData(source=source, problem=PageProblem(
            "This analysis cannot be opened.", f"Its features table cannot be read ({type(exc).__name__}: {exc}). "
            "Fix: train the SAE again with `featurelens train` (it writes the table with the SAE).", "danger"))
    if choices.empty:
        return SteeringPageData(source=source, problem=PageProblem(
            "Nothing to steer.", "This SAE has no live feature (none fires on any cell); train another one on the "
            "Data & training page.", "warning"))
    features, warnings = initial_features(query, set(choices["feature"].tolist()))
    mode, bad_mode = page_mode(query)
    warnings += bad_mode
    run = (query.get("run") or "").strip() or None
    try:
        form = run_form(analysis, run, types=types) or {}
    except (FeatureLensError, OSError, ValueError):
        form = {}
    if form and not features:
        features = form["features"]
    # "Steer in these N cells →" of the Explorer's lasso, unless the run named shows other cells
    carried = query.get("cells") == "explorer" and "cell_mode" not in form
    form = {**FORM_DEFAULTS, "cell_mode": "types" if types else "all", **form, "features": features}
    if carried:
        form["cell_mode"] = "explorer"
    chosen = choices[choices["feature"].isin(features)]
    first = choices.head(INITIAL_FEATURE_OPTIONS)
    rest = first[~first["feature"].isin(features)]
    offered = (pd.concat([chosen, rest]) if len(chosen) else rest)[["feature", "label"]]
    return SteeringPageData(source=source, offered=offered.reset_index(drop=True), n_live=len(choices),
                            types=tuple(types), form=form, run=run, features=tuple(features),
                            warnings=tuple(warnings), mode=mode)


def page_mode(query: dict[str, str]) -> tuple[str, list[str]]:
    """The mode a URL asks for (``?mode=experiment``; default "run") and a warning for an unknown one."""
    mode = (query.get("mode") or "run").strip().lower()
    if mode in MODES:
        return mode, []
    return "run", [f"The link asks for mode {mode!r}, which the Steering page does not have "
                   f"(it has {', '.join(MODES)}); one run is shown instead."]


# ----------------------------------------------------------------------------- experiments, toward, compare
def experiment_request(request: SteerRequest, *, strengths, controls, terms=None) -> SteerExperiment:
    """The form's request (its one feature, cells, error term and test) as a dose–response sweep
    at ``strengths`` (text "0.5, 1, 2, 4" or numbers) with ``controls`` of each kind and ``terms``
    (text "GO:…, down:GO:…"; empty: the feature's annotated terms) as the hypotheses; the
    request's target is not used. InputError saying what to fix."""
    if len(request.features) != 1:
        raise InputError(f"an experiment sweeps one feature; {len(request.features)} are chosen",
                         fix="keep one feature in the Feature(s) box")
    if controls is None or str(controls).strip() == "":
        raise InputError("no number of controls given", fix="e.g. 2 (0 runs the sweep without controls)")
    try:
        n = float(controls)
    except (TypeError, ValueError):
        raise InputError(f"controls must be a whole number, got {controls!r}", fix="e.g. 2") from None
    if not n.is_integer() or not 0 <= n <= 10:
        raise InputError(f"controls must be a whole number from 0 to 10, got {controls!r}", fix="e.g. 2")
    text = strengths if isinstance(strengths, str) else ",".join(map(str, strengths or []))
    if not text.strip():
        raise InputError("no sweep strength given", fix="e.g. 0.5,1,2,4 (multiples of the feature's maximum)")
    return SteerExperiment(feature=request.features[0], cells=request.cells, strengths=parse_strengths(text),
                           controls=int(n), terms=str(terms or ""), config=request.config)


def experiment_rows(analysis: Analysis) -> list[dict]:
    """The stored experiments, newest first, as table rows (``when`` added)."""
    df = list_experiments(analysis).iloc[::-1].copy()
    df["when"] = df["completed"].astype(str).str.replace("T", " ").str.slice(0, 16)
    return df.astype(object).where(pd.notna(df), None).to_dict("records")


def top_terms(result: ExperimentResult, *, n: int = 5) -> list[tuple[str, str]]:
    """The ``n`` best-scoring up-regulated terms of the reference run, as (direction, term_id)."""
    v = result.verdicts
    up = v[v["direction"] == "up"].sort_values("score", ascending=False, kind="stable").head(n)
    return [("up", str(t)) for t in up["term_id"]]


def verdict_rows(result: ExperimentResult) -> list[dict]:
    """One row per term of the verdict table (up first), numbers rounded for display, no NaN."""
    df = result.verdicts.replace([np.inf, -np.inf], np.nan).copy()
    for col in ("effect", "null_feature_median", "null_feature_max", "null_direction_median", "null_direction_max"):
        df[col] = df[col].astype(float).round(3)
    for col in ("score", "p_feature", "p_direction", "q_feature", "q_direction"):
        df[col] = df[col].astype(float).round(4)
    return df.astype(object).where(pd.notna(df), None).to_dict("records")


def run_choices(analysis: Analysis) -> list[dict]:
    """Every stored run to compare: plain runs (value ``run:<id>``) newest first, then each stored
    experiment's runs (``exp:<experiment id>:<run label>``)."""
    out = []
    for r in list_steering_runs(analysis).iloc[::-1].itertuples():
        out.append({"label": f"run {r.run_id} · feature {r.features} → {r.targets} · {r.cells}",
                    "value": f"run:{r.run_id}"})
    for e in list_experiments(analysis).iloc[::-1].itertuples():
        conditions = analysis.read_parquet(f"steer-experiments/{e.experiment_id}/conditions.parquet")
        for c in conditions.itertuples():
            out.append({"label": f"experiment {e.experiment_id} · {_run_words(c.kind, c.strength, c.feature)}",
                        "value": f"exp:{e.experiment_id}:{c.run}"})
    return out


def _run_words(kind: str, strength: float, feature: int) -> str:
    if kind == "feature":
        return f"feature {feature} off" if strength == 0 else f"feature {feature} at {strength:g}×"
    if kind == "control-feature":
        return f"control: feature {feature} at {strength:g}×'s shift"
    return f"control: random direction at {strength:g}×'s shift"


def load_any_run(analysis: Analysis, key: str | None) -> SteeringResult:
    """The run named by a :func:`run_choices` value; InputError for none or an unknown one."""
    key = (key or "").strip()
    if key.startswith("run:"):
        return load_steering_run(analysis, key[len("run:"):])
    if key.startswith("exp:") and key.count(":") >= 2:
        _, eid, label = key.split(":", 2)
        if EXPERIMENT_PREFIX + eid not in analysis.config.get("steps", {}):
            raise InputError(f"no steering experiment {eid!r} in this analysis", fix="pick a run from the list")
        runs = load_experiment(analysis, eid).runs
        if label not in runs:
            raise InputError(f"experiment {eid} has no run {label!r}", fix=f"pick one of {', '.join(runs)}")
        return runs[label]
    raise InputError("no run chosen" if not key else f"{key!r} is not a stored run",
                     fix="pick two runs from the lists (plain runs or an experiment's runs)")


COMPARE_TERM_COLUMNS = ["direction", "term_id", "term_name", "score_a", "score_b", "difference"]


def compare_terms(a: SteeringResult, b: SteeringResult, *, n: int = 50) -> pd.DataFrame:
    """Terms enriched (up or down) in either run, with each run's score (−log10 p, as the
    experiment's verdicts: :func:`core.steer.term_scores`; 0 when a run's table lacks the term) and
    ``difference`` = A − B; the ``n`` with the largest score in either run, best first."""
    parts = []
    for direction in ("up", "down"):
        scores = []
        for res in (a, b):
            table = res.enrichment_up if direction == "up" else res.enrichment_down
            scores.append(term_scores(table).drop_duplicates("term_id").set_index("term_id") if len(table)
                          else pd.DataFrame(columns=["term_name", "score", "q"]))
        ids_ = list(dict.fromkeys([*scores[0].index, *scores[1].index]))
        names = pd.concat([scores[0]["term_name"], scores[1]["term_name"]])
        names = names[~names.index.duplicated()]
        parts.append(pd.DataFrame({
            "direction": direction, "term_id": ids_, "term_name": [str(names.get(t, "")) for t in ids_],
            "score_a": scores[0]["score"].reindex(ids_).fillna(0.0).astype(float).to_numpy(),
            "score_b": scores[1]["score"].reindex(ids_).fillna(0.0).astype(float).to_numpy()}))
    out = pd.concat(parts, ignore_index=True)
    out["difference"] = out["score_a"] - out["score_b"]
    best = out[["score_a", "score_b"]].max(axis=1)
    order = np.argsort(-best.to_numpy(), kind="stable")
    return out.iloc[order].head(n).reset_index(drop=True)[COMPARE_TERM_COLUMNS]


def compare_shift(a: SteeringResult, b: SteeringResult) -> pd.DataFrame:
    """Per cell type: how much closer each run's cells came to its centroid on average
    (``toward_a``, ``toward_b``: −change of the mean distance; > 0 = closer)."""
    sa, sb = a.centroid_summary(), b.centroid_summary()
    if sa is None or sb is None or sa.empty or sb.empty:
        return pd.DataFrame(columns=["cell_type", "toward_a", "toward_b"])
    ta = (-sa.set_index("cell_type")["change"]).rename("toward_a")
    tb = (-sb.set_index("cell_type")["change"]).rename("toward_b")
    return pd.concat([ta, tb], axis=1).fillna(0.0).rename_axis("cell_type").reset_index()


def toward_rows(ranking: pd.DataFrame, *, n: int = 20) -> list[dict]:
    """The ``n`` best rows of a :func:`core.steer.rank_toward` ranking, rounded, for a table."""
    df = ranking.head(n).copy()
    for col in df.columns:
        if df[col].dtype.kind == "f":
            df[col] = df[col].round(4)
    return df.astype(object).where(pd.notna(df), None).to_dict("records")



def toward_choice(type_a, type_b) -> tuple[str, str]:
    """The 'toward' form (cells of type A, target type B) -> (cell selection, target type);
    InputError for a missing or identical choice."""
    a, b = str(type_a or "").strip(), str(type_b or "").strip()
    if not a:
        raise InputError("no cell type chosen for the cells to steer (A)", fix="choose the cells' type under "
                         "“Cells of type (A)”")
    if not b:
        raise InputError("no target cell type chosen (B)", fix="choose the type to steer toward under “Toward type (B)”")
    if a == b:
        raise InputError(f"the cells are already of type {a!r}", fix="choose a different target type (B)")
    return f"cell_type={a}", b


def experiment_line(result: ExperimentResult) -> str:
    """One sentence about an experiment: feature, cells, strengths, controls, specific terms."""
    s, exp = result.summary(), result.experiment
    strengths = ", ".join("off" if v == 0 else f"{v:g}×" for v in exp.strengths)
    ctrl = (f"controls at {exp.reference:g}×: feature{'s' if len(s['control_features']) != 1 else ''} "
            f"{', '.join(map(str, s['control_features']))} and {exp.controls} random direction"
            f"{'s' if exp.controls != 1 else ''}" if exp.controls else "no controls")
    spec = f": {'; '.join(s['specific_terms'][:3])}" if s["specific_terms"] else ""
    null = (f" against {s['null_draws']} random features and directions" if s.get("null_draws") else "")
    return (f"Feature {exp.feature} in {s['n_cells']:,} cells ({s['cells']}) · {strengths} · {ctrl} · "
            f"{s['n_specific_hypotheses']} of {s['n_hypotheses']} hypotheses and {s['n_specific']} of "
            f"{s['n_terms']} terms specific{null}{spec}"
            + (f" · note: {result.info['verdict_limit']}" if result.info.get("verdict_limit") else ""))
