"""``forward`` mode: a deploy call is validated, pre-flighted in a separate process, written into the shared
directory, and answered once every live worker serves it (``shared_dir`` for the files, ``cluster`` for who is
live). The calling worker's reloads go on meanwhile: nothing of the upload runs in it before its watcher sees it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from hayhooks.server.logger import log
from hayhooks.server.routers.deploy import DeployResponse, PipelineFilesRequest, YamlDeployRequest
from hayhooks.server.routers.undeploy import UndeployResponse

from hayhooks_gunicorn.app_context import app_context
from hayhooks_gunicorn.cluster.identity import worker_id
from hayhooks_gunicorn.cluster.view import Progress, wait_until_serving
from hayhooks_gunicorn.deploys.shared_dir import Workspace, write_submission
from hayhooks_gunicorn.deploys.submission import Limits, Submission, check_removable, validate
from hayhooks_gunicorn.errors import DeployError
from hayhooks_gunicorn.reload import fingerprint
from hayhooks_gunicorn.settings import KitSettings, WatchMode

T = TypeVar("T")
POLL_SECONDS = 0.05
NOT_WATCHING = "HAYHOOKS_GUNICORN_WATCH=off: workers load the directory when they restart (hayhooks-gunicorn restart)"


def limits(settings: KitSettings) -> Limits:
    return Limits(settings.max_files, settings.max_bytes)


def wait_seconds(settings: KitSettings) -> float:
    """How long a call waits for the workers; nothing to wait for when they read the directory at boot only."""
    return settings.deploy_wait if settings.watch is not WatchMode.OFF else 0.0


def save_files_refused(what: str) -> HTTPException:
    detail = (
        f"{what}=false would load the pipeline in this worker only ({worker_id()}); the other workers could never "
        f"serve it. Deploy with {what}=true (the default; drop --skip-saving-files / --no-save-file), or set "
        "HAYHOOKS_GUNICORN_DEPLOY_MODE=warn to allow single-worker deploys"
    )
    return HTTPException(status_code=400, detail=detail)


async def forward_deploy_files(pipeline_files_request: PipelineFilesRequest, request: Request) -> JSONResponse:
    if not pipeline_files_request.save_files:
        raise save_files_refused("save_files")
    submission = await call(lambda: Submission.wrapper(pipeline_files_request.name, pipeline_files_request.files))
    return await forward(request, submission, pipeline_files_request.overwrite)


async def forward_deploy_yaml(yaml_request: YamlDeployRequest, request: Request) -> JSONResponse:
    # hayhooks reads save_file with bool(): None means "do not save" there too (deploy_utils.deploy_pipeline_yaml).
    if not yaml_request.save_file:
        raise save_files_refused("save_file")
    ignored = tuple(f for f in ("description", "skip_mcp") if getattr(yaml_request, f))
    submission = await call(lambda: Submission.yaml(yaml_request.name, yaml_request.source_code))
    return await forward(request, submission, yaml_request.overwrite, ignored)


async def forward_undeploy(
    request: Request,
    pipeline_name: str = PathParam(description="Name of the pipeline to undeploy", examples=["my_pipeline"]),
) -> JSONResponse:
    app = request.app
    context = app_context(app)
    workspace = Workspace(context.pipelines_dir)

    def remove() -> list[Path]:
        check_removable(pipeline_name)
        workspace.check_writable()
        return workspace.remove(pipeline_name)

    removed = await call(remove)
    if not removed and not any(pipeline_name in w.pipelines for w in await run_in_threadpool(context.live_workers)):
        raise HTTPException(status_code=404, detail=f"Pipeline '{pipeline_name}' not found")
    progress = await wait_for(app, pipeline_name, None, wait_seconds(context.settings))
    still = len(progress.behind)
    log.info("Worker {} undeployed pipeline '{}'; {} worker(s) still serve it", worker_id(), pipeline_name, still)
    body = {**UndeployResponse(success=True, name=pipeline_name).model_dump(), **progress.to_json()}
    if context.settings.watch is WatchMode.OFF:
        body["note"] = NOT_WATCHING
    return JSONResponse(body, status_code=200 if progress.serving else 202)


FORWARDED: dict[str, Callable[..., Any]] = {
    "/deploy_files": forward_deploy_files,
    "/deploy-yaml": forward_deploy_yaml,
    "/undeploy/{pipeline_name}": forward_undeploy,
}


async def forward(
    request: Request, submission: Submission, overwrite: bool, ignored: tuple[str, ...] = ()
) -> JSONResponse:
    """Validate, pre-flight, write into the directory, then wait until every live worker serves the revision."""
    app = request.app
    context = app_context(app)
    settings = context.settings
    pipelines_dir = context.pipelines_dir
    name = submission.name

    def write() -> str:
        validate(submission, pipelines_dir, limits(settings), context.server_routes)
        return write_submission(submission, pipelines_dir, overwrite, settings, server_routes=False)

    revision = await call(write)
    target = pipelines_dir / submission.entry
    progress = await wait_for(app, name, revision, wait_seconds(settings), target)
    # hayhooks' response, plus where the workers stand.
    body: dict[str, Any] = {
        **DeployResponse(name=name, success=True, endpoint=f"/{name}/run").model_dump(),
        "revision": revision,
        **progress.to_json(),
    }
    headers: dict[str, str] = {}
    if settings.watch is WatchMode.OFF:
        body["note"] = NOT_WATCHING
    if ignored:
        note = f"{' and '.join(ignored)} apply only to hayhooks' in-process deploys and were not kept"
        body["warnings"] = [note]
        headers["Warning"] = f'299 - "{note}"'
    if progress.revision != revision:
        body["superseded_by"] = progress.revision
        now = progress.revision
        log.info("Worker {} wrote pipeline '{}' (rev {}), superseded by rev {}", worker_id(), name, revision, now)
    else:
        serving = len(progress.workers) - len(progress.behind) - len(progress.failed)
        count = len(progress.workers)
        log.info(
            "Worker {} wrote pipeline '{}' (rev {}); {}/{} live worker(s) serve it",
            worker_id(),
            name,
            revision,
            serving,
            count,
        )
    status = 200 if progress.serving or progress.revision != revision else 202
    return JSONResponse(body, status_code=status, headers=headers)


async def call(function: Callable[[], T]) -> T:
    """Run blocking filesystem work off the event loop; the kit's errors become HTTP errors."""
    try:
        return await run_in_threadpool(function)
    except DeployError as e:
        raise HTTPException(status_code=e.status, detail=str(e)) from e


async def wait_for(
    app: FastAPI, name: str, revision: str | None, timeout: float, target: Path | None = None
) -> Progress:
    """Wait, off the event loop, until every live worker serves *revision* (None: none serves *name*) or *timeout*
    passes; with *target*, stop when a later deploy replaced it (``cluster.view.wait_until_serving``)."""
    on_disk = None if target is None else functools.partial(revision_on_disk, target)
    live = app_context(app).live_workers
    return await run_in_threadpool(wait_until_serving, name, revision, live, timeout, POLL_SECONDS, on_disk)


def revision_on_disk(path: Path) -> str | None:
    try:
        return fingerprint(path, verify=False) if os.path.lexists(path) else None
    except OSError:
        return None
