"""The gunicorn worker class: uvicorn-worker's ``UvicornWorker`` serving the kit's app."""

from __future__ import annotations

from uvicorn_worker import UvicornWorker


class HayhooksWorker(UvicornWorker):
    """Serves ``hayhooks_gunicorn.app:create_app()``; pipelines are loaded by the ``post_worker_init`` hook."""

    CONFIG_KWARGS = {"loop": "auto", "http": "auto"}
