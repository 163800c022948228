"""Routing, the source picker, and the URL's ``?source=``.

The URL carries the view (``/explorer?source=analysis:x&feature=12&q=…``) so that it can be
shared and reloaded: on load the picker takes ``?source=``; picking another source writes it
into the URL (dropping the rest of the old view, which belonged to the old source); pages write
their own keys (see :func:`callbacks.explorer.write_url`).
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from dash import Input, Output, State, callback, ctx, no_update

from components import (compare_page, data_page, explorer_page, ids, shell, simulation_page, steering_page,
                        trajectories_page)
from core.store.catalog import describe_source, list_sources
from core.views.compare import compare_page_data
from core.views.data import data_page_data
from core.views.explorer import explorer_page_data
from core.views.simulation import simulation_page_data
from core.views.steering import steering_page_data
from core.views.trajectories import trajectories_page_data

# slug -> (page_data(source, *, query), layout(data)): core reads what a page shows; the layout draws it.
PAGE_VIEWS = {
    "data": (data_page_data, data_page.layout),
    "explorer": (explorer_page_data, explorer_page.layout),
    "steering": (steering_page_data, steering_page.layout),
    "compare": (compare_page_data, compare_page.layout),
    "trajectories": (trajectories_page_data, trajectories_page.layout),
    "simulation": (simulation_page_data, simulation_page.layout),
}


def page_layout(slug: str, *, source: str | None, query: dict[str, str]):
    """The layout of page ``slug`` for ``source`` and the URL ``query``."""
    page_data, layout = PAGE_VIEWS[slug]
    return layout(page_data(source, query=query))


def parse_query(search: str | None) -> dict[str, str]:
    """``?a=1&b=x`` -> ``{"a": "1", "b": "x"}`` (last value wins)."""
    return dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=False))


def _triggered_id():
    try:
        return ctx.triggered_id
    except Exception:  # noqa: BLE001 - called outside a callback (tests)
        return None


def render_page(pathname: str | None, source: str | None = None, search: str | None = None,
                rendered: dict | None = None, *, triggered=None):
    """``(page, rendered)``: the page at ``pathname`` for the chosen source, and what it shows.

    A page opened by URL (load, link, navigation) shows the URL's ``?source=`` if it names one,
    else the picker's; when only the picker's source changed, the page is rebuilt unless it
    already shows that source (the picker following the URL on load)."""
    triggered = _triggered_id() if triggered is None else triggered
    slug = (pathname or "/").strip("/").split("/")[0] or shell.DEFAULT_PAGE.slug
    page = shell.PAGE_BY_SLUG.get(slug)
    if page is None:
        return shell.not_found(pathname), {"page": None, "source": source}
    query = parse_query(search)
    by_picker = triggered == ids.STORE_SOURCE
    shown = source if by_picker else (query.get("source") or source)
    now = {"page": page.slug, "source": shown}
    if by_picker and rendered == now:
        return no_update, no_update
    return page_layout(page.slug, source=shown, query=query), now


def sync_source(search: str | None, value: str | None, options: list[dict] | None, *, triggered=None):
    """``(picker value, URL search)``: the picker follows ``?source=`` in the URL; a source picked by
    hand goes into the URL. Either side is left alone when it already agrees."""
    triggered = _triggered_id() if triggered is None else triggered
    query = parse_query(search)
    url_source = query.get("source")
    if triggered == ids.PICKER_DROPDOWN:
        if not value or url_source == value:
            return no_update, no_update
        return no_update, "?" + urlencode({"source": value})
    valid = {o.get("value") for o in options or []}
    if url_source and url_source != value and url_source in valid:
        return url_source, no_update
    return no_update, no_update


def refresh_options(_n_clicks):
    return [{"label": o["label"], "value": o["value"]} for o in list_sources()]


def show_source(value: str | None):
    if not value:
        return "", no_update
    return shell.source_summary(describe_source(value)), value


callback(Output(ids.PAGE_CONTENT, "children"), Output(ids.STORE_RENDERED, "data"),
         Input(ids.URL, "pathname"), Input(ids.STORE_SOURCE, "data"),
         State(ids.URL, "search"), State(ids.STORE_RENDERED, "data"))(render_page)
callback(Output(ids.PICKER_DROPDOWN, "value"), Output(ids.URL, "search"),
         Input(ids.URL, "search"), Input(ids.PICKER_DROPDOWN, "value"),
         State(ids.PICKER_DROPDOWN, "options"))(sync_source)
callback(Output(ids.PICKER_DROPDOWN, "options"), Input(ids.PICKER_REFRESH, "n_clicks"),
         prevent_initial_call=True)(refresh_options)
callback(Output(ids.PICKER_CARD, "children"), Output(ids.STORE_SOURCE, "data"),
         Input(ids.PICKER_DROPDOWN, "value"))(show_source)
