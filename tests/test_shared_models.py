"""HAYHOOKS_GUNICORN_SHARE_MODELS: the master loads the pipelines before it forks and every worker serves that copy."""

from __future__ import annotations

import textwrap
from pathlib import Path

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
    assert server.proc.poll() is None
    assert server.every_worker(lambda r: r.status_code == 200, "GET", "/readyz")
    assert server.post("/fatal/run", json={}).status_code == 404


def test_an_edit_is_served_by_every_worker_while_sharing(start_server, pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "shared", setup_pid_wrapper())
    server = start_server(pipelines_dir, env={"HAYHOOKS_GUNICORN_SHARE_MODELS": "true"})
    assert all(pids == {server.proc.pid} for pids in setup_pids(server, "shared").values())
    write_wrapper(pipelines_dir, "shared", setup_pid_wrapper("self.edited = True"))
    wait_until(lambda: all(pids != {server.proc.pid} for pids in setup_pids(server, "shared").values()), timeout=20)
