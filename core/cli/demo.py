"""`featurelens demo`: build the built-in demo analysis (cached) and serve the app on it
(the same server as `featurelens serve`: :func:`core.cli.serve.serve`)."""
from __future__ import annotations

HELP = "Build the demo analysis (cached after the first run) and serve the app on it."


def configure(parser) -> None:
    from core.demo.build import DEFAULT_DEMO, DEMO_DATASETS
    from core.cli.serve import DEFAULT_THREADS

    parser.add_argument("--dataset", choices=DEMO_DATASETS, default=DEFAULT_DEMO,
                        help="simulated: 10,000 simulated haematopoietic cells with planted GO programs "
                             "(default); pbmc68k: the shipped 700 real PBMCs")
    parser.add_argument("--out", help="analysis folder (default: analyses/demo, or analyses/demo-pbmc68k)")
    parser.add_argument("--build-only", action="store_true", help="build the analysis, do not serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"request threads of the server (default {DEFAULT_THREADS})")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from core.demo.build import build_demo, default_demo_path
    from core.base.progress import ProgressBar
    from core.cli.serve import check_bind, serve

    check_bind(host=args.host, port=args.port, threads=args.threads)  # refuse bad settings before the build
    out = args.out or default_demo_path(args.dataset)
    analysis = build_demo(out, dataset=args.dataset, seed=args.seed, progress=ProgressBar("demo"))
    print(f"demo analysis ready: {analysis.path}")
    if analysis.has("planted_score.json"):
        s = analysis.read_json("planted_score.json")
        print(f"planted GO programs recovered: {s['n_found']}/{s['n_programs']} ({s['score']:.0%}; "
              f"see {analysis.path / 'planted_score.json'})")
    if not args.build_only:
        serve(host=args.host, port=args.port, analysis=str(analysis.path), threads=args.threads)
    return 0
