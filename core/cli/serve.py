"""`featurelens serve`: start the web app.

Safety defaults: binds 127.0.0.1 (this machine only) unless ``--host`` says otherwise, with a
warning when the app is exposed; refuses Dash's debug mode on an exposed interface (its
debugger runs code). Exposed, it also confines every path the app opens — datasets recorded in
analyses included — to the data, shipped and analyses folders (``FEATURELENS_CONFINE=1``; set
it to 0 beforehand to turn this off). On loopback, user-chosen sources are confined anyway
(:mod:`core.store.catalog`), while analyses may refer to data anywhere on this machine.
"""
from __future__ import annotations

import ipaddress
import os
import sys

HELP = "Start the FeatureLens web app (http://127.0.0.1:8050 by default)."
DEFAULT_HOST = "127.0.0.1"


def configure(parser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes the app)")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--analysis", help="analysis folder to open first")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode (reloader, dev tools; loopback only)")


def run(args) -> int:
    serve(host=args.host, port=args.port, analysis=args.analysis, debug=args.debug)
    return 0


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(*, host: str, port: int, debug: bool = False) -> str | None:
    """Refuse unsafe or invalid settings (InputError); return the warning to print when exposing the app."""
    from core.base.errors import InputError

    if not 0 < port < 65536:
        raise InputError(f"port {port} is not a valid TCP port", fix="use a number between 1024 and 65535")
    if is_loopback(host):
        return None
    if debug:
        raise InputError(f"--debug with --host {host} would let anyone who reaches this machine run code through "
                         "the debugger", fix="drop --debug, or keep the default --host 127.0.0.1")
    return (f"warning: binding to {host}: anyone who can reach this machine on port {port} can use the app and "
            "read the analyses and data it serves (only files inside the data and analyses folders are opened). "
            "Use the default 127.0.0.1 unless you mean to share it.")


def serve(*, host: str = DEFAULT_HOST, port: int = 8050, analysis: str | None = None, debug: bool = False) -> None:
    warning = check_bind(host=host, port=port, debug=debug)
    if warning:
        print(warning, file=sys.stderr)
        os.environ.setdefault("FEATURELENS_CONFINE", "1")  # exposed: open only paths inside the configured folders
    import app as featurelens_app  # the Dash entry point at the repository root

    dash_app = featurelens_app.create_app(default_analysis=analysis)
    print(f"FeatureLens at http://{host}:{port}  (Ctrl+C to stop)", file=sys.stderr)
    dash_app.run(host=host, port=port, debug=debug)
