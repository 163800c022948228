"""`featurelens compare`: compare the features and concepts of two analyses."""
from __future__ import annotations

from ._pending import not_available

HELP = "Compare the features and concepts of two analyses. [not available yet]"


def configure(parser) -> None:
    parser.add_argument("a", help="first analysis folder")
    parser.add_argument("b", help="second analysis folder")


run = not_available("compare", "the annotation issue (#5)")
