"""What the app can open: shipped datasets, files in the data folder, analyses.

Sources are named by small strings (``shipped:pbmc68k``, ``file:sub/x.h5ad``,
``analysis:demo-pbmc68k``) so the browser only ever holds names, never paths; every name is
resolved inside the configured folders (:func:`core.base.paths.confine`).
"""
from __future__ import annotations

from pathlib import Path

from core.store.analysis import Analysis
from core.data.load import EMBEDDING_SUFFIXES, load_dataset
from core.data.datasets import SHIPPED, shipped
from core.base.errors import FeatureLensError, InputError
from core.base.paths import analyses_dir, confine, data_dir

__all__ = ["list_sources", "resolve_source", "describe_source", "analysis_source_path"]

DATA_SUFFIXES = (".h5ad",) + EMBEDDING_SUFFIXES


def list_sources() -> list[dict]:
    """Options for the picker: ``[{"label", "value", "kind"}]``, analyses first."""
    out: list[dict] = []
    adir = analyses_dir()
    if adir.is_dir():
        for p in sorted(adir.iterdir()):
            if (p / "analysis.json").is_file():
                out.append({"label": f"Analysis · {p.name}", "value": f"analysis:{p.name}", "kind": "analysis"})
    for d in SHIPPED.values():
        out.append({"label": f"Dataset · {d.name} (shipped)", "value": f"shipped:{d.name}", "kind": "shipped"})
    ddir = data_dir()
    shipped_files = {d.path.resolve() for d in SHIPPED.values()}
    if ddir.is_dir():
        for p in sorted(ddir.rglob("*")):
            if p.suffix.lower() in DATA_SUFFIXES and p.is_file() and p.resolve() not in shipped_files:
                rel = p.relative_to(ddir).as_posix()
                out.append({"label": f"File · {rel}", "value": f"file:{rel}", "kind": "file"})
    return out


def resolve_source(value: str) -> tuple[str, Path]:
    """``(kind, path)`` of a source name; refuses names that point outside the allowed folders."""
    kind, _, name = (value or "").partition(":")
    if not name:
        raise InputError(f"not a source name: {value!r}")
    if kind == "shipped":
        return kind, shipped(name).path
    if kind == "file":
        return kind, confine(name, roots=[data_dir()])
    if kind == "analysis":
        return kind, confine(name, roots=[analyses_dir()])
    raise InputError(f"unknown source kind {kind!r}", fix="use shipped:, file: or analysis:")


def _analysis_results(a: Analysis) -> dict:
    """Headline numbers of the SAE and the annotation, when those steps have run."""
    out = {}
    if a.has("metrics.json"):
        m = a.read_json("metrics.json").get("summary", {})
        out["live features"] = f"{m.get('live')} of {m.get('hidden')} (L0 {m.get('l0', 0):.1f} per cell)"
        if m.get("local") is not None:  # analyses trained before regional existed have no "regional"
            regional = m.get("regional")
            out["local / regional / global"] = f"{m.get('local')} / {'–' if regional is None else regional} / " \
                                               f"{m.get('global')}"
    if a.has("annotation.json"):
        s = a.read_json("annotation.json")
        frac = s.get("annotated_fraction_of_live")
        out["annotated features"] = f"{s.get('features_annotated')}" + (f" ({frac:.0%} of live)" if frac else "")
        out["unique terms"] = s.get("unique_terms")
    return out


def describe_source(value: str) -> dict:
    """A JSON-able summary of a source for the picker card: title, facts, warnings, or error + fix."""
    try:
        kind, path = resolve_source(value)
        if kind == "analysis":
            a = Analysis.open(path)
            ds = a.config.get("dataset", {})
            facts = {"dataset": Path(ds.get("path", "?")).name, "cells": ds.get("n_cells"),
                     "genes": ds.get("n_genes"), "embedding": ds.get("embedding"),
                     "cell types": ds.get("cell_type"), "steps done": ", ".join(sorted(a.config.get("steps", {}))) or "none"}
            facts.update(_analysis_results(a))
            return {"title": f"Analysis {path.name}", "facts": facts, "warnings": [], "error": None, "fix": None}
        spec = shipped(value.partition(":")[2]) if kind == "shipped" else None
        ds = load_dataset(path, embedding=spec.embedding if spec else None,
                          cell_type=spec.cell_type if spec else None)
        facts = {k: str(v) for k, v in ds.report.facts.items()}
        if ds.adata is not None:
            facts["embeddings (.obsm)"] = ", ".join(ds.adata.obsm.keys()) or "none"
        return {"title": path.name, "facts": facts, "warnings": [str(w) for w in ds.report.warnings],
                "error": None, "fix": None}
    except FeatureLensError as exc:
        return {"title": value, "facts": {}, "warnings": [], "error": exc.message, "fix": exc.fix}
    except OSError as exc:  # unreadable file or folder (permissions, I/O error)
        return {"title": value, "facts": {}, "warnings": [], "error": f"{value} could not be read: {exc.strerror or exc}",
                "fix": "check that the file is readable by the user running FeatureLens"}


def analysis_source_path(source: str | None) -> Path:
    """The folder of an ``analysis:NAME`` source; a clear error for no source or a dataset source."""
    if not source:
        raise InputError("no analysis chosen", fix="pick an analysis in the list at the top")
    kind, path = resolve_source(source)
    if kind != "analysis":
        raise InputError(f"{source} is not an analysis", fix="pick an entry named “Analysis · …”")
    return path
