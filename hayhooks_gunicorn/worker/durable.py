"""Durable mode in a worker: hayhooks' own immutable durable host, plus the kit's parts, and no hot reload.

With ``HAYHOOKS_DURABLE_MODE=true`` hayhooks' ``create_app()`` loads the directory once
(``server/pipelines/loader.py::build_immutable_host``) and its lifespan starts the durable runtime (Redis store,
leases, maintenance loop) and drains it on shutdown with ``HAYHOOKS_DURABLE_SHUTDOWN_GRACE_SECONDS``. The kit keeps
that app and that lifespan as they are, so every worker is exactly a ``hayhooks run`` replica. The kit's reload
runtime does not run: executions are pinned to their wrapper's ``durable_revision`` (``durable/engine.py`` refuses
to claim another revision), so a changed directory is rolled out by replacing workers, never by reloading in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from hayhooks.server.logger import log

import hayhooks_gunicorn.traces.peer as peer
from hayhooks_gunicorn.cluster.quarantine import Quarantine
from hayhooks_gunicorn.cluster.recorder import StateRecorder
from hayhooks_gunicorn.cluster.state_files import LoadFailure, WorkerState
from hayhooks_gunicorn.cluster.view import disk_revisions
from hayhooks_gunicorn.metrics.reloads import record_fixed_set
from hayhooks_gunicorn.worker.durable_set import tolerant_loading

# hayhooks' deploy and undeploy paths (server/routers/deploy.py, undeploy.py), which durable mode does not mount.
# Set on the app's state when a failed startup can heal in a new worker: gunicorn_worker then exits with 1 (respawned)
# instead of WORKER_BOOT_ERROR, which halts the arbiter
RESPAWN_ON_FAILED_START = "kit_respawn_on_failed_start"
# How long one check of the store may take, and the backoff between checks while it does not answer (seconds)
STORE_CHECK_TIMEOUT = 5.0
STORE_RETRY = (0.5, 10.0)
DEPLOY_PATHS = ("/deploy-yaml", "/deploy_files", "/undeploy/{pipeline_name}")
FIXED_SET = (
    "Durable mode serves a fixed pipeline set, loaded once by every worker: change the pipelines directory '{dir}' "
    "instead: the master then replaces the workers one at a time to serve the new set"
)


def build_hayhooks_app(factory: Callable[[], FastAPI], quarantine: Quarantine) -> FastAPI:
    """hayhooks' ``create_app()`` in durable mode, serving what loads (``durable_set``).

    What does not load is kept on ``app.state`` for ``loaded_set``, and reported as outside durable mode.
    """
    failures: dict[str, str] = {}
    with tolerant_loading(quarantine, failures):
        app = factory()
    app.state.kit_load_failures = failures
    return app


@dataclass
class DurableSet:
    """What one durable worker loaded at boot; it never changes while the worker lives."""

    serves_from: Path
    # pipeline name -> content revision of its files, read as the reload path reads them (``reload.scan``)
    pipelines: dict[str, str]
    # durable pipeline name -> the ``durable_revision`` its executions are pinned to
    durable_revisions: dict[str, str]
    # pipeline name -> why it was left out of the set (``durable_set``)
    failures: dict[str, LoadFailure] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    booted: bool = False
    # Why hayhooks' durable runtime has not started yet (the store does not answer), for /readyz
    waiting: str | None = None

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
            failures=self.failures,
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
    failed = getattr(app.state, "kit_load_failures", {})
    return DurableSet(
        serves_from=resolved,
        pipelines={n: disk.get(n, "") for n in sorted(names)},
        durable_revisions=durable,
        failures={n: LoadFailure(revision=disk.get(n, ""), error=e) for n, e in sorted(failed.items())},
    )


def record_while_serving(
    app: FastAPI, loaded: DurableSet, recorder: StateRecorder, metrics: bool, serve_traces: bool
) -> None:
    """Wrap hayhooks' lifespan (it starts and drains the durable runtime): record the state (and with *metrics*
    the kit's gauges) once it serves; with *serve_traces*, serve this worker's live traces to the others first, so
    the state it records names the socket (``traces.peer``).

    hayhooks' lifespan fails when the store does not answer (``DurableDeployment.start`` -> ``initialize()``):
    uvicorn then reports a failed startup and uvicorn-worker exits with ``WORKER_BOOT_ERROR``, which halts the
    arbiter (``arbiter.py::reap_workers``): a worker replaced during a Redis outage used to stop the whole server.
    So when the store does not answer at boot, the worker serves (``/readyz`` 503 with the reason) and enters
    hayhooks' lifespan once the store answers (``store_later``).
    """
    hayhooks_lifespan = app.router.lifespan_context

    def started() -> None:
        loaded.booted, loaded.waiting = True, None
        try:
            if serve_traces:
                peer.start(recorder.directory)
            recorder.start(loaded.state)
            if metrics:
                record_fixed_set(loaded.pipelines, loaded.serves_from, loaded.failures)
        except Exception as e:  # optional parts: failing the lifespan for them would halt the arbiter (see above)
            log.error("Worker {} serves without its cluster state, traces or metrics: {}", os.getpid(), e)

    def stopping() -> None:
        recorder.stop()
        peer.stop()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.durable_runtime is None or (reason := await store_problem(app)) is None:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    await stack.enter_async_context(hayhooks_lifespan(app))
                except Exception:
                    if await store_problem(app) is not None:  # Redis went away meanwhile: heals in a new worker
                        setattr(app.state, RESPAWN_ON_FAILED_START, True)
                    raise
                started()
                try:
                    yield
                finally:
                    stopping()
            return
        loaded.waiting = reason
        log.error("Worker {}: the durable store does not answer ({}); serving once it does", os.getpid(), reason)
        stop = asyncio.Event()
        task = asyncio.create_task(store_later(app, hayhooks_lifespan, loaded, stop, started, stopping))
        try:
            yield
        finally:
            stop.set()
            if loaded.waiting is not None:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.router.lifespan_context = lifespan


async def store_problem(app: FastAPI) -> str | None:
    """Why hayhooks' durable store does not answer now, or ``None`` when it does: a ping on each of the Redis
    clients hayhooks built for it (``app.state.durable_redis_clients``, closed by its lifespan)."""
    try:
        for client in app.state.durable_redis_clients:
            await asyncio.wait_for(client.ping(), STORE_CHECK_TIMEOUT)
    except Exception as e:
        return f"durable store unreachable: {type(e).__name__}: {e}"
    return None


async def store_later(
    app: FastAPI,
    hayhooks_lifespan: Any,
    loaded: DurableSet,
    stop: asyncio.Event,
    started: Callable[[], None],
    stopping: Callable[[], None],
) -> None:
    """Retry the store with backoff; once it answers, run hayhooks' lifespan until the worker stops."""
    delay = STORE_RETRY[0]
    while (reason := await store_problem(app)) is not None:
        loaded.waiting = reason
        await asyncio.sleep(delay)
        delay = min(delay * 2, STORE_RETRY[1])
    try:
        async with hayhooks_lifespan(app):
            started()
            log.info("Worker {}: the durable store answers; serving the durable set", os.getpid())
            try:
                await stop.wait()
            finally:
                stopping()
    except Exception as e:  # a deployment that failed to start cannot be started again (runtime.py::start)
        loaded.waiting = f"durable runtime failed to start: {type(e).__name__}: {e}"
        log.error("Worker {}: {}", os.getpid(), loaded.waiting)


def refuse_deploys(app: FastAPI, pipelines_dir: Path) -> None:
    """Answer hayhooks' deploy and undeploy paths with 409 saying how to change the set."""
    router = APIRouter(tags=["config"])
    detail = FIXED_SET.format(dir=pipelines_dir)

    async def refuse() -> None:
        raise HTTPException(status_code=409, detail=detail)

    for path in DEPLOY_PATHS:
        router.add_api_route(path, refuse, methods=["POST"], summary="Refused in durable mode (fixed pipeline set)")
    app.include_router(router)
