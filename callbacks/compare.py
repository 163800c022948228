"""Callbacks of the Compare page."""
from __future__ import annotations
