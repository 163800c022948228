"""Thin callback wiring: read inputs, make one core call, format outputs.

Modules here register callbacks with ``dash.callback`` when imported; ``app.create_app``
imports them through :func:`register_all`.
"""
from __future__ import annotations


def register_all() -> None:
    from . import compare, data, explorer, shell, simulation, steering, trajectories  # noqa: F401
    from . import jobs_health  # noqa: F401
