"""`featurelens demo`: build the built-in demo analysis (cached) and serve the app on it."""
from __future__ import annotations

HELP = "Build the demo analysis (cached after the first run) and serve the app on it."


def configure(parser) -> None:
    parser.add_argument("--out", help="analysis folder (default: analyses/demo-pbmc68k)")
    parser.add_argument("--build-only", action="store_true", help="build the analysis, do not serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from ..demo import build_demo, default_demo_path
    from ..progress import ProgressBar
    from .serve import serve

    out = args.out or default_demo_path()
    analysis = build_demo(out, seed=args.seed, progress=ProgressBar("demo"))
    print(f"demo analysis ready: {analysis.path}")
    if not args.build_only:
        serve(host=args.host, port=args.port, analysis=str(analysis.path))
    return 0
