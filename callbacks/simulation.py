"""Callbacks of the Simulation lab page."""
from __future__ import annotations
