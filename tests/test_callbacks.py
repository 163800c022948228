"""Callbacks as plain functions (no browser)."""
from __future__ import annotations

import pytest
from dash import html

import callbacks.shell as cb
from components import ids


def _ids(component) -> set:
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
    assert page_id in _ids(cb.render_page(path))


def test_show_source_error_is_an_alert():
    card, stored = cb.show_source("file:../../etc/passwd")
    text = str(card)
    assert "outside the allowed folders" in text and "danger" in text
    assert stored == "file:../../etc/passwd"


def test_show_source_summary():
    card, stored = cb.show_source("shipped:pbmc68k")
    assert "X_pca (50 dimensions)" in str(card) and stored == "shipped:pbmc68k"
    assert isinstance(card, html.Div)
