"""The ``featurelens`` command line: ``main`` (``core.cli.main``) and one module per subcommand."""
from core.cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
