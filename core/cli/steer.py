"""`featurelens steer`: steer a feature in chosen cells, re-decode, and report what changes."""
from __future__ import annotations

HELP = "Steer a feature in chosen cells, re-decode, and report what changes."

DESCRIPTION = """Steer SAE features in chosen cells (docs/method.md §6): set each feature to a target,
decode the steered embedding with the SAE and the expression model's decoder (× library size),
and compare steered with normal expression cell by cell (paired DE per gene, BH), then enrich the
up- and down-regulated genes with GO terms and report how the cells moved between cell types.

The run is stored in the analysis (steering/<run id>/) so the app can reopen it; --out also
writes the tables as CSV (or Parquet).

examples:
  featurelens steer analyses/bm --feature 2306 --cells "cell_type=Proerythroblast"
  featurelens steer analyses/bm --feature 2306 --cells "cell_type=HSC,NK" --target x2 --out steer-2306
  featurelens steer analyses/bm --feature 12,40 --cells all --target max,off
  featurelens steer analyses/bm --feature 12 --cells "cell_type=B cell" --target "mean:B cellx1.5"
"""


def configure(parser) -> None:
    from core.steer.cells import SELECTION_HELP
    from core.steer.targets import TARGET_HELP

    parser.add_argument("analysis", help="analysis folder (after `featurelens train`, with a model decoder)")
    parser.add_argument("--feature", required=True, help="feature id(s), comma-separated")
    parser.add_argument("--cells", required=True, help=f"which cells: {SELECTION_HELP}")
    parser.add_argument("--target", default="max",
                        help=f"{TARGET_HELP}; one for all features or one per feature, comma-separated "
                             "(default max)")
    parser.add_argument("--no-error-term", action="store_true",
                        help="decode the SAE reconstruction of the steered latents, as the paper (default: add "
                             "each cell's reconstruction error back, so only the steered part changes)")
    parser.add_argument("--test", choices=["paired-log", "nb-glm"], default="paired-log",
                        help="paired t-test on log expression (default) or the paper's NB GLM (built-in model)")
    parser.add_argument("--alpha", type=float, default=0.05, help="BH q-value threshold (0.05)")
    parser.add_argument("--min-log2fc", type=float, default=1.0, help="minimum |log2 fold change| (1.0)")
    parser.add_argument("--concepts", default="go-bp",
                        help="comma-separated: go-bp, go-mf, go-cc (default go-bp; '' for none)")
    parser.add_argument("--gmt", action="append", default=[], metavar="FILE", help="extra gene-set file (repeatable)")
    parser.add_argument("--max-cells", type=int, default=5000,
                        help="subsample larger selections to this many cells (5000; 0 = no limit)")
    parser.add_argument("--save-expression", action="store_true",
                        help="also store each cell's normal and steered expected expression with the run "
                             "(cells × genes × 2 float32: 107 MB for 1,000 cells × 13,431 genes)")
    parser.add_argument("--out", help="also write the tables into this folder")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv", help="table format for --out (csv)")


def config_from_args(args):
    from core.steer import SteerConfig

    targets = [t.strip() for t in args.target.split(",")] if "mean:" not in args.target else [args.target.strip()]
    return SteerConfig(target=tuple(targets) if len(targets) > 1 else targets[0], error_term=not args.no_error_term,
                       test=args.test, alpha=args.alpha, min_abs_log2fc=args.min_log2fc,
                       databases=tuple(c.strip() for c in args.concepts.split(",") if c.strip()),
                       gmt=tuple(args.gmt), max_cells=args.max_cells or None,
                       save_expression=args.save_expression)


def request_from_args(args):
    """The :class:`~core.steer.request.SteerRequest` of the command-line options."""
    from core.steer import SteerRequest

    config = config_from_args(args)
    return SteerRequest(features=tuple(_features(args.feature)), cells=args.cells, config=config)


def _features(text: str) -> list[int]:
    from core.base.errors import InputError

    try:
        return [int(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise InputError(f"--feature must be integer ids, comma-separated (got {text!r})", fix="e.g. --feature 12,40") \
            from None


def write_tables(result, out, *, fmt: str = "csv") -> list[str]:
    """Write the run's tables into folder ``out`` (atomically, file by file); returns the file names."""
    import numpy as np
    import pandas as pd

    from core.base import io

    out.mkdir(parents=True, exist_ok=True)
    d = result.latent_before.shape[1]
    latent = pd.DataFrame({"cell": result.cell_names, "cell_index": result.cells})
    for j in range(d):
        latent[f"before_{j}"] = result.latent_before[:, j]
    for j in range(d):
        latent[f"after_{j}"] = result.latent_after[:, j]
    for j, f in enumerate(result.features):
        latent[f"activation[{f}]"] = result.activations_before[:, j]
    tables = {"de": result.de, "enrichment_up": result.enrichment_up, "enrichment_down": result.enrichment_down,
              "centroid_shift": result.centroid_shift, "latent": latent}
    written = []
    for name, df in tables.items():
        path = out / f"{name}.{fmt}"
        with io.atomic_path(path) as tmp:
            if fmt == "csv":
                df.to_csv(tmp, index=False)
            else:
                df.to_parquet(tmp, index=False)
        written.append(path.name)
    io.write_json(out / "summary.json", {**result.summary(), "config": result.config.to_dict(),
                                         "targets": [float(np.float32(t)) for t in result.targets]})
    written.append("summary.json")
    return written


def print_summary(result) -> None:
    s = result.summary()
    feats = ", ".join(f"{f} → {label} ({t:.4g})" for f, label, t in zip(s["features"], s["target_labels"], s["targets"]))
    print(f"steered: feature {feats}")
    print(f"cells: {s['cells']} — {s['n_cells']:,} cells"
          + (f" (subsampled from {s['n_selected']:,})" if s["n_selected"] != s["n_cells"] else "")
          + f"; mean activation before: {', '.join(f'{v:.3g}' for v in s['mean_activation_before'])}")
    print(f"decoding: {'with' if s['error_term'] else 'without'} the SAE error term; "
          f"mean latent shift {s['mean_latent_shift']:.3g}")
    print(f"genes ({s['test']}, q < {result.config.alpha:g}, |log2fc| ≥ {result.config.min_abs_log2fc:g}): "
          f"{s['n_up']:,} up, {s['n_down']:,} down of {s['n_genes']:,}")
    if not s["n_up"] and not s["n_down"]:
        print(f"  no gene changed {2 ** result.config.min_abs_log2fc:.3g}-fold or more: lower --min-log2fc or steer "
              "harder (e.g. --target x2); the Mann–Whitney terms below use every gene's fold change")
        from core.views.steering import largest_changes

        top = largest_changes(result.de, n=5)
        for direction in ("up", "down"):
            rows = top[top["direction"] == direction]
            if len(rows):
                print(f"  largest {direction:<4}  " + ", ".join(
                    f"{r.gene} ×{2 ** r.log2fc:.3g} (q {r.qvalue:.2g})" for r in rows.itertuples()))
    if s["top_up_genes"]:
        print(f"  top up:   {', '.join(s['top_up_genes'])}")
    if s["top_down_genes"]:
        print(f"  top down: {', '.join(s['top_down_genes'])}")
    for label, table in (("up", result.enrichment_up), ("down", result.enrichment_down)):
        if len(table):
            print(f"terms of the {label}-regulated genes ({len(table)}):")
            for _, r in table.head(5).iterrows():
                print(f"  {r['term_id']} {r['term_name']}: {int(r['hits'])}/{int(r['n_term_genes'])} genes, "
                      f"binomial p {r['binom_p']:.2g}, MWU p {r['mwu_p']:.2g}")
    if "moves" in s:
        moves = ", ".join(f"{k}: {v}" for k, v in list(s["moves"].items())[:5]) or "none"
        print(f"nearest cell type changed for {s['cells_moved_type']:,} cells ({moves}); "
              f"closest approach: {s['closest_approach']}")


def run(args) -> int:
    from pathlib import Path

    from core.store.analysis import Analysis
    from core.base.progress import ProgressBar
    from core.steer import steer_into_analysis

    analysis = Analysis.open(args.analysis)
    result = steer_into_analysis(analysis, request_from_args(args), progress=ProgressBar("steer"))
    run_id = result.run_id
    print_summary(result)
    print(f"stored as run {run_id} in {analysis.path}/steering/{run_id}/")
    if args.out:
        files = write_tables(result, Path(args.out), fmt=args.format)
        print(f"wrote {args.out}/: {', '.join(files)}")
    return 0
