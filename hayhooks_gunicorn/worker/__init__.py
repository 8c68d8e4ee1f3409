"""What runs in each worker process: the gunicorn worker class, the app it serves, health routes, sync runs.

``gunicorn_worker`` is uvicorn-worker's ``UvicornWorker`` with gunicorn's signal semantics and a ready marker;
``app`` builds hayhooks' own app and adds the kit's parts (deploy routes, cluster view, metrics, health), then
``boot`` loads the directory through ``reload`` before the worker serves; ``health`` answers ``/healthz`` and
``/readyz``; ``sync_run`` decides where a pipeline's synchronous methods run.

``hayhooks_gunicorn.worker.HayhooksWorker`` is the ``worker_class`` of every configuration: keep that path.
Importing this package imports no module of it: gunicorn reads ``HayhooksWorker`` (and the configuration
``post_worker_init``) as attributes, which load ``gunicorn_worker`` on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hayhooks_gunicorn.worker.gunicorn_worker import HayhooksWorker, post_worker_init

_LAZY = {
    "HayhooksWorker": "hayhooks_gunicorn.worker.gunicorn_worker",
    "post_worker_init": "hayhooks_gunicorn.worker.gunicorn_worker",
}

__all__ = ["HayhooksWorker", "post_worker_init"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
