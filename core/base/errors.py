"""Errors that carry a message a biologist can act on.

Every bad input raises :class:`InputError` with what is wrong and how to fix it.
The CLI prints it and exits with code 2; the app shows it in an alert.
"""
from __future__ import annotations

__all__ = ["FeatureLensError", "InputError", "NotAvailableError", "SchemaError", "WriteError"]


class FeatureLensError(Exception):
    """Base class of every error FeatureLens raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, *, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  Fix: {self.fix}"


class InputError(FeatureLensError, ValueError):
    """The user's data, path or option is not usable as given."""


class SchemaError(InputError):
    """An analysis folder written by an incompatible (e.g. newer) FeatureLens."""


class WriteError(FeatureLensError, OSError):
    """A file could not be written (disk full, no permission); nothing already there was changed."""


class NotAvailableError(FeatureLensError):
    """A capability that exists in the interface but is not built yet."""
