"""The cluster view: two masters sharing the pipelines and state directories stand for two hosts."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from conftest import wait_until
from deploy_helpers import thirty_calls, wrapper_files

from hayhooks_gunicorn.cluster.state_files import read_workers, remove_state
from hayhooks_gunicorn.cluster.view import Progress, behind_disk


@pytest.mark.integration
def test_two_masters_converge_and_dead_workers_leave_the_view(start_server, pipelines_dir: Path) -> None:
    first = start_server(pipelines_dir, workers=2)
    second = start_server(pipelines_dir, workers=1)
    wait_until(lambda: len(first.get("/cluster").json()["workers"]) == 3, timeout=15)

    # A deploy through one master answers once the other master's worker serves it too.
    response = first.post("/deploy_files", json={"name": "shared", "files": wrapper_files("both")})
    assert response.status_code == 200, response.text
    assert response.json()["workers"] == 3
    assert all(r == {"both"} for r in thirty_calls(second, "shared").values())
    view = second.get("/cluster").json()
    assert view["converged"] is True
    assert {w["pid"] for w in view["workers"]} == first.worker_pids() | second.worker_pids()
    assert all(w["pipelines"] == {"shared": response.json()["revision"]} for w in view["workers"])

    # A killed worker's entry goes (the master's child_exit hook); its replacement joins.
    victim = min(first.worker_pids())
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in {w["pid"] for w in first.get("/cluster").json()["workers"]}, timeout=15)
    wait_until(lambda: len(first.get("/cluster").json()["workers"]) == 3, timeout=30)

    # A stopped master's workers leave the view of the other.
    gone = second.worker_pids()
    second.stop()
    remaining = {w["pid"] for w in first.get("/cluster").json()["workers"]}
    assert not remaining & gone and len(remaining) == 2

    # Undeploy through the other master: no worker serves it when the call returns.
    undeployed = first.post("/undeploy/shared")
    assert undeployed.json() == {"success": True, "name": "shared", "workers": 2, "behind": [], "failed": {}}
    assert all(r == {404} for r in thirty_calls(first, "shared").values())


def _state(directory: Path, host: str, pid: int, heartbeat: float, pipelines: dict[str, str]) -> None:
    data = {"host": host, "pid": pid, "master_pid": 1, "started_at": 0, "heartbeat": heartbeat, "booted": True}
    (directory / f"{host}-{pid}.json").write_text(json.dumps({**data, "pipelines": pipelines, "failures": {}}))


def test_readers_skip_stale_heartbeats_and_dead_local_processes(tmp_path: Path) -> None:
    now = time.time()
    here = socket.gethostname()
    _state(tmp_path, here, os.getpid(), now, {"a": "r1"})  # alive
    _state(tmp_path, "other-host", 4242, now - 1, {"a": "r0"})  # another host, fresh heartbeat
    _state(tmp_path, "other-host", 4343, now - 60, {})  # heartbeat too old
    _state(tmp_path, here, 2**22 + 12345, now, {})  # no such process on this host
    (tmp_path / ".vm-1.json.tmp").write_text("{")  # a write in progress is not a worker
    (tmp_path / "garbage.json").write_text("not json")

    workers = read_workers(tmp_path, ttl=10, now=now)
    assert [w.id for w in workers] == sorted([f"{here}:{os.getpid()}", "other-host:4242"])

    progress = Progress("a", "r1", workers)
    assert progress.behind == ["other-host:4242"] and not progress.serving
    # Behind the disk: an old revision, a pipeline removed from disk, one not loaded yet.
    other = next(w for w in workers if w.host == "other-host")
    assert behind_disk(other, {"b": "r9"}) == ["a", "b"]
    assert behind_disk(other, {"a": "r0"}) == []


def test_the_master_removes_what_an_exited_worker_left_in_the_state_directory(tmp_path: Path) -> None:
    """A worker stopped while its recorder thread wrote leaves the temp file of that write (seen after a README
    run: ``.vm-14461.json.9c48d325.tmp``), which kept the default state directory from being removed at exit."""
    here = socket.gethostname()
    _state(tmp_path, here, 4242, time.time(), {})
    (tmp_path / f".{here}-4242.json.9c48d325.tmp").write_text("{")
    (tmp_path / f".{here}-4243.json.0badc0de.tmp").write_text("{")  # another worker's write in progress: kept

    remove_state(tmp_path, here, 4242)

    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{here}-4243.json.0badc0de.tmp"]
