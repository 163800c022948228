"""Shared helpers for configuration dataclasses (SAE, training, expression model)."""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from core.base.errors import InputError

__all__ = ["config_from_dict"]


def config_from_dict(cls, d: dict[str, Any], *, what: str):
    """``cls(**d)``, refusing keys ``cls`` does not know (a file from a newer FeatureLens)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(f"unknown {what} settings: {', '.join(unknown)}",
                         fix="it was saved by a newer FeatureLens; upgrade FeatureLens")
    return cls(**d)
