"""``/readyz`` and ``/healthz`` answer while every thread of hayhooks' pool runs a slow sync ``run_api``.

hayhooks runs a sync ``run_api`` on Starlette's thread pool (anyio's default limiter: 40 threads a process,
``server/utils/deploy_utils.py::_execute_pipeline_run``). A check that ran on that pool too queued behind the
calls, and a readiness probe with a 5 s timeout then took every loaded pod out of its Service at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import Server, wait_until, write_wrapper

CALLS = 120
PROBES = 20
# Generous: an answer that waits for the pool takes about as long as a call (3 s); an idle one takes milliseconds.
PROBE_TIMEOUT = 2.0

SLOW_WRAPPER = '''
import os
import time
import uuid

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, text: str = "") -> dict:
        """Wait 3 s, as a call to an LLM API does.

        Args:
            text: ignored
        """
        open(os.path.join(os.environ["SLOW_CALLS_STARTED"], uuid.uuid4().hex), "w").close()
        time.sleep(3)
        return {"reply": "done"}
'''


async def _load_and_probe(server: Server, started: Path, path: str) -> tuple[list[float], list[object]]:
    """Start CALLS calls on fresh connections, wait until a pool is full, probe *path* PROBES times."""
    fresh = httpx.Limits(max_connections=CALLS + 10, max_keepalive_connections=0)  # spread over both workers
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=fresh) as calls:
        tasks = [asyncio.create_task(calls.post("/slow/run", json={"text": "x"})) for _ in range(CALLS)]
        # At least one worker holds 60 of them: its 40 pool threads all run a call and the rest wait for one.
        deadline = time.monotonic() + 60
        while len(list(started.iterdir())) < CALLS // 2:
            assert time.monotonic() < deadline, f"only {len(list(started.iterdir()))} calls started"
            await asyncio.sleep(0.05)
        seconds: list[float] = []
        answers: list[object] = []  # (status, body), or the timeout
        async with httpx.AsyncClient(base_url=server.url, timeout=PROBE_TIMEOUT, limits=fresh) as probes:
            for _ in range(PROBES):
                begun = time.perf_counter()
                try:
                    answer = await probes.get(path)
                    answers.append((answer.status_code, answer.json()["status"]))
                except httpx.TimeoutException as e:
                    answers.append(f"no answer within {PROBE_TIMEOUT}s ({type(e).__name__})")
                seconds.append(time.perf_counter() - begun)
        results = await asyncio.gather(*tasks)
    assert [r.status_code for r in results] == [200] * CALLS
    return seconds, answers


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/readyz", "/healthz"])
def test_checks_answer_while_the_pool_is_full_of_slow_calls(
    start_server: Callable[..., Server], pipelines_dir: Path, tmp_path: Path, path: str
) -> None:
    started = tmp_path / "started"
    started.mkdir()
    write_wrapper(pipelines_dir, "slow", SLOW_WRAPPER)
    server = start_server(pipelines_dir, workers=2, env={"SLOW_CALLS_STARTED": str(started)})
    wait_until(lambda: server.every_worker(lambda r: r.status_code == 200, "GET", "/readyz"))

    seconds, answers = asyncio.run(_load_and_probe(server, started, path))

    expected = (200, "ready" if path == "/readyz" else "ok")
    assert answers == [expected] * PROBES
    ordered = sorted(seconds)
    print(f"{path} under {CALLS} calls: p50 {ordered[len(ordered) // 2]:.3f}s, p99 {ordered[-1]:.3f}s")
