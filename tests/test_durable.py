"""Durable mode under gunicorn, with a real redis-server: every worker a hayhooks durable replica.

A durable pipeline of two 1.5 s steps with a checkpoint between them; a worker SIGKILLed mid-run has its
executions taken over by the other through hayhooks' leases; Redis restarting does not end the service.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import REPO, WORKER_HEADER, Server, echo_wrapper, free_port, wait_until, write_wrapper
from redis_server import RedisServer, redis_server

pytestmark = pytest.mark.integration

# examples/durable/two_steps: the README's durable example, two 1.5 s steps with a checkpoint between them
EXAMPLE = REPO / "examples" / "durable" / "two_steps"
NAME = "two_steps"


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def durable_env(redis: RedisServer) -> dict[str, str]:
    return {
        "HAYHOOKS_DURABLE_MODE": "true",
        "HAYHOOKS_DURABLE_REDIS_URL": redis.url,
        "HAYHOOKS_DURABLE_REDIS_KEY_PREFIX": f"test:{time.monotonic_ns()}",
        # A lost worker's leases expire in 3 s, and the survivor looks for expired ones every second.
        "HAYHOOKS_DURABLE_LEASE_DURATION_MS": "3000",
        "HAYHOOKS_DURABLE_LEASE_COMMIT_SAFETY_MS": "500",
        "HAYHOOKS_DURABLE_POLL_INTERVAL_SECONDS": "0.5",
        "HAYHOOKS_DURABLE_MAINTENANCE_INTERVAL_SECONDS": "1",
        "HAYHOOKS_DURABLE_WORKER_CONCURRENCY": "6",
    }


@pytest.fixture
def durable_server(
    start_server: Callable[..., Server], pipelines_dir: Path, redis: RedisServer
) -> Callable[..., Server]:
    def start(**env: str) -> Server:
        shutil.copytree(EXAMPLE, pipelines_dir / NAME)
        return start_server(pipelines_dir, workers=2, env={**durable_env(redis), **env})

    return start


def execution(server: Server, execution_id: str) -> dict[str, object] | None:
    response = server.get(f"/{NAME}/executions/{execution_id}")
    return response.json() if response.status_code == 200 else None


def completed(server: Server, ids: list[str]) -> dict[str, object]:
    return {i: e for i in ids if (e := execution(server, i)) is not None and e.get("status") == "completed"}


def test_every_worker_is_durable(durable_server: Callable[..., Server]) -> None:
    server = durable_server()
    answers = server.by_worker("GET", "/status")
    assert len(answers) == 2
    assert all(r.json().get("durable_mode") is True for rs in answers.values() for r in rs)

    def listed() -> list[dict[str, object]] | None:
        workers = server.get("/cluster").json()["workers"]
        return workers if len(workers) == 2 else None

    workers = wait_until(listed)
    assert isinstance(workers, list)
    assert all(w["durable_revisions"] == {NAME: "1"} and NAME in w["pipelines"] for w in workers)
    metrics = server.get("/metrics").text
    assert "hayhooks_workers 2.0" in metrics, metrics
    refused = server.post("/deploy_files", json={"name": "x", "files": {}})
    assert refused.status_code == 409
    assert "fixed pipeline set" in refused.json()["detail"]


def test_sigkill_mid_run_every_execution_completes(durable_server: Callable[..., Server]) -> None:
    server = durable_server()
    started = time.monotonic()
    submitted = [server.post(f"/{NAME}/run-durable", json={"value": n}) for n in range(6)]
    assert [r.status_code for r in submitted] == [202] * 6, [r.text for r in submitted]
    ids = [r.json()["execution_id"] for r in submitted]

    time.sleep(1.0)  # the scenario itself: the kill lands one second after the jobs, mid first step
    victim = int(server.get("/healthz").headers[WORKER_HEADER].rpartition(":")[2])
    os.kill(victim, signal.SIGKILL)

    done = wait_until(lambda: (d := completed(server, ids)) and len(d) == 6 and d, timeout=120, interval=0.5)
    assert isinstance(done, dict)
    elapsed = time.monotonic() - started
    results = {i: e["result"] for i, e in done.items()}
    assert results == {i: {"value": n * 2 + 1} for n, i in enumerate(ids)}, results
    print(f"6 of 6 completed {elapsed:.1f}s after submission, worker {victim} SIGKILLed at 1 s")
    wait_until(lambda: len(server.worker_pids() - {victim}) == 2)  # gunicorn replaced it


def test_redis_restart_service_resumes(durable_server: Callable[..., Server], redis: RedisServer) -> None:
    server = durable_server()
    pids = server.worker_pids()
    redis.stop()
    during = server.post(f"/{NAME}/run-durable", json={"value": 1})
    assert during.status_code >= 500  # refused while the store is away, the worker stays up
    assert server.get("/healthz").status_code == 200
    redis.start()

    def accepted() -> httpx.Response | None:
        response = server.post(f"/{NAME}/run-durable", json={"value": 20})
        return response if response.status_code == 202 else None

    response = wait_until(accepted, timeout=30, interval=0.5)
    assert isinstance(response, httpx.Response)
    execution_id = response.json()["execution_id"]
    done = wait_until(lambda: completed(server, [execution_id]), timeout=60, interval=0.5)
    assert done == {execution_id: done[execution_id]} and done[execution_id]["result"] == {"value": 41}
    assert server.worker_pids() == pids  # no worker died for the outage


def test_redis_unreachable_at_boot_one_sentence(
    start_server: Callable[..., Server], pipelines_dir: Path, redis: RedisServer
) -> None:
    shutil.copytree(EXAMPLE, pipelines_dir / NAME)
    port = free_port()
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    server = start_server(pipelines_dir, env={**durable_env(redis), "HAYHOOKS_DURABLE_REDIS_URL": url}, wait=False)
    assert server.proc.wait(timeout=60) == 1
    log = server.log_text()
    assert f"Redis at redis://:***@127.0.0.1:{port}/0 is unreachable" in log, log
    assert "s3cret" not in log and "Traceback" not in log, log


def test_durable_wrapper_without_durable_mode_one_line(
    start_server: Callable[..., Server], pipelines_dir: Path
) -> None:
    shutil.copytree(EXAMPLE, pipelines_dir / NAME)
    server = start_server(pipelines_dir)
    assert server.get("/status").json().get("durable_mode") is not True
    assert server.log_text().count("set a durable_revision: they are served only with HAYHOOKS_DURABLE_MODE=true") == 1


def test_durable_set_with_a_broken_pipeline_serves_the_rest(
    start_server: Callable[..., Server], pipelines_dir: Path, redis: RedisServer
) -> None:
    """As outside durable mode, a pipeline that cannot load costs only that pipeline (hayhooks' own loader stops
    the whole host, and gunicorn halts the arbiter on the app-load error: worker/durable_set.py)."""
    shutil.copytree(EXAMPLE, pipelines_dir / NAME)
    (pipelines_dir / "broken").mkdir()
    (pipelines_dir / "broken" / "pipeline_wrapper.py").write_text("raise RuntimeError('no model here')\n")
    server = start_server(pipelines_dir, env=durable_env(redis))
    ready = server.get("/readyz").json()
    assert ready["pipelines"] == [NAME] and "no model here" in ready["failures"]["broken"], ready
    assert server.post(f"/{NAME}/run-durable", json={"value": 1}).status_code == 202
    log = server.log_text()
    assert log.count("Durable mode leaves pipeline 'broken' out of this worker's set") == 2, log
    assert "App failed to load." not in log and "Exception in worker process" not in log, log


def test_a_change_is_rolled_out_by_replacing_workers_while_jobs_and_requests_run(
    durable_server: Callable[..., Server], pipelines_dir: Path
) -> None:
    write_wrapper(pipelines_dir, "plain", echo_wrapper("plain v1"))
    server = durable_server()
    old_workers = server.worker_pids()
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not stop.is_set():
                try:
                    answer = client.post("/plain/run", json={})
                    if answer.status_code != 200:
                        failures.append(f"{answer.status_code} {answer.text[:100]}")
                except httpx.HTTPError as e:
                    failures.append(repr(e))

    sender = threading.Thread(target=load)
    sender.start()
    try:
        write_wrapper(pipelines_dir, "plain", echo_wrapper("plain v2"))
        submitted = [server.post(f"/{NAME}/run-durable", json={"value": n}) for n in range(3)]
        assert [r.status_code for r in submitted] == [202] * 3, [r.text for r in submitted]
        ids = [r.json()["execution_id"] for r in submitted]
        wait_until(lambda: server.worker_pids().isdisjoint(old_workers) and len(server.worker_pids()) == 2, 90)
        assert server.every_worker(lambda r: r.json()["result"] == {"reply": "plain v2"}, "POST", "/plain/run", json={})
        assert "Rolled the change out: replaced 2 worker(s)" in server.log_text()
        done = wait_until(lambda: (d := completed(server, ids)) and len(d) == 3 and d, timeout=120, interval=0.5)
        assert isinstance(done, dict)

        # A changed set that does not load stops the roll; the workers serving now go on serving it.
        serving = server.worker_pids()
        write_wrapper(pipelines_dir, "plain", "def broken(:\n")
        wait_until(lambda: "Roll stopped, the workers keep serving the previous set" in server.log_text(), 60)
        assert server.worker_pids() == serving and server.proc.poll() is None
    finally:
        stop.set()
        sender.join(timeout=60)
    assert failures == []


def test_traces_of_durable_workers_cover_the_whole_server(
    durable_server: Callable[..., Server], pipelines_dir: Path
) -> None:
    """Durable workers keep hayhooks' app whole, and still answer /traces with every worker's runs."""
    from test_traces_workers import AUTH, TOKEN, run_until_both_workers, runs_by_worker

    write_wrapper(pipelines_dir, "traced", echo_wrapper("traced"))
    server = durable_server(HAYHOOKS_TRACING_TOKEN=TOKEN)
    served = run_until_both_workers(server)

    def read() -> Counter[str]:
        response = server.get("/traces?limit=100", headers=AUTH)
        assert response.status_code == 200, response.text
        return runs_by_worker(response.json(), "traced")

    wait_until(lambda: read() == served, timeout=10)
    assert all(read() == served for _ in range(8))
