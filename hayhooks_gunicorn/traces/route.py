"""``GET /traces`` for the whole server: the runs of every live worker, merged, each tagged with its worker.

It replaces hayhooks' route (``server/routers/traces.py``) and keeps its rules: the same credentials
(``require_tracing_access``: ``HAYHOOKS_TRACING_TOKEN``, else the local dashboard token), the same ``limit``
(default ``HAYHOOKS_TRACING_DEFAULT_LIMIT``, capped at ``min(100, HAYHOOKS_TRACING_MAX_LIMIT,
HAYHOOKS_TRACING_BUFFER_CAPACITY)``), the same selection (the most recently updated traces, shown newest start
first) and the same response model. Each worker still keeps its own buffer of
``HAYHOOKS_TRACING_BUFFER_CAPACITY`` traces.

hayhooks picks a page by each trace's last update, which its summaries do not carry; across workers the end of
the trace (start + duration) stands for it. A worker that is gone or slower than
``HAYHOOKS_GUNICORN_TRACES_PEER_TIMEOUT`` is left out and named under ``workers.missing``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from hayhooks.dashboard_auth import require_tracing_access
from hayhooks.server.routers.traces import TraceConfigResponse, TracesResponse, TraceSummary
from hayhooks.server.routers.traces import router as traces_router
from hayhooks.server.utils.live_trace_buffer import get_recent_traces
from hayhooks.settings import settings

from hayhooks_gunicorn.app_context import app_context
from hayhooks_gunicorn.cluster.identity import worker_id
from hayhooks_gunicorn.cluster.state_files import WorkerState, read_workers, traces_socket_path
from hayhooks_gunicorn.cluster.trust import trusted_socket
from hayhooks_gunicorn.included_routers import include_in_slot, included_router
from hayhooks_gunicorn.traces import peer

WORKER_TAG = "hayhooks_gunicorn.worker"
SCOPE = "Every live worker of this server; recent in-memory traces, not durable execution history"
PATH = "/traces"

router = APIRouter(dependencies=[Depends(require_tracing_access)])


def tagged(traces: list[dict[str, Any]], worker: str) -> list[dict[str, Any]]:
    """Each trace with its worker, first among its tags (shown by the dashboard) and as a field of its own."""
    return [
        {**trace, "worker": worker, "tags": [{"key": WORKER_TAG, "value": worker}, *trace.get("tags", [])]}
        for trace in traces
    ]


def merge(answers: dict[str, list[dict[str, Any]]], limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The *limit* most recent traces of all workers, newest start first, and whether any were left out."""
    everything = [trace for worker, traces in answers.items() for trace in tagged(traces, worker)]
    everything.sort(key=lambda t: int(t["start_time_ms"]) + int(t.get("duration_ms", 0)), reverse=True)
    page = sorted(everything[:limit], key=lambda t: int(t["start_time_ms"]), reverse=True)
    return page, len(everything) > limit


@router.get(
    "",
    tags=["tracing"],
    response_model=TracesResponse,
    operation_id="tracing_traces",
    summary="List recent traces of every worker",
    description="Returns a bounded snapshot of the in-memory traces of every live worker, each tagged with it.",
)
async def traces(request: Request, limit: int | None = Query(default=None, gt=0)) -> JSONResponse:
    fetch_limit = min(100, settings.tracing_max_limit, settings.tracing_buffer_capacity)
    resolved_limit = min(settings.tracing_default_limit if limit is None else limit, fetch_limit)
    context = app_context(request.app)
    workers = await run_in_threadpool(read_workers, context.state_dir, context.settings.heartbeat_ttl)
    me = worker_id()
    peers = [w for w in workers if w.id != me and w.traces_socket]
    timeout = context.settings.traces_peer_timeout

    async def ask(worker: WorkerState) -> list[dict[str, Any]] | None:
        # A socket that is not where a worker of this directory listens, or not ours, is never asked: that worker
        # is missing (a worker of another host sharing the directory, whose socket this host cannot reach, too).
        if not await run_in_threadpool(peer_socket, context.state_dir, worker):
            return None
        return await peer.ask(worker.traces_socket, resolved_limit + 1, timeout)

    replies = await asyncio.gather(*(ask(w) for w in peers))
    answers: dict[str, list[dict[str, Any]]] = {me: [dict(t) for t in get_recent_traces(limit=resolved_limit + 1)]}
    answers.update({w.id: reply for w, reply in zip(peers, replies, strict=True) if reply is not None})
    page, has_more = merge(answers, resolved_limit)
    response = TracesResponse(
        traces=[TraceSummary.model_validate(trace) for trace in page],
        has_more=has_more,
        config=TraceConfigResponse(
            buffer_capacity=settings.tracing_buffer_capacity,
            fetch_limit=fetch_limit,
            slow_component_ms=settings.tracing_slow_component_ms,
            scope=SCOPE,
        ),
    ).model_dump(mode="json")
    for shown, trace in zip(response["traces"], page, strict=True):
        shown["worker"] = trace["worker"]
    missing = sorted(w.id for w, reply in zip(peers, replies, strict=True) if reply is None)
    response["workers"] = {"answered": sorted(answers), "missing": missing}
    return JSONResponse(response)


def peer_socket(state_dir: Path, worker: WorkerState) -> bool:
    """Whether *worker*'s trace socket may be asked: the path a worker of this directory listens on, and ours.

    A state file names any path it likes; only the one ``peer.start`` would use, in the state directory, counts.
    """
    expected = traces_socket_path(state_dir, worker.host, worker.pid)
    return worker.traces_socket == str(expected) and trusted_socket(expected)


def install_traces(app: FastAPI, start_at_boot: bool = True) -> bool:
    """Swap hayhooks' ``GET /traces`` for the merged one, and serve this worker's buffer to the others at boot.

    A durable worker has no reload runtime, so no boot callbacks: it passes ``start_at_boot=False`` and starts the
    peer from its lifespan (``worker.durable``). Returns whether tracing is on (the route was swapped).
    """
    if not settings.tracing_enabled:  # hayhooks mounts no /traces then (server/app.py::create_app)
        return False
    # Ours takes the slot of hayhooks' router (or, in older FastAPI's layout, of its route): ``included_routers``.
    slot = next(
        (
            index
            for index, route in enumerate(app.router.routes)
            if included_router(route) is traces_router or (isinstance(route, APIRoute) and route.path == PATH)
        ),
        None,
    )
    include_in_slot(app, router, slot, prefix=PATH)
    state_dir = app_context(app).state_dir
    if start_at_boot:
        # At boot, in the worker: an app built before fork (preload_app) must listen as the worker, not the master.
        app_context(app).on_boot.append(lambda runtime: peer.start(state_dir))
    return True
