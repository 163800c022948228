"""The ``featurelens`` command line: one subcommand per module of :mod:`core.cli`.

Each command module exposes ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``.
Errors meant for the user (:class:`~core.base.errors.FeatureLensError`) print one clear message and
exit with code 2; nothing prints a traceback for bad input.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from core.base.errors import FeatureLensError

__all__ = ["main", "build_parser", "COMMANDS"]

COMMANDS = (
    "demo", "serve", "validate", "fit-model", "train", "annotate", "de", "steer",
    "compare", "trajectories", "simulate", "export", "bench", "worker",
)


def _module(name: str):
    return importlib.import_module(f"core.cli.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featurelens",
        description="Train, annotate, explore and steer sparse-autoencoder features of single-cell models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        mod = _module(name)
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    return parser


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("featurelens")
    except metadata.PackageNotFoundError:
        return "dev"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except FeatureLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file the command reads or writes: missing, unreadable, disk full
        print(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; results written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
