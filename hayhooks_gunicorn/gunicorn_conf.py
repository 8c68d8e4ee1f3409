"""gunicorn configuration of hayhooks-gunicorn.

Used as ``gunicorn -c gunicorn.conf.py`` from the repository root (that file is this one) or as
``gunicorn -c python:hayhooks_gunicorn.gunicorn_conf`` from an installed package (``hayhooks-gunicorn run``).
gunicorn's precedence holds: ``GUNICORN_CMD_ARGS`` and the command line override every value set here.
"""

import os
from typing import Any

from hayhooks.settings import settings as hayhooks

from hayhooks_gunicorn import worker as kit_worker
from hayhooks_gunicorn.master import hooks

# Server socket
# hayhooks' own HAYHOOKS_HOST and HAYHOOKS_PORT, so the `hayhooks` CLI finds the server.
bind = [f"{hayhooks.host}:{hayhooks.port}"]

# Worker processes
# WEB_CONCURRENCY as gunicorn reads it, else one worker per core.
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 2)
# uvicorn-worker's UvicornWorker serving the kit's app (which wraps hayhooks' create_app()).
worker_class = "hayhooks_gunicorn.worker.HayhooksWorker"
wsgi_app = "hayhooks_gunicorn.worker.app:create_app()"
# Seconds without a heartbeat before a worker is killed; pipeline loading at boot is not counted.
timeout = 60
# Seconds in-flight requests get to finish on SIGTERM: hayhooks' HAYHOOKS_GRACEFUL_SHUTDOWN_TIMEOUT.
graceful_timeout = hayhooks.graceful_shutdown_timeout
keepalive = 5

# Logging
errorlog = "-"
loglevel = (os.environ.get("HAYHOOKS_LOG_LEVEL") or "info").lower()
# Access lines on stdout, unless HAYHOOKS_LOG_LEVEL hides INFO lines (as in hayhooks); --access-logfile overrides.
accesslog = "-" if loglevel in ("trace", "debug", "info") else None
# One format for gunicorn's, uvicorn's and hayhooks' (loguru) lines, pid on each; HAYHOOKS_GUNICORN_LOG_FORMAT=json.
logger_class = "hayhooks_gunicorn.logs.KitLogger"

# Control
# control_socket: unless set here or with --control-socket, each instance gets its own path (master/instance.py).

# Metrics
# PROMETHEUS_MULTIPROC_DIR: a new private directory per master, set before any process imports prometheus_client.
# gunicorn's own statsd_host / statsd_prefix work unchanged (`--statsd-host`, `--statsd-prefix`).
hooks.prepare_metrics()

# GPUs
# HAYHOOKS_GUNICORN_GPUS: each worker's CUDA_VISIBLE_DEVICES by its slot, checked here so --check-config checks it.
hooks.prepare_gpus()


# Server hooks
def on_starting(server: Any) -> None:
    hooks.on_starting(server)


def when_ready(server: Any) -> None:
    hooks.when_ready(server)


def on_reload(server: Any) -> None:
    hooks.on_reload(server)


def pre_fork(server: Any, worker: Any) -> None:
    hooks.pre_fork(server, worker)


def post_fork(server: Any, worker: Any) -> None:
    hooks.post_fork(server, worker)


def post_worker_init(worker: Any) -> None:
    kit_worker.post_worker_init(worker)


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    hooks.nworkers_changed(server, new_value, old_value)


def child_exit(server: Any, worker: Any) -> None:
    hooks.child_exit(server, worker)


def on_exit(server: Any) -> None:
    hooks.on_exit(server)
