"""The cluster view: live workers (from their state files) against the revisions on disk.

``GET /cluster`` answers it; forward-mode deploys and the CLI wait on it until every worker has caught up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.params import Depends
from fastapi.responses import JSONResponse

from hayhooks_gunicorn.cluster.identity import worker_id
from hayhooks_gunicorn.cluster.state_files import WorkerState, read_workers
from hayhooks_gunicorn.polling import poll_until
from hayhooks_gunicorn.reload.follow import resolve_dir
from hayhooks_gunicorn.reload.scan import scan


@dataclass(frozen=True)
class ClusterView:
    workers: list[WorkerState]
    disk: dict[str, str]  # pipeline name -> revision on disk
    source: str = ""  # where the worker states were read
    resolved: str = ""  # the real directory the pipelines path leads to now (compare each worker's serves_from)

    @property
    def behind(self) -> dict[str, list[str]]:
        """Worker id -> the pipelines it has not caught up with."""
        return {w.id: behind_disk(w, self.disk) for w in self.workers}

    @property
    def converged(self) -> bool:
        """At least one live worker, and every one of them has processed every revision on disk."""
        return bool(self.workers) and not any(self.behind.values())

    def to_json(self) -> dict[str, Any]:
        behind = self.behind
        return {
            "converged": bool(self.workers) and not any(behind.values()),
            "workers": [{"worker": w.id, **w.model_dump(mode="json"), "behind": behind[w.id]} for w in self.workers],
            "disk": self.disk,
            "resolved": self.resolved,
        }


def behind_disk(worker: WorkerState, disk: dict[str, str]) -> list[str]:
    gone = [name for name in worker.pipelines if name not in disk]
    return sorted(gone + [name for name, revision in disk.items() if not worker.has(name, revision)])


def disk_revisions(pipelines_dir: Path) -> tuple[Path, dict[str, str]]:
    """The real directory *pipelines_dir* leads to, and its pipelines' revisions, read as the workers read them.

    Raises ``OSError`` when the path leads nowhere or the directory cannot be read.
    """
    resolution = resolve_dir(pipelines_dir)
    if resolution.path is None:
        raise FileNotFoundError(f"'{pipelines_dir}' does not resolve: {resolution.reason}")
    return resolution.path, {name: source.revision for name, source in scan(resolution.path, verify=False).items()}


def cluster_view(state_dir: Path, pipelines_dir: Path, ttl: float) -> ClusterView:
    """Raises ``OSError`` when the pipelines directory cannot be read."""
    resolved, disk = disk_revisions(pipelines_dir)
    return ClusterView(read_workers(state_dir, ttl), disk, str(state_dir), str(resolved))


@dataclass(frozen=True)
class Progress:
    """Where the live workers stand on one revision of one pipeline (``revision=None``: its removal)."""

    name: str
    revision: str | None
    workers: list[WorkerState]

    @property
    def behind(self) -> list[str]:
        return [w.id for w in self.workers if not w.has(self.name, self.revision)]

    @property
    def failed(self) -> dict[str, str]:
        """Workers that tried this revision and could not load it."""
        failed: dict[str, str] = {}
        for w in self.workers:
            failure = w.failures.get(self.name)
            if self.revision and failure is not None and failure.revision == self.revision:
                failed[w.id] = failure.error
        return failed

    @property
    def serving(self) -> bool:
        """Every live worker serves the revision (or, for a removal, none serves the name)."""
        return not self.behind and not self.failed

    def to_json(self) -> dict[str, Any]:
        return {"workers": len(self.workers), "behind": self.behind, "failed": self.failed}


def wait_until_serving(
    name: str,
    revision: str | None,
    live_workers: Callable[[], list[WorkerState]],
    timeout: float,
    interval: float,
    on_disk: Callable[[], str | None] | None = None,
) -> Progress:
    """Poll *live_workers* until each serves *revision* of *name* (``None``: none serves it) or *timeout* passes.

    With *on_disk* (the revision of *name* in the directory now), the wait also stops when the directory has moved
    on (a later deploy replaced the revision), and returns the progress on the revision now on disk. The one wait
    of deploy calls (``deploys.forward_mode``) and of the CLI (``cluster.lookup``).
    """
    last: list[Progress] = []

    def settled() -> bool:
        progress = Progress(name, revision, live_workers())
        last[:] = [progress]
        if not progress.behind:
            return True
        if on_disk is not None and revision is not None and (now := on_disk()) != revision:
            last[:] = [Progress(name, now, progress.workers)]
            return True
        return False

    with contextlib.suppress(TimeoutError):
        poll_until(settled, timeout, interval)
    return last[0]


def cluster_router(
    state_dir: Path, ttl: float, pipelines_dir: Callable[[], Path], guard: Depends | None = None
) -> APIRouter:
    """``GET /cluster`` over the worker states in *state_dir*, against the directory *pipelines_dir* returns when
    asked (the worker's app context passes it in: a worker that follows a link serves from where it leads), behind
    *guard* (the worker passes ``auth``'s read role)."""
    router = APIRouter(tags=["kit"])

    @router.get(
        "/cluster",
        summary="Every live worker (all hosts sharing the state directory), the revisions on disk",
        dependencies=[guard] if guard is not None else [],
    )
    async def cluster() -> JSONResponse:
        pipelines = pipelines_dir()
        try:
            view = await run_in_threadpool(cluster_view, state_dir, pipelines, ttl)
        except OSError as e:
            body = {"converged": False, "worker": worker_id(), "error": f"Cannot read '{pipelines}': {e}"}
            return JSONResponse(body, status_code=503)
        return JSONResponse({**view.to_json(), "worker": worker_id(), "state_dir": str(state_dir)})

    return router
