"""`featurelens de`: one feature's full differential-expression table (high vs low cells)."""
from __future__ import annotations

import sys

HELP = "Write one feature's full differential-expression table (high vs low cells)."


def configure(parser) -> None:
    parser.add_argument("analysis", help="analysis folder")
    parser.add_argument("--feature", type=int, required=True)
    parser.add_argument("--out", help="CSV file (default: print the top genes)")
    parser.add_argument("--cells", metavar="CSV", help="also write the high and low cell IDs to this CSV")
    parser.add_argument("--method", choices=["calibrated", "paper"], default="calibrated",
                        help="calibrated (default: log-normalised, moderated t, detection filter) or paper (Welch on raw values)")
    parser.add_argument("--expression", choices=["auto", "predicted", "observed"], default="auto")
    parser.add_argument("--percentile", type=float, default=99.0)
    parser.add_argument("--n-low", type=int, default=1000)


def run(args) -> int:
    from core.base import io
    from core.store.analysis import Analysis
    from core.annotate.single import feature_de

    analysis = Analysis.open(args.analysis)
    table, cells = feature_de(analysis, args.feature, method=args.method, expression=args.expression, percentile=args.percentile,
                              n_low=args.n_low)
    if args.out:
        with io.atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
        print(f"wrote {args.out} ({len(table)} genes, {int(table['significant'].sum())} significant)")
    else:
        top = table.sort_values("q").head(25)
        top.to_string(sys.stdout, index=False, float_format=lambda x: f"{x:.3g}")
        print()
    if args.cells:
        with io.atomic_path(args.cells) as tmp:
            cells.to_csv(tmp, index=False)
        print(f"wrote {args.cells} ({(cells['group'] == 'high').sum()} high, {(cells['group'] == 'low').sum()} low)")
    return 0
