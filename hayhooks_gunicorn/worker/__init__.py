"""What runs in each worker process: the gunicorn worker class, the app it serves, health routes, sync runs.

``gunicorn_worker`` is uvicorn-worker's ``UvicornWorker`` with gunicorn's signal semantics and a ready marker;
``app`` builds hayhooks' own app and adds the kit's parts (deploy routes, cluster view, metrics, health), then
``boot`` loads the directory through ``reload`` before the worker serves; ``health`` answers ``/healthz`` and
``/readyz``; ``sync_run`` decides where a pipeline's synchronous methods run.

``hayhooks_gunicorn.worker.HayhooksWorker`` is the ``worker_class`` of every configuration: keep that path.
"""

from __future__ import annotations

from hayhooks_gunicorn.worker.gunicorn_worker import HayhooksWorker, post_worker_init

__all__ = ["HayhooksWorker", "post_worker_init"]
