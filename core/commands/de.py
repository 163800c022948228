"""`featurelens de`: write one feature's full differential-expression table (high vs low cells)."""
from __future__ import annotations

from ._pending import not_available

HELP = "Write one feature's full differential-expression table (high vs low cells). [not available yet]"


def configure(parser) -> None:
    parser.add_argument("analysis", help="analysis folder")
    parser.add_argument("--feature", type=int, required=True)
    parser.add_argument("--out", help="CSV file (default: print)")
    parser.add_argument("--cells", action="store_true", help="also write the high and low cell IDs")


run = not_available("de", "the annotation issue (#5)")
