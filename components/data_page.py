"""The Data & training page (the SAE, model and annotation panels join it in later releases)."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html

from . import ids
from .shell import PAGE_BY_SLUG


def layout(*, source: str | None, query: dict[str, str]) -> html.Div:  # noqa: ARG001
    page = PAGE_BY_SLUG["data"]
    return html.Div([
        html.H2(page.title),
        html.P(page.summary, className="lead"),
        dbc.Alert("Pick a dataset or an analysis above to see what FeatureLens finds in it. "
                  "Training and annotation from this page arrive with the next releases; until then use "
                  "the command line (`featurelens train`, see README).", color="light"),
    ], id=ids.DATA_PAGE)
