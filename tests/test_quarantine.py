"""A pipeline that ends or kills the worker loading it is quarantined: the server keeps serving under traffic."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Server, echo_wrapper, setup_wrapper, traffic, wait_until, write_wrapper

pytestmark = pytest.mark.integration

WINDOW = 30.0  # how long each bad revision is watched after it lands
LAST = 10.0  # both workers must answer in the last seconds of the window


def every_worker_reports(server: Server, name: str, cause: str) -> Callable[[], bool]:
    def check() -> bool:
        return server.every_worker(lambda r: cause in r.json().get("failures", {}).get(name, ""), "GET", "/readyz")

    return check


def test_a_pipeline_that_kills_its_worker_is_quarantined(
    start_server: Callable[..., Server], pipelines_dir: Path
) -> None:
    write_wrapper(pipelines_dir, "echo", echo_wrapper("healthy"))
    server = start_server(pipelines_dir, workers=2)
    bad = {
        "exits": (setup_wrapper("os._exit(1)"), "ended its worker while loading (exit code 1)"),
        "killer": (setup_wrapper("os.kill(os.getpid(), 9)"), "killed its worker while loading (SIGKILL)"),
    }
    with traffic(server) as calls:
        wait_until(lambda: len({w for w in calls.between(0, time.monotonic()) if w}) == 2)
        for name, (body, cause) in bad.items():
            landed = time.monotonic()
            write_wrapper(pipelines_dir, name, body)
            try:
                wait_until(every_worker_reports(server, name, cause), timeout=WINDOW)
            except AssertionError:
                print(server.log_text()[-6000:])
                raise
            wait_until(lambda end=landed + WINDOW: time.monotonic() > end, timeout=WINDOW + 5)  # the whole window
            window = calls.between(landed, landed + WINDOW)
            last = calls.between(landed + WINDOW - LAST, landed + WINDOW)
            assert server.proc.poll() is None, server.log_text()[-3000:]
            assert window.count(None) <= 2, f"{name}: {window.count(None)} failed calls of {len(window)}"
            assert len({w for w in window if w}) <= 4, f"{name}: workers {sorted({w for w in window if w})}"
            assert len({w for w in last if w}) == 2, f"{name}: workers in the last {LAST}s: {set(last)}"
    ready = server.get("/readyz").json()
    assert set(bad) <= set(ready["failed"]) and "echo" in ready["pipelines"]
    cluster = server.get("/cluster").text
    assert "killed its worker while loading (SIGKILL)" in cluster and "exit code 1" in cluster
    failed = [line for line in server.get("/metrics").text.splitlines() if line.startswith("hayhooks_pipeline_load_f")]
    assert any('pipeline="killer"' in line and not line.endswith(" 0.0") for line in failed), failed
    # One log line per worker that skipped it, and the master's one line per death.
    assert server.log_text().count("'killer'") >= 1

    # A new revision of the name loads normally: quarantine is per revision.
    write_wrapper(pipelines_dir, "killer", echo_wrapper("fixed"))
    wait_until(
        lambda: server.every_worker(
            lambda r: r.json() == {"result": {"reply": "fixed"}}, "POST", "/killer/run", json={"text": "x"}
        )
    )
