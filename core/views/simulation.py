"""The Simulation lab's workflow (the app's simulation page, and Python): generate the paper's
small simulation, run the variable-recovery experiment, and keep every run on disk.

A run lives in ``<analyses>/simulations/<run id>/`` (:func:`simulations_dir`); the id is a hash of
its settings, so the same settings reuse the stored run. The folder is written in a hidden
staging folder and renamed into place only when complete, so a failed or cancelled run leaves
nothing behind. Files: ``run.json`` (settings, data summary, SAE and autoencoder summaries, the
two tables below, the findings vs the paper, timings), ``best_r.csv``, ``readout_r2.csv`` and
what :func:`core.simulate.report.write_results` writes (``recovery.csv``, ``recovery_means.csv``,
``summary.json``, ``figures.html``, ``report.md``).

Two tables, variables (rows) × methods (columns: the SAE, PCA, ICA, SVD and the autoencoder's
own latent axes), all computed from the same reference-autoencoder latent:

* **best |r|** — mean over each variable's dimensions of the best |Pearson r| with any single
  SAE feature / component (the paper's recovery measure, :func:`~core.simulate.experiments.run_recovery`);
* **R² read-out** — mean R² of a linear regression of each variable on *all* of a method's
  units (fit on the simulation's training cells, scored on its validation cells). PCA, ICA and
  the latent axes are invertible linear maps of one latent, so their read-outs coincide; the
  SAE's ReLU features may read out more.

The planted-concept score of an analysis built from the simulated demo dataset is reached
through :func:`planted_analyses` and :func:`planted_score_for`.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.base.errors import FeatureLensError, InputError
from core.base.progress import Progress, ShouldStop, never_stop, no_progress
from core.base.io import content_hash, read_json, write_bytes, write_json
from core.base.paths import analyses_dir, confine
from core.store.analysis import Analysis

__all__ = ["SimLabConfig", "SimRun", "METHODS", "METHOD_LABELS", "simulations_dir", "run_simlab", "load_run",
           "list_runs", "readout_r2", "planted_analyses", "planted_score_for", "read_planted_score",
           "SimulationPageData", "simulation_page_data"]

RUN_FILE = "run.json"
#: column order of the tables (the SAE first, the autoencoder's own axes last)
METHODS = ("sae", "pca", "ica", "svd", "latent")
METHOD_LABELS = {"sae": "SAE", "pca": "PCA", "ica": "ICA", "svd": "SVD", "latent": "AE latent axes"}
LIMITS = {"n_cells": (200, 50_000), "n_genes": (3, 2_000), "seed": (0, 2**31 - 1), "sae_epochs": (1, 500),
          "ae_epochs": (1, 500)}


def simulations_dir() -> Path:
    """``<analyses folder>/simulations`` (where the app keeps simulation runs)."""

    return analyses_dir() / "simulations"


def _int_in(name: str, value: Any, label: str) -> int:
    lo, hi = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InputError(f"{label} must be a whole number from {lo:,} to {hi:,} (got {value!r})",
                         fix=f"e.g. {label} = {SimLabConfig.__dataclass_fields__[name].default}")
    return int(value)


@dataclass(frozen=True)
class SimLabConfig:
    """One run: the small simulation (``n_cells`` × ``n_genes``, 3 programs, ``seed``), then the
    recovery experiment with ``sae_epochs`` of SAE training on a reference autoencoder trained for
    ``ae_epochs`` (the experiment's defaults otherwise: Vanilla SAE 10 × latent, L1 1e-3)."""

    n_cells: int = 2000
    n_genes: int = 10
    seed: int = 0
    sae_epochs: int = 30
    ae_epochs: int = 40

    def __post_init__(self) -> None:
        _int_in("n_cells", self.n_cells, "cells")
        _int_in("n_genes", self.n_genes, "genes")
        _int_in("seed", self.seed, "seed")
        _int_in("sae_epochs", self.sae_epochs, "SAE epochs")
        _int_in("ae_epochs", self.ae_epochs, "autoencoder epochs")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def run_id(self) -> str:
        """``small-<cells>x<genes>-seed<seed>-<hash of all settings>`` (stable across versions of this file)."""

        digest = content_hash({"kind": "small-recovery", **self.to_dict()})[:8]
        return f"small-{self.n_cells}x{self.n_genes}-seed{self.seed}-{digest}"


@dataclass
class SimRun:
    """A stored run: ``best_r`` and ``r2`` are variables (rows) × methods (columns)."""

    run_id: str
    path: Path
    config: dict[str, int]
    created: str
    data: dict[str, Any]
    sae: dict[str, Any]
    autoencoder: dict[str, Any] | None
    best_r: pd.DataFrame
    r2: pd.DataFrame
    findings: list[dict[str, str]]
    target: float
    elapsed_s: dict[str, float]
    reused: bool = field(default=False)

    @property
    def label(self) -> str:
        c = self.config
        return (f"{self.created[:16].replace('T', ' ')} · {c['n_cells']:,} cells × {c['n_genes']} genes, "
                f"seed {c['seed']}, SAE {c['sae_epochs']} epochs")


# ----------------------------------------------------------------------------- the numbers
def readout_r2(units: dict[str, np.ndarray], values: np.ndarray, variable: np.ndarray, *, train: np.ndarray,
               validation: np.ndarray) -> pd.DataFrame:
    """Mean validation R² of a linear regression of every variable column on all units of each method.

    ``units``: method → (cells, k) array; ``values`` (cells, m) with ``variable`` (m,) naming each
    column's variable. Returns variables (rows, first-seen order) × methods (columns); constant
    columns (R² undefined) are skipped in the means."""
    from sklearn.linear_model import LinearRegression

    from core.simulate.metrics import r2_scores

    names = list(dict.fromkeys(np.asarray(variable).tolist()))
    out = {}
    for method, z in units.items():
        z = np.asarray(z, dtype=np.float64)
        reg = LinearRegression().fit(z[train], values[train])
        r2 = r2_scores(values[validation], reg.predict(z[validation]))
        out[method] = [float(np.nanmean(r2[variable == v])) if np.isfinite(r2[variable == v]).any() else np.nan
                       for v in names]
    return pd.DataFrame(out, index=pd.Index(names, name="variable"))


def _split(adata) -> tuple[np.ndarray, np.ndarray]:
    n = adata.n_obs
    if "split" in adata.obs:
        val = np.flatnonzero(np.asarray(adata.obs["split"] == "validation"))
        if 10 <= val.size <= n - 10:
            return np.setdiff1d(np.arange(n), val), val
    order = np.random.default_rng(0).permutation(n)
    k = max(10, n // 10)
    return np.sort(order[k:]), np.sort(order[:k])


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _clean(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _wide_records(df: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    return {str(v): {str(m): _clean(float(x)) for m, x in row.items()} for v, row in df.iterrows()}


def _wide_frame(records: dict[str, dict[str, float | None]], variables: list[str] | None) -> pd.DataFrame:
    """Back from JSON (whose keys are sorted): variables in the run's order, methods in :data:`METHODS` order."""
    df = pd.DataFrame.from_dict(records, orient="index").astype(float)
    if variables:
        df = df.loc[[v for v in variables if v in df.index]]
    df.index.name = "variable"
    return df[[m for m in METHODS if m in df.columns]]


# ----------------------------------------------------------------------------- runs on disk
def run_simlab(config: SimLabConfig = SimLabConfig(), *, root: str | os.PathLike | None = None,
               progress: Progress = no_progress, should_stop: ShouldStop = never_stop) -> SimRun:
    """Generate the small simulation, run the recovery experiment, compute both tables and store the
    run under ``root`` (default :func:`simulations_dir`). A run with the same settings already on
    disk is returned as is (``reused=True``)."""
    from dataclasses import replace

    from core.simulate import SmallSimConfig, simulate
    from core.simulate.baselines import baseline_components
    from core.simulate.experiments import RecoveryConfig, default_ae_config, run_recovery
    from core.simulate.metrics import variable_matrix
    from core.simulate.report import data_summary, findings

    root = Path(root) if root is not None else simulations_dir()
    final = root / config.run_id
    if (final / RUN_FILE).is_file():
        progress(1, 1, "reused the stored run with these settings")
        run = load_run(config.run_id, root=root)
        run.reused = True
        return run
    t_start = time.monotonic()
    progress(0, 100, "generating the small simulation")
    adata = simulate(SmallSimConfig(n_cells=config.n_cells, n_genes=config.n_genes), seed=config.seed,
                     should_stop=should_stop)
    t_sim = time.monotonic() - t_start

    def sub(done: float, total: float, message: str = "") -> None:
        progress(3 + 87 * (done / total if total else 0), 100, message)

    rec_config = RecoveryConfig(epochs=config.sae_epochs,
                                ae=replace(default_ae_config(adata), epochs=config.ae_epochs))
    t0 = time.monotonic()
    result = run_recovery(adata, config=rec_config, seed=config.seed, progress=sub, should_stop=should_stop)
    t_rec = time.monotonic() - t0
    progress(91, 100, "linear read-outs (R²)")
    t0 = time.monotonic()
    variables = variable_matrix(adata, y_genes=rec_config.y_genes, seed=config.seed)
    train, val = _split(adata)
    units = {"sae": result.activations.toarray()}
    for method in rec_config.baselines:
        units[method] = baseline_components(result.embedding, method=method, seed=config.seed)
    r2 = readout_r2(units, variables.values, variables.variable, train=train, validation=val)
    best_r = result.means().T
    best_r = best_r[[m for m in METHODS if m in best_r.columns]]
    r2 = r2[[m for m in METHODS if m in r2.columns]].loc[best_r.index]
    t_r2 = time.monotonic() - t0
    results = {"recovery": result}
    data = data_summary(adata)
    elapsed = {"simulate": round(t_sim, 2), "recovery": round(t_rec, 2), "readout": round(t_r2, 2),
               "total": round(time.monotonic() - t_start, 2)}
    summary = result.summary()
    record = {"run_id": config.run_id, "config": config.to_dict(), "created": _now(), "data": data,
              "sae": summary["sae"], "autoencoder": summary.get("autoencoder"), "target": summary["target"],
              "variables": [str(v) for v in best_r.index], "methods": [str(m) for m in best_r.columns],
              "best_r": _wide_records(best_r), "r2": _wide_records(r2), "findings": findings(results),
              "elapsed_s": elapsed}
    progress(97, 100, "saving the run")
    _commit(root, config.run_id, lambda staging: _write_run(staging, record, results, best_r, r2, data, config))
    progress(100, 100, f"done in {elapsed['total']:.0f} s")
    return load_run(config.run_id, root=root)


def _write_run(staging: Path, record: dict, results: dict, best_r: pd.DataFrame, r2: pd.DataFrame, data: dict,
               config: SimLabConfig) -> None:
    from core.simulate.report import write_results

    write_results(results, staging, data=data, seed=config.seed, elapsed_s=record["elapsed_s"])
    write_bytes(staging / "best_r.csv", best_r.to_csv().encode())
    write_bytes(staging / "readout_r2.csv", r2.to_csv().encode())
    write_json(staging / RUN_FILE, record)  # last: its presence marks a complete run


STALE_STAGING_S = 6 * 3600


def _commit(root: Path, run_id: str, write) -> None:
    """Write a run into a hidden staging folder, then rename it into place (atomic on one file system).
    Staging folders of killed jobs (cancelled from the app) older than 6 hours are removed first."""
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob(".staging-*"):
        try:
            if time.time() - old.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{run_id}-", dir=root))
    try:
        write(staging)
        try:
            os.replace(staging, root / run_id)
        except OSError:
            if not (root / run_id / RUN_FILE).is_file():  # not "another tab finished the same run first"
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _run_path(run_id: str, root: Path) -> Path:
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise InputError(f"not a simulation run: {run_id!r}", fix="choose a run from the list")
    return confine(run_id, roots=[root])


def load_run(run_id: str, *, root: str | os.PathLike | None = None) -> SimRun:
    """The stored run ``run_id`` (InputError if there is none or it cannot be read)."""

    root = Path(root) if root is not None else simulations_dir()
    path = _run_path(run_id, root)
    try:
        rec = read_json(path / RUN_FILE)
        return SimRun(run_id=rec["run_id"], path=path, config=rec["config"], created=rec["created"],
                      data=rec["data"], sae=rec["sae"], autoencoder=rec.get("autoencoder"),
                      best_r=_wide_frame(rec["best_r"], rec.get("variables")),
                      r2=_wide_frame(rec["r2"], rec.get("variables")), findings=rec["findings"],
                      target=float(rec["target"]), elapsed_s=rec.get("elapsed_s", {}))
    except FileNotFoundError:
        raise InputError(f"there is no simulation run {run_id!r} in {root}",
                         fix="run one with “Generate + run recovery”") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"the simulation run {run_id!r} cannot be read ({type(exc).__name__}: {exc})",
                         fix=f"delete the folder {path} and run it again") from None


def list_runs(*, root: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """Stored runs, newest first: ``[{"run_id", "label", "created"}]`` (unreadable folders skipped)."""

    root = Path(root) if root is not None else simulations_dir()
    out = []
    if not root.is_dir():
        return out
    for p in root.iterdir():
        if p.name.startswith(".") or not (p / RUN_FILE).is_file():
            continue
        try:
            rec = read_json(p / RUN_FILE)
            c = rec["config"]
            label = (f"{rec['created'][:16].replace('T', ' ')} · {c['n_cells']:,} cells × {c['n_genes']} genes, "
                     f"seed {c['seed']}, SAE {c['sae_epochs']} epochs")
            out.append({"run_id": p.name, "label": label, "created": rec["created"]})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda r: r["created"], reverse=True)


# ----------------------------------------------------------------------------- planted-concept score
def planted_analyses() -> list[dict[str, Any]]:
    """Analyses in the analyses folder built from the simulated demo dataset (ground truth inside):
    ``[{"name", "annotated", "scored"}]``."""
    from core.demo.planted import PLANTED_FILE

    out = []
    adir = analyses_dir()
    if not adir.is_dir():
        return out
    for p in sorted(adir.iterdir()):
        if not (p / "analysis.json").is_file():
            continue
        try:
            a = Analysis.open(p)
        except FeatureLensError:
            continue
        if a.config.get("dataset", {}).get("demo") == "simulated" or a.has(PLANTED_FILE):
            out.append({"name": p.name, "annotated": a.has("annotations.parquet"), "scored": a.has(PLANTED_FILE)})
    return out


def _open_analysis(name: str):
    if not name:
        raise InputError("no analysis chosen", fix="choose an analysis built from the simulated demo dataset")
    return Analysis.open(confine(name, roots=[analyses_dir()]))


def read_planted_score(name: str) -> dict | None:
    """The stored planted-concept score of analysis ``name`` (``planted_score.json``), or None."""
    from core.demo.planted import PLANTED_FILE

    a = _open_analysis(name)
    return a.read_json(PLANTED_FILE) if a.has(PLANTED_FILE) else None


def planted_score_for(name: str, *, progress: Progress = no_progress) -> dict:
    """Compute (or reuse) the planted-concept score of analysis ``name`` and store it in the analysis
    (step ``planted``, :func:`core.demo.planted.planted_score_step`)."""
    from core.demo.planted import planted_score_step

    a = _open_analysis(name)
    if not a.has("annotations.parquet"):
        raise InputError(f"analysis {name} is not annotated yet",
                         fix="annotate it on the Data & training page (or `featurelens annotate`)")
    progress(0, 1, "matching features to the planted programs")
    result = planted_score_step(a)
    progress(1, 1, "scored")
    return result


# ----------------------------------------------------------------------------- the page
@dataclass(frozen=True)
class SimulationPageData:
    """What the Simulation lab's layout shows: the stored ``runs`` (as :func:`list_runs`, newest
    first), the ``run`` shown (the URL's ``?run=`` if stored, else the newest; None without runs) and
    the ``planted`` analyses (as :func:`planted_analyses`)."""
    runs: tuple[dict, ...] = ()
    run: str | None = None
    planted: tuple[dict, ...] = ()


def simulation_page_data(source: str | None = None, *, query: dict[str, str] | None = None) -> SimulationPageData:
    """The Simulation lab page for the URL ``query`` (``run``); the lab needs no ``source``."""
    query = query or {}
    runs = tuple(list_runs())
    run_ids = [r["run_id"] for r in runs]
    run = query.get("run") if query.get("run") in run_ids else (run_ids[0] if run_ids else None)
    return SimulationPageData(runs=runs, run=run, planted=tuple(planted_analyses()))
