"""Swap prepared pipelines into this process's hayhooks registry and routes, and withdraw them.

hayhooks' ``commit_prepared_pipeline`` removes the old route before adding the new one and calls
``app.setup()`` on every change: under load about 1 request in 300 saw a 404 during the gap, and the route
table grew by three documentation routes per reload. Here a replacement takes the old route's slot in one list
assignment and the OpenAPI schema is only invalidated, so requests see either the old or the new version.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from hayhooks.server.pipelines.models import create_pipeline_metadata
from hayhooks.server.pipelines.registry import registry
from hayhooks.server.utils.deploy_utils import _build_run_route, _deploy_lock
from hayhooks.server.utils.models import PreparedPipeline
from starlette.routing import BaseRoute

from hayhooks_gunicorn.reload.modules import unload_pipeline_modules


def swap_routes(app: FastAPI, prepared: PreparedPipeline) -> None:
    """Serve *prepared* under its name, replacing the version serving now without a gap."""
    name, wrapper = prepared.name, prepared.wrapper
    metadata: dict[str, Any] = create_pipeline_metadata(name, wrapper)
    metadata.update(prepared.extra_metadata or {})
    route = None
    if built := _build_run_route(name, wrapper, request_model=metadata.get("request_model")):
        route_kwargs, route_metadata = built
        metadata.update(route_metadata)
        route = _make_route(app, route_kwargs)
    # hayhooks' own deploy calls take this lock, so its deploys (warn mode) and ours never interleave.
    with _deploy_lock:
        # Item assignment is atomic: the event loop sees the old or the new wrapper, never none.
        # The registry has no replace method (server/pipelines/registry.py), hence the private dicts.
        registry._metadata[name] = metadata
        registry._pipelines[name] = wrapper
        _put_route(app, name, route)
        app.openapi_schema = None


def withdraw_routes(app: FastAPI, name: str) -> None:
    """Stop serving *name* in this process and unload its modules; files on disk are left alone."""
    with _deploy_lock:
        registry.remove(name)
        _put_route(app, name, None)
        app.openapi_schema = None
    unload_pipeline_modules(name)


def _make_route(app: FastAPI, route_kwargs: dict[str, Any]) -> APIRoute:
    """Build the route as ``app.add_api_route`` would, without adding it yet."""
    scratch = APIRouter(dependency_overrides_provider=app)
    scratch.add_api_route(**route_kwargs)
    route = scratch.routes[-1]
    assert isinstance(route, APIRoute)
    return route


def _put_route(app: FastAPI, name: str, route: APIRoute | None) -> None:
    """Put *route* in the slot of *name*'s route (or last), or drop it, in a new list assigned in one step.

    Loads finish on their own threads while Starlette iterates the list on the event loop (``Router.app``:
    ``for route in self.routes``): a deletion in place shifts the routes after it, and the iteration skips one
    (a spurious 404). An iteration under way keeps the list it started with.
    """
    path = f"/{name}/run"
    current = app.router.routes
    slot = next((i for i, r in enumerate(current) if _serves(r, path)), len(current))
    routes = [r for r in current if not _serves(r, path)]
    if route is not None:
        routes.insert(slot, route)  # the slot of the route replaced: no route before it was dropped
    app.router.routes = routes


def _serves(route: BaseRoute, path: str) -> bool:
    return isinstance(route, APIRoute) and route.path == path
