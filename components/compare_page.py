"""The Compare page (placeholder until it is built)."""
from __future__ import annotations

from dash import html

from .shell import PAGE_BY_SLUG, page_placeholder


def layout(*, source: str | None, query: dict[str, str]) -> html.Div:  # noqa: ARG001
    return page_placeholder(PAGE_BY_SLUG["compare"])
