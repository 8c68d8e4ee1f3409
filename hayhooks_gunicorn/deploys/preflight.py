"""Load a pipeline in a separate Python process, the way a worker would, and report ok or the error.

A pipeline that crashes, hangs, exits or leaves threads behind cannot take the caller (a worker answering a
deploy call, ``hayhooks-gunicorn check`` or ``deploy``) with it, a slow ``setup()`` holds up nothing else in
the caller, and pipelines never see each other's modules.

Each check runs in a fresh child forked by the caller's warm helper (``preflight_helper``, reached through
``helper_handle``), which imported Haystack once, so a check does not pay for that import (about 2 s). When
the helper cannot start or dies, the check runs the cold way: a new
``python -m hayhooks_gunicorn.deploys.preflight_check NAME PATH KIND PIPELINES_DIR [--server-routes]`` process, which
prints one marked JSON line. Both run ``preflight_check.check_here`` and give the same errors. This module is the
caller's side only: it never imports what a check loads (the worker's app, the loader, Haystack), so the master and
the CLI that call it do not either.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hayhooks_gunicorn.deploys import helper_handle
from hayhooks_gunicorn.forking import no_fork_while_starting
from hayhooks_gunicorn.reload.scan import PipelineSource

MARK = "hayhooks-gunicorn-check:"
# Printed by the checking process right before the pipeline's own code runs: a death after it is the pipeline's
LOADING_MARK = "hayhooks-gunicorn-loading"
# The module the cold way runs (``python -m``): the checking process's side
CHECK_MODULE = "hayhooks_gunicorn.deploys.preflight_check"
# How long a cold check's output is read after its deadline, for a grandchild that left the process group
KILL_GRACE = 5.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    revision: str
    ok: bool
    seconds: float
    error: str | None = None
    # Why the loaded pipeline must not be loaded before a fork (threads it started, CUDA initialised), if so
    fork_unsafe: str | None = None
    # How the checking process ended when it died while the pipeline's code ran (after ``LOADING_MARK``), before
    # reporting: its exit code, or minus the signal that killed it. None when it reported, or died before the load
    exit_code: int | None = None


def check_in_subprocess(
    source: PipelineSource, pipelines_dir: Path, timeout: float, server_routes: bool = True
) -> CheckResult:
    """Load *source* (which may sit in a staging directory) under its name, as served from *pipelines_dir*.

    *server_routes*: also refuse a name that shadows a route of the server (the child builds the app to know
    them); a worker checked that itself already.
    """
    if source.error:
        return CheckResult(source.name, source.revision, False, 0.0, source.error)
    # Sources compile without writing __pycache__ beside them, as in the workers (loader.SourceOnlyLoader).
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    args = [source.name, str(source.path), source.kind, str(pipelines_dir)]
    started = time.monotonic()
    reply = helper_handle.ask({"args": [*args, server_routes]}, timeout, env)
    if reply is None:  # no helper: the cold way
        return _check_in_new_process(source, [*args, "--server-routes"] if server_routes else args, env, timeout)
    if "result" in reply:
        return CheckResult(**reply["result"])
    if reply.get("timeout"):
        return _timed_out(source, timeout, time.monotonic() - started)
    loading = bool(reply.get("loading"))  # the helper watched the child's whole output for LOADING_MARK
    return _exited(source, reply["exit"], reply["output"], time.monotonic() - started, loading)


def _check_in_new_process(source: PipelineSource, args: list[str], env: dict[str, str], timeout: float) -> CheckResult:
    """The cold check, in a process group of its own: a ``setup()`` may start a grandchild that holds stdout
    open after the check ended (``communicate()`` reads to the end of stdout, so it waited for that grandchild,
    and once more, with no timeout, after the child was killed). The group goes once the child has ended or
    the time is up; whatever the child printed is still read."""
    started = time.monotonic()
    pipe = subprocess.PIPE
    command = [sys.executable, "-m", CHECK_MODULE, *args]
    with no_fork_while_starting():  # the master runs checks from a thread (forking)
        child = subprocess.Popen(
            command, stdout=pipe, stderr=pipe, text=True, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
    stdout, stderr, timed_out = _read_until_ended(child, started + timeout)
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            return CheckResult(**json.loads(line[len(MARK) :]))
    if timed_out:
        return _timed_out(source, timeout, time.monotonic() - started)
    return _exited(source, child.returncode, stderr or stdout, time.monotonic() - started, LOADING_MARK in stdout)


def _read_until_ended(child: subprocess.Popen[str], deadline: float) -> tuple[str, str, bool]:
    """Read the child's output until it and its group are gone: (stdout, stderr, whether the time ran out).

    A grandchild that left the group (its own ``setsid()``) and holds the pipes is given up on ``KILL_GRACE``
    seconds after the deadline, with what was read by then."""
    timed_out = False
    while True:
        try:
            stdout, stderr = child.communicate(timeout=0.2)  # retrying loses no output (subprocess docs)
            return stdout or "", stderr or "", timed_out
        except subprocess.TimeoutExpired as e:
            now = time.monotonic()
            if child.poll() is None and now < deadline:
                continue
            timed_out = timed_out or child.returncode is None or child.returncode < 0
            _kill_group(child.pid)  # the child ended (a grandchild holds the pipes) or its time is up
            if now > deadline + KILL_GRACE:
                return _text(e.stdout), _text(e.stderr), timed_out


def _text(data: str | bytes | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _timed_out(source: PipelineSource, timeout: float, seconds: float) -> CheckResult:
    error = f"Loading pipeline {source.name!r} did not finish within {timeout:g}s"
    return CheckResult(source.name, source.revision, False, seconds, error)


def _exited(source: PipelineSource, code: int, output: str, seconds: float, loading: bool) -> CheckResult:
    """The process ended without a result; *loading*: it had started the pipeline's code (``LOADING_MARK``)."""
    lines = [line for line in output.strip().splitlines() if line != LOADING_MARK]
    error = f"The loading process exited with code {code} before reporting: {' | '.join(lines[-5:])}"
    return CheckResult(source.name, source.revision, False, seconds, error, exit_code=code if loading else None)
