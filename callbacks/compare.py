"""Callbacks of the Compare page: compare the two chosen analyses, keep the pair in the URL, export CSV.

The comparison is fast (0.1–0.8 s up to 1,000 features per analysis, 3 s at 3,000; see
``benchmarks/bench_compare.py``) and cached by :mod:`core.views.compare`, so it runs as an ordinary
callback under a loading spinner rather than as a background job.
"""
from __future__ import annotations

from urllib.parse import quote, urlencode

import pandas as pd
from dash import Input, Output, State, callback, dcc, no_update
from dash.exceptions import PreventUpdate

from components import ids
from components.compare_page import HIDDEN, SHOWN, summary_tiles
from components.figures import concept_count_figure
from components.job_panel import job_alert
from core.views.compare import compare_analyses
from core.base.errors import FeatureLensError

N_OUTPUTS = 9  # outputs of show_comparison after the alert and the results' style


def _explore_links(a: str, b: str, fa: int, fb: int) -> str:
    def url(name: str, f: int) -> str:
        return f"/explorer?source={quote('analysis:' + name, safe='')}&feature={int(f)}"

    return f"[A {int(fa)}]({url(a, fa)}) · [B {int(fb)}]({url(b, fb)})"


def _records(df: pd.DataFrame) -> list[dict]:
    return df.to_dict("records")


def show_comparison(a: str | None, b: str | None):
    """``(alert, results style, summary, matches rows, scatter, shared rows, only-A rows, only-B rows,
    and the three tab labels)`` for analyses ``a`` and ``b``. Errors become an alert in place and hide
    the results (which would belong to the previous pair)."""
    if not a or not b:
        return (job_alert("Choose two annotated analyses above.", color="info"), HIDDEN,
                *[no_update] * N_OUTPUTS)
    try:
        cmp = compare_analyses(a, b)
    except FeatureLensError as exc:
        return (job_alert(exc.message, fix=exc.fix, title="Cannot compare:"), HIDDEN, *[no_update] * N_OUTPUTS)
    summary = {**cmp.summary, "seconds": cmp.seconds}
    matches = cmp.matches.assign(explore=[_explore_links(a, b, fa, fb)
                                          for fa, fb in zip(cmp.matches["feature_a"], cmp.matches["feature_b"])])
    terms = cmp.terms
    parts = {w: terms[terms["where"] == w] for w in ("both", "only A", "only B")}
    return (None, SHOWN, summary_tiles(summary, a=a, b=b), _records(matches),
            concept_count_figure(terms, label_a="A", label_b="B", height=380),
            _records(parts["both"]), _records(parts["only A"]), _records(parts["only B"]),
            f"in both ({len(parts['both']):,})", f"only in A ({len(parts['only A']):,})",
            f"only in B ({len(parts['only B']):,})")


def pair_query(search: str | None, a: str | None, b: str | None) -> str:
    """The URL query with ``a`` and ``b`` set (other keys kept)."""
    from callbacks.shell import parse_query

    params = {k: v for k, v in parse_query(search).items() if k not in ("a", "b")}
    if a:
        params["a"] = a
    if b:
        params["b"] = b
    return "?" + urlencode(params) if params else ""


def write_url(a, b, search):
    new = pair_query(search, a, b)
    return no_update if new == (search or "") else new


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _export(n_clicks, a, b, *, table: str, what: str):
    """A CSV download of one of the comparison's tables (``matches`` or ``terms``)."""
    if not n_clicks:
        raise PreventUpdate
    try:
        cmp = compare_analyses(a, b)
    except FeatureLensError:
        raise PreventUpdate from None
    return dcc.send_data_frame(getattr(cmp, table).to_csv, f"compare-{_safe(a)}-vs-{_safe(b)}-{what}.csv",
                               index=False)


def export_matches(n_clicks, a, b):
    """CSV of the matched feature pairs (one row per pair)."""
    return _export(n_clicks, a, b, table="matches", what="matches")


def export_terms(n_clicks, a, b):
    """CSV of every concept with its feature counts in A and B and where it occurs."""
    return _export(n_clicks, a, b, table="terms", what="concepts")


callback(Output(ids.COMPARE_ALERT, "children"), Output(ids.COMPARE_RESULTS, "style"),
         Output(ids.COMPARE_SUMMARY, "children"), Output(ids.COMPARE_MATCHES, "rowData"),
         Output(ids.COMPARE_SCATTER, "figure"), Output(ids.COMPARE_TERMS_SHARED, "rowData"),
         Output(ids.COMPARE_TERMS_ONLY_A, "rowData"), Output(ids.COMPARE_TERMS_ONLY_B, "rowData"),
         Output(ids.COMPARE_TAB_BOTH, "label"), Output(ids.COMPARE_TAB_ONLY_A, "label"),
         Output(ids.COMPARE_TAB_ONLY_B, "label"),
         Input(ids.COMPARE_A, "value"), Input(ids.COMPARE_B, "value"))(show_comparison)
callback(Output(ids.URL, "search", allow_duplicate=True), Input(ids.COMPARE_A, "value"),
         Input(ids.COMPARE_B, "value"), State(ids.URL, "search"), prevent_initial_call=True)(write_url)
callback(Output(ids.COMPARE_DOWNLOAD, "data"), Input(ids.COMPARE_EXPORT_MATCHES, "n_clicks"),
         State(ids.COMPARE_A, "value"), State(ids.COMPARE_B, "value"), prevent_initial_call=True)(export_matches)
callback(Output(ids.COMPARE_DOWNLOAD, "data", allow_duplicate=True), Input(ids.COMPARE_EXPORT_TERMS, "n_clicks"),
         State(ids.COMPARE_A, "value"), State(ids.COMPARE_B, "value"), prevent_initial_call=True)(export_terms)
