"""`featurelens bench`: run the benchmark suite and print medians."""
from __future__ import annotations

from ._pending import not_available

HELP = "Run the benchmark suite and print medians. [not available yet]"


def configure(parser) -> None:
    parser.add_argument("which", nargs="?", default="all", help="all | annotation | training | steering | latency | planted")


run = not_available("bench", "the benchmark issue (#9)")
