"""`featurelens annotate`: annotate every live feature with concepts (DE + enrichment + concept map)."""
from __future__ import annotations

HELP = "Annotate every live feature with GO / gene-set concepts (DE + enrichment + concept map)."


def configure(parser) -> None:
    parser.add_argument("analysis", help="analysis folder (after `featurelens train`)")
    parser.add_argument("--method", choices=["calibrated", "paper"], default="calibrated",
                        help="calibrated (default): FDR-controlled DE on log-normalised expression, up-regulated "
                             "genes, hypergeometric enrichment, most specific terms (docs/method.md); paper: the "
                             "published method, reproduces its numbers")
    parser.add_argument("--concepts", default="go-bp,go-mf",
                        help="comma-separated: go-bp, go-mf, go-cc (default go-bp,go-mf; '' for none)")
    parser.add_argument("--gmt", action="append", default=[], metavar="FILE", help="extra gene-set file (repeatable)")
    parser.add_argument("--expression", choices=["auto", "predicted", "observed"], default="auto",
                        help="predicted (model decoder × library size), observed counts, or auto (predicted "
                             "when the analysis has a decoder)")
    parser.add_argument("--direct-only", action="store_true",
                        help="use direct GO annotations only, as the reference (default: propagated up is_a/part_of)")
    parser.add_argument("--percentile", type=float, default=99.0, help="high cells: above this percentile (99)")
    parser.add_argument("--n-low", type=int, default=1000, help="low cells: at most this many zero cells (1000)")
    parser.add_argument("--min-term-size", type=int, default=10)
    parser.add_argument("--max-term-size", type=int, default=500)
    parser.add_argument("--binom-p", type=float, default=0.01, help="paper method: keep pairs with binomial p below (0.01)")
    parser.add_argument("--mwu-p", type=float, default=0.01, help="paper method: …or Mann–Whitney p below (0.01)")
    parser.add_argument("--fdr", type=float, default=0.05, help="calibrated: FDR for genes and terms (0.05)")
    parser.add_argument("--min-detect", type=float, default=0.1,
                        help="calibrated, observed counts: test genes detected in ≥ this fraction of high or low cells (0.1)")
    parser.add_argument("--min-lfc", type=float, default=0.5,
                        help="calibrated: least |log2 fold change| of a significant gene (0.5)")
    parser.add_argument("--min-effect", type=float, default=None,
                        help="calibrated: least |Cohen's d| of a significant gene (default 0 observed, 0.5 predicted)")
    parser.add_argument("--n-null", type=int, default=100, help="null features of the self-check (100; 0 to skip)")
    parser.add_argument("--force", action="store_true", help="recompute even if cached")
    parser.add_argument("--scvi-model", metavar="DIR",
                        help="use this saved scvi-tools model (model.save(DIR)) as the analysis's decoder from "
                             "now on (checked against the analysis's embedding and genes; needs featurelens[scvi])")


def config_from_args(args):
    from core.annotate.pipeline import AnnotationConfig

    concepts = tuple(c.strip().lower() for c in args.concepts.split(",") if c.strip())
    return AnnotationConfig(method=args.method, fdr=args.fdr, min_detect=args.min_detect, min_lfc=args.min_lfc, min_effect=args.min_effect,
                            n_null=args.n_null, concepts=concepts, gmt=tuple(args.gmt), propagate=not args.direct_only,
                            expression=args.expression, percentile=args.percentile, n_low=args.n_low,
                            min_term_size=args.min_term_size, max_term_size=args.max_term_size,
                            binom_p_max=args.binom_p, mwu_p_max=args.mwu_p)


def use_scvi_model(analysis, model_dir) -> None:
    """``--scvi-model``: record the scvi-tools model as the analysis's decoder (InputError if it does not fit)."""
    from core.model.predict import set_analysis_decoder
    from core.model.scvi import check_scvi_folder

    check_scvi_folder(model_dir)
    decoder = set_analysis_decoder(analysis, model_dir)
    print(f"decoder: the scvi-tools {decoder.describe().get('model', 'model')} in {model_dir}")


def run(args) -> int:
    from core.store.analysis import Analysis
    from core.annotate.pipeline import annotate_analysis
    from core.base.progress import ProgressBar

    analysis = Analysis.open(args.analysis)
    if args.scvi_model:
        use_scvi_model(analysis, args.scvi_model)
    summary = annotate_analysis(analysis, config=config_from_args(args), progress=ProgressBar("annotate"),
                                force=args.force)
    for k, v in summary.items():
        if k != "technical":
            print(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}")
    tech = summary.get("technical")
    if tech is not None:
        tracks = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in tech["tracks"].items()) or "none"
        print(f"technical check: live features that mostly track a technical variable ({tech['rule']}): {tracks}")
    if "null_features_tested" in summary:
        print(f"self-check: null features annotated: {summary['null_features_annotated']} of "
              f"{summary['null_features_tested']} (random cell sets through the same pipeline)")
    print(f"wrote {analysis.path}/annotations.parquet, annotation_groups.parquet, concept_map.parquet"
          + (", confounders.parquet" if tech is not None else ""))
    return 0
