"""The servers under test, started on free loopback ports and always stopped by PID.

Three ways to run the same pipelines directory with several workers:
- ``kit``: hayhooks-gunicorn (gunicorn with the kit's configuration module, as ``hayhooks-gunicorn run`` does);
- ``naive``: the usual recipe, ``gunicorn -k uvicorn_worker.UvicornWorker 'hayhooks.server.app:create_app()'``;
- ``hayhooks_run``: ``hayhooks run --workers N`` (uvicorn's own multiprocess supervisor).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import httpx

from benchmarks.procs import alive, children, cpu_seconds, descendants, free_port, signal_pid

Kind = Literal["kit", "naive", "hayhooks_run"]
WORKER_HEADER = "x-hayhooks-worker"
# Logged by uvicorn once a worker's lifespan startup (hayhooks' startup deploy) is done.
STARTUP_COMPLETE = "Application startup complete"

_running: list[Server] = []


def _gunicorn_has(setting: str) -> bool:
    from gunicorn.config import KNOWN_SETTINGS

    return any(s.name == setting for s in KNOWN_SETTINGS)


_NO_CONTROL_SOCKET = ["--no-control-socket"] if _gunicorn_has("control_socket_disable") else []


class ServerError(RuntimeError):
    """A server under test did not start or answer: the scenario reports it instead of a figure."""


def _script(name: str) -> str:
    """A console script of this environment (next to the interpreter), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise ServerError(f"'{name}' is not installed")
    return found


class Server:
    """One server process tree; ``stop()`` ends the master by PID, then any worker it left behind."""

    def __init__(
        self,
        kind: Kind,
        pipelines: Path,
        workdir: Path,
        workers: int = 2,
        env: dict[str, str] | None = None,
        args: Iterable[str] = (),
        label: str | None = None,
    ) -> None:
        level = (env or {}).get("HAYHOOKS_LOG_LEVEL", "INFO").upper()
        if kind != "kit" and level not in ("INFO", "DEBUG", "TRACE"):
            # Plain hayhooks names no worker: its readiness is read from uvicorn's INFO startup lines.
            raise ValueError(f"a {kind} server needs HAYHOOKS_LOG_LEVEL at INFO or below, not {level}")
        self.kind = kind
        self.pipelines = pipelines
        self.workdir = workdir
        self.workers = workers
        self.extra_env = dict(env or {})
        self.extra_args = list(args)
        self.label = label or kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{self.label}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def command(self) -> list[str]:
        bind = f"127.0.0.1:{self.port}"
        if self.kind == "kit":
            config = "python:hayhooks_gunicorn.gunicorn_conf"
            return [sys.executable, "-m", "gunicorn", "-c", config, "-w", str(self.workers), "-b", bind]
        if self.kind == "naive":
            worker = "uvicorn_worker.UvicornWorker"
            app = "hayhooks.server.app:create_app()"
            command = [sys.executable, "-m", "gunicorn", "-k", worker, "-w", str(self.workers), "-b", bind]
            # gunicorn 27 opens a control socket at ~/.gunicorn/gunicorn.ctl by default, one path shared by every
            # master of the user: keep the benchmark's servers off it (it is idle, no cost per request).
            return [*command, *_NO_CONTROL_SOCKET, app]
        hayhooks = _script("hayhooks")
        return [hayhooks, "run", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]

    def environment(self) -> dict[str, str]:
        state = self.workdir / f"state-{self.port}"
        return {
            **os.environ,
            "HAYHOOKS_PIPELINES_DIR": str(self.pipelines),
            "HAYHOOKS_HOST": "127.0.0.1",
            "HAYHOOKS_PORT": str(self.port),
            "HAYHOOKS_GUNICORN_STATE_DIR": str(state),
            # gunicorn would otherwise also read these from the caller's environment.
            "GUNICORN_CMD_ARGS": "",
            "WEB_CONCURRENCY": str(self.workers),
            **self.extra_env,
        }

    def start(self) -> Server:
        # The working directory is private: gunicorn reads ./gunicorn.conf.py when it exists.
        cwd = self.workdir / f"cwd-{self.port}"
        cwd.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                [*self.command(), *self.extra_args],
                cwd=cwd,
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _running.append(self)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError(f"{self.label} was not started")
        return self.proc.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def worker_pids(self) -> list[int]:
        """Workers are the master's children (uvicorn's supervisor also runs a multiprocessing helper, the kit's
        master a pre-flight helper once it checked a pipeline)."""
        pids = children(self.pid)
        if self.kind == "hayhooks_run":
            pids = [p for p in pids if "resource_tracker" not in _cmdline(p)]
        if self.kind == "kit":
            pids = [p for p in pids if "hayhooks_gunicorn.deploys.preflight_helper" not in _cmdline(p)]
        return pids

    def cpu_seconds(self) -> float:
        """CPU time used so far by the master and every worker: a per-request cost that a busy machine does not
        distort the way it distorts requests per second."""
        return sum(cpu_seconds(pid) for pid in [self.pid, *descendants(self.pid)])

    def check_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_text()[-3000:]
            raise ServerError(f"{self.label} exited with code {self.proc.returncode}; log tail:\n{tail}")

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Block until every worker serves; returns seconds since start."""
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                self.check_running()
                if self._ready(client, seen):
                    return time.monotonic() - self.started_at
                time.sleep(0.01)
        raise ServerError(f"{self.label} not ready within {timeout:.0f}s; log tail:\n{self.log_text()[-3000:]}")

    def _ready(self, client: httpx.Client, seen: set[str]) -> bool:
        if self.kind == "kit":
            # /readyz answers 200 only from a worker that loaded the directory; the header names the worker.
            try:
                response = client.get(f"{self.url}/readyz", headers={"Connection": "close"})
            except httpx.HTTPError:
                return False
            if response.status_code == 200:
                seen.add(response.headers.get(WORKER_HEADER, "?"))
            return len(seen) >= self.workers
        # Plain hayhooks names no worker: count the startup lines, then make sure the socket answers.
        if self.log_text().count(STARTUP_COMPLETE) < self.workers:
            return False
        try:
            return client.get(f"{self.url}/status", headers={"Connection": "close"}).status_code == 200
        except httpx.HTTPError:
            return False

    def expect_ok(self, path: str, body: str) -> None:
        """One request that must succeed before anything is measured: a pipeline that failed to load would
        otherwise be measured as a very fast 404."""
        headers = {"Content-Type": "application/json"}
        response = httpx.post(f"{self.url}{path}", content=body, headers=headers, timeout=300)
        if response.status_code != 200:
            errors = [line for line in self.log_text().splitlines() if "ERROR" in line][-2:]
            raise ServerError(
                f"{self.label}: POST {path} answered {response.status_code} {response.text[:160]!r}; "
                f"log: {' | '.join(errors)[:500]}"
            )

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        tree = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # Anything the master left behind (it was killed, or a worker ignored it) is ended by its own PID.
        deadline = time.monotonic() + 5
        while any(alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in tree:
            if alive(pid):
                signal_pid(pid, signal.SIGKILL)
        if self in _running:
            _running.remove(self)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stop_all() -> None:
    """Stop every server still running (normal end, an error, or Ctrl-C)."""
    for server in list(_running):
        try:
            server.stop()
        except Exception as e:  # keep stopping the others
            print(f"could not stop {server.label} (pid {server.proc.pid if server.proc else '?'}): {e}")


atexit.register(stop_all)


def start_all(servers: list[Server], timeout: float = 180.0) -> None:
    """Start several servers at once and wait until each serves (boots overlap, which is fine outside boot timing)."""
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready(timeout)
