"""``/healthz`` (the process answers) and ``/readyz`` (this worker loaded the directory and is not behind it).

A worker serves nothing before it has loaded the directory (``hooks.post_worker_init``), so a ``/readyz`` that
answers at all has loaded it once. After that, "behind" means a change on disk that this worker has not picked
up: one it is loading now does not count (the old version keeps serving, and every replica loads the same change
at the same moment: failing readiness then would take every pod out of its Service at once), nor one younger
than ``HAYHOOKS_GUNICORN_READY_GRACE``; one left unloaded longer (a stuck watcher, events lost on a network
filesystem) does.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hayhooks_gunicorn.identity import worker_id
from hayhooks_gunicorn.runtime import runtime_of
from hayhooks_gunicorn.settings import kit_settings

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
        pending = await run_in_threadpool(runtime.reconciler.pending)
    except OSError as e:
        return JSONResponse({"status": "unreadable", "worker": worker_id(), "error": str(e)}, status_code=503)
    loading = sorted(runtime.reconciler.loading)
    stuck = _stuck(request.app, [n for n in pending if n not in loading], kit_settings().ready_grace)
    status = "behind" if stuck else ("reloading" if pending else "ready")
    body = {
        "status": status,
        "worker": worker_id(),
        "pipelines": sorted(runtime.reconciler.served),
        "failed": sorted(runtime.reconciler.failed),
        "behind": sorted(pending),
        "loading": loading,
    }
    return JSONResponse(body, status_code=503 if stuck else 200)


def _stuck(app: FastAPI, waiting: list[str], grace: float) -> list[str]:
    """Names waiting, with no load running, for longer than *grace* seconds (first seen by a probe)."""
    now = time.monotonic()
    seen: dict[str, float] = getattr(app.state, "kit_waiting_since", {})
    seen = {name: seen.get(name, now) for name in waiting}
    app.state.kit_waiting_since = seen
    return [name for name, since in seen.items() if now - since > grace]


def install_health(app: FastAPI) -> None:
    """Put the health routes first in the route table: no route added before or after (a mount at ``/``,
    a pipeline's routes) can answer these paths instead."""
    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[:0] = added
