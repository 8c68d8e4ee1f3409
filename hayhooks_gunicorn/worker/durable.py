"""Durable mode in a worker: hayhooks' own immutable durable host, plus the kit's parts, and no hot reload.

With ``HAYHOOKS_DURABLE_MODE=true`` hayhooks' ``create_app()`` loads the directory once
(``server/pipelines/loader.py::build_immutable_host``) and its lifespan starts the durable runtime (Redis store,
leases, maintenance loop) and drains it on shutdown with ``HAYHOOKS_DURABLE_SHUTDOWN_GRACE_SECONDS``. The kit keeps
that app and that lifespan as they are, so every worker is exactly a ``hayhooks run`` replica. The kit's reload
runtime does not run: executions are pinned to their wrapper's ``durable_revision`` (``durable/engine.py`` refuses
to claim another revision), so a changed directory is rolled out by replacing workers, never by reloading in place.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException

import hayhooks_gunicorn.traces.peer as peer
from hayhooks_gunicorn.cluster.recorder import StateRecorder
from hayhooks_gunicorn.cluster.state_files import WorkerState
from hayhooks_gunicorn.cluster.view import disk_revisions
from hayhooks_gunicorn.metrics.reloads import record_fixed_set

# hayhooks' deploy and undeploy paths (server/routers/deploy.py, undeploy.py), which durable mode does not mount.
DEPLOY_PATHS = ("/deploy-yaml", "/deploy_files", "/undeploy/{pipeline_name}")
FIXED_SET = (
    "Durable mode serves a fixed pipeline set, loaded once by every worker: change the pipelines directory '{dir}' "
    "instead: the master then replaces the workers one at a time to serve the new set"
)


def build_hayhooks_app(factory: Callable[[], FastAPI], pipelines_dir: Path) -> FastAPI:
    """hayhooks' ``create_app()`` in durable mode, where a pipeline that cannot load stops the whole host.

    That error becomes gunicorn's ``AppImportError``: the arbiter prints its one line per worker and the master
    exits with "App failed to load" (``arbiter.py::spawn_worker``), instead of a traceback per worker.
    """
    from gunicorn.errors import AppImportError
    from hayhooks.server.exceptions import PipelineModuleLoadError, PipelineWrapperError

    try:
        return factory()
    except (PipelineModuleLoadError, PipelineWrapperError) as e:  # PipelineModeError is a PipelineWrapperError
        msg = f"Durable mode cannot load the pipelines directory '{pipelines_dir}': {e}"
        raise AppImportError(msg) from e


@dataclass
class DurableSet:
    """What one durable worker loaded at boot; it never changes while the worker lives."""

    serves_from: Path
    # pipeline name -> content revision of its files, read as the reload path reads them (``reload.scan``)
    pipelines: dict[str, str]
    # durable pipeline name -> the ``durable_revision`` its executions are pinned to
    durable_revisions: dict[str, str]
    started_at: float = field(default_factory=time.time)
    booted: bool = False

    def state(self, host: str, pid: int) -> WorkerState:
        """The recorder's state source (``cluster.recorder.StateSource``)."""
        return WorkerState(
            host=host,
            pid=pid,
            master_pid=os.getppid(),
            started_at=self.started_at,
            heartbeat=time.time(),
            booted=self.booted,
            pipelines=self.pipelines,
            serves_from=str(self.serves_from),
            durable_mode=True,
            durable_revisions=self.durable_revisions,
        )


def loaded_set(app: FastAPI, pipelines_dir: Path) -> DurableSet:
    """Read what hayhooks' immutable registry holds, with the revisions of the files it was loaded from."""
    registry = app.state.pipeline_registry
    resolved, disk = disk_revisions(pipelines_dir)
    names = list(registry.get_names())
    durable = {name: str(registry.get(name).durable_revision) for name in registry.durable_names()}
    return DurableSet(
        serves_from=resolved, pipelines={n: disk.get(n, "") for n in sorted(names)}, durable_revisions=durable
    )


def record_while_serving(
    app: FastAPI, loaded: DurableSet, recorder: StateRecorder, metrics: bool, serve_traces: bool
) -> None:
    """Wrap hayhooks' lifespan (it starts and drains the durable runtime): record the state (and with *metrics*
    the kit's gauges) once it serves; with *serve_traces*, serve this worker's live traces to the others first, so
    the state it records names the socket (``traces.peer``)."""
    hayhooks_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hayhooks_lifespan(app):
            loaded.booted = True
            if serve_traces:
                peer.start(recorder.directory)
            recorder.start(loaded.state)
            if metrics:
                record_fixed_set(loaded.pipelines, loaded.serves_from)
            try:
                yield
            finally:
                recorder.stop()
                peer.stop()

    app.router.lifespan_context = lifespan


def refuse_deploys(app: FastAPI, pipelines_dir: Path) -> None:
    """Answer hayhooks' deploy and undeploy paths with 409 saying how to change the set."""
    router = APIRouter(tags=["config"])
    detail = FIXED_SET.format(dir=pipelines_dir)

    async def refuse() -> None:
        raise HTTPException(status_code=409, detail=detail)

    for path in DEPLOY_PATHS:
        router.add_api_route(path, refuse, methods=["POST"], summary="Refused in durable mode (fixed pipeline set)")
    app.include_router(router)
