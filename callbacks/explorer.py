"""Callbacks of the Explorer page."""
from __future__ import annotations
