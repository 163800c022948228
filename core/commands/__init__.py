"""Subcommands of the ``featurelens`` CLI (see core/cli.py)."""
