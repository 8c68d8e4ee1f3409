"""One worker's data path as a whole: the first full load of the directory, then the watcher that follows it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI
from hayhooks.server.logger import log
from hayhooks.settings import StartupDeployStrategy
from hayhooks.settings import settings as hayhooks_settings
from starlette.routing import BaseRoute

from hayhooks_gunicorn.reload.reconcile import Reconciler
from hayhooks_gunicorn.reload.scan import PipelineSource
from hayhooks_gunicorn.reload.watcher import DirectoryWatcher
from hayhooks_gunicorn.settings import KitSettings, WatchMode, pipelines_dir

if TYPE_CHECKING:
    from hayhooks_gunicorn.cluster.quarantine import Quarantine


@dataclass
class WorkerRuntime:
    reconciler: Reconciler
    watcher: DirectoryWatcher | None
    started_at: float
    booted_at: float | None = None

    def stop(self) -> None:
        self.reconciler.stop()
        if self.watcher is not None:
            self.watcher.stop()


def start_runtime(
    app: FastAPI,
    settings: KitSettings,
    server_routes: list[BaseRoute],
    on_boot: Iterable[Callable[[WorkerRuntime], None]] = (),
    on_created: Callable[[WorkerRuntime], None] | None = None,
    quarantine: Quarantine | None = None,
    trial: Callable[[PipelineSource], str | None] | None = None,
) -> WorkerRuntime:
    """Load every pipeline of the directory once (blocking), then start watching it.

    *on_created* sees the runtime before anything loads (so ``/readyz`` can say "loading"); each *on_boot*
    callback then registers what it needs (listeners of reload results). A failing callback is logged: an
    optional feature must not keep the worker from serving. *trial* is asked before each load once the worker
    serves (``cluster.trial_loads``), not for the boot's loads.
    """
    parallel = hayhooks_settings.startup_deploy_workers
    if hayhooks_settings.startup_deploy_strategy == StartupDeployStrategy.SEQUENTIAL:
        parallel = 1
    reconciler = Reconciler(
        app=app,
        pipelines_dir=pipelines_dir(create=True),
        server_routes=server_routes,
        load_timeout=settings.load_timeout,
        parallel=parallel,
        quarantine=quarantine,
    )
    if quarantine is not None:
        for record in quarantine.claim_orphans():
            log.error("Pipeline '{}' (rev {}) {}: quarantined", record.name, record.revision, record.cause)
    runtime = WorkerRuntime(reconciler, None, started_at=time.time())
    if on_created is not None:
        on_created(runtime)
    for setup in on_boot:
        try:
            setup(runtime)
        except Exception as e:
            log.error("Worker {} could not start {}: {}", os.getpid(), getattr(setup, "__name__", setup), e)
    started = time.monotonic()
    reconciler.sync(wait=True)
    reconciler.trial = trial
    runtime.booted_at = time.time()
    log.info(
        "Worker {} serves {} pipeline(s) from '{}' ({} failed) after {:.2f}s",
        os.getpid(),
        len(reconciler.served),
        reconciler.serves_from or reconciler.pipelines_dir,
        len(reconciler.failed),
        time.monotonic() - started,
    )
    if settings.watch is not WatchMode.OFF:
        runtime.watcher = DirectoryWatcher(
            reconciler.pipelines_dir, reconciler.sync, settings.watch, settings.poll_interval_ms, settings.debounce_ms
        )
        runtime.watcher.start()
    return runtime
