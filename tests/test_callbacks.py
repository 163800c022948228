"""Callbacks as plain functions (no browser)."""
from __future__ import annotations

import dash
import pytest
from dash import html

import callbacks.shell as cb
from components import ids


def component_ids(component) -> set:
    """Every string ``id`` in a Dash component tree."""
    found = set()

    def walk(c):
        if hasattr(c, "id") and isinstance(getattr(c, "id", None), str):
            found.add(c.id)
        children = getattr(c, "children", None)
        for ch in children if isinstance(children, (list, tuple)) else [children]:
            if ch is not None and not isinstance(ch, (str, int, float)):
                walk(ch)

    walk(component)
    return found


@pytest.mark.parametrize("path,page_id", [("/", ids.DATA_PAGE), ("/data", ids.DATA_PAGE),
                                          ("/explorer", ids.EXPLORER_PAGE), ("/steering", ids.STEERING_PAGE),
                                          ("/nope", ids.NOT_FOUND_PAGE), (None, ids.DATA_PAGE)])
def test_routing(path, page_id):
    page, rendered = cb.render_page(path)
    assert page_id in component_ids(page)
    assert rendered["page"] == (None if page_id == ids.NOT_FOUND_PAGE else (path or "/data").strip("/") or "data")


def test_show_source_error_is_an_alert():
    card, stored = cb.show_source("file:../../etc/passwd")
    text = str(card)
    assert "outside the allowed folders" in text and "danger" in text
    assert stored == "file:../../etc/passwd"


def test_show_source_summary():
    card, stored = cb.show_source("shipped:pbmc68k")
    assert "X_pca (50 dimensions)" in str(card) and stored == "shipped:pbmc68k"
    assert isinstance(card, html.Div)


def test_render_page_shows_the_url_source_and_skips_a_repeat():
    # opened by URL: the link's source wins over the picker's
    page, rendered = cb.render_page("/explorer", "shipped:pbmc68k", "?source=analysis%3Anope", None, triggered=None)
    assert rendered == {"page": "explorer", "source": "analysis:nope"} and "cannot be opened" in str(page)
    # the picker then follows the URL: same page and source, so nothing is rebuilt
    assert cb.render_page("/explorer", "analysis:nope", "?source=analysis%3Anope", rendered,
                          triggered=ids.STORE_SOURCE) == (dash.no_update, dash.no_update)
    # a source picked by hand rebuilds the page with it
    page, again = cb.render_page("/explorer", "shipped:pbmc68k", "?source=analysis%3Anope", rendered,
                                 triggered=ids.STORE_SOURCE)
    assert again == {"page": "explorer", "source": "shipped:pbmc68k"} and "shows analyses" in str(page)
    # without ?source= the picker's source is used
    assert cb.render_page("/explorer", "shipped:pbmc68k", "", None, triggered=None)[1]["source"] == "shipped:pbmc68k"


def test_sync_source_between_picker_and_url():
    options = [{"label": "A", "value": "analysis:a"}, {"label": "B", "value": "shipped:pbmc68k"}]
    # load with ?source=: the picker follows; the URL is left alone
    assert cb.sync_source("?source=shipped%3Apbmc68k&feature=3", "analysis:a", options,
                          triggered=None) == ("shipped:pbmc68k", dash.no_update)
    # a source that is not in the list does not move the picker
    assert cb.sync_source("?source=analysis%3Azzz", "analysis:a", options, triggered=None) == (dash.no_update,) * 2
    # no ?source= (e.g. navigation by the navbar): nothing changes, the URL stays clean
    assert cb.sync_source("", "analysis:a", options, triggered=ids.URL) == (dash.no_update,) * 2
    # picked by hand: written into the URL, dropping the old view's keys
    assert cb.sync_source("?source=analysis%3Aa&feature=3&q=x", "shipped:pbmc68k", options,
                          triggered=ids.PICKER_DROPDOWN) == (dash.no_update, "?source=shipped%3Apbmc68k")
    assert cb.sync_source("?source=analysis%3Aa", "analysis:a", options,
                          triggered=ids.PICKER_DROPDOWN) == (dash.no_update,) * 2
