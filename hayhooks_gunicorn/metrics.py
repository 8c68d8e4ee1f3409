"""``GET /metrics`` for the whole server, and the reload metrics every worker records.

Under the kit's gunicorn configuration every worker writes prometheus_client's multiprocess files into the
master's directory (``metrics_dir``), so whichever worker answers a scrape reports every live and dead worker
of its master. Without that directory (plain uvicorn, one process) the default registry is served.
"""

from __future__ import annotations

import glob
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import SecretStr

from hayhooks_gunicorn import metrics_dir
from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.identity import worker_id
from hayhooks_gunicorn.instruments import REVISION_INFO, instruments
from hayhooks_gunicorn.reconcile import Change
from hayhooks_gunicorn.request_metrics import PipelineMetricsMiddleware
from hayhooks_gunicorn.runtime import WorkerRuntime
from hayhooks_gunicorn.scan import YAML_SUFFIXES, pipeline_files
from hayhooks_gunicorn.settings import MetricsMode, kit_settings


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

    path = os.environ.get(metrics_dir.ENV)
    if not path:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    registry.register(ServerCollector(path))
    with metrics_dir.scrape_lock(Path(path)):
        return generate_latest(registry), CONTENT_TYPE_LATEST


def metrics_router(token: SecretStr | None) -> APIRouter:
    """``/metrics``, behind ``Authorization: Bearer <token>`` when a *token* is given."""
    router = APIRouter(tags=["kit"])

    def require_token(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = token.get_secret_value().encode() if token else b""
        ok = scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), expected)
        if not ok or not expected:
            raise HTTPException(401, "/metrics needs 'Authorization: Bearer <token>'", {"WWW-Authenticate": "Bearer"})

    dependencies = [Depends(require_token)] if token else []

    @router.get("/metrics", summary="Prometheus metrics of every worker", dependencies=dependencies)
    async def metrics() -> Response:
        body, content_type = await run_in_threadpool(render)
        return Response(body, media_type=content_type)

    return router


def changed_at(pipelines_dir: Path, name: str) -> float | None:
    """When a pipeline's content last landed in the directory: the newest change time of its entries.

    ``st_ctime``, not ``st_mtime``: ``cp -p``, ``rsync -a`` and ``tar`` keep old mtimes, while every write,
    rename or copy sets the change time. A removal leaves nothing to look at; the directory's own change time
    (set by the removal) stands in.
    """
    candidates = [pipelines_dir / name, *(pipelines_dir / f"{name}{s}" for s in YAML_SUFFIXES)]
    for path in candidates:
        try:
            if path.is_dir():
                return max([path.stat().st_ctime] + [(path / rel).stat().st_ctime for rel in pipeline_files(path)])
            if path.is_file():
                return path.stat().st_ctime
        except OSError:
            return None
    try:
        return pipelines_dir.stat().st_ctime
    except OSError:
        return None


def record_reloads(runtime: WorkerRuntime) -> None:
    """``kit_on_boot`` setup: count this worker alive and record every reconcile result it produces."""
    metrics = instruments()
    worker = worker_id()
    metrics.workers.set(1)
    serving: dict[str, str] = {}
    # Loads finish on their own threads and report from there.
    lock = threading.Lock()
    pipelines_dir = runtime.reconciler.pipelines_dir

    def stop_serving(name: str) -> None:
        if (old := serving.pop(name, None)) is not None:
            metrics.revision_info.labels(name, old, worker).set(0)
            metrics.revision_info.remove(name, old, worker)

    def on_change(change: Change) -> None:
        with lock:
            record(change)

    def record(change: Change) -> None:
        name = change.name
        metrics.reloads.labels(name, change.outcome).inc()
        if change.outcome == "failed":
            metrics.load_failed.labels(name).set(1)
            return
        metrics.load_failed.labels(name).set(0)
        stop_serving(name)
        if change.outcome == "loaded":
            serving[name] = change.revision
            metrics.revision_info.labels(name, change.revision, worker).set(1)
            metrics.load_duration.labels(name).observe(change.seconds)
        # Loads at boot follow no change: only a worker already serving measures how long a change took.
        if runtime.booted_at is not None and (at := changed_at(pipelines_dir, name)) is not None:
            metrics.convergence.labels(name).observe(max(0.0, time.time() - at))

    runtime.reconciler.listeners.append(on_change)


def install(app: FastAPI) -> None:
    """Add ``/metrics`` and the recorders to *app*, unless ``HAYHOOKS_GUNICORN_METRICS=off``."""
    settings = kit_settings()
    if settings.metrics is MetricsMode.OFF:
        return
    token = settings.admin_token if settings.metrics is MetricsMode.TOKEN else None
    if settings.metrics is MetricsMode.TOKEN and not (token and token.get_secret_value()):
        msg = "HAYHOOKS_GUNICORN_METRICS=token needs HAYHOOKS_GUNICORN_ADMIN_TOKEN to be set"
        raise KitError(msg)
    app.include_router(metrics_router(token))
    app.add_middleware(PipelineMetricsMiddleware)
    app.state.kit_on_boot.append(record_reloads)
