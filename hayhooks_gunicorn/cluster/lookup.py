"""The cluster view from outside the workers (the CLI): ``GET /cluster`` of a running server when one answers,
else the state files on this host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from hayhooks_gunicorn.cluster.state_files import WorkerState, read_workers, state_dir
from hayhooks_gunicorn.cluster.view import ClusterView, Progress, disk_revisions, wait_until_serving
from hayhooks_gunicorn.settings import KitSettings

WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def server_url(host: str, port: int) -> str:
    """Where hayhooks' own CLI would connect (``hayhooks/cli/utils.py::get_server_url``)."""
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def read_headers(settings: KitSettings) -> dict[str, str]:
    """The CLI reads with the read token when it has one (least privilege), else the admin token, else none."""
    token = settings.read_token or settings.admin_token
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}


def fetch_view(url: str | None, pipelines_dir: Path, settings: KitSettings) -> ClusterView:
    """The server's view when it answers; else the local state directory against *pipelines_dir*."""
    if url:
        endpoint = f"{url.rstrip('/')}/cluster"
        try:
            response = httpx.get(endpoint, headers=read_headers(settings), timeout=5)
            if response.status_code == 200:
                data: dict[str, Any] = response.json()
                workers = [WorkerState.model_validate(w) for w in data.get("workers", [])]
                return ClusterView(workers, dict(data.get("disk", {})), endpoint, str(data.get("resolved", "")))
        except (httpx.HTTPError, ValueError, ValidationError):
            pass
    directory = state_dir(settings, pipelines_dir)
    try:
        resolved, disk = disk_revisions(pipelines_dir)
    except OSError:
        resolved, disk = None, {}
    workers = read_workers(directory, settings.heartbeat_ttl)
    return ClusterView(workers, disk, str(directory), str(resolved or ""))


def wait_for_workers(
    name: str, revision: str | None, url: str | None, pipelines_dir: Path, settings: KitSettings, timeout: float
) -> tuple[ClusterView, Progress]:
    """Poll until every live worker serves *revision* of *name* (None: none serves it) or *timeout* passes."""
    views: list[ClusterView] = []

    def live_workers() -> list[WorkerState]:
        views[:] = [fetch_view(url, pipelines_dir, settings)]
        return views[0].workers

    progress = wait_until_serving(name, revision, live_workers, timeout, interval=0.1)
    return views[0], progress
