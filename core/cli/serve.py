"""`featurelens serve`: start the web app on a production WSGI server (waitress).

The Dash app's Flask server is served by waitress: ``--threads`` request threads (default 8)
answer the page loads, callbacks and job polls of many sessions at once. Background jobs do not
take a request thread while they run: each is a process started by the app's fork server
(:mod:`core.runtime.fork_server`), which :func:`app.create_app` starts before the server listens.
``--debug`` runs Dash's development server instead (reloader, dev tools; loopback only).
Ctrl+C (or SIGTERM) stops the server after the requests under way.

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
import signal
import sys
import threading

HELP = "Start the FeatureLens web app (http://127.0.0.1:8050 by default)."
DEFAULT_HOST = "127.0.0.1"
DEFAULT_THREADS = 8


def configure(parser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes the app)")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--analysis", help="analysis folder to open first")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"request threads of the server (default {DEFAULT_THREADS}); jobs run in their own processes")
    parser.add_argument("--debug", action="store_true",
                        help="Dash's development server in debug mode (reloader, dev tools; loopback only)")


def run(args) -> int:
    serve(host=args.host, port=args.port, analysis=args.analysis, debug=args.debug, threads=args.threads)
    return 0


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(*, host: str, port: int, debug: bool = False, threads: int = DEFAULT_THREADS) -> str | None:
    """Refuse unsafe or invalid settings (InputError); return the warning to print when exposing the app."""
    from core.base.errors import InputError

    if not 0 < port < 65536:
        raise InputError(f"port {port} is not a valid TCP port", fix="use a number between 1024 and 65535")
    if not 1 <= threads <= 1024:
        raise InputError(f"--threads {threads}: the server needs between 1 and 1024 request threads",
                         fix=f"use the default {DEFAULT_THREADS}, or e.g. 16 for many sessions at once")
    if is_loopback(host):
        return None
    if debug:
        raise InputError(f"--debug with --host {host} would let anyone who reaches this machine run code through "
                         "the debugger", fix="drop --debug, or keep the default --host 127.0.0.1")
    return (f"warning: binding to {host}: anyone who can reach this machine on port {port} can use the app and "
            "read the analyses and data it serves (only files inside the data and analyses folders are opened). "
            "Use the default 127.0.0.1 unless you mean to share it.")


def serve(*, host: str = DEFAULT_HOST, port: int = 8050, analysis: str | None = None, debug: bool = False,
          threads: int = DEFAULT_THREADS) -> None:
    """Check the settings, build the app (its fork server starting) and serve it until Ctrl+C."""
    warning = check_bind(host=host, port=port, debug=debug, threads=threads)
    if warning:
        print(warning, file=sys.stderr)
        os.environ.setdefault("FEATURELENS_CONFINE", "1")  # exposed: open only paths inside the configured folders
    import app as featurelens_app  # the Dash entry point at the repository root

    dash_app = featurelens_app.create_app(default_analysis=analysis)
    run_server(dash_app, host=host, port=port, debug=debug, threads=threads)


def url_of(host: str, port: int) -> str:
    """``http://host:port``, an IPv6 address in brackets."""
    bare = host.strip("[]")
    return f"http://[{bare}]:{port}" if ":" in bare else f"http://{bare}:{port}"


def run_server(dash_app, *, host: str = DEFAULT_HOST, port: int = 8050, debug: bool = False,
               threads: int = DEFAULT_THREADS) -> None:
    """Serve a built Dash app: waitress with ``threads`` request threads, or Dash's development
    server with ``debug``. Prints the address once it listens; returns on Ctrl+C or SIGTERM."""
    from core.base.errors import InputError

    if debug:
        print(f"FeatureLens (Dash development server, debug) at {url_of(host, port)}  (Ctrl+C to stop)",
              file=sys.stderr)
        dash_app.run(host=host, port=port, debug=True)
        return
    from waitress.server import create_server

    flask = dash_app.server
    # waitress buffers a request body before the app sees it; let Flask's upload cap (HTTP 413) decide
    body_limit = max(1 << 30, flask.config.get("MAX_CONTENT_LENGTH") or 0)
    try:
        server = create_server(flask, host=host.strip("[]"), port=port, threads=threads,
                               max_request_body_size=body_limit,
                               asyncore_use_poll=True)  # poll: no 1024-descriptor limit of select
    except OSError as exc:  # in use, or an address this machine does not have
        raise InputError(f"cannot listen on {url_of(host, port)}: {exc.strerror or exc}",
                         fix="choose another --port (is FeatureLens already running?) or another --host") from exc
    print(f"FeatureLens at {url_of(host, port)}  (waitress, {threads} threads; Ctrl+C to stop)", file=sys.stderr,
          flush=True)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # Ctrl+C stops the server even when it was started with SIGINT ignored (as a background
        # job of a script, or by a parent that ignores it: Python then leaves SIGINT ignored)
        previous = (signal.signal(signal.SIGTERM, _stop_on_sigterm),  # stop as on Ctrl+C
                    signal.signal(signal.SIGINT, signal.default_int_handler))
    try:
        server.run()  # returns on KeyboardInterrupt / SystemExit, after shutting its threads down
    finally:
        server.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])
    print("FeatureLens stopped", file=sys.stderr, flush=True)


def _stop_on_sigterm(signum, frame):
    raise SystemExit(0)
