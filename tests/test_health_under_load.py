"""``/readyz``, ``/healthz`` and ``/metrics`` answer while every thread of hayhooks' pool runs a slow sync ``run_api``.

hayhooks runs a sync ``run_api`` on Starlette's thread pool (anyio's default limiter: 40 threads a process,
``server/utils/deploy_utils.py::_execute_pipeline_run``). A check that ran on that pool too queued behind the
calls, and a readiness probe with a 5 s timeout then took every loaded pod out of its Service at once; a scrape
rendered there timed out the same way.

One worker: with two, the kernel handed every probe of a run to the worker that still had free threads, and the
test passed whatever the checks did. Here the probes reach the worker whose pool is full, and the test checks that
it stayed full while they ran.
"""

from __future__ import annotations

import asyncio
import fcntl
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest
from conftest import Server, run_wrapper, write_wrapper

POOL = 40  # anyio's default thread limiter, which neither hayhooks nor the kit changes
CALLS = POOL + 20  # every thread busy, and calls waiting for one
PROBES = 20
# The calls hold their threads until the test releases them, so a check that queued behind the pool gets no answer
# at all while the probes run; an answer on the event loop takes milliseconds, seconds on a loaded machine.
PROBE_TIMEOUT = 10.0

SLOW_WRAPPER = run_wrapper(
    """
    open(os.path.join(os.environ["SLOW_CALLS_STARTED"], uuid.uuid4().hex), "w").close()
    # Blocks without polling while the test holds its exclusive lock on this file.
    with open(os.environ["SLOW_CALLS_GATE"]) as gate:
        fcntl.flock(gate, fcntl.LOCK_SH)
    return {"reply": "done"}
    """,
    imports="import fcntl\nimport os\nimport uuid",
    doc="Wait, as a call to an LLM API does: until the test releases the calls (at most 60 s).",
)


def _status(answer: httpx.Response) -> str:
    """The health checks' ``status``; for ``/metrics``, whether the exposition counts the worker's load of 'slow'."""
    if answer.headers["content-type"].startswith("text/plain"):
        loaded = 'hayhooks_pipeline_reloads_total{pipeline="slow",result="loaded"}'
        return "exposition" if loaded in answer.text else answer.text[:200]
    return str(answer.json()["status"])


async def _load_and_probe(server: Server, started: Path, gate: BinaryIO, path: str) -> tuple[list[float], list[object]]:
    """Start CALLS calls, wait until they fill the pool, probe *path* PROBES times; the pool stays full meanwhile."""
    fresh = httpx.Limits(max_connections=CALLS + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=fresh) as calls:
        tasks = [asyncio.create_task(calls.post("/slow/run", json={"text": "x"})) for _ in range(CALLS)]
        # A call holds its thread until the gate opens, so POOL calls started means every thread runs one.
        deadline = time.monotonic() + 60
        while len(list(started.iterdir())) < POOL:
            assert time.monotonic() < deadline, f"only {len(list(started.iterdir()))} calls started"
            await asyncio.sleep(0.05)
        seconds: list[float] = []
        answers: list[object] = []  # (status, body), or the timeout
        async with httpx.AsyncClient(base_url=server.url, timeout=PROBE_TIMEOUT, limits=fresh) as probes:
            for _ in range(PROBES):
                begun = time.perf_counter()
                try:
                    answer = await probes.get(path)
                    answers.append((answer.status_code, _status(answer)))
                except httpx.TimeoutException as e:
                    answers.append(f"no answer within {PROBE_TIMEOUT}s ({type(e).__name__})")
                seconds.append(time.perf_counter() - begun)
                if isinstance(answers[-1], str):
                    break  # queued behind the calls: the next probes would wait just as long
        # No thread came free while the probes ran: the other calls still wait for one.
        now_started = len(list(started.iterdir()))
        assert now_started == POOL, f"{now_started} calls started: the pool was not full while the probes ran"
        fcntl.flock(gate, fcntl.LOCK_UN)
        results = await asyncio.gather(*tasks)
    assert [r.status_code for r in results] == [200] * CALLS
    return seconds, answers


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/readyz", "/healthz", "/metrics"])
def test_checks_answer_while_the_pool_is_full_of_slow_calls(
    start_server: Callable[..., Server], pipelines_dir: Path, tmp_path: Path, path: str
) -> None:
    started = tmp_path / "started"
    started.mkdir()
    write_wrapper(pipelines_dir, "slow", SLOW_WRAPPER)
    gate_path = tmp_path / "gate"
    gate_path.touch()
    env = {"SLOW_CALLS_STARTED": str(started), "SLOW_CALLS_GATE": str(gate_path)}
    server = start_server(pipelines_dir, workers=1, env=env)  # waits until its worker answers /readyz 200

    with gate_path.open("rb") as gate:  # closing it releases the lock too, should the test fail before
        fcntl.flock(gate, fcntl.LOCK_EX)
        seconds, answers = asyncio.run(_load_and_probe(server, started, gate, path))

    expected = (200, {"/readyz": "ready", "/healthz": "ok", "/metrics": "exposition"}[path])
    assert answers == [expected] * PROBES
    ordered = sorted(seconds)
    print(f"{path} under {CALLS} calls: p50 {ordered[len(ordered) // 2]:.3f}s, p99 {ordered[-1]:.3f}s")
