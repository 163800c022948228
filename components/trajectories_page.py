"""The Trajectories page: choose an ordered lineage of cell types, list the features whose
activation rises along it, ranked by how far steering each moves the first stage's cells toward
the last stage (docs/app.md, "Trajectories"); click a row for its stage-by-stage plot and a link
to its Explorer card.

The stages default to the URL's ``?lineage=`` or a known lineage whose types the analysis has
(:func:`core.views.trajectories.trajectories_page_data`); "Find features" runs
:func:`core.views.trajectories.find_trajectories` as a background job (:mod:`callbacks.trajectories`).
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from core.views.problem import PageProblem
from core.views.trajectories import TrajectoriesPageData

from . import ids
from .feature_card import grid
from .figures import empty_figure
from .job_panel import JobIds, job_panel
from .shell import PAGE_BY_SLUG

__all__ = ["layout", "FIND", "TABLE_COLUMNS", "lineage_text", "HIDDEN", "SHOWN"]

FIND = JobIds(ids.TRAJ_FIND_JOB)
HIDDEN, SHOWN = {"display": "none"}, {"display": "block"}
_NUM = {"type": "rightAligned", "filter": "agNumberColumnFilter"}
_FMT3 = {"function": "params.value == null ? '–' : d3.format('.3~g')(params.value)"}
TABLE_COLUMNS = [
    {"field": "shift_rank", "headerName": "rank", "width": 90, **_NUM, "sort": "asc",
     "headerTooltip": "shift rank: 1 = steering this feature to its maximum moves the first stage's cells "
                      "furthest toward the last stage's centre",
     "valueFormatter": {"function": "params.value == null ? '–' : params.value"}},
    {"field": "feature", "headerName": "feature", "width": 95, **_NUM},
    {"field": "top_terms", "headerName": "top terms", "flex": 1, "minWidth": 160, "tooltipField": "top_terms",
     "filter": "agTextColumnFilter"},
    {"field": "rise", "headerName": "rise", "width": 80, **_NUM, "valueFormatter": _FMT3,
     "headerTooltip": "(last stage mean − first stage mean) / largest stage mean"},
    {"colId": "last_mean", "headerName": "last stage", "width": 110, **_NUM, "valueFormatter": _FMT3,
     "valueGetter": {"function": "params.data.mean[params.data.mean.length - 1]"},
     "headerTooltip": "mean activation in the last stage's cells"},
    {"field": "shift_progress", "headerName": "toward last", "width": 120, **_NUM,
     "headerTooltip": "moved toward the last stage: how much closer to its centre the steered cells come, as a "
                      "share of their distance before",
     "valueFormatter": {"function": "params.value == null ? '–' : d3.format('.1%')(params.value)"}},
    {"field": "card", "headerName": "open", "width": 100, "cellRenderer": "markdown", "sortable": False,
     "filter": False},
]


def lineage_text(stages) -> str:
    """``"HSC → MPP → MEP"`` for the chosen stages (a hint when fewer than two)."""
    stages = [s for s in stages or [] if s]
    if len(stages) < 2:
        return "Choose at least two stages, first stage first."
    return "Lineage: " + " → ".join(stages)


def _message(problem: PageProblem) -> html.Div:
    page = PAGE_BY_SLUG["trajectories"]
    return html.Div([html.H2(page.title), html.P(page.summary, className="lead"),
                     dbc.Alert([html.Strong(problem.title + " "), problem.text], color=problem.level)],
                    id=ids.TRAJECTORIES_PAGE)


def _controls(data: TrajectoriesPageData) -> dbc.Card:
    return dbc.Card(dbc.CardBody([
        dbc.Label("Stages, in order (first stage first)", html_for=ids.TRAJ_STAGES, className="fw-semibold mb-1"),
        dcc.Dropdown(id=ids.TRAJ_STAGES, options=[{"label": t, "value": t} for t in data.cell_types],
                     value=list(data.lineage), multi=True, placeholder="pick the cell types in lineage order"),
        html.Small(lineage_text(data.lineage), id=ids.TRAJ_ORDER, className="text-muted d-block mt-1"),
        dbc.Switch(id=ids.TRAJ_STRICT, value=False, className="mt-2",
                   label="rise at every step (the paper's rule; by default small dips are allowed)"),
        html.Div(job_panel(FIND, start_label="Find features",
                           help="Lists the rising features, then steers each in the first stage's cells "
                                "(a few seconds)."), className="mt-2"),
    ]), className="mb-3")


def _results() -> html.Div:
    return html.Div([
        html.Div(id=ids.TRAJ_SUMMARY, className="mb-2"),
        dbc.Row([
            dbc.Col(dbc.Card([
                dbc.CardHeader(html.Span("Rising features", className="fw-semibold")),
                dbc.CardBody([html.Small("Click a row for its stage-by-stage plot.", className="text-muted d-block "
                                         "mb-2"), grid(ids.TRAJ_TABLE, TABLE_COLUMNS, height="420px",
                                                       row_id="feature")]),
            ], className="h-100"), lg=8),
            dbc.Col(dbc.Card([
                dbc.CardHeader(html.Span("Stage by stage", className="fw-semibold")),
                dbc.CardBody([
                    dcc.Graph(id=ids.TRAJ_PLOT, figure=empty_figure("Click a feature in the table.", height=340),
                              config={"displaylogo": False}, responsive=True),
                    dcc.Link("", id=ids.TRAJ_CARD_LINK, href="", style=HIDDEN),
                ]),
            ]), lg=4),
        ], className="g-3 mb-3"),
    ], id=ids.TRAJ_RESULTS, style=HIDDEN)


def layout(data: TrajectoriesPageData) -> html.Div:
    """The Trajectories page for ``data`` (:func:`core.views.trajectories.trajectories_page_data`)."""
    if data.problem:
        return _message(data.problem)
    page = PAGE_BY_SLUG["trajectories"]
    return html.Div([
        dcc.Store(id=ids.TRAJ_SOURCE, data=data.source),
        dcc.Store(id=ids.TRAJ_SHOWN),
        html.H2(page.title),
        html.P("Choose the stages of a differentiation lineage. The features whose activation rises along it "
               "are listed and ranked by the paper's rule: steer each to its maximum in the first stage's cells "
               "and see how far they move toward the last stage.", className="lead"),
        _controls(data),
        _results(),
    ], id=ids.TRAJECTORIES_PAGE)
