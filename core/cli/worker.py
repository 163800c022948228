"""`featurelens worker`: run background jobs queued in Redis by one or more app processes."""
from __future__ import annotations

import os
import socket

HELP = "Run a background-job worker for apps started with FEATURELENS_BROKER_URL (Redis)."
DESCRIPTION = """Run a Celery worker for the app's background jobs (training, annotation, steering, ...).

Set FEATURELENS_BROKER_URL to the same Redis URL for the app(s) and the worker(s):

  export FEATURELENS_BROKER_URL=redis://127.0.0.1:6379/0
  featurelens worker --concurrency 2 &     # jobs run here
  featurelens serve --port 8050 &          # any number of app processes, on any machine
  featurelens serve --port 8051 &          #   that reaches Redis and shares the analyses folder

Each worker process runs one job at a time; --concurrency sets how many run at once
(default: the number of CPU cores). Workers and apps must run the same FeatureLens version."""


def configure(parser) -> None:
    parser.add_argument("--concurrency", type=int, metavar="N",
                        help="jobs run at once by this worker (processes; default: CPU cores)")
    parser.add_argument("--name", metavar="NAME",
                        help="worker name shown in the app (default: featurelens-<pid>@<host>)")
    parser.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))


def run(args) -> int:
    from core.base.errors import InputError
    from core.runtime.jobs import BROKER_ENV, broker_url, check_broker, redact_url

    url = broker_url()
    if not url:
        raise InputError(f"{BROKER_ENV} is not set, so the app runs its background jobs itself and needs no worker",
                         fix=f"export {BROKER_ENV}=redis://127.0.0.1:6379/0 for the app(s) and this worker")
    concurrency = args.concurrency if args.concurrency is not None else (os.cpu_count() or 1)
    if concurrency < 1:
        raise InputError(f"--concurrency must be at least 1 (got {concurrency})")
    check_broker(url)

    import app as featurelens_app  # the Dash entry point at the repository root

    featurelens_app.create_app()  # registers every background callback as a Celery task
    celery = featurelens_app.celery_app
    name = args.name or f"featurelens-{os.getpid()}@{socket.gethostname()}"
    print(f"FeatureLens worker {name}: {concurrency} process(es), jobs from {redact_url(url)}", flush=True)
    celery.worker_main(["worker", f"--concurrency={concurrency}", f"--loglevel={args.loglevel.upper()}",
                        "--pool=prefork", f"--hostname={name}", "--without-gossip", "--without-mingle"])
    return 0
