"""hayhooks' mutating routes, made to mean "every worker" (forward), "this worker, said loudly" (warn) or "no" (reject).

The routes keep hayhooks' paths, request models and response fields (``server/routers/deploy.py`` and
``undeploy.py``), so ``hayhooks pipeline deploy-files | deploy-yaml | undeploy`` work unchanged. Every route
tagged ``config`` with a mutating method is covered, so a mutating route added by a later hayhooks is refused
(forward, reject) or warned about (warn) instead of silently reaching one worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from hayhooks.server.logger import log

from hayhooks_gunicorn.app_context import app_context
from hayhooks_gunicorn.auth import require_admin
from hayhooks_gunicorn.cluster.identity import worker_id
from hayhooks_gunicorn.deploys.forward_mode import FORWARDED
from hayhooks_gunicorn.deploys.submission import Submission, check_storable
from hayhooks_gunicorn.errors import DeployError
from hayhooks_gunicorn.included_routers import include_in_slot, include_options, included_router
from hayhooks_gunicorn.reload.follow import links_on
from hayhooks_gunicorn.settings import DeployMode

MUTATING_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
UPLOADS = ("/deploy_files", "/deploy-yaml")
HOW_TO_DEPLOY = "add it to the shared pipelines directory '{dir}' or run `hayhooks-gunicorn deploy PATH`"


def is_mutating(route: object) -> bool:
    return isinstance(route, APIRoute) and "config" in route.tags and bool((route.methods or set()) & MUTATING_METHODS)


def install_deploy_routes(app: FastAPI) -> list[str]:
    """Swap every mutating hayhooks route for the kit's version; returns the paths covered.

    Both of FastAPI's layouts are handled (``included_routers``): a plain route is replaced where it stands; an
    included hayhooks router is copied, never changed in place, and the copy takes its slot.
    """
    mode = app_context(app).settings.deploy_mode
    covered: list[str] = []
    routes = app.router.routes
    for index, route in enumerate(list(routes)):
        if is_mutating(route):
            assert isinstance(route, APIRoute)
            routes[index] = kit_route(route, mode)
            covered.append(route.path)
            continue
        included = included_router(route)
        if included is None or not any(is_mutating(r) for r in included.routes):
            continue
        copy = APIRouter()
        for child in included.routes:
            copy.routes.append(kit_route(child, mode) if isinstance(child, APIRoute) and is_mutating(child) else child)
        covered += [r.path for r in included.routes if isinstance(r, APIRoute) and is_mutating(r)]
        include_in_slot(app, copy, index, **include_options(route))
    return covered


def kit_route(route: APIRoute, mode: DeployMode) -> APIRoute:
    """A copy of *route* behind the admin guard, doing what *mode* says."""
    endpoint: Callable[..., Any] = route.endpoint
    guards: list[Any] = [Depends(require_admin)]
    if mode is DeployMode.WARN:
        guards.append(Depends(warn_single_worker))
        if route.path in UPLOADS:
            guards.append(Depends(refuse_unstorable))
    elif mode is DeployMode.REJECT:
        guards.append(Depends(refuse_rejected))
    elif route.path in FORWARDED:
        endpoint = FORWARDED[route.path]
    else:
        guards.append(Depends(refuse_unforwardable))
    return APIRoute(
        route.path,
        endpoint,
        methods=route.methods,
        response_model=route.response_model,
        status_code=route.status_code,
        tags=route.tags,
        dependencies=[*guards, *route.dependencies],
        summary=route.summary,
        description=route.description,
        response_description=route.response_description,
        responses=route.responses,
        operation_id=route.operation_id,
        include_in_schema=route.include_in_schema,
        name=route.name,
    )


# warn and reject


async def refuse_unstorable(request: Request) -> None:
    """In ``warn`` mode hayhooks' own route writes the upload, and answers 500 to what no file can hold (a lone
    surrogate, a name longer than the filesystem allows): refuse those with a 4xx first. A body that is not the
    route's model is left to hayhooks' validation (422)."""
    try:
        body = await request.json()  # FastAPI has read the body already: this is its cached copy
    except ValueError:
        return
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str):
        return
    try:
        if request.url.path.endswith(UPLOADS[1]):
            source = body.get("source_code")
            submission = Submission.yaml(name, source if isinstance(source, str) else "")
        else:
            files = body.get("files")
            files = {k: v for k, v in files.items() if isinstance(v, str)} if isinstance(files, dict) else {}
            submission = Submission.wrapper(name, files)
        check_storable(submission, app_context(request.app).pipelines_dir)
    except DeployError as e:
        raise HTTPException(status_code=e.status, detail=str(e)) from e


async def warn_single_worker(request: Request, response: Response) -> None:
    me = worker_id()
    others = len([w for w in await run_in_threadpool(app_context(request.app).live_workers) if w.id != me])
    text = (
        f"Handled by worker {me} only (HAYHOOKS_GUNICORN_DEPLOY_MODE=warn): "
        f"{others} other live worker(s) did not get this change from the call"
    )
    if links := links_on(app_context(request.app).pipelines_dir):
        link = links[-1][0]
        text += f"; files it saves land in the release behind the link '{link}' and are lost at its next swap"
    response.headers["Warning"] = f'299 - "{text}"'
    log.warning("{} {}: {}", request.method, request.url.path, text)


async def refuse_rejected(request: Request) -> None:
    how = HOW_TO_DEPLOY.format(dir=app_context(request.app).pipelines_dir)
    detail = f"Deploy calls are disabled (HAYHOOKS_GUNICORN_DEPLOY_MODE=reject); to deploy a pipeline, {how}"
    raise HTTPException(status_code=403, detail=detail)


async def refuse_unforwardable(request: Request) -> None:
    how = HOW_TO_DEPLOY.format(dir=app_context(request.app).pipelines_dir)
    detail = (
        f"{request.method} {request.url.path} would change one worker only and cannot be forwarded to the others; "
        f"{how}, or set HAYHOOKS_GUNICORN_DEPLOY_MODE=warn to allow single-worker changes"
    )
    raise HTTPException(status_code=403, detail=detail)
