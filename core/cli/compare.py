"""`featurelens compare`: match the features of two annotated analyses by their concepts."""
from __future__ import annotations

HELP = "Compare the features and concepts of two annotated analyses."


def configure(parser) -> None:
    parser.add_argument("a", help="first analysis folder")
    parser.add_argument("b", help="second analysis folder")
    parser.add_argument("--out", help="CSV of matched feature pairs")


def run(args) -> int:
    from core.base import io
    from core.store.analysis import Analysis
    from core.annotate.compare import compare_annotations

    a, b = Analysis.open(args.a), Analysis.open(args.b)
    cmp = compare_annotations(a.read_parquet("annotations.parquet"), b.read_parquet("annotations.parquet"))
    for k, v in cmp.summary().items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    print(cmp.matches.head(10).to_string(index=False))
    if args.out:
        with io.atomic_path(args.out) as tmp:
            cmp.matches.to_csv(tmp, index=False)
        print(f"wrote {args.out}")
    return 0
