"""The ASGI app every worker serves: hayhooks' own app, plus worker identity, health routes and the kit's loader.

hayhooks' lifespan would deploy the whole directory from temp copies (``server/app.py::lifespan``); the kit
replaces it, so every pipeline is set up exactly once per worker, from its real directory. In durable mode the
kit keeps hayhooks' app and lifespan whole (``worker.durable``) and adds only its own routes and middleware.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool

from hayhooks_gunicorn.app_context import AppContext, app_context, attach
from hayhooks_gunicorn.auth import require_read
from hayhooks_gunicorn.chat.config import take_over_ui
from hayhooks_gunicorn.chat.forward import ChatForwarder, close_at_shutdown, install_forwarder
from hayhooks_gunicorn.cluster.identity import WorkerHeaderMiddleware
from hayhooks_gunicorn.cluster.quarantine import Quarantine
from hayhooks_gunicorn.cluster.recorder import StateRecorder
from hayhooks_gunicorn.cluster.state_files import state_dir
from hayhooks_gunicorn.cluster.trial_loads import TrialLoads
from hayhooks_gunicorn.cluster.view import cluster_router
from hayhooks_gunicorn.compat import check_hayhooks
from hayhooks_gunicorn.deploys.routes import install_deploy_routes
from hayhooks_gunicorn.metrics.endpoint import install_metrics
from hayhooks_gunicorn.reload import WorkerRuntime, start_runtime
from hayhooks_gunicorn.reload.names import fixed_routes
from hayhooks_gunicorn.settings import MetricsMode, WatchMode, kit_settings, pipelines_dir
from hayhooks_gunicorn.traces.peer import stop as stop_traces_peer
from hayhooks_gunicorn.traces.route import install_traces
from hayhooks_gunicorn.worker.health import install_health
from hayhooks_gunicorn.worker.otel import flush_spans, tag_worker_resource
from hayhooks_gunicorn.worker.sync_run import apply_sync_run


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Under gunicorn the post_worker_init hook has loaded the pipelines already; elsewhere (plain uvicorn) load now.
    runtime = app_context(app).runtime
    if runtime is None:
        runtime = await run_in_threadpool(boot, app)
    try:
        yield
    finally:
        runtime.stop()
        stop_traces_peer()
        await run_in_threadpool(flush_spans)


def boot(app: FastAPI) -> WorkerRuntime:
    """Load every pipeline of the directory once, then start watching it; safe to call twice."""
    context = app_context(app)
    if context.runtime is not None:
        return context.runtime
    if context.durable is not None:
        msg = "A durable worker loads its fixed set in hayhooks' create_app(); it has no reload runtime"
        raise RuntimeError(msg)

    def created(runtime: WorkerRuntime) -> None:
        context.runtime = runtime

    settings = context.settings
    if settings.share_models:
        # The master follows the directory and replaces workers with ones forked from the new set
        # (master/roll_on_change.py): a worker reloading in place would hold its own copy of the weights.
        settings = settings.model_copy(update={"watch": WatchMode.OFF})
    quarantine = Quarantine(context.state_dir)
    trial = None
    if settings.trial_loads:
        trial = TrialLoads(quarantine, pipelines_dir(), settings.load_timeout).refusal
    return start_runtime(app, settings, context.server_routes, context.on_boot, created, quarantine, trial)


def install_cluster(app: FastAPI, context: AppContext, record: bool = True) -> None:
    """Record this worker's state once its reload runtime boots (unless *record* is off: a durable worker records
    its fixed set itself), and serve ``GET /cluster``."""
    if record:
        context.on_boot.append(StateRecorder(context.state_dir))
    guard = Depends(require_read)
    ttl = context.settings.heartbeat_ttl
    app.include_router(cluster_router(context.state_dir, ttl, lambda: context.pipelines_dir, guard))


def create_app() -> FastAPI:
    """Build the app without loading pipelines: the worker loads them before it serves (``boot``)."""
    check_hayhooks()
    from hayhooks.server.app import create_app as create_hayhooks_app
    from hayhooks.settings import settings

    kit = kit_settings()
    tag_worker_resource()  # before hayhooks' create_app() sets up its OTLP exporter
    chat_socket = take_over_ui(settings)
    if settings.durable_mode:
        from hayhooks_gunicorn.worker import durable

        app = durable.build_hayhooks_app(create_hayhooks_app, Quarantine(state_dir(kit)))  # loads the fixed set
    else:
        app = create_hayhooks_app()
    apply_sync_run(kit.sync_run)
    forwarder = install_forwarder(app, chat_socket, settings.chainlit_path) if chat_socket is not None else None
    install_health(app)
    app.add_middleware(WorkerHeaderMiddleware)
    context = AppContext(settings=kit, server_routes=[], state_dir=state_dir(kit))
    attach(app, context)
    install_metrics(app)
    if settings.durable_mode:
        directory = pipelines_dir()
        context.durable = durable.loaded_set(app, directory)
        recorder = StateRecorder(context.state_dir)
        traced = install_traces(app, start_at_boot=False)  # /traces for the whole server, as without durable mode
        durable.record_while_serving(
            app, context.durable, recorder, metrics=kit.metrics is not MetricsMode.OFF, serve_traces=traced
        )
        durable.refuse_deploys(app, directory)
        install_cluster(app, context, record=False)
        return finish(app, forwarder)
    app.router.lifespan_context = lifespan
    # Deploy calls reach every worker (or say they do not); every worker records its state for GET /cluster.
    install_deploy_routes(app)
    # Before install_cluster: the trace socket must exist when the worker first records its state.
    install_traces(app)
    install_cluster(app, context)
    # Taken before any pipeline is served: a pipeline name must not shadow these.
    context.server_routes = fixed_routes(app)
    return finish(app, forwarder)


def finish(app: FastAPI, forwarder: ChatForwarder | None) -> FastAPI:
    """Last, once the app's lifespan is final: the chat forwarder's connections close when it ends."""
    if forwarder is not None:
        close_at_shutdown(app, forwarder)
    return app
