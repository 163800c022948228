"""The Data & training page's jobs, named by small keys: fit the built-in model, train an SAE,
annotate, and read an analysis's headline numbers.

Each job takes source/analysis *names* and a config, reloads the data itself (so it can run in
a background worker) and writes only through the same core calls as the CLI
(``fit_h5ad``, ``train_into_analysis``, ``annotate_analysis``), hence into the analysis folder
atomically. Nothing here imports dash.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from core.store.analysis import Analysis
from core.store.catalog import resolve_source
from core.store.dataset import decoder_reference
from core.data.load import load_dataset
from core.data.datasets import shipped
from core.base.errors import InputError
from core.base.paths import data_dir
from core.base.progress import Progress, ShouldStop, never_stop, no_progress
from core.views.data_sources import MODEL_KEY, SourceOptions, analysis_path, resolve_decoder, source_options
from core.model import fit_h5ad, ModelConfig
from core.model.store import default_model_dir
from core.sae import check_trainable, preset, PRESETS
from core.sae.pipeline import train_into_analysis
from core.sae.request import SAERequest

if TYPE_CHECKING:
    from core.sae.request import SAERequest

__all__ = ["TrainRequest", "preset_form_values", "FitOutcome", "fit_model_for_source", "train_for_source", "annotate_named",
           "analysis_overview", "fitted_file_name", "upload_cap_bytes", "DataPageData", "data_page_data"]

ARCHS = ("vanilla", "relu", "topk", "batchtopk", "matryoshka")  # all but JumpReLU (its L0 cost has no field)
MAX_SEEDS = 5


@dataclass(frozen=True)
class TrainRequest:
    """What the page's "Train" button sends: the data choices and the SAE settings.

    ``source``: picker value; ``cell_type``: a column, ``"auto"`` (detect) or ``"none"``;
    ``decoder``: a :func:`core.views.data_sources.decoder_choices` value (ignored for an existing
    analysis: its decoder is fixed when it is created). SAE settings left ``None`` take the
    preset's value, exactly as the options of ``featurelens train`` do. ``seeds``: how many SAEs
    to train (1–5); with more than one, seeds ``seed, seed + 1, …`` are trained, the first is kept
    (the same SAE a one-seed run gives) and each feature gets its stability across the others.
    """

    source: str
    analysis: str
    embedding: str | None = None
    cell_type: str = "auto"
    decoder: str = "auto"
    preset: str = "default"
    arch: str | None = None
    expansion: float | None = None
    l1: float | None = None
    k: int | None = None
    epochs: int | None = None
    seed: int = 0
    seeds: int = 1

    def __post_init__(self) -> None:
        if not self.source:
            raise InputError("no dataset chosen", fix="pick a dataset or an analysis in the list above")
        analysis_path(self.analysis)  # validates the name
        if self.arch is not None and self.arch not in ARCHS:
            raise InputError(f"unknown architecture {self.arch!r}", fix=f"choose one of: {', '.join(ARCHS)}")
        if self.expansion is not None and not self.expansion > 0:
            raise InputError(f"expansion must be a positive number (got {self.expansion})", fix="e.g. 16")
        if self.epochs is not None and (int(self.epochs) != self.epochs or self.epochs < 1):
            raise InputError(f"epochs must be a positive whole number (got {self.epochs})", fix="e.g. 30")
        if int(self.seed) != self.seed or self.seed < 0:
            raise InputError(f"seed must be a whole number ≥ 0 (got {self.seed})", fix="e.g. 0")
        if int(self.seeds) != self.seeds or not 1 <= self.seeds <= MAX_SEEDS:
            raise InputError(f"seeds must be a whole number from 1 to {MAX_SEEDS} (got {self.seeds})",
                             fix="1, or 3 to measure each feature's stability across seeds")

    def to_dict(self) -> dict:
        return asdict(self)

    def seed_list(self) -> list[int] | None:
        """The seeds to train (``seed, seed + 1, …``), or None for a one-seed run."""
        return None if self.seeds == 1 else [int(self.seed) + i for i in range(int(self.seeds))]

    def sae_request(self) -> SAERequest:
        """The SAE settings as an :class:`~core.sae.request.SAERequest` (same rules as the CLI)."""

        # the form shows the preset's epochs: only a changed value is an override (which, as
        # `--epochs` does, also drops the preset's floor on steps for small datasets)
        epochs = int(self.epochs) if self.epochs and int(self.epochs) != preset(self.preset)[1].epochs else None
        uses_k = (self.arch or "vanilla") in ("topk", "batchtopk")
        return SAERequest(preset=self.preset, arch=self.arch, expansion=self.expansion,
                          l1=None if uses_k or self.preset == "auto" else self.l1,
                          k=int(self.k) if uses_k and self.k is not None else None, epochs=epochs, seed=int(self.seed))

    def configs(self):
        """``(sae_config, train_config)``: the preset with these overrides."""
        return self.sae_request().configs()[:2]

    def sweep(self):
        """The ``auto`` preset's :class:`core.sae.sweep.SweepConfig` (None for the other presets)."""
        return self.sae_request().sweep()


def preset_form_values(preset: str, arch: str | None = None) -> dict[str, Any]:
    """What the page's SAE fields show for ``preset`` (and ``arch``): the resolved settings.

    ``expansion`` (None when the preset fixes ``hidden``), ``hidden``, ``sparsity_kind`` ("l1"
    or "k"), ``sparsity``, ``epochs``, ``patience`` and the preset's one-line ``description``.
    """

    sae_cfg, train_cfg = TrainRequest(source="-", analysis="preview", preset=preset, arch=arch).configs()
    uses_k = hasattr(sae_cfg, "k")
    expansion = None if sae_cfg.hidden is not None else (sae_cfg.expansion or sae_cfg.DEFAULT_EXPANSION)
    return {"expansion": expansion, "hidden": sae_cfg.hidden, "sparsity_kind": "k" if uses_k else "l1",
            "sparsity": sae_cfg.k if uses_k else (None if preset == "auto" else sae_cfg.l1), "epochs": train_cfg.epochs,
            "patience": train_cfg.patience, "description": PRESETS[preset][2]}


@dataclass(frozen=True)
class FitOutcome:
    source: str          # picker value of the file that now holds the embedding
    file: str            # its name in the data folder
    lines: tuple         # the fit report (held-out likelihood vs baseline, …)


def fitted_file_name(path: Path) -> str:
    """Where the page writes the data with the built-in model's embedding: ``<stem>-featurelens.h5ad``."""
    return f"{path.stem}-featurelens.h5ad"


def fit_model_for_source(source: str, *, latent: int = 20, seed: int = 0, progress: Progress = no_progress,
                         should_stop: ShouldStop = never_stop) -> FitOutcome:
    """Fit the built-in model on a dataset's counts; write ``<stem>-featurelens.h5ad`` (with
    ``.obsm['X_featurelens']``) and its model folder into the data folder.

    The chosen file is never rewritten (analyses refer to it by content hash). An existing
    output is refused rather than replaced, for the same reason.
    """

    kind, path = resolve_source(source)
    if kind == "analysis":
        raise InputError("the built-in model is fitted on a dataset, not on an analysis",
                         fix="choose the dataset in the list above")
    if path.suffix.lower() != ".h5ad":
        raise InputError(f"{path.name} holds an embedding, not counts", fix="the built-in model needs an .h5ad with counts")
    out = data_dir() / fitted_file_name(path)
    if out.exists() or default_model_dir(out).exists():
        raise InputError(f"{out.name} already exists in the data folder",
                         fix=f"choose 'File · {out.name}' in the list above, or delete it to fit again")
    config = ModelConfig(latent=int(latent), seed=int(seed))
    out.parent.mkdir(parents=True, exist_ok=True)
    report = fit_h5ad(path, config=config, key=MODEL_KEY, output_h5ad=out, out=default_model_dir(out),
                      progress=progress, should_stop=should_stop)
    return FitOutcome(source=f"file:{out.relative_to(data_dir()).as_posix()}", file=out.name,
                      lines=tuple(report.lines()))


def _dataset_for(request: TrainRequest):
    """``(dataset, dataset reference for analysis.json, use cell types?)`` of a train request."""
    kind, path = resolve_source(request.source)
    if kind == "analysis":
        if path.name != request.analysis:
            raise InputError(f"an analysis source trains into itself ({path.name}), not {request.analysis!r}")
        ref = Analysis.open(path).config.get("dataset", {}) or {}
        data = Path(ref.get("path", ""))
        if not data.is_file():
            raise InputError(f"the analysis's dataset {data} is missing", fix="restore the file at that path")
        if ref.get("format") == "h5ad":
            ds = load_dataset(data, embedding=ref.get("embedding"), cell_type=ref.get("cell_type"),
                              counts_layer=ref.get("counts_layer"))
        else:
            ds = load_dataset(data, cell_type=ref.get("cell_type"), obs=ref.get("obs"))
        extra = {k: ref[k] for k in ("decoder", "shipped") if k in ref}
        return ds, {**ds.source, **extra}, ref.get("cell_type") is not None
    spec = shipped(request.source.partition(":")[2]) if kind == "shipped" else None
    cell_type = None if request.cell_type in ("auto", "none", "", None) else request.cell_type
    if path.suffix.lower() == ".h5ad":
        if not request.embedding:
            raise InputError(f"{path.name}: choose the embedding the SAE learns from",
                             fix="pick an .obsm key, or fit the built-in model to get one")
        ds = load_dataset(path, embedding=request.embedding, cell_type=cell_type)
    else:
        ds = load_dataset(path, cell_type=cell_type)
    ref = dict(ds.source)
    decoder = resolve_decoder(request.decoder)
    if decoder is not None:
        ref["decoder"] = decoder
    if spec is not None:
        ref["shipped"] = spec.name
    return ds, ref, request.cell_type != "none"


def train_for_source(request: TrainRequest, *, progress: Progress = no_progress,
                     on_eval: Callable[[dict], None] | None = None,
                     should_stop: ShouldStop = never_stop) -> dict[str, Any]:
    """Train the SAE of ``request`` into its analysis (created if missing); returns its overview.

    Same steps as ``featurelens train``: validate the data, build the configs, open or create
    the analysis (refused if it belongs to another dataset), train → encode → metrics →
    characterise as one atomic step (reused when data and settings are unchanged).
    """

    sae_cfg, train_cfg = request.configs()
    ds, ref, use_cell_types = _dataset_for(request)
    if ds.embedding is None:
        raise InputError(f"{Path(ref['path']).name} has no embedding to train on", fix="choose an embedding")
    x = check_trainable(ds.embedding, what=f"embedding {ds.embedding_key}")  # finite, ≥ 2 varying dimensions
    sae_cfg.hidden_size(x.shape[1])   # fail fast, before creating anything
    train_cfg.split_sizes(x.shape[0])
    analysis = Analysis.open_or_create(analysis_path(request.analysis), dataset=ref, seed=train_cfg.seed)
    train_into_analysis(analysis, x, sae_config=sae_cfg, train_config=train_cfg, seeds=request.seed_list(),
                        sweep=request.sweep(),
                        data_ref=ref, cell_types=ds.cell_types if use_cell_types else None, progress=progress,
                        should_stop=should_stop, on_eval=on_eval)
    return analysis_overview(request.analysis)


def annotate_named(name: str, *, config=None, progress: Progress = no_progress,
                   should_stop: ShouldStop = never_stop) -> dict[str, Any]:
    """Annotate analysis ``name`` (``featurelens annotate``); returns its overview."""
    from core.annotate.pipeline import AnnotationConfig, annotate_analysis

    path = analysis_path(name)
    analysis = Analysis.open(path)
    annotate_analysis(analysis, config=config or AnnotationConfig(), progress=progress, should_stop=should_stop)
    return analysis_overview(name)


_HISTORY_KEYS = ("epoch", "step", "elapsed_s", "train_loss", "val_loss", "val_mse", "val_fvu", "val_l0",
                 "val_live", "train_dead")


_QUALITY_KEYS = ("explained_variance", "cossim", "l2_ratio", "relative_reconstruction_bias", "max_decoder_cosine",
                 "median_max_decoder_cosine")


def _quality(summary: dict) -> dict[str, Any] | None:
    """The SAE-quality part of a metrics summary for the summary card; None for an analysis trained
    before it was recorded. ``fidelity`` is None without a decoder, absent when not recorded."""
    if summary.get("explained_variance") is None:
        return None
    val = summary.get("validation") or {}
    out = {k: summary.get(k) for k in _QUALITY_KEYS}
    out["validation"] = {k: val.get(k) for k in ("n_cells",) + _QUALITY_KEYS[:4]} if val else None
    out["frequency_histogram"] = summary.get("frequency_histogram")
    if "fidelity" in summary:
        out["fidelity"] = summary["fidelity"]
    return out


def analysis_overview(name: str) -> dict[str, Any]:
    """Small JSON of what analysis ``name`` holds, for the summary card (never raises).

    Keys: ``name``, ``exists``, ``error``/``fix``, ``dataset``, ``embedding``, ``cell_type``,
    ``decoder``, ``n_cells``, ``sae`` (headline metrics or None; ``sae["quality"]``: SAE quality and
    expression fidelity, None for analyses trained before they were recorded), ``history`` (validation rows),
    ``annotation`` (summary or None), ``annotation_stale`` (the SAE was retrained after it),
    ``stability`` (:func:`core.sae.stability.stability_summary` of a several-seed run, or None).
    """
    out: dict[str, Any] = {"name": name, "exists": False, "error": None, "fix": None, "sae": None,
                           "history": [], "annotation": None, "annotation_stale": False, "stability": None}
    try:
        path = analysis_path(name)
        if not (path / "analysis.json").is_file():
            return out
        a = Analysis.open(path)
        out["exists"] = True
        ds = a.config.get("dataset", {}) or {}
        dec = decoder_reference(a)
        out.update(dataset=Path(ds.get("path", "?")).name, embedding=ds.get("embedding"),
                   cell_type=ds.get("cell_type"), n_cells=ds.get("n_cells"),
                   decoder="automatic" if not dec else ("none" if str(dec).lower() == "none" else Path(dec).name))
        steps = a.config.get("steps", {}) or {}
        if a.has("metrics.json"):
            m = a.read_json("metrics.json")
            s, t = m.get("summary", {}), m.get("training", {}) or {}
            sae = t.get("sae", {}) or {}
            out["sae"] = {"arch": sae.get("arch"), "d_in": t.get("d_in", s.get("d_in")), "hidden": s.get("hidden"),
                          "live": s.get("live"), "dead_fraction": s.get("dead_fraction"), "l0": s.get("l0"),
                          "fvu": s.get("fvu"), "mse": s.get("mse"), "local": s.get("local"),
                          "regional": s.get("regional"), "global": s.get("global"),
                          "max_regional_types": s.get("max_regional_types"), "redundant": s.get("redundant"),
                          "elapsed_s": t.get("elapsed_s"), "stop_reason": t.get("stop_reason"),
                          "device": t.get("device"), "best_epoch": (t.get("best") or {}).get("epoch"),
                          "epochs": (m.get("history") or [{}])[-1].get("epoch"),
                          "trained": (steps.get("sae") or {}).get("completed"), "quality": _quality(s)}
            out["history"] = [{k: r.get(k) for k in _HISTORY_KEYS} for r in m.get("history", [])]
            out["stability"] = (m.get("robustness") or {}).get("stability")
            out["sparsity_sweep"] = m.get("sparsity_sweep")
        if a.has("annotation.json"):
            out["annotation"] = a.read_json("annotation.json")
            done_sae = (steps.get("sae") or {}).get("completed") or ""
            done_ann = (steps.get("annotate") or {}).get("completed") or ""
            out["annotation_stale"] = bool(done_sae and done_ann and done_ann < done_sae)
    except InputError as exc:
        out.update(error=exc.message, fix=exc.fix)
    return out


# ----------------------------------------------------------------------------- the page
def upload_cap_bytes() -> int:
    """The upload cap (``FEATURELENS_MAX_UPLOAD_MB``, as app.py's ``MAX_UPLOAD_BYTES``)."""
    return int(float(os.environ.get("FEATURELENS_MAX_UPLOAD_MB", "500")) * 1024 * 1024)


@dataclass(frozen=True)
class DataPageData:
    """What the Data & training page's layout shows: the ``source``, its form ``options`` (an error
    inside when it cannot be used) and the ``upload_cap`` in bytes."""
    source: str | None
    options: SourceOptions
    upload_cap: int


def data_page_data(source: str | None, *, query: dict[str, str] | None = None) -> DataPageData:  # noqa: ARG001
    """The Data & training page for ``source`` (the page reads nothing from the URL ``query``)."""
    return DataPageData(source=source, options=source_options(source), upload_cap=upload_cap_bytes())
