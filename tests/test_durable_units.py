"""Durable mode's master checks that need no process: the redacted URL, the missing package, the wrapper scan."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest
from conftest import write_wrapper

from hayhooks_gunicorn.cluster.state_files import WorkerState, state_file
from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.master.durable import check_redis, durable_wrappers, redacted, workers_to_replace
from hayhooks_gunicorn.reload.scan import scan


def test_redacted_hides_only_the_password() -> None:
    assert redacted("redis://user:pw@redis.internal:6380/2") == "redis://user:***@redis.internal:6380/2"
    assert redacted("redis://:pw@localhost/0") == "redis://:***@localhost/0"
    assert redacted("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_missing_redis_package_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # what `import redis` sees when it is not installed
    with pytest.raises(KitError, match=r"needs the redis package: pip install 'hayhooks-gunicorn\[durable\]'"):
        check_redis("redis://localhost:6379/0")


def test_durable_wrappers_found_by_their_revision(pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "job", "class PipelineWrapper:\n    durable_revision = 'v1'\n")
    write_wrapper(pipelines_dir, "plain", "class PipelineWrapper:\n    durable_revision = None\n")
    assert durable_wrappers(pipelines_dir) == ["job"]


def test_workers_to_replace_are_durable_workers_behind_the_directory(pipelines_dir: Path, tmp_path: Path) -> None:
    """What a rolling replacement acts on: durable workers whose fixed set differs from the directory now."""
    write_wrapper(pipelines_dir, "job", "class PipelineWrapper:\n    durable_revision = 'v1'\n")
    state = tmp_path / "state"
    state.mkdir()
    host = socket.gethostname()
    live = [os.getpid(), os.getppid()]  # read_workers keeps only live processes of this host

    def record(pid: int, durable: bool) -> None:
        worker = WorkerState(host=host, pid=pid, heartbeat=time.time(), durable_mode=durable, pipelines=scanned())
        state_file(state, host, pid).write_text(worker.model_dump_json())

    def scanned() -> dict[str, str]:
        return {name: source.revision for name, source in scan(pipelines_dir).items()}

    record(live[0], durable=True)
    record(live[1], durable=False)  # a hot-reloading worker reloads in place: a roll never replaces it
    assert workers_to_replace(state, pipelines_dir, ttl=60) == []
    write_wrapper(pipelines_dir, "job", "class PipelineWrapper:\n    durable_revision = 'v2'\n")
    assert [w.pid for w in workers_to_replace(state, pipelines_dir, ttl=60)] == [live[0]]
