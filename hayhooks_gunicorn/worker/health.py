"""``/healthz`` (the process answers) and ``/readyz`` (this worker loaded the directory and is not behind it).

A worker serves nothing before it has loaded the directory (``gunicorn_worker.post_worker_init``), so a ``/readyz`` that
answers at all has loaded it once. After that, "behind" means a change on disk that this worker has not picked
up: one it is loading now does not count (the old version keeps serving, and every replica loads the same change
at the same moment: failing readiness then would take every pod out of its Service at once), nor one younger
than ``HAYHOOKS_GUNICORN_READY_GRACE``; one left unloaded longer does, and so does a directory no pass has read for
longer than the grace period plus the watcher's quiet re-scan (a stuck watcher, an unreadable network share). A
configured path that leads nowhere (a dangling link) is treated the same way: the last good set keeps serving, and
only once it has led nowhere for longer than the grace period is the answer 503 ``unresolved``.

Both checks run on the event loop and read memory only: the reconciler's published snapshot (``Reconciler.snapshot``,
no lock) and the last pass's view of the disk. hayhooks runs every sync ``run_api`` on Starlette's thread pool
(``server/utils/deploy_utils.py::_execute_pipeline_run``, anyio's 40 threads a process): a check that went through
``run_in_threadpool`` too, or read the disk, waited behind those calls, and under load every pod failed its readiness
probe at once. The answer costs O(pipelines) and no system call. Under ``HAYHOOKS_GUNICORN_SYNC_RUN=inline`` the loop
itself runs the call, so a busy worker answers nothing until the call ends: the probes' numbers must outlast it.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from hayhooks_gunicorn.app_context import AppContext, app_context
from hayhooks_gunicorn.cluster.identity import worker_id
from hayhooks_gunicorn.reload.outcomes import Snapshot
from hayhooks_gunicorn.reload.watcher import RESCAN_SECONDS

router = APIRouter(tags=["kit"])


@router.get("/healthz", summary="Liveness: the worker process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "worker": worker_id()}


@router.get("/readyz", summary="Readiness: this worker loaded the pipelines directory and is not behind it")
async def readyz(request: Request) -> JSONResponse:
    context = app_context(request.app)
    if (fixed := context.durable) is not None:  # booted once hayhooks' lifespan started the durable runtime
        failures = {name: failure.error for name, failure in fixed.failures.items()}
        fixed_set = {"worker": worker_id(), "durable_mode": True, "pipelines": sorted(fixed.pipelines)}
        fixed_set |= {"failed": sorted(failures), "failures": failures}
        if not fixed.booted:
            error = fixed.waiting or "starting"
            return JSONResponse({**fixed_set, "status": "waiting", "error": error}, status_code=503)
        return JSONResponse({**fixed_set, "status": "ready"})
    runtime = context.runtime
    if runtime is None or runtime.booted_at is None:
        return JSONResponse({"status": "loading", "worker": worker_id()}, status_code=503)
    reconciler = runtime.reconciler
    try:
        now = reconciler.snapshot()
        pending = now.pending()
    except Exception as e:  # whatever breaks the check, the answer is "not ready", with the reason
        error = f"{type(e).__name__}: {e}"
        return JSONResponse({"status": "check failed", "worker": worker_id(), "error": error}, status_code=503)
    loading = sorted(now.loading)
    grace = context.settings.ready_grace
    stuck = _stuck(context, [n for n in pending if n not in loading], grace)
    status = "behind" if stuck else ("reloading" if pending else "ready")
    body: dict[str, object] = {
        "status": status,
        "worker": worker_id(),
        "serves_from": str(now.serves_from) if now.serves_from else None,
        "pipelines": sorted(now.served),
        "failed": sorted(now.failed),
        "failures": {name: failure.error for name, failure in sorted(now.failed.items())},
        "behind": sorted(pending),
        "loading": loading,
    }
    failing = bool(stuck)
    if now.unresolved is not None:
        lost = time.monotonic() - now.unresolved.since > grace
        body["status"] = "unresolved" if lost else ("behind" if stuck else "reloading")
        body["error"] = f"'{reconciler.pipelines_dir}' does not resolve: {now.unresolved.reason}"
        failing = failing or lost
    elif runtime.watcher is not None and (unscanned := _unscanned_for(now, grace)) is not None:
        body["status"] = "behind"
        body["error"] = f"no pass has read '{reconciler.pipelines_dir}' for {unscanned:.0f}s"
        failing = True
    return JSONResponse(body, status_code=503 if failing else 200)


def _unscanned_for(now: Snapshot, grace: float) -> float | None:
    """Seconds since a pass last read the directory, when longer than the watcher's quiet re-scan plus *grace*."""
    if now.scanned_at is None:
        return None
    age = time.monotonic() - now.scanned_at
    return age if age > RESCAN_SECONDS + grace else None


def _stuck(context: AppContext, waiting: list[str], grace: float) -> list[str]:
    """Names waiting, with no load running, for longer than *grace* seconds (first seen by a probe)."""
    now = time.monotonic()
    seen = {name: context.waiting_since.get(name, now) for name in waiting}
    context.waiting_since = seen
    return [name for name, since in seen.items() if now - since > grace]


def install_health(app: FastAPI) -> None:
    """Put the health routes first in the route table: no route added before or after (a mount at ``/``,
    a pipeline's routes) can answer these paths instead."""
    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[:0] = added
