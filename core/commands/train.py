"""`featurelens train` (placeholder until the SAE engine lands)."""
from __future__ import annotations

from ._pending import not_available

HELP = "Train a sparse autoencoder on an embedding. [not available yet]"


def configure(parser) -> None:
    parser.add_argument("data")


run = not_available("train", "the SAE issue (#3)")
