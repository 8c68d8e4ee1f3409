"""``GET /traces`` on a real gunicorn with 2 workers holds the runs of both, whichever worker answers."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import WORKER_HEADER, Server, echo_wrapper, wait_until, write_wrapper

pytestmark = pytest.mark.integration

TOKEN = "t" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def runs_by_worker(body: dict[str, object], name: str) -> Counter[str]:
    """Worker id -> the runs of *name* a /traces answer holds."""
    traces = body["traces"]
    assert isinstance(traces, list)
    return Counter(t["worker"] for t in traces if t.get("entrypoint") == name and t["root_span"]["name"] != "deploy")


@pytest.fixture
def server(start_server: Callable[..., Server], pipelines_dir: Path) -> Server:
    write_wrapper(pipelines_dir, "traced", echo_wrapper("traced"))
    return start_server(pipelines_dir, workers=2, env={"HAYHOOKS_TRACING_TOKEN": TOKEN})


def run_until_both_workers(server: Server, runs: int = 20) -> Counter[str]:
    """*runs* runs; more, one at a time, only until both workers have served one."""
    served: Counter[str] = Counter()
    while sum(served.values()) < runs or (len(served) < 2 and sum(served.values()) < runs + 100):
        response = server.post("/traced/run", json={"text": "x"})
        assert response.status_code == 200
        served[response.headers[WORKER_HEADER]] += 1
    assert len(served) == 2, served
    return served


def test_every_read_holds_every_workers_runs(server: Server) -> None:
    served = run_until_both_workers(server)
    assert server.get("/traces").status_code == 401  # hayhooks' credential rule is unchanged

    def read() -> tuple[str, Counter[str], dict[str, object]]:
        response = server.get("/traces?limit=100", headers=AUTH)
        assert response.status_code == 200, response.text
        body = response.json()
        return response.headers[WORKER_HEADER], runs_by_worker(body, "traced"), body

    # A run's trace is finished just after its response: poll until one read holds them all, then read 8 times.
    wait_until(lambda: read()[1] == served, timeout=10)
    reads = [read() for _ in range(8)]
    complete = [r for r in reads if r[1] == served]
    print(f"{len(complete)} of 8 reads held all {sum(served.values())} runs {dict(served)}")
    assert len(complete) == 8
    answering = {r[0] for r in reads}
    body = reads[0][2]
    starts = [t["start_time_ms"] for t in body["traces"]]  # type: ignore[union-attr]
    assert starts == sorted(starts, reverse=True)
    assert body["workers"] == {"answered": sorted(served), "missing": []}
    print(f"answered by {sorted(answering)}")


def test_a_killed_or_stopped_worker_does_not_fail_or_hang_traces(server: Server) -> None:
    served = run_until_both_workers(server, runs=6)
    victim = sorted(served)[0]
    victim_pid = int(victim.rsplit(":", 1)[1])
    survivor = next(w for w in served if w != victim)

    os.kill(victim_pid, signal.SIGSTOP)  # slow: connects, never answers
    try:
        started = time.monotonic()
        response = server.get("/traces?limit=100", headers=AUTH)
        took = time.monotonic() - started
        assert response.status_code == 200 and took < 5, took
        body = response.json()
        assert body["workers"]["missing"] == [victim]
        assert runs_by_worker(body, "traced")[survivor] == served[survivor]
    finally:
        os.kill(victim_pid, signal.SIGCONT)

    os.kill(victim_pid, signal.SIGKILL)
    for _ in range(8):
        response = server.get("/traces?limit=100", headers=AUTH)
        assert response.status_code == 200
    print(f"after SIGKILL of {victim}: 8 of 8 reads answered 200")


def test_hayhooks_dashboard_pointed_at_the_kit_shows_every_workers_runs(server: Server) -> None:
    """hayhooks' own dashboard client, in its one-snapshot mode, validates the merged answer and holds all runs."""
    import json
    import subprocess
    import sys

    served = run_until_both_workers(server)
    hayhooks = str(Path(sys.executable).with_name("hayhooks"))  # hayhooks has no ``python -m`` entry
    command = [hayhooks, "dashboard", "--url", server.url, "--once", "--json", "--traces"]
    env = {**os.environ, "HAYHOOKS_DASHBOARD_TOKEN": TOKEN}

    def snapshot() -> Counter[str]:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return runs_by_worker(json.loads(done.stdout)["tracing"], "traced")

    wait_until(lambda: snapshot() == served, timeout=30, interval=0.5)
