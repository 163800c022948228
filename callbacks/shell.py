"""Routing and the source picker."""
from __future__ import annotations

from urllib.parse import parse_qsl

from dash import Input, Output, State, callback, no_update

from components import compare_page, data_page, explorer_page, ids, shell, simulation_page, steering_page
from core.catalog import describe_source, list_sources

# slug -> layout(*, source, query): every page module exposes the same signature.
PAGE_LAYOUTS = {
    "data": data_page.layout,
    "explorer": explorer_page.layout,
    "steering": steering_page.layout,
    "compare": compare_page.layout,
    "simulation": simulation_page.layout,
}


def parse_query(search: str | None) -> dict[str, str]:
    """``?a=1&b=x`` -> ``{"a": "1", "b": "x"}`` (last value wins)."""
    return dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=False))


def render_page(pathname: str | None, source: str | None = None, search: str | None = None):
    slug = (pathname or "/").strip("/").split("/")[0] or shell.DEFAULT_PAGE.slug
    page = shell.PAGE_BY_SLUG.get(slug)
    if page is None:
        return shell.not_found(pathname)
    return PAGE_LAYOUTS[page.slug](source=source, query=parse_query(search))


def refresh_options(_n_clicks):
    return [{"label": o["label"], "value": o["value"]} for o in list_sources()]


def show_source(value: str | None):
    if not value:
        return "", no_update
    return shell.source_summary(describe_source(value)), value


callback(Output(ids.PAGE_CONTENT, "children"), Input(ids.URL, "pathname"), Input(ids.STORE_SOURCE, "data"),
         State(ids.URL, "search"))(render_page)
callback(Output(ids.PICKER_DROPDOWN, "options"), Input(ids.PICKER_REFRESH, "n_clicks"),
         prevent_initial_call=True)(refresh_options)
callback(Output(ids.PICKER_CARD, "children"), Output(ids.STORE_SOURCE, "data"),
         Input(ids.PICKER_DROPDOWN, "value"))(show_source)
