"""``GET /metrics`` for the whole server.

Under the kit's gunicorn configuration every worker writes prometheus_client's multiprocess files into the
master's directory (``multiproc_dir``), so whichever worker answers a scrape reports every live and dead worker
of its master. Without that directory (plain uvicorn, one process) the default registry is served.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response

from hayhooks_gunicorn.app_context import app_context
from hayhooks_gunicorn.auth import Role, require, role_tokens
from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.metrics import multiproc_dir
from hayhooks_gunicorn.metrics.instruments import REVISION_INFO
from hayhooks_gunicorn.metrics.reloads import record_reloads
from hayhooks_gunicorn.metrics.requests import PipelineMetricsMiddleware
from hayhooks_gunicorn.metrics.scrape_thread import run_on_scrape_thread
from hayhooks_gunicorn.settings import MetricsMode


class ServerCollector:
    """prometheus_client's multiprocess merge, minus two things that should not reach a scrape.

    - Files still empty: ``MmapedDict.__init__`` creates a file before sizing it, and ``_read_metrics`` fails
      the whole scrape on one it reads in that instant (or that a worker killed in that instant left behind).
    - Revisions no longer served: a multiprocess gauge cannot delete a sample from its file
      (``values.py::MmapedValue``), so a worker sets the revision it stopped serving to 0 and it is left out.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [f for f in glob.glob(os.path.join(self.path, "*.db")) if _size(f) > 0]
        for metric in MultiProcessCollector.merge(files, accumulate=True):
            if metric.name == REVISION_INFO:
                metric.samples = [s for s in metric.samples if s.value]
            yield metric


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def render() -> tuple[bytes, str]:
    """The exposition of every worker of this master (or of this process alone outside gunicorn)."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    path = os.environ.get(multiproc_dir.ENV)
    if not path:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    registry.register(ServerCollector(path))
    with multiproc_dir.scrape_lock(Path(path)):
        return generate_latest(registry), CONTENT_TYPE_LATEST


def metrics_router(with_token: bool) -> APIRouter:
    """``/metrics``, behind the read (or admin) token *with_token*."""
    router = APIRouter(tags=["kit"])
    dependencies = [Depends(require(Role.READ, "/metrics", local_without_token=False))] if with_token else []

    @router.get("/metrics", summary="Prometheus metrics of every worker", dependencies=dependencies)
    async def metrics() -> Response:
        body, content_type = await run_on_scrape_thread(render)
        return Response(body, media_type=content_type)

    return router


def install_metrics(app: FastAPI) -> None:
    """Add ``/metrics`` and the recorders to *app*, unless ``HAYHOOKS_GUNICORN_METRICS=off``."""
    context = app_context(app)
    settings = context.settings
    if settings.metrics is MetricsMode.OFF:
        return
    with_token = settings.metrics is MetricsMode.TOKEN
    if with_token and not role_tokens(settings, Role.READ):
        msg = "HAYHOOKS_GUNICORN_METRICS=token needs HAYHOOKS_GUNICORN_READ_TOKEN (or HAYHOOKS_GUNICORN_ADMIN_TOKEN)"
        raise KitError(msg)
    app.include_router(metrics_router(with_token))
    app.add_middleware(PipelineMetricsMiddleware)
    context.on_boot.append(record_reloads)
