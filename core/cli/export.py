"""`featurelens export`: an analysis's tables (CSV/Parquet) into a folder, or the whole analysis as a .zip."""
from __future__ import annotations

HELP = "Export an analysis: its tables (CSV/Parquet), the whole analysis as a .zip, or into a copy of its AnnData."
DESCRIPTION = """Export an analysis to share it.

  featurelens export analyses/demo --out demo-tables            # every table as CSV (+ the JSON summaries)
  featurelens export analyses/demo --out demo-tables --format parquet
  featurelens export analyses/demo --out demo.zip               # the whole analysis, to unzip and open elsewhere
  featurelens export analyses/demo --h5ad demo.h5ad --top 10    # a copy of the AnnData with the features
  featurelens export analyses/demo --h5ad demo.h5ad --obs-features 12,40

--h5ad writes a copy of the analysis's AnnData with obsm['X_sae'] (every feature's activations,
sparse), obs['featurelens_<id>'] for the chosen features, varm['sae_decoder'] (their directions
in gene space, when the model has a decoder) and uns['featurelens'] (features, reported concepts,
settings), for sc.pl.umap(adata, color="featurelens_12") or cellxgene.

Exports never overwrite: --out must not exist yet."""


def configure(parser) -> None:
    parser.add_argument("analysis", help="analysis folder")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="new output folder (tables) or FILE.zip (the whole analysis)")
    where.add_argument("--h5ad", metavar="OUT.h5ad", help="new .h5ad: a copy of the analysis's AnnData with its features")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="table format (default csv)")
    parser.add_argument("--obs-features", metavar="ID,ID,...", help="--h5ad: features to add as .obs columns")
    parser.add_argument("--top", type=int, default=0, metavar="N",
                        help="--h5ad: also the N best features (most reported concepts, then most frequent)")
    parser.add_argument("--no-directions", action="store_true",
                        help="--h5ad: leave out varm['sae_decoder'] (it decodes each chosen feature)")


def run(args) -> int:
    from core.store.analysis import Analysis
    from core.store.export import export_archive, export_tables

    analysis = Analysis.open(args.analysis)
    if args.h5ad:
        return _h5ad(args, analysis)
    if str(args.out).endswith(".zip"):
        out = export_archive(analysis, args.out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): the whole analysis; unzip it and open the folder")
        return 0
    files = export_tables(analysis, args.out, fmt=args.format)
    print(f"wrote {len(files)} files into {args.out}:")
    for f in files:
        print(f"  {f}")
    return 0


def _h5ad(args, analysis) -> int:
    from core.base.errors import InputError
    from core.steer.directions import export_h5ad

    text = args.obs_features or ""
    try:
        feats = [int(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise InputError(f"--obs-features must be integer ids, comma-separated (got {text!r})",
                         fix="e.g. --obs-features 12,40") from None
    out = export_h5ad(analysis, args.h5ad, features=feats, top=args.top, directions=not args.no_directions)
    import anndata as ad

    written = ad.read_h5ad(out, backed="r")
    try:
        cols = [c for c in written.obs.columns if c.startswith("featurelens_")]
        varm = "sae_decoder" in written.varm
    finally:
        written.file.close()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): obsm['X_sae'], uns['featurelens']"
          + (f", obs {', '.join(cols)}" if cols else "") + (", varm['sae_decoder']" if varm else ""))
    return 0
