"""The cluster as the CLI sees it: ``GET /cluster`` of a running server, else the state directory on this host."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from hayhooks_gunicorn.cluster import ClusterView, Progress
from hayhooks_gunicorn.scan import scan
from hayhooks_gunicorn.settings import KitSettings
from hayhooks_gunicorn.state import WorkerState, read_workers, state_dir

WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def server_url(host: str, port: int) -> str:
    """Where hayhooks' own CLI would connect (``hayhooks/cli/utils.py::get_server_url``)."""
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def fetch(url: str | None, pipelines_dir: Path, settings: KitSettings) -> ClusterView:
    """The server's view when it answers; else the local state directory against *pipelines_dir*."""
    if url:
        try:
            response = httpx.get(f"{url.rstrip('/')}/cluster", timeout=5)
            if response.status_code == 200:
                data: dict[str, Any] = response.json()
                workers = [WorkerState.from_json(w) for w in data.get("workers", [])]
                return ClusterView(workers, dict(data.get("disk", {})), f"{url.rstrip('/')}/cluster")
        except (httpx.HTTPError, ValueError, KeyError):
            pass
    directory = state_dir(settings, pipelines_dir)
    disk = {name: source.revision for name, source in scan(pipelines_dir).items()} if pipelines_dir.is_dir() else {}
    return ClusterView(read_workers(directory, settings.heartbeat_ttl), disk, str(directory))


def wait_for(
    name: str, revision: str | None, url: str | None, pipelines_dir: Path, settings: KitSettings, timeout: float
) -> tuple[ClusterView, Progress]:
    """Poll until every live worker serves *revision* of *name* (None: none serves it) or *timeout* passes."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = fetch(url, pipelines_dir, settings)
        progress = Progress(name, revision, snapshot.workers)
        if not progress.behind or time.monotonic() >= deadline:
            return snapshot, progress
        time.sleep(0.1)
