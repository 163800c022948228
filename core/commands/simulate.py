"""`featurelens simulate`: generate a simulated dataset with ground truth."""
from __future__ import annotations

from ._pending import not_available

HELP = "Generate a simulated dataset with ground truth. [not available yet]"


def configure(parser) -> None:
    parser.add_argument("kind", choices=["small", "large", "demo"])
    parser.add_argument("--out", required=True, help="output .h5ad")
    parser.add_argument("--seed", type=int, default=0)


run = not_available("simulate", "the simulation issue (#7)")
