"""`featurelens steer`: steer a feature in chosen cells, re-decode, and report what changes."""
from __future__ import annotations

from ._pending import not_available

HELP = "Steer a feature in chosen cells, re-decode, and report what changes. [not available yet]"


def configure(parser) -> None:
    parser.add_argument("analysis", help="analysis folder")
    parser.add_argument("--feature", required=True, help="feature id(s), comma-separated")
    parser.add_argument("--cells", required=True, help='selection, e.g. "cell_type=Proerythroblast"')
    parser.add_argument("--target", default="max", help="max | x2 | p99 | VALUE")
    parser.add_argument("--no-error-term", action="store_true")
    parser.add_argument("--out", help="output folder")


run = not_available("steer", "the steering issue (#6)")
