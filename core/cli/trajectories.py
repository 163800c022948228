"""`featurelens trajectories`: the features that rise along a lineage, ranked by steering."""
from __future__ import annotations

HELP = "List the features that rise along an ordered lineage of cell types, ranked by steering."

DESCRIPTION = """List the SAE features whose activation rises along an ordered lineage of cell types
(docs/method.md §3: higher over the lineage than elsewhere, rising stage by stage, first → last rise
significant), with each stage's mean activation, and rank them by the paper's rule (§6b): steer each
to its maximum in the first stage's cells and measure how far they move toward the last stage's
centre. Without a model decoder the features are listed by rise and the reason is printed.

examples:
  featurelens trajectories analyses/demo --lineage "HSC,MPP,MEP,ProEry,Ery"
  featurelens trajectories analyses/bm --lineage "HSC,MEP,Proerythroblast,Erythroblast" --strict --out ery.tsv
"""


def configure(parser) -> None:
    parser.add_argument("analysis", help="analysis folder (after `featurelens train`, on data with cell types)")
    parser.add_argument("--lineage", required=True, help="cell types in order, first stage first, comma-separated")
    parser.add_argument("--strict", action="store_true",
                        help="rise at every step (the paper's rule; default: small dips are allowed)")
    parser.add_argument("--top", type=int, default=20, help="rows to print (20; the TSV has all)")
    parser.add_argument("--out", help="TSV of every rising feature with its per-stage means and standard errors")


def run(args) -> int:
    import pandas as pd

    from core.base import io
    from core.views.trajectories import find_trajectories, findings_summary

    found = find_trajectories(args.analysis, args.lineage, strict=args.strict)
    print(findings_summary(found))
    if len(found.table):
        cols = ["shift_rank", "feature", "rise", "shift_progress", "top_terms"]
        with pd.option_context("display.width", 160, "display.max_colwidth", 60):
            print(found.table[cols].head(args.top).to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    if args.out:
        with io.atomic_path(args.out) as tmp:
            found.table.to_csv(tmp, sep="\t", index=False)
        print(f"wrote {args.out}")
    return 0
