"""`featurelens validate`: check a dataset and print what FeatureLens sees in it."""
from __future__ import annotations

HELP = "Check a dataset (.h5ad or embedding file) and report problems with their fixes."


def configure(parser) -> None:
    parser.add_argument("data", help=".h5ad, or an embedding .npy/.csv/.pt")
    parser.add_argument("--embedding", help=".obsm key of the embedding to check")
    parser.add_argument("--cell-type", help=".obs column with cell-type labels (default: auto-detect)")
    parser.add_argument("--counts-layer", help="layer holding raw counts (default: 'counts' if present, else .X)")
    parser.add_argument("--obs", help="cell metadata CSV for an embedding file")


def run(args) -> int:
    from core.data.load import load_dataset

    ds = load_dataset(args.data, embedding=args.embedding, cell_type=args.cell_type,
                      counts_layer=args.counts_layer, obs=args.obs)
    for line in ds.report.lines():
        print(line)
    print("OK: the dataset can be used" + ("" if not ds.report.warnings else f" ({len(ds.report.warnings)} warnings)"))
    return 0
