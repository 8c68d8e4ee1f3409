"""Keep-alive clients during a rolling restart: a retiring worker must not drop a connection a client reuses."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import WORKER_HEADER, echo_wrapper, kit_cli, wait_until, write_wrapper

pytestmark = pytest.mark.integration


def test_rolling_restart_drops_no_request_of_keep_alive_clients(
    start_server, pipelines_dir: Path, runtime_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three clients, each reusing one connection pool, call a pipeline while `hayhooks-gunicorn restart`
    replaces both workers: no request fails, and new workers answer them afterwards."""
    write_wrapper(pipelines_dir, "echo", echo_wrapper("hi"))
    server = start_server(pipelines_dir)
    before = server.worker_pids()
    results: list[tuple[int | str, str, str]] = []  # (status or error, worker, Connection header)
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                try:
                    response = http.post("/echo/run", json={"text": "x"})
                    worker = response.headers.get(WORKER_HEADER, "?")
                    results.append((response.status_code, worker, response.headers.get("connection", "")))
                except httpx.HTTPError as e:
                    results.append((f"{type(e).__name__}: {e}", "?", ""))

    with ThreadPoolExecutor(max_workers=3) as pool:
        clients = [pool.submit(client) for _ in range(3)]
        try:
            wait_until(lambda: len(results) > 50, timeout=30)
            restart = kit_cli(
                "restart", "--bind", f"127.0.0.1:{server.port}", env={"XDG_RUNTIME_DIR": str(runtime_dir)}
            )
            after = server.worker_pids()
            count = len(results)
            wait_until(lambda: len(results) > count + 50, timeout=30)
        finally:
            stop.set()
        for done in clients:
            done.result()

    assert restart.returncode == 0, restart.stderr
    assert "Restarted 2 worker(s)" in restart.stdout
    assert not after & before and len(after) == 2
    failures = [r for r in results if r[0] != 200]
    told_to_close = sum(1 for r in results if r[2].lower() == "close")
    with capsys.disabled():
        print(
            f"\nkeep-alive clients through a rolling restart: {len(results)} requests, {len(failures)} failed, "
            f"{told_to_close} answered with Connection: close"
        )
    assert failures == []
    # Each client stays on the worker it reconnected to, so all three may end up on one new worker: answered by
    # new workers only, not necessarily by both.
    host = socket.gethostname()
    assert {r[1] for r in results[count:]} <= {f"{host}:{pid}" for pid in after}
