"""`featurelens export`: an analysis's tables (CSV/Parquet) into a folder, or the whole analysis as a .zip."""
from __future__ import annotations

HELP = "Export an analysis: its tables (CSV/Parquet) into a folder, or the whole analysis as a .zip."
DESCRIPTION = """Export an analysis to share it.

  featurelens export analyses/demo --out demo-tables            # every table as CSV (+ the JSON summaries)
  featurelens export analyses/demo --out demo-tables --format parquet
  featurelens export analyses/demo --out demo.zip               # the whole analysis, to unzip and open elsewhere

Exports never overwrite: --out must not exist yet."""


def configure(parser) -> None:
    parser.add_argument("analysis", help="analysis folder")
    parser.add_argument("--out", required=True, help="new output folder (tables) or FILE.zip (the whole analysis)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="table format (default csv)")


def run(args) -> int:
    from core.store.analysis import Analysis
    from core.store.export import export_archive, export_tables

    analysis = Analysis.open(args.analysis)
    if str(args.out).endswith(".zip"):
        out = export_archive(analysis, args.out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): the whole analysis; unzip it and open the folder")
        return 0
    files = export_tables(analysis, args.out, fmt=args.format)
    print(f"wrote {len(files)} files into {args.out}:")
    for f in files:
        print(f"  {f}")
    return 0
