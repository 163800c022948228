"""`featurelens serve`: start the web app."""
from __future__ import annotations

import sys

HELP = "Start the FeatureLens web app (http://127.0.0.1:8050 by default)."
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def configure(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--analysis", help="analysis folder to open first")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode (reloader, dev tools)")


def run(args) -> int:
    serve(host=args.host, port=args.port, analysis=args.analysis, debug=args.debug)
    return 0


def serve(*, host: str, port: int, analysis: str | None = None, debug: bool = False) -> None:
    from ..errors import InputError

    if not 0 < port < 65536:
        raise InputError(f"port {port} is not a valid TCP port", fix="use a number between 1024 and 65535")
    if host not in LOOPBACK:
        print(f"warning: binding to {host}: anyone who can reach this machine can use the app and its data. "
              "Use the default 127.0.0.1 unless you mean to share it.", file=sys.stderr)
    import app as featurelens_app  # the Dash entry point at the repository root

    dash_app = featurelens_app.create_app(default_analysis=analysis)
    print(f"FeatureLens at http://{host}:{port}  (Ctrl+C to stop)", file=sys.stderr)
    dash_app.run(host=host, port=port, debug=debug)
