"""``forward`` mode: a deploy call is validated, pre-flighted, published into the shared directory, and answered
once every live worker serves it (see ``publish`` for the filesystem side, ``cluster`` for who is live)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from hayhooks.server.logger import log
from hayhooks.server.routers.deploy import DeployResponse, PipelineFilesRequest, YamlDeployRequest
from hayhooks.server.routers.undeploy import UndeployResponse

from hayhooks_gunicorn.cluster import Progress, live_workers
from hayhooks_gunicorn.errors import DeployError
from hayhooks_gunicorn.identity import worker_id
from hayhooks_gunicorn.publish import Limits, Submission, Workspace, check_removable, preflight, validate
from hayhooks_gunicorn.runtime import runtime_of
from hayhooks_gunicorn.scan import fingerprint
from hayhooks_gunicorn.state import default_pipelines_dir

POLL_SECONDS = 0.05
NOT_WATCHING = "HAYHOOKS_GUNICORN_WATCH=off: workers load the directory when they restart (hayhooks-gunicorn restart)"


@dataclass(frozen=True)
class DeployConfig:
    limits: Limits
    wait: float
    load_timeout: float
    watching: bool  # HAYHOOKS_GUNICORN_WATCH=off: workers read the directory at boot only, so nothing to wait for


def pipelines_dir_of(app: FastAPI) -> Path:
    runtime = runtime_of(app)
    return runtime.reconciler.pipelines_dir if runtime is not None else default_pipelines_dir()


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
    submission = Submission.wrapper(pipeline_files_request.name, pipeline_files_request.files)
    return await forward(request, submission, pipeline_files_request.overwrite)


async def forward_deploy_yaml(yaml_request: YamlDeployRequest, request: Request) -> JSONResponse:
    # hayhooks reads save_file with bool(): None means "do not save" there too (deploy_utils.deploy_pipeline_yaml).
    if not yaml_request.save_file:
        raise save_files_refused("save_file")
    ignored = tuple(f for f in ("description", "skip_mcp") if getattr(yaml_request, f))
    submission = Submission.yaml(yaml_request.name, yaml_request.source_code)
    return await forward(request, submission, yaml_request.overwrite, ignored)


async def forward_undeploy(
    request: Request,
    pipeline_name: str = PathParam(description="Name of the pipeline to undeploy", examples=["my_pipeline"]),
) -> JSONResponse:
    app = request.app
    config: DeployConfig = app.state.kit_deploy
    workspace = Workspace(pipelines_dir_of(app))

    def remove() -> list[Path]:
        check_removable(pipeline_name)
        workspace.check_writable()
        return workspace.remove(pipeline_name)

    removed = await call(remove)
    if not removed and not any(pipeline_name in w.pipelines for w in await run_in_threadpool(live_workers, app)):
        raise HTTPException(status_code=404, detail=f"Pipeline '{pipeline_name}' not found")
    progress = await wait_for(app, pipeline_name, None, config.wait if config.watching else 0)
    still = len(progress.behind)
    log.info("Worker {} undeployed pipeline '{}'; {} worker(s) still serve it", worker_id(), pipeline_name, still)
    body = {**UndeployResponse(success=True, name=pipeline_name).model_dump(), **progress.to_json()}
    if not config.watching:
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
    """Validate, pre-flight, publish, then wait until every live worker serves the new revision."""
    app = request.app
    config: DeployConfig = app.state.kit_deploy
    runtime = runtime_of(app)
    pipelines_dir = pipelines_dir_of(app)
    workspace = Workspace(pipelines_dir)
    name = submission.name
    # The reconciler's lock: this worker's own reloads of the name must not interleave with the pre-flight.
    reload_lock = runtime.reconciler._lock if runtime is not None else None

    def publish() -> str:
        validate(submission, pipelines_dir, config.limits, app.state.kit_server_routes)
        workspace.check_writable()
        if workspace.existing(name) and not overwrite:
            raise DeployError(f"Pipeline {name!r} already exists; deploy with overwrite=true to replace it", 409)
        staged = workspace.stage(submission)
        try:
            preflight(staged, config.load_timeout, reload_lock)
            return workspace.commit(staged, overwrite)
        finally:
            workspace.cleanup(staged)

    revision = await call(publish)
    target = pipelines_dir / submission.entry
    progress = await wait_for(app, name, revision, config.wait if config.watching else 0, target)
    # hayhooks' response, plus where the workers stand.
    body: dict[str, Any] = {
        **DeployResponse(name=name, success=True, endpoint=f"/{name}/run").model_dump(),
        "revision": revision,
        **progress.to_json(),
    }
    headers: dict[str, str] = {}
    if not config.watching:
        body["note"] = NOT_WATCHING
    if ignored:
        note = f"{' and '.join(ignored)} apply only to hayhooks' in-process deploys and were not kept"
        body["warnings"] = [note]
        headers["Warning"] = f'299 - "{note}"'
    if progress.revision != revision:
        body["superseded_by"] = progress.revision
        log.info(
            "Worker {} published pipeline '{}' (rev {}), superseded by rev {}",
            worker_id(),
            name,
            revision,
            progress.revision,
        )
    else:
        serving = len(progress.workers) - len(progress.behind) - len(progress.failed)
        log.info(
            "Worker {} published pipeline '{}' (rev {}); {}/{} live worker(s) serve it",
            worker_id(),
            name,
            revision,
            serving,
            len(progress.workers),
        )
    status = 200 if progress.serving or progress.revision != revision else 202
    return JSONResponse(body, status_code=status, headers=headers)


async def call(function: Callable[[], Any]) -> Any:
    """Run blocking filesystem work off the event loop; the kit's errors become HTTP errors."""
    try:
        return await run_in_threadpool(function)
    except DeployError as e:
        raise HTTPException(status_code=e.status, detail=str(e)) from e


async def wait_for(
    app: FastAPI, name: str, revision: str | None, timeout: float, target: Path | None = None
) -> Progress:
    """Poll the live workers until each serves *revision* (None: none serves *name*) or *timeout* passes.

    When the directory moves on meanwhile (a later deploy replaced it), the wait stops and returns the
    progress on the revision now on disk.
    """
    deadline = time.monotonic() + timeout
    while True:
        progress = Progress(name, revision, await run_in_threadpool(live_workers, app))
        if not progress.behind or time.monotonic() >= deadline:
            return progress
        if target is not None and revision is not None:
            now = await run_in_threadpool(revision_on_disk, target)
            if now != revision:
                return Progress(name, now, progress.workers)
        await asyncio.sleep(POLL_SECONDS)


def revision_on_disk(path: Path) -> str | None:
    try:
        return fingerprint(path) if os.path.lexists(path) else None
    except OSError:
        return None
