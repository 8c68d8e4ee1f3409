"""A fork from another thread while a pre-flight child is being started (what gunicorn's master does when it spawns a
worker while a roll checks a pipeline): the fork waits, so the check's pipes end when its child ends."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import echo_wrapper, write_wrapper

from hayhooks_gunicorn.deploys.preflight import CheckResult, check_in_subprocess
from hayhooks_gunicorn.reload.scan import scan

pytestmark = pytest.mark.integration


def test_a_fork_during_a_preflight_start_does_not_hold_its_pipes(
    pipelines_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_wrapper(pipelines_dir, "checked", echo_wrapper("checked"))
    source = scan(pipelines_dir)["checked"]
    starting, forked = threading.Event(), threading.Event()
    close_pipe_fds = subprocess.Popen._close_pipe_fds  # type: ignore[attr-defined]

    def widen_the_window(self: subprocess.Popen[str], *fds: int) -> None:
        # Popen has started the child and still holds the child's ends of the pipes: a fork now copies them.
        starting.set()
        forked.wait(timeout=5)  # with the guard no fork can come in: go on after 5 s
        close_pipe_fds(self, *fds)

    monkeypatch.setattr(subprocess.Popen, "_close_pipe_fds", widen_the_window)
    results: list[CheckResult] = []
    checker = threading.Thread(target=lambda: results.append(check_in_subprocess(source, pipelines_dir, 20.0)))
    checker.start()
    assert starting.wait(timeout=60)
    pid = os.fork()
    if pid == 0:  # a worker that lives longer than the check may wait
        time.sleep(60)
        os._exit(0)
    try:
        forked.set()
        checker.join(timeout=90)
        assert results and results[0].ok, results
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
