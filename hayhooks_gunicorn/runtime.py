"""One worker's pipeline runtime: the first full load of the directory, then the watcher that follows it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from hayhooks.server.logger import log
from hayhooks.settings import StartupDeployStrategy
from hayhooks.settings import settings as hayhooks_settings

from hayhooks_gunicorn.reconcile import Reconciler
from hayhooks_gunicorn.settings import WatchMode, kit_settings
from hayhooks_gunicorn.watcher import DirectoryWatcher


@dataclass
class WorkerRuntime:
    reconciler: Reconciler
    watcher: DirectoryWatcher | None
    started_at: float
    booted_at: float | None = None

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()


def pipelines_dir() -> Path:
    """hayhooks' ``HAYHOOKS_PIPELINES_DIR``, created when missing as ``hayhooks run`` does."""
    path = Path(hayhooks_settings.pipelines_dir or ".").absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning("Cannot create pipelines directory '{}': {}", path, e)
    return path


def runtime_of(app: FastAPI) -> WorkerRuntime | None:
    return getattr(app.state, "kit_runtime", None)


def boot(app: FastAPI) -> WorkerRuntime:
    """Load every pipeline of the directory once, then start watching it; safe to call twice."""
    if (runtime := runtime_of(app)) is not None:
        return runtime
    settings = kit_settings()
    parallel = hayhooks_settings.startup_deploy_workers
    if hayhooks_settings.startup_deploy_strategy == StartupDeployStrategy.SEQUENTIAL:
        parallel = 1
    reconciler = Reconciler(
        app=app,
        pipelines_dir=pipelines_dir(),
        server_routes=app.state.kit_server_routes,
        load_timeout=settings.load_timeout,
        parallel=parallel,
    )
    runtime = WorkerRuntime(reconciler, None, started_at=time.time())
    app.state.kit_runtime = runtime
    for setup in getattr(app.state, "kit_on_boot", []):
        try:
            setup(runtime)
        except Exception as e:  # an optional feature failing must not keep the worker from serving
            log.error("Worker {} could not start {}: {}", os.getpid(), getattr(setup, "__name__", setup), e)
    started = time.monotonic()
    reconciler.sync(wait=True)
    runtime.booted_at = time.time()
    log.info(
        "Worker {} serves {} pipeline(s) from '{}' ({} failed) after {:.2f}s",
        os.getpid(),
        len(reconciler.served),
        reconciler.pipelines_dir,
        len(reconciler.failed),
        time.monotonic() - started,
    )
    if settings.watch is not WatchMode.OFF:
        runtime.watcher = DirectoryWatcher(reconciler, settings.watch, settings.poll_interval_ms, settings.debounce_ms)
        runtime.watcher.start()
    return runtime
