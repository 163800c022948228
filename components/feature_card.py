"""The feature card: header (badges, steer link), then, top to bottom (:data:`CARD_SECTIONS`):
the feature's reported terms (up-regulated genes; sortable, filterable, linked to GO; a switch
shows every nominal row with its status), the terms of its down-regulated genes, stability across
seeds, the technical-variable flags, the activation histogram and cell-type profile, and the top
DE genes (volcano + table).

:func:`card_layout` is the empty frame the Explorer renders once; the callbacks fill it through
:func:`card_header`, :func:`terms_rows`, :func:`terms_note`, :func:`down_note`,
:func:`stability_line`, :func:`confounder_section` and :func:`de_rows` (pure functions, unit-tested).
"""
from __future__ import annotations

from urllib.parse import urlencode

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import numpy as np
import pandas as pd
from dash import dcc, html

from . import ids
from .figures import empty_figure

GO_URL = "https://www.ebi.ac.uk/QuickGO/term/{}"
DE_ROWS = 300  # rows of the DE table in the page (the CSV export has every gene)

_NUM = {"type": "rightAligned", "filter": "agNumberColumnFilter"}



def _sci(field: str, header: str, width: int = 105) -> dict:
    return {"field": field, "headerName": header, "width": width, **_NUM,
            "valueFormatter": {"function": "params.value == null ? '' : d3.format('.2~e')(params.value)"}}


def _fix(field: str, header: str, fmt: str = ".3~f", width: int = 95) -> dict:
    return {"field": field, "headerName": header, "width": width, **_NUM,
            "valueFormatter": {"function": f"params.value == null ? '' : d3.format('{fmt}')(params.value)"}}


TERM_COLUMNS = [
    {"field": "term", "headerName": "term", "cellRenderer": "markdown", "cellRendererParams": {"linkTarget": "_blank"},
     "minWidth": 380, "flex": 2,
     "filter": "agTextColumnFilter", "tooltipField": "term_name"},
    {"field": "status", "headerName": "status", "width": 170, "filter": "agTextColumnFilter", "tooltipField": "status",
     "headerTooltip": "reported: one of the feature's concepts; nominal only: nominally enriched, not reported; "
                      "down in high cells: its genes are down in the high cells (it describes the low cells); "
                      "explained by …: a GO ancestor of that reported term"},
    {"field": "namespace", "headerName": "db", "width": 80, "filter": "agTextColumnFilter"},
    {"field": "de_direction", "headerName": "DE genes", "width": 95, "filter": "agTextColumnFilter",
     "headerTooltip": "which of the feature's DE genes the test used: up or down in its high cells, or both (pooled)"},
    {"field": "hits", "headerName": "hits", "width": 75, **_NUM},
    {"field": "n_term_genes", "headerName": "size", "width": 75, **_NUM},
    _fix("expected", "expected", ".2f", 90), _fix("fold_enrichment", "fold enr.", ".2f", 95),
    {"field": "direction", "headerName": "dir.", "width": 80, "filter": "agTextColumnFilter"},
    _sci("hyper_p", "hypergeom. p"), _sci("hyper_q", "hypergeom. q"),
    _sci("binom_p", "binom p"), _sci("binom_q", "binom q"), _fix("mwu_z", "MWU z", ".2f", 85),
    _sci("mwu_p_up", "MWU p up"), _sci("mwu_p_two_sided", "MWU p 2-s."), _sci("mwu_q", "MWU q"),
    _fix("effect_size", "effect", ".3f", 85),
]
DE_COLUMNS = [
    {"field": "gene", "headerName": "gene", "width": 110, "filter": "agTextColumnFilter", "pinned": "left"},
    _fix("log2_fold_change", "log2 FC", ".2f", 90), _fix("fold_change", "FC", ".3~g", 90),
    _fix("mean_high", "mean high", ".3~g", 100), _fix("mean_low", "mean low", ".3~g", 100),
    _fix("t", "t", ".2f", 80), _sci("p", "p"), _sci("q", "q"),
    {"field": "significant", "headerName": "sig.", "width": 80, "filter": "agTextColumnFilter"},
]


def grid(grid_id: str, columns: list[dict], *, height: str = "300px", row_id: str | None = None) -> dag.AgGrid:
    """An AG Grid with sortable, filterable, resizable columns (used across the Explorer)."""
    options = {"animateRows": False, "tooltipShowDelay": 300, "enableCellTextSelection": True,
               "suppressCellFocus": False}
    kwargs = {"getRowId": f"params.data.{row_id} + ''"} if row_id else {}
    return dag.AgGrid(id=grid_id, columnDefs=columns, rowData=[], dashGridOptions=options,
                      defaultColDef={"sortable": True, "resizable": True, "filter": True},
                      style={"height": height, "width": "100%"}, className="ag-theme-quartz", **kwargs)


#: The card's sections, top to bottom (issue 16: concepts first, then the checks, then the evidence).
CARD_SECTIONS = (ids.CARD_UP_SECTION, ids.CARD_DOWN_SECTION, ids.CARD_STABILITY_SECTION, ids.CARD_CONFOUNDERS,
                 ids.CARD_PROFILES_SECTION, ids.CARD_DE_SECTION)


def _graph(graph_id: str, height: str) -> dcc.Graph:
    return dcc.Graph(id=graph_id, figure=empty_figure(), style={"height": height}, config={"displaylogo": False},
                     responsive=True)


def _sections() -> dict:
    up = html.Div([
        html.Div([
            html.H6("Reported terms (genes up in the high cells)", className="d-inline me-2"),
            html.Small(id=ids.CARD_TERMS_NOTE, className="text-muted me-2"),
            html.Span(dbc.Switch(id=ids.CARD_TERMS_ALL, label="show all nominal", value=False,
                                 className="d-inline-block me-2 small mb-0"),
                      title="Also list the nominally enriched rows that are not reported: GO ancestors "
                            "explained by a reported term, terms of the genes down in the high cells, "
                            "and pairs that miss the FDR"),
            dbc.Button("⤓ CSV", id=ids.CARD_EXPORT_TERMS, size="sm", color="secondary", outline=True,
                       disabled=True, title="Download the terms listed, with all statistics"),
        ], className="mb-1"),
        grid(ids.CARD_TERMS, TERM_COLUMNS, height="240px", row_id="term_id"),
    ], id=ids.CARD_UP_SECTION)
    down = html.Div([
        html.Div([html.H6("Terms of the genes down in the high cells", className="d-inline me-2"),
                  html.Small(id=ids.CARD_DOWN_NOTE, className="text-muted")], className="mb-1"),
        grid(ids.CARD_DOWN_TERMS, TERM_COLUMNS, height="200px", row_id="term_id"),
    ], id=ids.CARD_DOWN_SECTION, className="mt-3")
    profiles = html.Div(dbc.Row([dbc.Col(_graph(ids.CARD_HISTOGRAM, "300px"), md=5),
                                 dbc.Col(_graph(ids.CARD_PROFILE, "300px"), md=7)], className="g-2"),
                        id=ids.CARD_PROFILES_SECTION, className="mt-3")
    de = html.Div([
        html.Div([
            html.H6("Top DE genes (high vs low cells)", className="d-inline me-2"),
            html.Small(id=ids.CARD_DE_NOTE, className="text-muted me-2"),
            dbc.Button("⤓ CSV", id=ids.CARD_EXPORT_DE, size="sm", color="secondary", outline=True,
                       disabled=True, title="Download the DE table of every gene"),
        ], className="mb-1"),
        dcc.Loading(dbc.Row([
            dbc.Col(_graph(ids.CARD_VOLCANO, "380px"), lg=6),
            dbc.Col(grid(ids.CARD_DE, DE_COLUMNS, height="380px", row_id="gene"), lg=6),
        ], className="g-2"), type="circle", delay_show=300),
    ], id=ids.CARD_DE_SECTION, className="mt-3")
    return {ids.CARD_UP_SECTION: up, ids.CARD_DOWN_SECTION: down,
            ids.CARD_STABILITY_SECTION: html.Div(id=ids.CARD_STABILITY_SECTION, className="mt-3"),
            ids.CARD_CONFOUNDERS: html.Div(id=ids.CARD_CONFOUNDERS, className="mt-2"),
            ids.CARD_PROFILES_SECTION: profiles, ids.CARD_DE_SECTION: de}


def card_layout() -> dbc.Card:
    """The card's frame (sections in :data:`CARD_SECTIONS` order); the Explorer's callbacks fill it."""
    sections = _sections()
    return dbc.Card([
        dbc.CardHeader(html.Div("Select a feature: click it on the concept map, in the search results, on the "
                                "heatmap or in the reverse lookup.", className="text-muted"), id=ids.CARD_HEADER),
        html.Div(id=ids.CARD_ALERT, className="px-3 pt-2"),
        dbc.CardBody([sections[s] for s in CARD_SECTIONS], id=ids.CARD_BODY, style={"display": "none"}),
        dcc.Download(id=ids.CARD_DOWNLOAD),
    ], id=ids.CARD, className="mb-4")


def steer_href(source: str, feature: int, *, mode: str | None = None) -> str:
    """The Steering page with ``feature`` chosen; ``mode="experiment"`` opens the dose–response sweep."""
    query = {"source": source, "feature": int(feature), **({"mode": mode} if mode else {})}
    return "/steering?" + urlencode(query)


def card_header(summary: dict, *, source: str) -> html.Div:
    """Title, badges (local/regional/global, category, frequency) and the 'steer this feature' link."""
    f = summary["feature"]
    loc = summary.get("locality", "unknown")
    colour = {"local": "danger", "regional": "warning", "global": "primary", "dead": "secondary"}.get(loc, "secondary")
    badges = [dbc.Badge(loc, color=colour, className="me-1", id="card-locality-badge",
                        text_color="dark" if loc == "regional" else None,
                        title="local = significantly higher (z > 1.96) in exactly one cell type; regional = in a "
                              "few (2 to k) types; global = in more than k, or in none")]
    if loc == "local" and summary.get("significant_types"):
        badges.append(dbc.Badge(summary["significant_types"][0], color="light", text_color="dark", className="me-1"))
    elif summary.get("significant_types"):
        types = summary["significant_types"]
        badges.append(dbc.Badge(f"higher in {len(types)} cell types", color="light", text_color="dark",
                                className="me-1", title=", ".join(map(str, types))))
    if summary.get("category"):
        badges.append(dbc.Badge(summary["category"], color="info", className="me-1"))
    if summary.get("redundant"):
        badges.append(dbc.Badge("redundant", color="warning", text_color="dark", className="me-1"))
    if summary.get("tracks"):
        badges.append(dbc.Badge("may be technical", color="danger", className="me-1", id=ids.CARD_TECHNICAL_BADGE,
                                title=f"its activation mostly tracks {summary.get('tracks_label') or summary['tracks']} "
                                      "within cell types (see the technical variables below)"))
    facts = (f"active in {summary['n_cells']:,} cells ({100 * summary['frequency']:.1f}%) · "
             f"max {summary['max_activation']:.3g} · {summary['n_terms']} reported terms")
    return html.Div([
        html.Div([
            html.H4(f"Feature {f}", className="d-inline me-2 mb-0", id="card-title"),
            *badges,
            dbc.Button("Steer this feature →", id=ids.CARD_STEER, href=steer_href(source, f), size="sm",
                       color="primary", outline=True, className="float-end"),
            dbc.Button("dose–response with controls →", id=ids.CARD_STEER_EXPERIMENT,
                       href=steer_href(source, f, mode="experiment"), size="sm", color="link",
                       className="float-end py-0", title="Steer it at several strengths, with matched controls"),
        ]),
        html.Small(facts, className="text-muted"),
    ])


def stability_line(summary: dict) -> html.Div:
    """"stable across seeds: 0.97 (…)" with a tooltip; a warning below the analysis's
    ``stability_warn_below`` (0.7, :data:`core.sae.stability.UNSTABLE_BELOW`); "train with 3 seeds
    to measure" for a one-seed run."""
    value, n = summary.get("stability"), summary.get("stability_seeds", 0)
    if not summary.get("stability_measured"):
        return html.Div(html.Small("stability across seeds: not measured (train with 3 seeds to measure)",
                                   className="text-muted"), id=ids.CARD_STABILITY,
                        title="Choose 3 seeds on the Data & training page (or `featurelens train --seeds 0,1,2`)")
    if value is None:
        return html.Div(html.Small("stability across seeds: none (a dead feature)", className="text-muted"),
                        id=ids.CARD_STABILITY)
    chance = summary.get("stability_chance")
    low = summary.get("stability_min")
    tip = ("For each other seed: the highest cosine between this feature's decoder direction and any live "
           "feature of that seed's SAE; shown is the mean over seeds"
           + (f" (lowest {low:.2f})" if low is not None and n > 1 else "") + ". 1 = found again exactly"
           + (f"; unrelated random directions would score about {chance:.2f} here" if chance is not None else "")
           + ".")
    text = f"stable across seeds: {value:.2f} (best-matched decoder cosine in {n} other seed{'s' if n != 1 else ''})"
    parts = [html.Small(text, className="text-muted")]
    warn = summary.get("stability_warn_below")
    if warn is not None and value < warn:
        parts.append(dbc.Badge("may be a seed artefact", color="warning", text_color="dark", className="ms-2"))
    return html.Div(parts, id=ids.CARD_STABILITY, title=tip)


def term_link(term_id: str, name: str) -> str:
    """Markdown: the term name, linked to its GO page when it is a GO term."""
    safe = str(name).replace("[", "(").replace("]", ")")
    if str(term_id).startswith("GO:"):
        return f"[{safe}]({GO_URL.format(term_id)}) `{term_id}`"
    return f"{safe} `{term_id}`"


def _records(df: pd.DataFrame) -> list[dict]:
    """JSON-able rows: NaN/inf become None."""
    out = df.replace([np.inf, -np.inf], np.nan).astype(object)
    return out.where(pd.notna(out), None).to_dict("records")


def terms_rows(terms: pd.DataFrame) -> list[dict]:
    """Rows of the terms grid from ``core.views.explorer.feature_terms`` output."""
    if terms.empty:
        return []
    df = terms.copy()
    df.insert(0, "term", [term_link(t, n) for t, n in zip(df["term_id"], df["term_name"])])
    return _records(df)


def terms_note(terms: pd.DataFrame, *, show_all: bool, annotated: bool = True) -> str:
    """The line beside the terms grid: how many rows it lists and what they are."""
    if not annotated:
        return "no enriched terms (the analysis is not annotated)"
    n_rep = int(terms["status"].astype(str).str.startswith("reported").sum()) if "status" in terms else len(terms)
    if show_all:
        if terms.empty:
            return "no nominally enriched terms"
        return (f"{len(terms)} nominal rows, {n_rep} reported; the status column says what the others are; "
                "names link to QuickGO")
    if terms.empty:
        return "no reported terms"
    return f"{n_rep} reported terms; sort or filter any column; names link to QuickGO"


def de_rows(de: pd.DataFrame, *, limit: int = DE_ROWS) -> list[dict]:
    """Rows of the DE grid: the significant genes first, most significant (smallest q, then largest
    |t|) first, then the others in the same order; at most ``limit``."""
    if de.empty:
        return []
    order = np.lexsort((-np.abs(np.nan_to_num(de["t"].to_numpy(float))), de["q"].to_numpy(float),
                        ~de["significant"].to_numpy(bool)))
    df = de.iloc[order].head(limit).copy()
    df["significant"] = np.where(df["significant"], "yes", "no")
    return _records(df)


def down_note(terms: pd.DataFrame | None, *, annotated: bool = True) -> str:
    """The line beside the down-terms grid (``terms``: :func:`core.views.explorer.feature_down_terms`)."""
    if not annotated:
        return "none (the analysis is not annotated)"
    if terms is None:
        return "not separated: the paper's method enriches up and down genes together"
    if terms.empty:
        return "none at FDR 5 %"
    return f"{len(terms)} at FDR 5 %; they describe the feature's low cells, not its concepts"


def confounder_section(conf: dict | None) -> html.Div:
    """The technical-variable flags of one feature (:func:`core.views.explorer.feature_confounders`):
    a warning when it tracks one, then a small table (variable, statistic, value, threshold) with the
    rule in the tooltip; a short note when the analysis has no such check."""
    if conf is None:
        return html.Small("Technical variables: not checked for this analysis (annotate it again with counts "
                          "to check library size, detected genes, % mito and batch).", className="text-muted")
    parts = [html.Div([html.H6("Technical variables", className="d-inline me-2"),
                       html.Small("within cell types; hover for the rule", className="text-muted")],
                      title=conf["rule"], className="mb-1")]
    if conf["tracks"]:
        parts.append(dbc.Alert(f"Mostly tracks {conf['tracks_label']}: may be technical. Its activation follows "
                               f"{conf['tracks_label']} within cell types, so its terms may describe a technical "
                               "effect rather than a program.", color="warning", className="py-2 mb-2",
                               id=ids.CARD_TECHNICAL_ALERT))
    head = html.Thead(html.Tr([html.Th(c) for c in ("variable", "statistic", "value", "flag at")]))
    body = html.Tbody([html.Tr([html.Td(r["label"]), html.Td(r["statistic"]),
                                html.Td("—" if r["value"] is None else f"{r['value']:.2f}",
                                        className="fw-bold text-danger" if r["flag"] else None),
                                html.Td(("|r| ≥ " if r["statistic"] == "r" else "η² ≥ ") + f"{r['threshold']:g}")])
                       for r in conf["rows"]])
    parts.append(html.Div(dbc.Table([head, body], size="sm", bordered=False, className="small mb-0 w-auto"),
                          id=ids.CARD_CONFOUNDER_TABLE, title=conf["rule"]))
    return html.Div(parts)
