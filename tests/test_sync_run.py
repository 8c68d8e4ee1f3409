"""HAYHOOKS_GUNICORN_SYNC_RUN: sync pipeline methods in hayhooks' thread pool (default) or inline on the loop."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Server, write_wrapper

pytestmark = pytest.mark.integration

# Reports where it ran, and when it started and ended (sleeping in between) so overlap is observable.
WHERE = '''
import threading
import time

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, pause: float = 0.0) -> dict:
        """Say which thread ran the call.

        Args:
            pause: seconds to sleep while running
        """
        started = time.monotonic()
        time.sleep(pause)
        return {"main": threading.current_thread() is threading.main_thread(), "span": [started, time.monotonic()]}

    def run_chat_completion(self, model: str, messages: list, body: dict) -> str:
        return "main" if threading.current_thread() is threading.main_thread() else "pool"
'''


def two_at_once(server: Server) -> list[list[float]]:
    """Two calls sent together to the one worker: the spans during which each ran."""
    barrier = threading.Barrier(2)

    def call() -> list[float]:
        barrier.wait()
        response = server.post("/where/run", json={"pause": 0.5})
        assert response.status_code == 200, response.text
        return response.json()["result"]["span"]

    with ThreadPoolExecutor(2) as pool:
        return sorted(pool.map(lambda _: call(), range(2)))


def chat(server: Server) -> str:
    body = {"model": "where", "messages": [{"role": "user", "content": "hi"}]}
    return server.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("mode", ["threadpool", "inline"])
def test_sync_run_decides_where_and_how_many_sync_calls_run(start_server, pipelines_dir: Path, mode: str) -> None:
    write_wrapper(pipelines_dir, "where", WHERE)
    env = {"HAYHOOKS_GUNICORN_SYNC_RUN": mode} if mode == "inline" else {}
    server = start_server(pipelines_dir, workers=1, env=env)

    assert server.post("/where/run", json={}).json()["result"]["main"] is (mode == "inline")
    assert chat(server) == ("main" if mode == "inline" else "pool")
    first, second = two_at_once(server)
    if mode == "inline":
        assert second[0] >= first[1]  # one call at a time: the second began after the first ended
    else:
        assert second[0] < first[1]  # hayhooks' behaviour: both ran at once
    # The kit's own routes answer in both modes.
    assert server.get("/readyz").status_code == 200
