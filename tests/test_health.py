"""``/readyz`` and the reconciler's view of what is pending, in-process on the app every worker serves."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import YAML_PIPELINE, booted_app, setup_wrapper, wait_until, write_wrapper
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hayhooks_gunicorn.app_context import app_context
from hayhooks_gunicorn.reload.outcomes import Failure, Served, Snapshot
from hayhooks_gunicorn.reload.watcher import DirectoryWatcher
from hayhooks_gunicorn.settings import WatchMode
from hayhooks_gunicorn.worker import health


@pytest.fixture
def booted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """A worker's app that has loaded *tmp_path/pipelines* (one YAML pipeline), with no watcher running."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "health_greeting.yml").write_text(YAML_PIPELINE)
    with booted_app(pipelines, monkeypatch) as app:
        yield app


def test_readyz_is_ready_once_the_directory_is_loaded(booted: FastAPI) -> None:
    answer = TestClient(booted).get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ready" and answer.json()["pipelines"] == ["health_greeting"]


def test_readyz_answers_503_with_the_reason_whatever_breaks_the_check(
    booted: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = app_context(booted).runtime
    assert runtime is not None

    def broken() -> Snapshot:
        raise RuntimeError("the state is broken")

    monkeypatch.setattr(runtime.reconciler, "snapshot", broken)
    answer = TestClient(booted, raise_server_exceptions=False).get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "check failed"
    assert answer.json()["error"] == "RuntimeError: the state is broken"


def test_readyz_answers_while_a_pass_or_a_load_holds_the_reconciler_lock(booted: FastAPI) -> None:
    """A pass holds the lock while it reads the disk (a slow network share): the check must not wait for it."""
    runtime = app_context(booted).runtime
    assert runtime is not None
    answers: list[int] = []
    with TestClient(booted) as client, runtime.reconciler._lock:
        reader = threading.Thread(target=lambda: answers.append(client.get("/readyz").status_code), daemon=True)
        reader.start()
        reader.join(timeout=30)
        assert answers == [200], "/readyz waited for the reconciler's lock"


def test_readyz_reads_no_disk_a_change_counts_once_a_pass_has_seen_it(booted: FastAPI, tmp_path: Path) -> None:
    runtime = app_context(booted).runtime
    assert runtime is not None
    gate = tmp_path / "gate"
    wait_for_gate = f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)"
    write_wrapper(tmp_path / "pipelines", "health_slow", setup_wrapper(wait_for_gate))
    client = TestClient(booted)
    try:
        assert client.get("/readyz").json()["behind"] == []  # no pass has read the directory since the write
        runtime.reconciler.sync()  # what the watcher does on the event: the load waits for the gate
        answer = client.get("/readyz")
        assert answer.status_code == 200  # being loaded: the old set keeps serving
        assert answer.json()["status"] == "reloading"
        assert answer.json()["behind"] == ["health_slow"] and answer.json()["loading"] == ["health_slow"]
    finally:
        gate.touch()
    wait_until(lambda: client.get("/readyz").json()["status"] == "ready")
    assert "health_slow" in client.get("/readyz").json()["pipelines"]


def test_readyz_says_behind_when_no_pass_reads_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A watcher that stopped running passes (a stuck thread, a share that hangs) leaves every change unseen."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    with booted_app(pipelines, monkeypatch, READY_GRACE="0") as app:
        runtime = app_context(app).runtime
        assert runtime is not None
        client = TestClient(app)
        monkeypatch.setattr(health, "RESCAN_SECONDS", -1)  # the last pass is already overdue
        assert client.get("/readyz").status_code == 200  # no watcher: this worker does not follow the directory
        runtime.watcher = DirectoryWatcher(pipelines, runtime.reconciler.sync, WatchMode.POLL)  # never runs a pass
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["status"] == "behind" and "no pass has read" in answer.json()["error"]
        monkeypatch.setattr(health, "RESCAN_SECONDS", 3600)
        assert client.get("/readyz").json()["status"] == "ready"


def test_pending_compares_what_is_served_with_what_the_last_pass_found() -> None:
    on_disk = {"same": Served("r1", "/p/same"), "changed": Served("r2", "/p/changed"), "broken": Served("r3", "/p/b")}
    on_disk |= {"moved": Served("r4", "/new/moved"), "new": Served("r5", "/p/new")}
    served = {"same": Served("r1", "/p/same"), "changed": Served("r1", "/p/changed"), "gone": Served("r1", "/p/gone")}
    served |= {"moved": Served("r4", "/old/moved")}
    now = Snapshot(served, {"broken": Failure("r3", "boom")}, {"busy": "r9"}, on_disk=on_disk, scanned_at=1.0)
    assert now.pending() == ["busy", "changed", "gone", "moved", "new"]
