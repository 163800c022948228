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

experiments (docs/steering.md, "Steering experiments"):
  featurelens steer analyses/bm --feature 2306 --cells "cell_type=MEP" --sweep 0.5,1,2,4 --controls 2 --out sweep
  featurelens steer analyses/bm --cells "cell_type=MEP" --toward Erythroblast          # rank, then steer the best
  featurelens steer analyses/bm --cells "cell_type=MEP" --toward Erythroblast --sweep 0.5,1,2,4
"""


def configure(parser) -> None:
    from core.steer.cells import SELECTION_HELP
    from core.steer.targets import TARGET_HELP

    parser.add_argument("analysis", help="analysis folder (after `featurelens train`, with a model decoder)")
    parser.add_argument("--feature", help="feature id(s), comma-separated (with --toward: the candidates; "
                                           "default every live feature)")
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
    parser.add_argument("--sweep", metavar="S1,S2,...",
                        help="dose–response experiment: steer the feature to each multiple of its maximum "
                             "(e.g. 0.5,1,2,4; off is always added), with matched controls; stored as one run group")
    parser.add_argument("--controls", metavar="N",
                        help="control runs of each kind alongside a sweep: random similar-frequency features and "
                             "random embedding directions with the same shift (default 1; 0 = none)")
    parser.add_argument("--null-draws", metavar="N",
                        help="random similar-frequency features and random directions (each) every term is judged "
                             "against (default 50; the smallest p is 1/(N+1))")
    parser.add_argument("--terms", metavar="ID,...",
                        help="the hypotheses to judge (term ids; down:ID for a fall); default: the feature's "
                             "reported annotation terms")
    parser.add_argument("--seed", metavar="N", help="seed of the controls' draws (default: the analysis seed)")
    parser.add_argument("--toward", metavar="TYPE",
                        help="rank the features whose steering (to --target) moves the cells toward cell type "
                             "TYPE's centroid, then steer the best one (with --sweep: run the experiment on it)")
    parser.add_argument("--scvi-model", metavar="DIR",
                        help="use this saved scvi-tools model (model.save(DIR)) as the analysis's decoder from "
                             "now on (checked against the analysis's embedding and genes; needs featurelens[scvi])")
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


def _count(text, name: str, *, default: int) -> int:
    from core.base.errors import InputError

    if text is None:
        return default
    try:
        v = int(str(text).strip())
    except ValueError:
        v = -1
    if v < 0:
        raise InputError(f"--{name} must be a whole number ≥ 0, got {text!r}", fix=f"e.g. --{name} 2")
    return v


def experiment_from_args(args, *, feature: int, seed: int):
    """The :class:`~core.steer.experiment.SteerExperiment` of ``--sweep`` / ``--controls`` / ``--seed``."""
    from core.steer import SteerExperiment, parse_strengths

    strengths = parse_strengths(args.sweep) if args.sweep is not None else _single_strength(args.target)
    return SteerExperiment(feature=feature, cells=args.cells, strengths=strengths,
                           controls=_count(args.controls, "controls", default=1),
                           null_draws=_count(args.null_draws, "null-draws", default=50),
                           terms=args.terms or (),
                           seed=_count(args.seed, "seed", default=seed), config=config_from_args(args))


def _single_strength(target: str) -> tuple[float, ...]:
    """--controls without --sweep: the strength of --target (max or xN)."""
    from core.base.errors import InputError
    from core.steer import parse_target

    t = parse_target(target)
    if t.kind != "max":
        raise InputError(f"--controls needs the strength as a multiple of the maximum; --target {target!r} is not",
                         fix="use --target max or xN, or give --sweep 0.5,1,2,4")
    return (t.factor,)


def write_experiment(result, out, *, fmt: str = "csv") -> list[str]:
    """Write an experiment's tables into ``out`` (conditions, terms, verdicts, summary.json) and each
    run's tables (as :func:`write_tables`) into ``out/runs/<run>/``; returns the top-level names."""
    from core.base import io

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in (("conditions", result.conditions), ("terms", result.terms), ("verdicts", result.verdicts)):
        path = out / f"{name}.{fmt}"
        with io.atomic_path(path) as tmp:
            df.to_csv(tmp, index=False) if fmt == "csv" else df.to_parquet(tmp, index=False)
        written.append(path.name)
    for label, res in result.runs.items():
        write_tables(res, out / "runs" / label, fmt=fmt)
    io.write_json(out / "summary.json", {**result.summary(), "experiment": result.experiment.to_dict()})
    return [*written, "summary.json", "runs/"]


def print_experiment(result) -> None:
    import pandas as pd

    from core.steer.experiment import VERDICT_NOTE

    exp = result.experiment
    print(f"experiment {result.experiment_id}: feature {exp.feature} in {result.info['cells']} "
          f"({result.info['n_cells']:,} cells); strengths {', '.join(f'{s:g}×' for s in exp.strengths)} of its maximum")
    print("  run                      strength  genes up  down  terms up")
    for r in result.conditions.itertuples():
        print(f"  {r.run:<24} {r.strength:>7g}× {r.n_up:>9,} {r.n_down:>5,} {r.n_terms_up:>9,}")
    v = result.verdicts
    if not len(v):
        print("no hypothesis and no enriched term at the reference strength, so nothing to judge")
        return
    k = int(result.info.get("null_directions", 0))
    hyp, other = v[v["family"] == "hypothesis"], v[v["family"] != "hypothesis"]
    print(f"verdicts at {exp.reference:g}× against {len(result.info.get('null_features', []))} random features and "
          f"{k} random directions on {result.info.get('null_cells', 0)} cells (specific: q < {exp.term_q:g} against "
          f"both): {int((hyp['verdict'] == 'specific').sum())} of {len(hyp)} hypotheses, "
          f"{int((other['verdict'] == 'specific').sum())} of {len(other)} other enriched terms")
    print(f"note: {VERDICT_NOTE}")
    if result.info.get("verdict_limit"):
        print(f"warning: {result.info['verdict_limit']}")
    for r in pd.concat([hyp, other.head(max(0, 8 - len(hyp)))]).itertuples():
        print(f"  {r.family[:4]} {r.direction:<4} {r.term_id} {r.term_name}: effect {r.effect:+.3f} "
              f"(most extreme draw {r.null_feature_max:+.3f} feature / {r.null_direction_max:+.3f} direction; "
              f"p {r.p_feature:.2g} / {r.p_direction:.2g}) — {r.verdict}")
    at_min = other[(other["p_feature"] <= 1.0 / (k + 1)) & (other["p_direction"] <= 1.0 / (k + 1))] if k else other[:0]
    if len(at_min):
        print(f"  {len(at_min)} other terms beat every draw (p = 1/{k + 1}); to judge them, rerun with more "
              f"--null-draws (BH across {2 * result.info.get('concept_terms_tested', 0):,} tests)")


def _run_toward(args, analysis, progress, *, run_best: bool):
    """Rank the features (printing the top 5); with ``run_best`` also steer and store the best one.
    Returns ``(ranking, best feature, its run or None)``."""
    from core.base.errors import InputError
    from core.steer import rank_toward, steer_toward

    feats = _features(args.feature) if args.feature else None
    config = config_from_args(args)
    if run_best:
        t = steer_toward(analysis, cells=args.cells, toward=args.toward, config=config, features=feats,
                         progress=progress)
        ranking, feature, result = t.ranking, t.feature, t.result
    else:
        ranking = rank_toward(analysis, cells=args.cells, toward=args.toward, config=config, features=feats)
        if not ranking["change"].iloc[0] < 0:
            raise InputError(f"no feature moves these cells toward {args.toward!r} when steered to {args.target}",
                             fix="try a stronger target (e.g. --target x2) or other cells")
        feature, result = int(ranking["feature"].iloc[0]), None
    print(f"features that move {args.cells} toward {args.toward} (steered to {args.target}):")
    for r in ranking.head(5).itertuples():
        near = "" if r.nearest_target_after != r.nearest_target_after else \
            f", nearest {args.toward}: {r.nearest_target_before:.0%} → {r.nearest_target_after:.0%}"
        print(f"  {r.rank}. feature {r.feature}: mean distance {r.mean_distance_before:.3g} → "
              f"{r.mean_distance_after:.3g} ({r.progress:+.0%} of the way{near})")
    return ranking, feature, result


def run(args) -> int:
    from pathlib import Path

    from core.base.errors import InputError
    from core.store.analysis import Analysis
    from core.base.progress import ProgressBar
    from core.steer import run_experiment, save_experiment, steer_into_analysis

    analysis = Analysis.open(args.analysis)
    if args.scvi_model:
        from core.cli.annotate import use_scvi_model

        use_scvi_model(analysis, args.scvi_model)
    if args.feature is None and args.toward is None:
        raise InputError("no feature to steer", fix="give --feature ID, or --toward TYPE to rank the features")
    experiment = args.sweep is not None or args.controls is not None
    if experiment:  # refuse bad options before any work
        experiment_from_args(args, feature=0, seed=analysis.seed)
    out = Path(args.out) if args.out else None
    if args.toward is not None:
        ranking, feature, result = _run_toward(args, analysis, ProgressBar("steer"), run_best=not experiment)
        if out:
            from core.base import io

            out.mkdir(parents=True, exist_ok=True)
            with io.atomic_path(out / f"toward.{args.format}") as tmp:
                ranking.to_csv(tmp, index=False) if args.format == "csv" else ranking.to_parquet(tmp, index=False)
        if result is not None:
            print_summary(result)
            print(f"stored as run {result.run_id} in {analysis.path}/steering/{result.run_id}/")
            if out:
                files = write_tables(result, out, fmt=args.format)
                print(f"wrote {args.out}/: toward.{args.format}, {', '.join(files)}")
            return 0
    elif experiment:
        feats = _features(args.feature)
        if len(feats) != 1:
            raise InputError(f"a sweep steers one feature, got {len(feats)}", fix="give one --feature")
        feature = feats[0]
    if experiment:
        exp = experiment_from_args(args, feature=feature, seed=analysis.seed)
        result = run_experiment(analysis, exp, progress=ProgressBar("sweep"))
        save_experiment(analysis, result)
        print_experiment(result)
        print(f"stored as experiment {result.experiment_id} in {analysis.path}/steer-experiments/{result.experiment_id}/")
        if out:
            files = write_experiment(result, out, fmt=args.format)
            print(f"wrote {args.out}/: {', '.join(files)}")
        return 0
    result = steer_into_analysis(analysis, request_from_args(args), progress=ProgressBar("steer"))
    run_id = result.run_id
    print_summary(result)
    print(f"stored as run {run_id} in {analysis.path}/steering/{run_id}/")
    if args.out:
        files = write_tables(result, Path(args.out), fmt=args.format)
        print(f"wrote {args.out}/: {', '.join(files)}")
    return 0
