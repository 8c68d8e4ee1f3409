"""HAYHOOKS_GUNICORN_SHARE_MODELS: the master loads the pipelines before it forks and every worker serves that copy."""

from __future__ import annotations

import re
import textwrap
import threading
from pathlib import Path

import httpx
import pytest
from conftest import Server, wait_until, write_wrapper

pytestmark = pytest.mark.integration


def setup_pid_wrapper(setup_extra: str = "") -> str:
    """A wrapper that answers with the pid of the process that ran its setup()."""
    return textwrap.dedent(
        f'''
        import os, threading, time

        from hayhooks import BasePipelineWrapper


        class PipelineWrapper(BasePipelineWrapper):
            def setup(self) -> None:
                self.setup_pid = os.getpid()
                self.weights = bytearray(b"w" * 5_000_000)
                {setup_extra}

            def run_api(self, text: str = "") -> dict:
                """Say where setup() ran.

                Args:
                    text: ignored
                """
                return {{"setup_pid": self.setup_pid, "pid": os.getpid()}}
        '''
    )


def setup_pids(server: Server, name: str) -> dict[str, set[int]]:
    seen = server.by_worker("POST", f"/{name}/run", calls=12, json={})
    return {worker: {r.json()["result"]["setup_pid"] for r in responses} for worker, responses in seen.items()}


def test_workers_serve_the_copy_the_master_loaded(start_server, pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "shared", setup_pid_wrapper())
    write_wrapper(
        pipelines_dir,
        "threaded",
        setup_pid_wrapper("threading.Thread(target=time.sleep, args=(600,), daemon=True, name='poller').start()"),
    )
    write_wrapper(pipelines_dir, "fatal", setup_pid_wrapper("os._exit(7)"))
    server = start_server(pipelines_dir, env={"HAYHOOKS_GUNICORN_SHARE_MODELS": "true"}, wait=False)
    server.wait_ready(timeout=180)  # the master first loads each pipeline in a separate process, then itself

    shared = setup_pids(server, "shared")
    assert len(shared) == 2 and all(pids == {server.proc.pid} for pids in shared.values()), shared
    # A pipeline that starts a thread is loaded by each worker itself, and the log says why.
    threaded = setup_pids(server, "threaded")
    assert len(threaded) == 2 and all(pids == {int(worker.split(":")[1])} for worker, pids in threaded.items())
    log = server.log_text()
    assert "Pipeline 'threaded' is not shared: it started thread(s) poller" in log
    # One whose setup() ends its process never ran in the master: the master is up, the others serve.
    assert "Pipeline 'fatal' is not shared: it failed to load" in log
    # Workers report the master's failure instead of loading it: none of them ran the os._exit(7).
    assert not re.search(r"Worker \(pid:\d+\) exited with code 7", log), log[-3000:]
    assert "failed the master's pre-flight" in log
    assert server.proc.poll() is None
    assert server.every_worker(lambda r: r.status_code == 200, "GET", "/readyz")
    assert server.post("/fatal/run", json={}).status_code == 404


def test_a_change_is_rolled_out_from_a_new_copy_in_the_master_without_a_failed_request(
    start_server, pipelines_dir: Path
) -> None:
    write_wrapper(pipelines_dir, "shared", setup_pid_wrapper("self.version = 1"))
    server = start_server(pipelines_dir, env={"HAYHOOKS_GUNICORN_SHARE_MODELS": "true"}, wait=False)
    server.wait_ready(timeout=180)
    old_workers = server.worker_pids()
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    answer = client.post("/shared/run", json={})
                    if answer.status_code != 200:
                        failures.append(str(answer.status_code))
                except httpx.HTTPError as e:
                    failures.append(repr(e))

    sender = threading.Thread(target=load)
    sender.start()
    try:
        write_wrapper(pipelines_dir, "shared", setup_pid_wrapper("self.version = 2"))
        # Every worker is a new one, forked after the master loaded version 2: it serves the master's copy.
        wait_until(lambda: server.worker_pids().isdisjoint(old_workers) and len(server.worker_pids()) == 2, 120)
        pids = setup_pids(server, "shared")
        assert len(pids) == 2 and all(p == {server.proc.pid} for p in pids.values())
        assert "Rolled the change out: replaced 2 worker(s)" in server.log_text()

        # A broken edit stops the roll: the workers serving now go on serving, the log says why.
        serving = server.worker_pids()
        write_wrapper(pipelines_dir, "shared", "def broken(:\n")
        wait_until(lambda: "Roll stopped, the workers keep serving the previous set" in server.log_text(), 60)
        assert server.worker_pids() == serving
    finally:
        stop.set()
        sender.join(timeout=60)
    assert failures == []
