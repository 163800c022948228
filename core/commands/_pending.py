"""Shared behaviour of subcommands whose capability is not built yet."""
from __future__ import annotations

from ..errors import NotAvailableError


def not_available(command: str, issue: str):
    def run(args) -> int:  # noqa: ARG001
        raise NotAvailableError(
            f"`featurelens {command}` is not available yet in this version ({issue} is still open).",
            fix="see README.md (Status) for what works today",
        )

    return run
