"""`featurelens fit-model`: fit the built-in expression model (embedding + decoder) to a count matrix."""
from __future__ import annotations

HELP = "Fit the built-in expression model (embedding + decoder) to a count matrix."
DESCRIPTION = """\
Fit the built-in expression model (a VAE with a negative-binomial likelihood, as in scVI and
multiDGD) to the raw counts of an AnnData file. Writes the cell embedding into .obsm[KEY] of
the .h5ad (rewritten atomically; or --output-h5ad) and the model (decoder included) to
<data stem>.featurelens-model/ beside the data (or --out). Prints the held-out
log-likelihood and reconstruction correlation next to a per-gene-mean baseline.

Non-integer (normalised) data: pass --likelihood gaussian, or supply raw counts.
"""


def configure(parser) -> None:
    parser.add_argument("data", help="AnnData .h5ad with raw counts (in .X, .layers['counts'] or --counts-layer)")
    parser.add_argument("--latent", type=int, default=20, help="latent dimension (default 20)")
    parser.add_argument("--batch-key", help=".obs column with the batch covariate")
    parser.add_argument("--epochs", type=int,
                        help="maximum epochs (default: about 6,000 optimiser steps, 30-400 epochs; "
                             "early stopping on the validation loss)")
    parser.add_argument("--key", default="X_featurelens", help=".obsm key to write the embedding to")
    parser.add_argument("--seed", type=int, default=0, help="seed (same seed, same data -> identical weights)")
    parser.add_argument("--out", help="model folder (default: <data stem>.featurelens-model beside the data)")
    parser.add_argument("--output-h5ad", help="write the AnnData with the embedding here instead of over DATA")
    parser.add_argument("--likelihood", choices=("nb", "gaussian"), default="nb",
                        help="nb (raw counts, default) or gaussian (normalised data)")
    parser.add_argument("--counts-layer", help="layer with the counts (default: 'counts' if present, else .X)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units per layer (default 128)")
    parser.add_argument("--lr", type=float, default=5e-3, help="learning rate (default 5e-3)")
    parser.add_argument("--batch-size", type=int, default=256, help="cells per minibatch (default 256)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: automatic)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing model folder, output file or .obsm key")


def run(args) -> int:
    from core.model.api import fit_h5ad
    from core.model.config import ModelConfig
    from core.base.progress import ProgressBar

    config = ModelConfig(latent=args.latent, hidden=args.hidden, likelihood=args.likelihood, lr=args.lr,
                         batch_size=args.batch_size, max_epochs=args.epochs, seed=args.seed)
    report = fit_h5ad(args.data, config=config, key=args.key, out=args.out, output_h5ad=args.output_h5ad,
                      counts_layer=args.counts_layer, batch_key=args.batch_key, overwrite=args.overwrite,
                      threads=args.threads, progress=ProgressBar("fit-model"))
    for line in report.lines():
        print(line)
    return 0
