"""Routing and the source picker."""
from __future__ import annotations

from dash import Input, Output, callback, no_update

from components import data_page, ids, shell
from core.catalog import describe_source, list_sources


def render_page(pathname: str | None):
    slug = (pathname or "/").strip("/").split("/")[0] or shell.DEFAULT_PAGE.slug
    page = shell.PAGE_BY_SLUG.get(slug)
    if page is None:
        return shell.not_found(pathname)
    if page.slug == "data":
        return data_page.layout()
    return shell.page_placeholder(page)


def refresh_options(_n_clicks):
    return [{"label": o["label"], "value": o["value"]} for o in list_sources()]


def show_source(value: str | None):
    if not value:
        return "", no_update
    return shell.source_summary(describe_source(value)), value


callback(Output(ids.PAGE_CONTENT, "children"), Input(ids.URL, "pathname"))(render_page)
callback(Output(ids.PICKER_DROPDOWN, "options"), Input(ids.PICKER_REFRESH, "n_clicks"),
         prevent_initial_call=True)(refresh_options)
callback(Output(ids.PICKER_CARD, "children"), Output(ids.STORE_SOURCE, "data"),
         Input(ids.PICKER_DROPDOWN, "value"))(show_source)
