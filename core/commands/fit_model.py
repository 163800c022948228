"""`featurelens fit-model`: fit the built-in expression model (embedding + decoder) to a count matrix."""
from __future__ import annotations

from ._pending import not_available

HELP = "Fit the built-in expression model (embedding + decoder) to a count matrix. [not available yet]"


def configure(parser) -> None:
    parser.add_argument("data", help="AnnData .h5ad with raw counts")
    parser.add_argument("--latent", type=int, default=20, help="latent dimension (default 20)")
    parser.add_argument("--batch-key", help=".obs column with the batch covariate")
    parser.add_argument("--epochs", type=int, help="maximum epochs (early stopping on held-out likelihood)")
    parser.add_argument("--key", default="X_featurelens", help=".obsm key to write the embedding to")
    parser.add_argument("--seed", type=int, default=0)


run = not_available("fit-model", "the expression-model issue (#4)")
