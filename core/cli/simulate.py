"""`featurelens simulate`: generate a simulated dataset with ground truth, or run the paper's
simulation experiments on one."""
from __future__ import annotations

import argparse
import time

HELP = "Generate a simulated dataset with ground truth, or run the simulation experiments on one."
DESCRIPTION = """Generate a simulated dataset with ground truth (the paper's hierarchical process:
programs X -> X' (batch noise B) -> X'' (cell-type activity A) -> counts Y through M), or run
the paper's simulation experiments on one.

examples:
  featurelens simulate small --out small.h5ad
  featurelens simulate large --out large.h5ad --cells 10000 --genes 20000 --seed 1
  featurelens simulate demo  --out demo.h5ad
  featurelens simulate experiment recovery --data small.h5ad --out results/small
  featurelens simulate experiment all --data large.h5ad --out results/large --quick
  featurelens simulate experiment superposition recovery structure --data large.h5ad --out results/large

experiments: superposition (autoencoders x depth/width, R2 of every variable from the latent),
sweep (SAE architecture x expansion x lr x L1/k), recovery (SAE vs PCA/ICA/SVD), structure
(SAE pseudo-connectivity vs M), all. Each writes CSV tables, summary.json, figures.html and
report.md (the paper's findings, ours beside theirs) into --out."""


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="KIND")
    sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter

    small = sub.add_parser("small", help="the paper's small simulation (3 programs, no noise)", formatter_class=fmt,
                           description="The paper's small simulation: X 3-d Binomial x Poisson activity, no noise, "
                                       "Y = M X''.")
    _out_seed(small)
    small.add_argument("--cells", type=int, help="cells (default 5000)")
    small.add_argument("--genes", type=int, help="genes (default 10)")

    large = sub.add_parser("large", help="realistic size and counts (~20,000 genes)", formatter_class=fmt,
                           description="The large simulation: cell types, batches, negative-binomial counts with "
                                       "realistic sparsity and library sizes.")
    _out_seed(large)
    large.add_argument("--cells", type=int, help="cells (default 10000)")
    large.add_argument("--genes", type=int, help="genes (default 20000)")
    large.add_argument("--programs", type=int, help="programs, the dimension of X (default 50)")
    large.add_argument("--cell-types", type=int, help="cell types (default 10)")
    large.add_argument("--batches", type=int, help="batches (default 4)")
    large.add_argument("--library-size", type=float, help="median expected library size (default 3000)")
    large.add_argument("--dispersion", type=float,
                       help="negative-binomial dispersion (default 2; 0 = Poisson counts)")

    demo = sub.add_parser("demo", help="the simulated haematopoietic demo dataset with GO programs",
                          formatter_class=fmt)
    _out_seed(demo)

    exp = sub.add_parser("experiment", help="run the simulation experiments on a simulated .h5ad",
                         formatter_class=fmt, description=DESCRIPTION)
    exp.add_argument("which", nargs="+", choices=("superposition", "sweep", "recovery", "structure", "all"),
                     help="one or more experiments, or all")
    exp.add_argument("--data", required=True, help="a simulated .h5ad (from `featurelens simulate small|large`)")
    exp.add_argument("--out", required=True, metavar="DIR", help="folder for tables, figures and report.md")
    exp.add_argument("--seed", type=int, default=0, help="seed for every model (default 0)")
    exp.add_argument("--quick", action="store_true", help="smaller grids and fewer epochs")
    exp.add_argument("--epochs", type=int, help="SAE epochs (overrides the experiment's default)")
    exp.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: automatic; 1 on ≤ 2 cores or for small layers)")


def _out_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output .h5ad")
    p.add_argument("--seed", type=int, default=0, help="seed (same seed, same data; default 0)")


def run(args: argparse.Namespace) -> int:
    from core.base.errors import InputError

    if not str(args.out).strip():
        raise InputError("--out is empty", fix="e.g. --out simulated.h5ad")
    if args.kind == "experiment":
        return _run_experiment(args)
    from core.base.progress import ProgressBar

    if not str(args.out).endswith(".h5ad"):
        raise InputError(f"the output must be an .h5ad file (got {args.out})", fix=f"e.g. --out {args.out}.h5ad")
    if args.kind == "demo":
        try:
            from core.demo.data import write_demo_dataset
        except ModuleNotFoundError as exc:
            from core.base.errors import NotAvailableError

            raise NotAvailableError("the simulated demo dataset is not available in this version",
                                    fix="use `featurelens simulate small` or `large`") from exc

        write_demo_dataset(args.out, seed=args.seed, progress=ProgressBar("simulate demo"))
        print(f"wrote {args.out}")
        return 0
    from core.simulate import LargeSimConfig, SmallSimConfig, data_summary, simulate, write_simulation

    t0 = time.monotonic()
    if args.kind == "small":
        opts = {"n_cells": args.cells, "n_genes": args.genes}
        config = SmallSimConfig(**{k: v for k, v in opts.items() if v is not None})
    else:
        opts = {"n_cells": args.cells, "n_genes": args.genes, "n_programs": args.programs,
                "n_cell_types": args.cell_types, "n_batches": args.batches,
                "median_library_size": args.library_size}
        kwargs = {k: v for k, v in opts.items() if v is not None}
        if args.dispersion is not None:
            kwargs["dispersion"] = None if args.dispersion == 0 else args.dispersion
        config = LargeSimConfig(**kwargs)
    adata = simulate(config, seed=args.seed, progress=ProgressBar(f"simulate {args.kind}"))
    write_simulation(adata, args.out)
    d = data_summary(adata)
    print(f"wrote {args.out}: {d['n_cells']:,} cells × {d['n_genes']:,} genes, {d['n_programs']} programs, "
          f"{d['n_cell_types']} cell types, {d['n_batches']} batches; {d['zero_fraction']:.1%} zeros, "
          f"median library size {d['median_library_size']:,.0f} ({time.monotonic() - t0:.1f} s)")
    print("ground truth: .obsm " + ", ".join(sorted(adata.obsm.keys())) + "; .varm sim_M; .uns['simulation']")
    return 0


def _run_experiment(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from core.base.errors import InputError
    from core.base.progress import ProgressBar
    from core.simulate import read_simulation
    from core.simulate.experiments import EXPERIMENTS, quick_configs, run_experiments
    from core.simulate import data_summary
    from core.simulate.report import write_results

    from core.base.threads import set_threads_override

    set_threads_override(args.threads)  # every later automatic choice uses it (core.base.threads)
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be at least 1 (got {args.epochs})")
    adata = read_simulation(args.data)
    which = EXPERIMENTS if "all" in args.which else tuple(dict.fromkeys(args.which))
    configs = quick_configs() if args.quick else {}
    if args.epochs is not None:
        from core.simulate.experiments import RecoveryConfig, StructureConfig, SweepConfig

        sweep = configs.get("sweep", SweepConfig())
        rec = configs.get("recovery", RecoveryConfig())
        st = configs.get("structure", StructureConfig())
        configs = {**configs, "sweep": replace(sweep, epochs=args.epochs), "recovery": replace(rec, epochs=args.epochs),
                   "structure": replace(st, recovery=replace(st.recovery, epochs=args.epochs))}
    t0 = time.monotonic()
    results = run_experiments(adata, which=which, configs=configs, seed=args.seed,
                              progress=ProgressBar(f"experiment {' '.join(which)}"))
    elapsed = {**results.pop("elapsed_s"), "total": round(time.monotonic() - t0, 1)}
    paths = write_results(results, args.out, data=data_summary(adata), seed=args.seed, elapsed_s=elapsed)
    print(f"wrote {len(paths)} files to {args.out} ({elapsed['total']:.1f} s); see {args.out}/report.md")
    from core.simulate.report import findings

    for f in findings(results):
        print(f"  [{f['status']}] {f['finding']}: ours {f['ours']} (paper: {f['paper']})")
    return 0
