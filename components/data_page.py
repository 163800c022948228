"""The Data & training page: choose data (or upload it), fit the built-in model, train an SAE with a
live chart, annotate it, and see what the analysis holds.

Every control exists for every source (disabled where it does not apply), so the page's
callbacks never target a missing component; what it shows of the source comes from
:func:`core.views.data.data_page_data`. The summary card is filled from the analysis on
disk by :mod:`callbacks.data`, so a reload or a second tab shows the same results.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from core.views.data import DataPageData
from core.views.data_sources import SourceOptions

from . import ids
from .figures import feature_density_figure, sparsity_frontier_figure
from .job_panel import JobIds, job_panel
from .shell import PAGE_BY_SLUG
from .training_chart import empty_training_figure, training_figure

__all__ = ["layout", "FIT", "TRAIN", "ANNOTATE", "summary_body", "annotation_method_text", "embedding_option",
           "dims_of", "PRESET_CHOICES", "ARCH_CHOICES", "CONCEPT_CHOICES", "METHOD_CHOICES"]

FIT = JobIds(ids.DATA_FIT_JOB)
TRAIN = JobIds(ids.DATA_TRAIN_JOB)
ANNOTATE = JobIds(ids.DATA_ANNOTATE_JOB)

PRESET_CHOICES = [
    {"label": "Good practice (default)", "value": "default"},
    {"label": "Auto: choose the L1 strength by a short sweep", "value": "auto"},
    {"label": "Fast: the paper's objective in minutes", "value": "fast"},
    {"label": "Paper: the case study exactly (slow)", "value": "paper"},
]
SEEDS_CHOICES = [{"label": "1", "value": 1}, {"label": "3 (measure each feature's stability)", "value": 3}]
ARCH_CHOICES = [
    {"label": "Vanilla (L1 penalty; the paper's SAE)", "value": "vanilla"},
    {"label": "ReLU with pre-encoder bias (L1)", "value": "relu"},
    {"label": "TopK (exactly k active per cell)", "value": "topk"},
    {"label": "BatchTopK (k per cell on average)", "value": "batchtopk"},
    {"label": "Matryoshka TopK (nested prefixes; k = embedding dimensions)", "value": "matryoshka"},
]
METHOD_CHOICES = [  # the values of core.annotate.pipeline.METHODS (a test checks)
    {"label": "Calibrated (recommended)", "value": "calibrated"},
    {"label": "Paper (the published method)", "value": "paper"},
]
METHOD_HELP = ("calibrated: FDR-controlled, up-regulated, most specific terms — recommended; "
               "paper: the published method, reproduces its numbers.")
CONCEPT_CHOICES = [
    {"label": "GO biological process", "value": "go-bp"},
    {"label": "GO molecular function", "value": "go-mf"},
    {"label": "GO cellular component", "value": "go-cc"},
]
EXPRESSION_CHOICES = [
    {"label": "automatic (predicted when there is a decoder)", "value": "auto"},
    {"label": "predicted by the decoder", "value": "predicted"},
    {"label": "observed counts", "value": "observed"},
]
SMALL_DATA_CELLS = 5_000   # below this, annotation defaults to the demo's 90th percentile


def embedding_option(key: str, dims: int | None) -> dict:
    return {"label": f"{key} · {dims} dimensions" if dims else key, "value": key}


def dims_of(options: list[dict] | None, key: str | None) -> int | None:
    """The dimension count shown in an embedding option's label (see :func:`embedding_option`)."""
    for o in options or []:
        if o.get("value") == key and " · " in str(o.get("label", "")):
            try:
                return int(str(o["label"]).rsplit(" · ", 1)[1].split()[0])
            except (ValueError, IndexError):
                return None
    return None


def _field(label: str, control, help_text=None, *, label_id: str | None = None, help_id: str | None = None,
           width: int = 12) -> dbc.Col:
    return dbc.Col([
        dbc.Label(label, id=label_id, className="mb-1 fw-semibold small") if label_id else
        dbc.Label(label, className="mb-1 fw-semibold small"),
        control,
        html.Small(help_text, id=help_id, className="text-muted d-block") if help_id else
        (html.Small(help_text, className="text-muted d-block") if help_text else None),
    ], md=width, className="mb-3")


def _fmt_int(n) -> str:
    return "?" if n is None else f"{int(n):,}"


def _fmt_regional(sae: dict) -> str:
    """Regional count; "–" for an analysis trained before regional features existed."""
    return "–" if sae.get("regional") is None and sae.get("local") is not None else _fmt_int(sae.get("regional"))


def _locality_note(sae: dict) -> str:
    if sae.get("local") is None:
        return "no cell types"
    k = sae.get("max_regional_types")
    if sae.get("regional") is None:
        return "by cell type (trained before regional features: retrain to split them out of global)"
    if not k or k < 2:
        return "by cell type"
    return f"by cell type; regional = {'2' if k == 2 else f'2–{k}'} types"


# ----------------------------------------------------------------------------- cards
def _upload_area(cap: int) -> html.Div:
    cap_file = int(cap * 3 / 4)  # the browser sends files base64-encoded (4 bytes per 3)
    return html.Div([
        dcc.Upload(
            id=ids.DATA_UPLOAD, accept=".h5ad", multiple=False,
            children=html.Div(["Drop an .h5ad file here or ", html.A("choose one", className="link-primary"),
                               html.Span(f" (up to {cap_file / 2**20:,.0f} MB)", className="text-muted")]),
            className="border border-2 rounded text-center py-2 px-2 small",
            style={"borderStyle": "dashed", "cursor": "pointer"},
        ),
        dcc.Store(id=ids.DATA_UPLOAD_CAP, data=cap),
        dcc.Store(id=ids.DATA_UPLOAD_CHECKED),
        dcc.Loading(html.Div(id=ids.DATA_UPLOAD_ALERT, className="mt-2"), type="dot"),
    ], className="mb-3")


def _source_info(opts: SourceOptions):
    if opts.error:
        return dbc.Alert([html.Strong("This source cannot be used. "), opts.error,
                          html.Div(["Fix: ", opts.fix], className="small mt-1") if opts.fix else None],
                         color="danger", className="py-2")
    size = (f"{_fmt_int(opts.n_cells)} cells × {_fmt_int(opts.n_genes)} genes" if opts.n_cells else
            "an embedding file (no expression)")
    kind = {"shipped": "shipped dataset", "file": "file in the data folder", "analysis": "analysis"}[opts.kind]
    parts = [html.Div([html.Strong(opts.title), html.Span(f" · {kind} · {size}", className="text-muted")])]
    if opts.locked:
        parts.append(html.Small("An analysis keeps the data, embedding, cell types and decoder it was made with; "
                                "train again below to change the SAE, or choose the dataset to start another.",
                                className="text-muted"))
    return html.Div(parts, className="mb-3")


def _data_card(opts: SourceOptions, cap: int) -> dbc.Card:
    ok = not opts.error
    emb_opts = [embedding_option(e["key"], e.get("dims")) for e in opts.embeddings]
    ct_opts = ([{"label": "detect automatically", "value": "auto"}] if not opts.locked else []) + \
        [{"label": c, "value": c} for c in opts.cell_type_columns] + \
        [{"label": "none (no local/regional/global characterisation)", "value": "none"}]
    ct_value = opts.default_cell_type if any(o["value"] == opts.default_cell_type for o in ct_opts) else "auto"
    dec_opts = opts.decoders or [{"label": "Automatic", "value": "auto"}]
    locked = opts.locked or not ok
    if opts.fitted_model:
        fit_note = html.Small(["This file ", opts.fitted_model, "."], className="text-success d-block mb-2")
    elif opts.can_fit:
        fit_note = html.Small("No model embedding yet? Fit FeatureLens' own expression model on the counts: it adds "
                              "the embedding X_featurelens and a decoder for predicted expression. The chosen file "
                              "is not changed; a copy with the embedding is written to the data folder.",
                              className="text-muted d-block mb-2")
    else:
        fit_note = html.Small("The built-in model needs an .h5ad with counts; it cannot be fitted on this source.",
                              className="text-muted d-block mb-2")
    return dbc.Card([
        dbc.CardHeader(html.H5("1 · Data", className="mb-0")),
        dbc.CardBody([
            _upload_area(cap),
            html.Div(_source_info(opts), id=ids.DATA_SOURCE_INFO),
            dbc.Row([
                _field("Embedding (.obsm key)", dbc.Select(id=ids.DATA_EMBEDDING, options=emb_opts,
                                                         value=opts.default_embedding, disabled=locked or not emb_opts),
                       "The model's cell embedding the SAE learns to decompose."),
                _field("Cell-type column", dbc.Select(id=ids.DATA_CELL_TYPE, options=ct_opts, value=ct_value,
                                                      disabled=locked),
                       "Used to call features local (one cell type), regional (a few types) or global."),
                _field("Decoder", dbc.Select(id=ids.DATA_DECODER, options=dec_opts, value=opts.default_decoder,
                                             disabled=locked),
                       "Turns embeddings back into expression: annotation then uses predicted expression. "
                       "Fixed when the analysis is created."),
            ]),
            html.Hr(className="my-2"),
            html.H6("Built-in expression model", className="mt-2"),
            html.Div(fit_note, id=ids.DATA_FIT_INFO),
            dbc.Row([
                _field("Latent dimensions", dbc.Input(id=ids.DATA_FIT_LATENT, type="number", min=2, max=256, step=1,
                                                      value=20, disabled=not opts.can_fit), width=6),
            ]),
            job_panel(FIT, start_label="Fit the built-in model", disabled=not (ok and opts.can_fit),
                      color="secondary", help="About 5 s for 700 cells, 30 s for 10,000 cells."),
        ]),
    ], className="mb-3 h-100")


def _train_card(opts: SourceOptions) -> dbc.Card:
    ok = not opts.error
    return dbc.Card([
        dbc.CardHeader(html.H5("2 · Train a sparse autoencoder", className="mb-0")),
        dbc.CardBody([
            dbc.Row([
                _field("Analysis name", dbc.Input(id=ids.DATA_ANALYSIS_NAME, value=opts.analysis_name,
                                                  disabled=opts.locked or not ok, debounce=True, maxLength=80),
                       "The folder in the analyses folder that holds the results (created if new).", width=6),
                _field("Preset", dbc.Select(id=ids.DATA_PRESET, options=PRESET_CHOICES, value="default"),
                       "", help_id=ids.DATA_PRESET_HELP, width=6),
                _field("Architecture", dbc.Select(id=ids.DATA_ARCH, options=ARCH_CHOICES, value="vanilla"),
                       width=6),
                _field("Expansion (latents per dimension)",
                       dbc.Input(id=ids.DATA_EXPANSION, type="number", min=0.1, step="any"),
                       "", help_id=ids.DATA_SIZE_HELP, width=6),
                _field("L1 weight", dbc.Input(id=ids.DATA_SPARSITY, type="number", min=0, step="any"),
                       "", label_id=ids.DATA_SPARSITY_LABEL, help_id=ids.DATA_SPARSITY_HELP, width=4),
                _field("Epochs", dbc.Input(id=ids.DATA_EPOCHS, type="number", min=1, step=1),
                       "Passes over the cells.", width=4),
                _field("Seed", dbc.Input(id=ids.DATA_SEED, type="number", min=0, step=1, value=0),
                       "Same seed, same SAE.", width=4),
                _field("Seeds", dbc.RadioItems(id=ids.DATA_SEEDS, options=SEEDS_CHOICES, value=1, inline=True),
                       "3 trains seeds s, s+1, s+2 and keeps the first: each feature gets its stability "
                       "across seeds (best-matched decoder cosine); 3× the training time."),
            ]),
            job_panel(TRAIN, start_label="Train the SAE", disabled=not ok,
                      help="Re-training with the same data and settings reuses the stored SAE.",
                      live=dcc.Graph(id=ids.DATA_TRAIN_LIVE_CHART, figure=empty_training_figure(),
                                     config={"displayModeBar": False}, className="mt-2")),
        ]),
    ], className="mb-3 h-100")


def _annotate_card(opts: SourceOptions) -> dbc.Card:
    small = opts.n_cells is not None and opts.n_cells < SMALL_DATA_CELLS
    percentile, n_low = (90.0, min(300, max(10, (opts.n_cells or 600) // 2))) if small else (99.0, 1000)
    hint = (f"A small dataset ({_fmt_int(opts.n_cells)} cells): the demo's settings (90th percentile) are preset; "
            "the paper uses 99 and 1,000." if small else "The paper's settings: above the 99th percentile, "
            "up to 1,000 low cells.")
    return dbc.Card([
        dbc.CardHeader(html.H5("3 · Annotate features with concepts", className="mb-0")),
        dbc.CardBody([
            dbc.Row([
                _field("Method", dbc.RadioItems(id=ids.DATA_ANN_METHOD, options=METHOD_CHOICES, value="calibrated",
                                                inline=True), METHOD_HELP),
                _field("Concept databases", dbc.Checklist(id=ids.DATA_ANN_CONCEPTS, options=CONCEPT_CHOICES,
                                                          value=["go-bp", "go-mf"]), width=6),
                _field("Expression", dbc.RadioItems(id=ids.DATA_ANN_EXPRESSION, options=EXPRESSION_CHOICES,
                                                    value="auto"), width=6),
                _field("High cells: above percentile", dbc.Input(id=ids.DATA_ANN_PERCENTILE, type="number", min=50,
                                                                 max=99.99, step="any", value=percentile), width=6),
                _field("Low cells: at most", dbc.Input(id=ids.DATA_ANN_NLOW, type="number", min=3, step=1,
                                                       value=n_low), width=6),
            ]),
            html.Small(hint, className="text-muted d-block mb-2"),
            job_panel(ANNOTATE, start_label="Annotate", disabled=not bool(opts.analysis_name),
                      help="Differential expression of each feature's high vs low cells, then concept enrichment "
                           "by the chosen method, and the concept map."),
        ]),
    ], className="mb-3 h-100")


def _summary_card() -> dbc.Card:
    return dbc.Card([
        dbc.CardHeader(html.Div([
            html.H5("Analysis summary", className="mb-0"),
            dbc.Button("Open in the other pages", id=ids.DATA_OPEN_ANALYSIS, size="sm", color="primary",
                       outline=True, disabled=True, n_clicks=0, title="Make this analysis the app's current source"),
        ], className="d-flex justify-content-between align-items-center")),
        dbc.CardBody(html.Div(id=ids.DATA_SUMMARY)),
    ], className="mb-3 h-100")


def layout(data: DataPageData) -> html.Div:
    """The page for ``data`` (:func:`core.views.data.data_page_data`)."""
    page = PAGE_BY_SLUG["data"]
    opts = data.options
    return html.Div([
        html.H2(page.title),
        html.P(page.summary, className="lead"),
        dcc.Store(id=ids.DATA_SOURCE, data=data.source),
        dbc.Row([dbc.Col(_data_card(opts, data.upload_cap), lg=5, className="mb-3"),
                 dbc.Col(_train_card(opts), lg=7, className="mb-3")]),
        dbc.Row([dbc.Col(_annotate_card(opts), lg=5, className="mb-3"),
                 dbc.Col(_summary_card(), lg=7, className="mb-3")]),
    ], id=ids.DATA_PAGE)


# ----------------------------------------------------------------------------- summary
def _pct(x) -> str:
    return "–" if x is None else f"{100 * float(x):.1f} %"


def _stat(label: str, value, sub=None) -> dbc.Col:
    return dbc.Col(html.Div([
        html.Div(label, className="small text-muted"),
        html.Div(value, className="fs-5 fw-semibold"),
        html.Div(sub, className="small text-muted") if sub else None,
    ], className="border rounded p-2 h-100"), xs=6, md=3, className="mb-2")


def summary_body(overview: dict) -> list:
    """The summary card's content from :func:`core.views.data.analysis_overview`."""
    name = overview.get("name") or ""
    if overview.get("error"):
        return [dbc.Alert([html.Strong("This analysis cannot be read. "), overview["error"],
                           html.Div(["Fix: ", overview.get("fix")], className="small mt-1")
                           if overview.get("fix") else None], color="danger", className="mb-0")]
    if not overview.get("exists"):
        return [html.P([f"No analysis named “{name}” yet. " if name else "No analysis chosen. ",
                        "Train an SAE (step 2) to create it."], className="text-muted mb-0")]
    facts = [f"{overview.get('dataset')}", f"embedding {overview.get('embedding')}",
             f"cell types {overview.get('cell_type') or 'none'}", f"decoder {overview.get('decoder')}"]
    out = [html.Div([html.Strong(name), html.Span(" · " + " · ".join(facts), className="text-muted small")],
                    className="mb-2")]
    sae = overview.get("sae")
    if not sae:
        out.append(html.P("No SAE trained yet: train one (step 2).", className="text-muted"))
        return out
    hidden, live = sae.get("hidden") or 0, sae.get("live") or 0
    ann = overview.get("annotation")
    stats = [
        _stat("live features", f"{live:,} of {hidden:,}", f"dead {_pct(sae.get('dead_fraction'))}"),
        _stat("active per cell (L0)", f"{sae.get('l0', 0):,.1f}", f"FVU {sae.get('fvu', 0):.4f}"),
        _stat("local / regional / global",
              f"{_fmt_int(sae.get('local'))} / {_fmt_regional(sae)} / {_fmt_int(sae.get('global'))}",
              _locality_note(sae)),
    ]
    if ann:
        frac = ann.get("annotated_fraction_of_live")
        stats.append(_stat("annotated", f"{ann.get('features_annotated', 0):,}",
                           f"{_pct(frac)} of live · {ann.get('unique_terms', 0):,} unique terms"))
    else:
        stats.append(_stat("annotated", "–", "not yet (step 3)"))
    out.append(dbc.Row(stats, className="g-2"))
    secs = sae.get("elapsed_s")
    out.append(html.Small(
        f"{(sae.get('arch') or '?').capitalize()} SAE, {sae.get('d_in')} → {hidden:,} latents; "
        f"{sae.get('epochs') or 0:g} epochs in {secs or 0:,.1f} s on {sae.get('device') or '?'} "
        f"({str(sae.get('stop_reason') or '').replace('_', ' ')}"
        + (f"; best validation loss at epoch {sae['best_epoch']:g}" if sae.get("best_epoch") else "") + ").",
        className="text-muted d-block mt-1"))
    if ann:
        method = annotation_method_text(ann)
        out.append(html.Small(
            f"Annotation: {method + '; ' if method else ''}"
            f"{ann.get('terms_per_feature_mean', 0):,.1f} terms per annotated feature; "
            f"expression: {ann.get('expression', '?')}; {ann.get('gene_match', '')}.",
            className="text-muted d-block"))
    if sae.get("quality"):
        out.append(quality_section(sae["quality"]))
    if overview.get("sparsity_sweep"):
        sweep = overview["sparsity_sweep"]
        chosen = sweep["rows"][sweep["chosen"]]
        out.append(html.Small(f"Auto preset: L1 {chosen['l1']:g} chosen from {len(sweep['rows'])} short runs "
                              f"({sweep['rule']}).", className="text-muted d-block mt-2"))
        out.append(dcc.Graph(id=ids.DATA_SWEEP_FRONTIER, figure=sparsity_frontier_figure(sweep),
                             config={"displayModeBar": False}))
    if overview.get("annotation_stale"):
        out.append(dbc.Alert("The SAE was retrained after this annotation: annotate again to match the new features.",
                             color="warning", className="py-1 mt-2 mb-0 small"))
    if overview.get("history"):
        out.append(dcc.Graph(figure=training_figure(overview["history"], hidden=hidden, height=240),
                             config={"displayModeBar": False}, className="mt-2"))
    return out


_QUALITY_ROWS = (
    ("explained variance", "explained_variance", "1 − FVU; 1 = perfect"),
    ("cosine of x and x̂", "cossim", "mean over cells, raw embedding"),
    ("norm ratio ‖x̂‖ / ‖x‖", "l2_ratio", "mean over cells; < 1 = shrunk"),
    ("relative reconstruction bias", "relative_reconstruction_bias", "E‖x̂‖² / E[x·x̂]; 1 = unbiased"),
)


def _num(x, digits: int = 3) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def fidelity_text(fidelity) -> str:
    """One line on the expression-space fidelity of a quality summary."""
    if fidelity is None:
        return "no decoder"
    if fidelity.get("unavailable"):
        return f"not measured: {fidelity['unavailable']}"
    score = "undefined" if fidelity.get("fidelity") is None else f"{fidelity['fidelity']:.3f}"
    return (f"{score} on {fidelity.get('n_cells', 0):,} held-out cells (log-likelihood per cell: embedding "
            f"{fidelity['loglik_original']:,.1f}, SAE reconstruction {fidelity['loglik_reconstruction']:,.1f}, "
            f"mean embedding {fidelity['loglik_mean']:,.1f})")


def quality_section(quality: dict) -> html.Div:
    """SAE quality (``analysis_overview(...)["sae"]["quality"]``): a small table and the feature density."""
    val = quality.get("validation") or {}
    held = f"held-out ({val['n_cells']:,})" if val.get("n_cells") else "held-out"
    rows = [html.Tr([html.Td(label), html.Td(_num(quality.get(key))), html.Td(_num(val.get(key))),
                     html.Td(note, className="text-muted")]) for label, key, note in _QUALITY_ROWS]
    dec = quality.get("max_decoder_cosine")
    rows.append(html.Tr([html.Td("max decoder cosine"), html.Td(_num(dec)), html.Td("–"),
                         html.Td(f"largest |cos| of two live features; median per feature "
                                 f"{_num(quality.get('median_max_decoder_cosine'))}", className="text-muted")]))
    if "fidelity" in quality:
        fid = quality["fidelity"]
        rows.append(html.Tr([html.Td("expression fidelity"), html.Td("–"),
                             html.Td(_num(fid.get("fidelity")) if fid and not fid.get("unavailable") else "–"),
                             html.Td(fidelity_text(fid), className="text-muted")]))
    table = dbc.Table([html.Thead(html.Tr([html.Th("SAE quality"), html.Th("all cells"), html.Th(held), html.Th("")])),
                       html.Tbody(rows)], size="sm", bordered=False, className="small mb-0", id=ids.DATA_QUALITY)
    hist = quality.get("frequency_histogram")
    graph = (dcc.Graph(id=ids.DATA_QUALITY_DENSITY, figure=feature_density_figure(hist),
                       config={"displayModeBar": False})
             if hist else None)
    return html.Div(dbc.Row([dbc.Col(table, lg=7), dbc.Col(graph, lg=5)], className="g-2"), className="mt-2")


def annotation_method_text(annotation: dict) -> str:
    """The method and the null self-check of an annotation summary, e.g. "method: calibrated; null
    features annotated: 1 of 100 (false annotation rate 1.0 %)"; "" for an analysis annotated
    before these were recorded."""
    parts = []
    if annotation.get("method"):
        parts.append(f"method: {annotation['method']}")
    tested, annotated = annotation.get("null_features_tested"), annotation.get("null_features_annotated")
    if tested is not None and annotated is not None:
        rate = annotation.get("false_annotation_rate")
        parts.append(f"null features annotated: {int(annotated):,} of {int(tested):,}"
                     + (f" (false annotation rate {_pct(rate)})" if rate is not None else ""))
    return "; ".join(parts)
