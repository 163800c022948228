"""Callbacks of the Steering page."""
from __future__ import annotations
