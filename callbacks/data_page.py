"""Callbacks of the Data & training page."""
from __future__ import annotations
