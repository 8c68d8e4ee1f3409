"""``/readyz`` and the reconciler's view of what is pending, in-process on the app every worker serves."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import YAML_PIPELINE, booted_app
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hayhooks_gunicorn.app_context import app_context


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

    def broken() -> list[str]:
        raise RuntimeError("the scan blew up")

    monkeypatch.setattr(runtime.reconciler, "pending", broken)
    answer = TestClient(booted, raise_server_exceptions=False).get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "check failed"
    assert answer.json()["error"] == "RuntimeError: the scan blew up"


def test_pending_reads_the_reconciler_state_under_its_lock(booted: FastAPI) -> None:
    """Loads finish on their own threads and change the maps pending() reads: it must wait for the lock."""
    runtime = app_context(booted).runtime
    assert runtime is not None
    reconciler = runtime.reconciler
    answers: list[list[str]] = []
    reader = threading.Thread(target=lambda: answers.append(reconciler.pending()))
    with reconciler._lock:
        reader.start()
        reader.join(timeout=0.5)
        assert reader.is_alive() and not answers, "pending() read the maps while a load held the lock"
    reader.join(timeout=10)
    assert answers == [[]]


def test_readyz_says_behind_for_a_change_left_unloaded(booted: FastAPI, tmp_path: Path) -> None:
    (tmp_path / "pipelines" / "health_second.yml").write_text(YAML_PIPELINE)
    answer = TestClient(booted).get("/readyz")
    assert answer.status_code == 200  # within the grace period
    assert answer.json()["status"] == "reloading" and answer.json()["behind"] == ["health_second"]
