"""`featurelens export`: export an analysis's tables and figures (CSV/Parquet/PNG) or the analysis itself."""
from __future__ import annotations

from ._pending import not_available

HELP = "Export an analysis's tables and figures (CSV/Parquet/PNG) or the analysis itself. [not available yet]"


def configure(parser) -> None:
    parser.add_argument("analysis", help="analysis folder")
    parser.add_argument("--out", required=True, help="output folder or .zip")


run = not_available("export", "the app issue (#8)")
