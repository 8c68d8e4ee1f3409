"""The ASGI app every worker serves: hayhooks' own app, plus worker identity, health routes and the kit's loader.

hayhooks' lifespan would deploy the whole directory from temp copies (``server/app.py::lifespan``); the kit
replaces it, so every pipeline is set up exactly once per worker, from its real directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from hayhooks_gunicorn.cluster import install_cluster
from hayhooks_gunicorn.compat import check_hayhooks
from hayhooks_gunicorn.deploy_routes import install_deploy_routes
from hayhooks_gunicorn.dispatch import apply as apply_sync_run
from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.health import install_health
from hayhooks_gunicorn.identity import WorkerHeaderMiddleware
from hayhooks_gunicorn.metrics import install as install_metrics
from hayhooks_gunicorn.names import fixed_routes
from hayhooks_gunicorn.runtime import boot, runtime_of
from hayhooks_gunicorn.settings import kit_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Under gunicorn the post_worker_init hook has loaded the pipelines already; elsewhere (plain uvicorn) load now.
    runtime = runtime_of(app) or await run_in_threadpool(boot, app)
    try:
        yield
    finally:
        runtime.stop()


def create_app() -> FastAPI:
    """Build the app without loading pipelines: the worker loads them before it serves (see ``hooks``)."""
    check_hayhooks()
    from hayhooks.server.app import create_app as create_hayhooks_app
    from hayhooks.settings import settings

    if settings.durable_mode:
        msg = "HAYHOOKS_DURABLE_MODE fixes the pipeline set at startup; serve durable pipelines with `hayhooks run`"
        raise KitError(msg)
    kit = kit_settings()
    app = create_hayhooks_app()
    app.router.lifespan_context = lifespan
    apply_sync_run(kit.sync_run)
    install_health(app)
    app.add_middleware(WorkerHeaderMiddleware)
    app.state.kit_runtime = None
    app.state.kit_on_boot = []
    install_metrics(app)
    # Deploy calls reach every worker (or say they do not); every worker publishes its state for GET /cluster.
    install_deploy_routes(app, kit)
    install_cluster(app, kit)
    # Taken before any pipeline is published: a pipeline name must not shadow these.
    app.state.kit_server_routes = fixed_routes(app)
    return app
