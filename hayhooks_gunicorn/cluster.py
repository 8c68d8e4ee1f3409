"""The cluster view: live workers (from their state files) against the revisions on disk, and waiting for them.

``GET /cluster`` answers it; forwarded deploys and the CLI wait on it until every worker has caught up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hayhooks_gunicorn.identity import worker_id
from hayhooks_gunicorn.scan import scan
from hayhooks_gunicorn.settings import KitSettings
from hayhooks_gunicorn.state import StatePublisher, WorkerState, default_pipelines_dir, read_workers, state_dir

router = APIRouter(tags=["kit"])


@dataclass(frozen=True)
class ClusterView:
    workers: list[WorkerState]
    disk: dict[str, str]  # pipeline name -> revision on disk
    source: str = ""  # where the worker states were read

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
            "workers": [{**w.to_json(), "behind": behind[w.id]} for w in self.workers],
            "disk": self.disk,
        }


def behind_disk(worker: WorkerState, disk: dict[str, str]) -> list[str]:
    gone = [name for name in worker.pipelines if name not in disk]
    return sorted(gone + [name for name, revision in disk.items() if not worker.has(name, revision)])


def cluster_view(directory: Path, pipelines_dir: Path, ttl: float) -> ClusterView:
    """Raises ``OSError`` when the pipelines directory cannot be read."""
    disk = {name: source.revision for name, source in scan(pipelines_dir).items()}
    return ClusterView(read_workers(directory, ttl), disk, str(directory))


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
        return {
            w.id: w.failures[self.name]["error"]
            for w in self.workers
            if self.revision and (w.failures.get(self.name) or {}).get("revision") == self.revision
        }

    @property
    def serving(self) -> bool:
        """Every live worker serves the revision (or, for a removal, none serves the name)."""
        return not self.behind and not self.failed

    def to_json(self) -> dict[str, Any]:
        return {"workers": len(self.workers), "behind": self.behind, "failed": self.failed}


def install_cluster(app: FastAPI, settings: KitSettings) -> None:
    """Publish this worker's state once it boots, and serve ``GET /cluster``."""
    directory = state_dir(settings)
    app.state.kit_state_dir = directory
    app.state.kit_heartbeat_ttl = settings.heartbeat_ttl
    app.state.kit_on_boot.append(StatePublisher(directory))
    app.include_router(router)


def live_workers(app: FastAPI) -> list[WorkerState]:
    return read_workers(app.state.kit_state_dir, app.state.kit_heartbeat_ttl)


@router.get("/cluster", summary="Every live worker (all hosts sharing the state directory), the revisions on disk")
async def cluster(request: Request) -> JSONResponse:
    app = request.app
    runtime = getattr(app.state, "kit_runtime", None)
    pipelines = runtime.reconciler.pipelines_dir if runtime is not None else default_pipelines_dir()
    try:
        view = await run_in_threadpool(cluster_view, app.state.kit_state_dir, pipelines, app.state.kit_heartbeat_ttl)
    except OSError as e:
        body = {"converged": False, "worker": worker_id(), "error": f"Cannot read '{pipelines}': {e}"}
        return JSONResponse(body, status_code=503)
    return JSONResponse({**view.to_json(), "worker": worker_id(), "state_dir": str(app.state.kit_state_dir)})
