"""Callbacks of the Data & training page: form defaults, upload, the three jobs, the summary card.

The jobs (fit the built-in model, train the SAE, annotate) are background callbacks registered
with :func:`callbacks.jobs.register_job`; each takes small values from the form, reloads the
data inside the job (:mod:`core.views.data`) and writes into the analysis folder.
"""
from __future__ import annotations

# The jobs run in processes forked from this server. Their heavy modules are imported here, once,
# when the app starts: a job forked while another request thread is half-way through importing a
# module would wait forever on that module's import lock.
import core.annotate.pipeline  # noqa: F401
import core.model.api  # noqa: F401
import core.sae  # noqa: F401  (torch)
import core.sae.pipeline  # noqa: F401
from dash import Input, Output, State, callback, clientside_callback, no_update
from dash.exceptions import PreventUpdate

from components import ids
from components.data_page import ANNOTATE, FIT, TRAIN, annotation_method_text, dims_of, summary_body
from components.training_chart import empty_training_figure, training_figure
from core.store.catalog import list_sources, resolve_source
from core.base.errors import FeatureLensError, InputError
from core.base.paths import data_dir
from core.sae.stability import describe_stability
from core.views.data_sources import default_analysis_name
from core.views.data import (TrainRequest, analysis_overview, annotate_named, fit_model_for_source,
                            preset_form_values, train_for_source, upload_cap_bytes)

from .jobs import error_alert, register_job, success_alert


def _picker_options() -> list[dict]:
    return [{"label": o["label"], "value": o["value"]} for o in list_sources()]


def _number(value, *, what: str, integer: bool = False):
    """A form number or None (blank); InputError for text the browser let through."""
    if value in (None, ""):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number (got {value!r})") from None
    if integer:
        if x != int(x):
            raise InputError(f"{what} must be a whole number (got {value!r})")
        return int(x)
    return x


# ----------------------------------------------------------------------------- form
def preset_fields(preset: str | None, arch: str | None):
    """Preset/architecture → expansion (value, placeholder), sparsity (value, label, help), epochs, preset help."""
    v = preset_form_values(preset or "default", arch or "vanilla")
    if v["sparsity_kind"] == "k":
        label, help_text = "k (active latents per cell)", "Each cell uses exactly k latents (TopK), or k on average."
        if v["sparsity"] is None:
            help_text += " Blank: k = the embedding's dimensions."
    elif preset == "auto":
        label, help_text = "L1 weight", "Chosen from the data: a short sweep keeps the knee of FVU against L0."
    else:
        label, help_text = "L1 weight", "Higher → sparser features (fewer active per cell)."
    placeholder = f"{v['hidden']:,} latents (preset)" if v["hidden"] else "e.g. 16"
    stop = "" if v["patience"] else "; no early stopping"
    return (v["expansion"], placeholder, v["sparsity"], label, help_text, v["epochs"],
            f"{v['description'][0].upper()}{v['description'][1:]}{stop}.")


def size_help(expansion, embedding, options, preset):
    """How many latents the SAE will have."""
    dims = dims_of(options, embedding)
    try:
        x = _number(expansion, what="expansion")
    except InputError as exc:
        return exc.message
    if x is None:
        hidden = preset_form_values(preset or "default")["hidden"]
        return f"Blank: the preset's size ({hidden:,} latents)." if hidden else "Blank: 50 × the embedding dimensions."
    if x <= 0:
        return "Must be positive."
    if dims:
        return f"→ {int(round(x * dims)):,} latents for {dims} dimensions (the paper's best range is 5–50×)."
    return "Latents = expansion × embedding dimensions."


def analysis_name_for(embedding, source):
    """A new embedding on a dataset suggests a new analysis name."""
    if not embedding or not source:
        raise PreventUpdate
    try:
        kind, path = resolve_source(source)
    except FeatureLensError:
        raise PreventUpdate from None
    if kind == "analysis":
        raise PreventUpdate
    stem = source.partition(":")[2] if kind == "shipped" else path.stem
    return default_analysis_name(stem, embedding)


def show_summary(name):
    """Summary card, "open" button and annotate button state for analysis ``name`` (read from disk)."""
    ov = analysis_overview((name or "").strip())
    exists = bool(ov.get("exists")) and not ov.get("error")
    return summary_body(ov), not exists, not (exists and ov.get("sae"))


def open_analysis(n_clicks, name):
    """Make analysis ``name`` the app's source (the other pages read it)."""
    if not n_clicks or not name:
        raise PreventUpdate
    return _picker_options(), f"analysis:{name.strip()}"


# ----------------------------------------------------------------------------- upload
def receive_upload(checked):
    """The browser-checked upload → saved in the data folder and chosen, or an alert."""
    from core.store.uploads import decode_data_url, save_upload

    if not checked:
        raise PreventUpdate
    name = checked.get("filename") or "the file"
    if checked.get("error") == "too_large":
        cap = upload_cap_bytes()
        return (error_alert(f"{name} is {checked.get('size', 0) / 2**20:,.1f} MB; uploads are limited to "
                            f"{cap * 3 / 4 / 2**20:,.0f} MB",
                            f"copy large files into the data folder ({data_dir()}) and press ↻ "
                            "(or raise FEATURELENS_MAX_UPLOAD_MB)"), no_update, no_update, None)
    try:
        result = save_upload(decode_data_url(checked.get("contents", "")), filename=name, folder=data_dir(),
                             max_bytes=upload_cap_bytes())
    except FeatureLensError as exc:
        return error_alert(exc.message, exc.fix), no_update, no_update, None
    what = "already in the data folder" if result.reused else "saved to the data folder"
    return (success_alert(f"{result.name} ({result.n_cells:,} cells × {result.n_genes:,} genes) {what}.",
                          title="Uploaded."), _picker_options(), result.source, None)


# ----------------------------------------------------------------------------- jobs
def fit_model_job(progress, source, latent, seed):
    """Fit the built-in model; the new file with X_featurelens becomes the source."""
    latent = _number(latent, what="latent dimensions", integer=True) or 20
    if not 2 <= latent <= 256:
        raise InputError(f"latent dimensions must lie between 2 and 256 (got {latent})", fix="20 is a good default")
    out = fit_model_for_source(source, latent=latent, seed=_number(seed, what="seed", integer=True) or 0,
                               progress=progress)
    return (success_alert(f"{out.file} written with the embedding X_featurelens. " + " ".join(out.lines[:3])),
            _picker_options(), out.source)


def train_job(progress, source, name, embedding, cell_type, decoder, preset, arch, expansion, sparsity, epochs, seed,
              seeds=1):
    """Train the SAE into analysis ``name``; the live chart follows every evaluation (of the first
    seed when ``seeds`` > 1; the progress message names the seed in training)."""
    uses_k = preset_form_values(preset or "default", arch or "vanilla")["sparsity_kind"] == "k"
    request = TrainRequest(
        source=source or "", analysis=(name or "").strip(), embedding=embedding, cell_type=cell_type or "auto",
        decoder=decoder or "auto", preset=preset or "default", arch=arch or None,
        expansion=_number(expansion, what="expansion"),
        l1=None if uses_k else _number(sparsity, what="L1 weight"),
        k=_number(sparsity, what="k", integer=True) if uses_k else None,
        epochs=_number(epochs, what="epochs", integer=True), seed=_number(seed, what="seed", integer=True) or 0,
        seeds=_number(seeds, what="seeds", integer=True) or 1)
    sae_cfg, _ = request.configs()
    n_hidden = _hidden_of(request, sae_cfg)
    rows: list[dict] = []
    drawn: dict = {"n": -1, "figure": None}

    def live() -> tuple:  # redrawn only when a progress message goes out and there are new rows
        if drawn["n"] != len(rows):
            drawn.update(n=len(rows), figure=training_figure(rows, hidden=n_hidden))
        return (drawn["figure"],)

    progress.live = live
    ov = train_for_source(request, progress=progress, on_eval=rows.append)
    sae = ov.get("sae") or {}
    msg = (f"{sae.get('live', 0):,} of {sae.get('hidden', 0):,} features live, "
           f"L0 {sae.get('l0', 0):,.1f} per cell, FVU {sae.get('fvu', 0):.4f}.")
    if ov.get("stability"):
        line = describe_stability(ov["stability"])
        msg += f" {line[:1].upper()}{line[1:]}."
    return success_alert(msg, title=f"Trained {request.analysis}."), summary_body(ov), _picker_options(), False, False


def _hidden_of(request: TrainRequest, sae_cfg) -> int | None:
    """The SAE's latent count (for the dead-latent percentage), from the embedding's width."""
    if sae_cfg.hidden is not None:
        return sae_cfg.hidden
    from core.views.data_sources import source_options

    opts = source_options(request.source)
    dims = next((e.get("dims") for e in opts.embeddings if e.get("key") == request.embedding), None)
    try:
        return sae_cfg.hidden_size(dims) if dims else None
    except FeatureLensError:
        return None  # the job reports the size problem itself


def annotate_job(progress, name, concepts, expression, percentile, n_low, method=None):
    """Annotate analysis ``name`` with the chosen method and concept databases."""
    from core.annotate.pipeline import AnnotationConfig

    config = AnnotationConfig(method=method or "calibrated", concepts=tuple(concepts or ()),
                              expression=expression or "auto",
                              percentile=_number(percentile, what="percentile") or 99.0,
                              n_low=_number(n_low, what="low cells", integer=True) or 1000)
    ov = annotate_named((name or "").strip(), config=config, progress=progress)
    ann = ov.get("annotation") or {}
    checks = annotation_method_text(ann)
    msg = (f"{ann.get('features_annotated', 0):,} features annotated with {ann.get('unique_terms', 0):,} unique "
           f"terms ({ann.get('expression', '')})." + (f" {checks[0].upper()}{checks[1:]}." if checks else ""))
    return success_alert(msg, title="Annotated."), summary_body(ov)


# ----------------------------------------------------------------------------- wiring
callback(Output(ids.DATA_EXPANSION, "value"), Output(ids.DATA_EXPANSION, "placeholder"),
         Output(ids.DATA_SPARSITY, "value"), Output(ids.DATA_SPARSITY_LABEL, "children"),
         Output(ids.DATA_SPARSITY_HELP, "children"), Output(ids.DATA_EPOCHS, "value"),
         Output(ids.DATA_PRESET_HELP, "children"),
         Input(ids.DATA_PRESET, "value"), Input(ids.DATA_ARCH, "value"))(preset_fields)
callback(Output(ids.DATA_SIZE_HELP, "children"), Input(ids.DATA_EXPANSION, "value"),
         Input(ids.DATA_EMBEDDING, "value"), State(ids.DATA_EMBEDDING, "options"),
         State(ids.DATA_PRESET, "value"))(size_help)
callback(Output(ids.DATA_ANALYSIS_NAME, "value"), Input(ids.DATA_EMBEDDING, "value"), State(ids.DATA_SOURCE, "data"),
         prevent_initial_call=True)(analysis_name_for)
callback(Output(ids.DATA_SUMMARY, "children"), Output(ids.DATA_OPEN_ANALYSIS, "disabled"),
         Output(ANNOTATE.start, "disabled"), Input(ids.DATA_ANALYSIS_NAME, "value"))(show_summary)
callback(Output(ids.PICKER_DROPDOWN, "options", allow_duplicate=True),
         Output(ids.PICKER_DROPDOWN, "value", allow_duplicate=True),
         Input(ids.DATA_OPEN_ANALYSIS, "n_clicks"), State(ids.DATA_ANALYSIS_NAME, "value"),
         prevent_initial_call=True)(open_analysis)

# The size check runs in the browser, so an oversized file never reaches the server.
clientside_callback(
    """
    function(contents, filename, cap) {
        if (!contents) { return window.dash_clientside.no_update; }
        var size = Math.floor((contents.length - contents.indexOf(',') - 1) * 3 / 4);
        if (contents.length > cap - 65536) {  // the request carries the text plus a little JSON
            return {filename: filename, error: 'too_large', size: size};
        }
        return {filename: filename, contents: contents, size: size};
    }
    """,
    Output(ids.DATA_UPLOAD_CHECKED, "data"),
    Input(ids.DATA_UPLOAD, "contents"), State(ids.DATA_UPLOAD, "filename"), State(ids.DATA_UPLOAD_CAP, "data"),
    prevent_initial_call=True,
)
callback(Output(ids.DATA_UPLOAD_ALERT, "children"), Output(ids.PICKER_DROPDOWN, "options", allow_duplicate=True),
         Output(ids.PICKER_DROPDOWN, "value", allow_duplicate=True), Output(ids.DATA_UPLOAD, "contents"),
         Input(ids.DATA_UPLOAD_CHECKED, "data"), prevent_initial_call=True)(receive_upload)

register_job(FIT, fit_model_job,
             outputs=[Output(ids.PICKER_DROPDOWN, "options", allow_duplicate=True),
                      Output(ids.PICKER_DROPDOWN, "value", allow_duplicate=True)],
             states=[State(ids.DATA_SOURCE, "data"), State(ids.DATA_FIT_LATENT, "value"),
                     State(ids.DATA_SEED, "value")])
# train_job's arguments after progress, in order
TRAIN_FORM = [State(ids.DATA_SOURCE, "data"), State(ids.DATA_ANALYSIS_NAME, "value"),
              State(ids.DATA_EMBEDDING, "value"), State(ids.DATA_CELL_TYPE, "value"),
              State(ids.DATA_DECODER, "value"), State(ids.DATA_PRESET, "value"),
              State(ids.DATA_ARCH, "value"), State(ids.DATA_EXPANSION, "value"),
              State(ids.DATA_SPARSITY, "value"), State(ids.DATA_EPOCHS, "value"),
              State(ids.DATA_SEED, "value"), State(ids.DATA_SEEDS, "value")]
register_job(TRAIN, train_job,
             outputs=[Output(ids.DATA_SUMMARY, "children", allow_duplicate=True),
                      Output(ids.PICKER_DROPDOWN, "options", allow_duplicate=True),
                      Output(ids.DATA_OPEN_ANALYSIS, "disabled", allow_duplicate=True),
                      Output(ANNOTATE.start, "disabled", allow_duplicate=True)],
             states=TRAIN_FORM,
             live_outputs=[(Output(ids.DATA_TRAIN_LIVE_CHART, "figure"), empty_training_figure())])
# annotate_job's arguments after progress, in order
ANNOTATE_FORM = [State(ids.DATA_ANALYSIS_NAME, "value"), State(ids.DATA_ANN_CONCEPTS, "value"),
                 State(ids.DATA_ANN_EXPRESSION, "value"), State(ids.DATA_ANN_PERCENTILE, "value"),
                 State(ids.DATA_ANN_NLOW, "value"), State(ids.DATA_ANN_METHOD, "value")]
register_job(ANNOTATE, annotate_job, outputs=[Output(ids.DATA_SUMMARY, "children", allow_duplicate=True)],
             states=ANNOTATE_FORM)
