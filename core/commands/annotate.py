"""`featurelens annotate`: annotate every live feature with GO / gene-set concepts (DE + enrichment)."""
from __future__ import annotations

from ._pending import not_available

HELP = "Annotate every live feature with GO / gene-set concepts (DE + enrichment). [not available yet]"


def configure(parser) -> None:
    parser.add_argument("analysis", help="analysis folder")
    parser.add_argument("--concepts", default="go-bp,go-mf", help="comma-separated concept databases")
    parser.add_argument("--gmt", action="append", default=[], metavar="FILE", help="extra gene-set file (repeatable)")
    parser.add_argument("--expression", choices=["predicted", "observed"], default="predicted")


run = not_available("annotate", "the annotation issue (#5)")
