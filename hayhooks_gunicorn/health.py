"""``/healthz`` (the process answers) and ``/readyz`` (this worker loaded the directory and is not behind it)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hayhooks_gunicorn.identity import worker_id
from hayhooks_gunicorn.runtime import runtime_of

router = APIRouter(tags=["kit"])


@router.get("/healthz", summary="Liveness: the worker process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "worker": worker_id()}


@router.get("/readyz", summary="Readiness: this worker loaded the pipelines directory and is not behind it")
async def readyz(request: Request) -> JSONResponse:
    runtime = runtime_of(request.app)
    if runtime is None or runtime.booted_at is None:
        return JSONResponse({"status": "loading", "worker": worker_id()}, status_code=503)
    try:
        behind = await run_in_threadpool(runtime.reconciler.pending)
    except OSError as e:
        return JSONResponse({"status": "unreadable", "worker": worker_id(), "error": str(e)}, status_code=503)
    body = {
        "status": "behind" if behind else "ready",
        "worker": worker_id(),
        "pipelines": sorted(runtime.reconciler.served),
        "failed": sorted(runtime.reconciler.failed),
        "behind": sorted(behind),
    }
    return JSONResponse(body, status_code=503 if behind else 200)
