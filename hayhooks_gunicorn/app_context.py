"""What the kit keeps on a worker's ``app.state``, as one typed object instead of loose attributes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.routing import BaseRoute

from hayhooks_gunicorn.cluster.state_files import WorkerState, read_workers
from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.settings import KitSettings, pipelines_dir

if TYPE_CHECKING:
    from hayhooks_gunicorn.reload.runtime import WorkerRuntime
    from hayhooks_gunicorn.worker.durable import DurableSet

BootCallback = Callable[["WorkerRuntime"], None]


@dataclass
class AppContext:
    settings: KitSettings
    # The server's own routes, taken before any pipeline is served: a pipeline name must not shadow one of them.
    server_routes: list[BaseRoute]
    # Where this worker records its state and reads the others' (cluster.state_files)
    state_dir: Path
    # Called with the runtime before the first load (listeners of reload results: metrics, cluster state)
    on_boot: list[BootCallback] = field(default_factory=list)
    # Set once the worker starts loading the directory
    runtime: WorkerRuntime | None = None
    # Durable mode: the fixed set hayhooks loaded (and no runtime, ever)
    durable: DurableSet | None = None
    # Pipeline name -> when /readyz first saw it waiting with no load running (worker.health)
    waiting_since: dict[str, float] = field(default_factory=dict)

    @property
    def pipelines_dir(self) -> Path:
        """The directory this worker follows (the configured one until it has started loading)."""
        if self.durable is not None:
            return self.durable.serves_from
        return self.runtime.reconciler.pipelines_dir if self.runtime is not None else pipelines_dir()

    def live_workers(self) -> list[WorkerState]:
        """Every worker whose state file is fresh, on every host sharing the state directory (reads files)."""
        return read_workers(self.state_dir, self.settings.heartbeat_ttl)


def attach(app: FastAPI, context: AppContext) -> None:
    app.state.hayhooks_gunicorn = context


def app_context(app: FastAPI) -> AppContext:
    context = getattr(app.state, "hayhooks_gunicorn", None)
    if not isinstance(context, AppContext):
        raise KitError("This app was not built by hayhooks_gunicorn.worker.app:create_app()")
    return context
