"""Steering runs stored inside the analysis, so that the app and notebooks can reopen them.

Each run is one atomic analysis step ``steering/<run_id>`` writing into ``steering/<run_id>/``:

    run.json                   config, features, targets, cell selection, info, summary
    cells.parquet              cell_index, cell, cell_type, activation[f] (before) per feature
    latent_before.npy          (n, d) float32 embedding of the steered cells before …
    latent_after.npy           … and after steering
    de.parquet                 one row per gene
    enrichment_up.parquet      enriched terms of the up-regulated genes
    enrichment_down.parquet    … of the down-regulated genes
    centroid_shift.parquet     one row per cell: distances to every cell-type centroid before/after
    expression_normal.npy      (n, G) float32 expected expression (only with save_expression)
    expression_steered.npy

The run id is ``f<features>-<hash>`` of the inputs: the same experiment on the same analysis
gets the same id and is not written twice.
"""
from __future__ import annotations

import io as _io

import numpy as np
import pandas as pd

from core.base import io
from core.base.errors import InputError
from core.steer.config import SteerConfig
from core.steer.run import SteeringResult

__all__ = ["save_steering_run", "list_steering_runs", "load_steering_run", "run_id_of", "STEP_PREFIX"]

STEP_PREFIX = "steering/"
FORMAT_VERSION = 1


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = _io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _run_inputs(analysis, result: SteeringResult) -> dict:
    sae_step = analysis.config.get("steps", {}).get("sae", {})
    return {"sae": sae_step.get("inputs_hash"), "dataset": analysis.config.get("dataset", {}).get("sha256"),
            "features": [int(f) for f in result.features], "config": result.config.to_dict(),
            "cells": io.content_hash(np.asarray(result.cells, np.int64)),
            "decoder": result.info.get("decoder", {}).get("fingerprint")}


def run_id_of(analysis, result: SteeringResult) -> str:
    """The id a run gets: ``f`` + the features joined by ``-`` + ``-`` + 10 hex digits of its inputs."""
    h = io.content_hash(_run_inputs(analysis, result))[:10]
    feats = "-".join(str(int(f)) for f in result.features[:4]) + ("-etc" if len(result.features) > 4 else "")
    return f"f{feats}-{h}"


def save_steering_run(analysis, result: SteeringResult) -> str:
    """Store ``result`` in ``analysis`` (one atomic step); returns its run id (also set on ``result``)."""
    run_id = run_id_of(analysis, result)
    result.run_id = run_id
    step = STEP_PREFIX + run_id
    inputs = _run_inputs(analysis, result)
    if analysis.cached(step, inputs=inputs):
        return run_id
    base = f"steering/{run_id}/"
    cells = pd.DataFrame({"cell_index": np.asarray(result.cells, np.int64), "cell": result.cell_names})
    if result.cell_types is not None:
        cells["cell_type"] = np.asarray(result.cell_types).astype(str)
    for j, f in enumerate(result.features):
        cells[f"activation[{int(f)}]"] = result.activations_before[:, j]
    meta = {"format_version": FORMAT_VERSION, "run_id": run_id, "config": result.config.to_dict(),
            "features": [int(f) for f in result.features], "targets": [float(t) for t in result.targets],
            "target_labels": list(result.target_labels), "genes": list(result.genes), "info": result.info,
            "summary": result.summary(), "has_expression": bool(result.config.save_expression
                                                                and result.expression_normal is not None)}
    with analysis.step(step, inputs=inputs) as w:
        w.write_json(base + "run.json", meta)
        w.write_parquet(base + "cells.parquet", cells)
        w.write_bytes(base + "latent_before.npy", _npy_bytes(result.latent_before.astype(np.float32)))
        w.write_bytes(base + "latent_after.npy", _npy_bytes(result.latent_after.astype(np.float32)))
        w.write_parquet(base + "de.parquet", result.de)
        w.write_parquet(base + "enrichment_up.parquet", result.enrichment_up)
        w.write_parquet(base + "enrichment_down.parquet", result.enrichment_down)
        w.write_parquet(base + "centroid_shift.parquet", result.centroid_shift)
        if meta["has_expression"]:
            w.write_bytes(base + "expression_normal.npy", _npy_bytes(result.expression_normal.astype(np.float32)))
            w.write_bytes(base + "expression_steered.npy", _npy_bytes(result.expression_steered.astype(np.float32)))
    return run_id


def list_steering_runs(analysis) -> pd.DataFrame:
    """One row per stored run, newest last: run_id, completed, features, targets, cells, n_cells,
    test, error_term, n_up, n_down, top_up_terms, top_down_terms."""
    cols = ["run_id", "completed", "features", "targets", "cells", "n_cells", "test", "error_term", "n_up",
            "n_down", "top_up_terms", "top_down_terms"]
    rows = []
    for step, rec in analysis.config.get("steps", {}).items():
        if not step.startswith(STEP_PREFIX):
            continue
        run_id = step[len(STEP_PREFIX):]
        name = f"steering/{run_id}/run.json"
        if not analysis.has(name):
            continue
        s = analysis.read_json(name).get("summary", {})
        rows.append({"run_id": run_id, "completed": rec.get("completed"),
                     "features": ",".join(str(f) for f in s.get("features", [])),
                     "targets": ",".join(s.get("target_labels", [])), "cells": s.get("cells", ""),
                     "n_cells": s.get("n_cells"), "test": s.get("test"), "error_term": s.get("error_term"),
                     "n_up": s.get("n_up"), "n_down": s.get("n_down"),
                     "top_up_terms": "; ".join(s.get("top_up_terms", [])[:3]),
                     "top_down_terms": "; ".join(s.get("top_down_terms", [])[:3])})
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values("completed", kind="stable").reset_index(drop=True)


def load_steering_run(analysis, run_id: str) -> SteeringResult:
    """Reopen a stored run (expression arrays are None if it was saved without them)."""
    step = STEP_PREFIX + str(run_id)
    if step not in analysis.config.get("steps", {}) or not analysis.has(f"steering/{run_id}/run.json"):
        known = list_steering_runs(analysis)["run_id"].tolist()
        raise InputError(f"no steering run {run_id!r} in {analysis.path}",
                         fix=f"stored runs: {', '.join(known[-10:])}" if known else "run `featurelens steer` first")
    base = f"steering/{run_id}/"
    meta = analysis.read_json(base + "run.json")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"steering run {run_id} was saved by a newer FeatureLens", fix="upgrade FeatureLens")

    def npy(name):
        return np.load(analysis.file(base + name), allow_pickle=False)

    cells = analysis.read_parquet(base + "cells.parquet")
    feats = [int(f) for f in meta["features"]]
    has_expr = meta.get("has_expression") and analysis.has(base + "expression_normal.npy")
    return SteeringResult(
        features=feats, cells=cells["cell_index"].to_numpy(np.int64), cell_names=cells["cell"].astype(str).tolist(),
        cell_types=cells["cell_type"].to_numpy(str) if "cell_type" in cells else None,
        targets=np.asarray(meta["targets"], np.float32), target_labels=list(meta["target_labels"]),
        activations_before=np.column_stack([cells[f"activation[{f}]"].to_numpy(np.float32) for f in feats])
        if feats else np.zeros((len(cells), 0), np.float32),
        latent_before=npy("latent_before.npy"), latent_after=npy("latent_after.npy"),
        expression_normal=npy("expression_normal.npy") if has_expr else None,
        expression_steered=npy("expression_steered.npy") if has_expr else None,
        genes=list(meta["genes"]), de=analysis.read_parquet(base + "de.parquet"),
        enrichment_up=analysis.read_parquet(base + "enrichment_up.parquet"),
        enrichment_down=analysis.read_parquet(base + "enrichment_down.parquet"),
        centroid_shift=analysis.read_parquet(base + "centroid_shift.parquet"),
        config=SteerConfig.from_dict(meta["config"]), info=dict(meta.get("info", {})), run_id=run_id)
