"""Durable workers that cannot boot as they should never halt the master: a broken file, a Redis outage."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Server, echo_wrapper, setup_wrapper, wait_until, write_wrapper
from redis_server import RedisServer
from test_durable import EXAMPLE, NAME, durable_env, redis  # noqa: F401  (the module's Redis fixture)

pytestmark = pytest.mark.integration


def serve_durable(start_server: Callable[..., Server], pipelines: Path, redis: RedisServer) -> Server:  # noqa: F811
    shutil.copytree(EXAMPLE, pipelines / NAME)
    write_wrapper(pipelines, "plain", echo_wrapper("plain"))
    return start_server(pipelines, workers=2, env=durable_env(redis))


def two_workers_serve(server: Server) -> bool:
    if server.proc.poll() is not None:
        raise AssertionError(f"the master exited with {server.proc.returncode}:\n{server.log_text()[-4000:]}")
    return server.every_worker(lambda r: r.status_code == 200, "POST", "/plain/run", json={})


def test_a_broken_file_then_a_sigkilled_worker(
    start_server: Callable[..., Server],
    pipelines_dir: Path,
    redis: RedisServer,  # noqa: F811
) -> None:
    server = serve_durable(start_server, pipelines_dir, redis)
    write_wrapper(pipelines_dir, "broken", "raise RuntimeError('no model here')\n")
    victim = min(server.worker_pids())
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: two_workers_serve(server) and victim not in server.worker_pids(), timeout=30)
    assert server.proc.poll() is None

    def reports_broken() -> bool:
        answers = server.by_worker("GET", "/readyz", calls=12)
        return any(
            "no model here" in r.json().get("failures", {}).get("broken", "") for rs in answers.values() for r in rs
        )

    wait_until(reports_broken, timeout=30)
    assert "broken" in server.get("/cluster").text


def test_a_worker_sigkilled_while_redis_is_down(
    start_server: Callable[..., Server],
    pipelines_dir: Path,
    redis: RedisServer,  # noqa: F811
) -> None:
    server = serve_durable(start_server, pipelines_dir, redis)
    redis.stop()
    try:
        victim = min(server.worker_pids())
        os.kill(victim, signal.SIGKILL)
        outage_ends = time.monotonic() + 20
        waiting: list[str] = []

        def replacement_waits() -> bool:
            assert server.proc.poll() is None, server.log_text()[-4000:]
            for responses in server.by_worker("GET", "/readyz", calls=6).values():
                waiting.extend(r.json().get("error", "") for r in responses if r.status_code == 503)
            return bool(waiting)

        wait_until(replacement_waits, timeout=20)
        assert any("Redis" in reason or "store" in reason for reason in waiting), waiting
        wait_until(lambda end=outage_ends: server.proc.poll() is None and time.monotonic() > end, timeout=30)
    finally:
        redis.start()
    # Within 60 s of Redis coming back: both workers serve, and hayhooks' durable runtime takes submissions again
    # (it answers 503 "not accepting submissions" until its own maintenance loop has reconnected to the store).
    answers: list[str] = []

    def accepts_submissions() -> bool:
        submitted = server.post(f"/{NAME}/run-durable", json={"value": 1})
        answers.append(f"{submitted.status_code} {submitted.text[:200]}")
        return submitted.status_code == 202

    wait_until(
        lambda: two_workers_serve(server) and victim not in server.worker_pids() and accepts_submissions(), timeout=60
    )


def test_a_durable_pipeline_that_kills_its_worker_is_quarantined(
    start_server: Callable[..., Server],
    pipelines_dir: Path,
    redis: RedisServer,  # noqa: F811
) -> None:
    """Durable workers load their fixed set in create_app(): a load that ends the process is remembered there too."""
    shutil.copytree(EXAMPLE, pipelines_dir / NAME)
    write_wrapper(pipelines_dir, "plain", echo_wrapper("plain"))
    write_wrapper(pipelines_dir, "fatal", setup_wrapper("os._exit(1)"))
    server = start_server(pipelines_dir, workers=2, env=durable_env(redis), wait=False)
    wait_until(lambda: two_workers_serve(server), timeout=60)
    cause = "ended its worker while loading (exit code 1)"
    assert server.every_worker(lambda r: cause in r.json()["failures"].get("fatal", ""), "GET", "/readyz")
    assert server.post(f"/{NAME}/run-durable", json={"value": 1}).status_code == 202
