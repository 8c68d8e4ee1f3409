"""Real gunicorn processes on free loopback ports, over real pipeline files; stopped by PID, always."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from fastapi import FastAPI

REPO = Path(__file__).resolve().parent.parent
GUNICORN = [sys.executable, "-m", "gunicorn"]
WORKER_HEADER = "x-hayhooks-worker"
PREFLIGHT_HELPER = "hayhooks_gunicorn.deploys.preflight_helper"  # a child of the master that is no worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tool(name: str, debian_package: str) -> str:
    """The path of command-line tool *name*; when it is missing, skip the test saying which package has it.

    In CI (``CI`` set, as CI services do) a missing tool fails the test instead: there ``.ci/run`` installs it, and
    a test that skips there proves nothing.
    """
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian package {debian_package!r}; .ci/run installs it)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{message}, and CI is set: this test must run in CI")
    pytest.skip(message)


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> object:
    """Poll *predicate* until it returns something truthy; fail with the last value after *timeout*."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except httpx.HTTPError as e:  # the server is not listening yet, or restarting
            last = e
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def kit_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hayhooks_gunicorn *args`` with *env* added to this environment."""
    command = [sys.executable, "-m", "hayhooks_gunicorn", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)


class Server:
    """One gunicorn master started from the repository's gunicorn.conf.py."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path, workers: int) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.workers = workers
        self.url = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """A fresh connection per call, so calls spread over the workers."""
        timeout = kwargs.pop("timeout", 30)
        with httpx.Client(base_url=self.url, timeout=timeout) as client:  # type: ignore[arg-type]
            return client.request(method, path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def by_worker(self, method: str, path: str, calls: int = 40, **kwargs: object) -> dict[str, list[httpx.Response]]:
        """Send at least *calls* requests and group the responses by the worker that answered.

        Fresh connections do not alternate between workers (the kernel may hand many in a row to one), so this
        goes on calling until every worker has answered, within a bounded number of extra calls.
        """
        seen: dict[str, list[httpx.Response]] = {}
        sent = 0
        while sent < calls or (len(seen) < self.workers and sent < calls + 50 * self.workers):
            response = self.request(method, path, **kwargs)
            seen.setdefault(response.headers.get(WORKER_HEADER, "?"), []).append(response)
            sent += 1
        return seen

    def every_worker(self, check: Callable[[httpx.Response], bool], method: str, path: str, **kwargs: object) -> bool:
        """True when all workers answered and every answer passed *check* (polled by callers)."""
        seen = self.by_worker(method, path, calls=6 * self.workers, **kwargs)
        passed = len(seen) >= self.workers and all(check(r) for rs in seen.values() for r in rs)
        if not passed:  # shown with the test's captured output when it fails: which worker answered what
            answers = {worker: sorted({f"{r.status_code} {r.text[:80]}" for r in rs}) for worker, rs in seen.items()}
            print(f"{method} {path} at {time.strftime('%H:%M:%S')}: {answers}")
        return passed

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every worker answered /readyz with 200."""
        ready: set[str] = set()

        def all_ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            response = self.get("/readyz")
            if response.status_code == 200:
                ready.add(response.headers[WORKER_HEADER])
            return len(ready) >= self.workers

        wait_until(all_ready, timeout=timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def worker_pids(self) -> set[int]:
        """Current worker PIDs, read from the process table (children of the master but its pre-flight helper)."""
        command = ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(self.proc.pid)]  # -ww: never cut the line
        out = subprocess.run(command, capture_output=True, text=True)
        lines = [line.split(maxsplit=1) for line in out.stdout.splitlines() if line.strip()]
        return {int(fields[0]) for fields in lines if PREFLIGHT_HELPER not in fields[-1]}

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait up to *timeout*, then SIGKILL: every server a test starts is stopped by its PID."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def pipelines_dir(tmp_path: Path) -> Path:
    path = tmp_path / "pipelines"
    path.mkdir()
    return path


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A short private directory for unix sockets (sun_path is limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hg-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def serving(tmp_path: Path, runtime_dir: Path, servers: list[Server] | None = None) -> Iterator[Callable[..., Server]]:
    """Start gunicorn masters (appended to *servers*); every one of them is stopped by PID on exit."""
    servers = [] if servers is None else servers

    def start(
        pipelines: Path,
        workers: int = 2,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        wait: bool = True,
        port: int | None = None,
    ) -> Server:
        port = port or free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        full_env = {
            **os.environ,
            "HAYHOOKS_PIPELINES_DIR": str(pipelines),
            "HAYHOOKS_GUNICORN_STATE_DIR": str(runtime_dir / "state"),
            # Each master's control socket and ready markers go under here (hayhooks_gunicorn/instance.py).
            "XDG_RUNTIME_DIR": str(runtime_dir),
            # Parent of each master's private prometheus_client directory (hayhooks_gunicorn/metrics_dir.py).
            "HAYHOOKS_GUNICORN_METRICS_DIR": str(runtime_dir / "metrics"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "GUNICORN_CMD_ARGS": f"--workers {workers} --bind 127.0.0.1:{port}",
            **(env or {}),
        }
        command = [*GUNICORN, "-c", str(REPO / "gunicorn.conf.py"), *(args or [])]
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=tmp_path, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        server = Server(proc, port, log, workers)
        servers.append(server)
        if wait:
            server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


SERVERS = pytest.StashKey[list[Server]]()
LOG_TAIL = 6000


@pytest.fixture
def start_server(tmp_path: Path, runtime_dir: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Server]]:
    """Start gunicorn masters; every one of them is stopped by PID at teardown."""
    servers = request.node.stash.setdefault(SERVERS, [])
    with serving(tmp_path, runtime_dir, servers) as start:
        yield start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test shows the end of each of its servers' logs (what the master and workers said meanwhile)."""
    report = yield
    if report.when == "call" and report.failed:
        for server in item.stash.get(SERVERS, []):
            report.sections.append((f"gunicorn log (port {server.port})", server.log_text()[-LOG_TAIL:]))
    return report


@pytest.fixture(scope="module")
def start_module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """``start_server`` for servers shared by the tests of one module (state and pipelines dirs shared too)."""
    runtime = Path(tempfile.mkdtemp(prefix="hg-", dir="/tmp"))
    try:
        with serving(tmp_path_factory.mktemp("servers"), runtime) as start:
            yield start
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def write_wrapper(pipelines: Path, name: str, body: str, extra: dict[str, str] | None = None) -> Path:
    """Write a wrapper pipeline atomically (staged beside, then renamed) so watchers never see half of it."""
    stage = pipelines / f".stage-{name}-{time.monotonic_ns()}"
    stage.mkdir()
    (stage / "pipeline_wrapper.py").write_text(textwrap.dedent(body))
    for rel, content in (extra or {}).items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_text(content)
    target = pipelines / name
    if target.exists():
        old = pipelines / f".old-{name}-{time.monotonic_ns()}"
        target.rename(old)
        stage.rename(target)
        shutil.rmtree(old)
    else:
        stage.rename(target)
    return target


def echo_wrapper(reply: str, setup_sleep: float = 0.0) -> str:
    """A wrapper whose run_api answers ``{"reply": <reply>}``; ``setup()`` sleeps *setup_sleep* seconds."""
    return f'''
import time

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        time.sleep({setup_sleep})

    def run_api(self, text: str = "") -> dict:
        """Answer with a fixed reply.

        Args:
            text: ignored input
        """
        return {{"reply": {reply!r}}}
'''


def setup_wrapper(setup_body: str, reply: str = "ok", imports: str = "") -> str:
    """A wrapper whose ``setup()`` runs *setup_body* (with os, sys and time imported) and whose run_api answers
    ``{"reply": <reply>}``: for loads that sleep, print, exit or hang."""
    return textwrap.dedent(
        '''
        import os
        import sys
        import time
        {imports}

        from hayhooks import BasePipelineWrapper


        class PipelineWrapper(BasePipelineWrapper):
            def setup(self) -> None:
                {setup_body}

            def run_api(self, text: str = "") -> dict:
                """Answer.

                Args:
                    text: ignored
                """
                return {{"reply": {reply!r}}}
        '''
    ).format(imports=imports, setup_body=setup_body, reply=reply)


def run_wrapper(run_body: str, imports: str = "", doc: str = "Answer.") -> str:
    """A wrapper with no pipeline whose ``run_api(text)`` runs *run_body* (*imports* at the top): for calls that
    fail, block or report something."""
    body = textwrap.indent(textwrap.dedent(run_body).strip(), " " * 8)
    return f'''{imports}

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, text: str = "") -> dict:
        """{doc}

        Args:
            text: ignored
        """
{body}
'''


YAML_PIPELINE = """\
components:
  builder:
    type: haystack.components.builders.prompt_builder.PromptBuilder
    init_parameters:
      template: "Hello {{name}}!"
connections: []
inputs:
  name: builder.name
outputs:
  prompt: builder.prompt
"""


# Reads beside itself and imports a helper at request time: both must come from the release it was loaded from.
PROBE_WRAPPER = '''
from pathlib import Path

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        pass

    def run_api(self, text: str = "") -> dict:
        """Answer with the helper's reply and the note beside the wrapper, as "<reply>/<note>".

        Args:
            text: ignored
        """
        from .helper import REPLY

        return {"reply": f"{REPLY}/{(Path(__file__).parent / 'note.txt').read_text()}"}
'''


def write_release(path: Path, version: str, name: str = "probe") -> Path:
    """A release directory holding the pipeline *name* (``PROBE_WRAPPER``) at *version*; returns *path*."""
    (path / name).mkdir(parents=True)
    (path / name / "pipeline_wrapper.py").write_text(PROBE_WRAPPER)
    (path / name / "helper.py").write_text(f"REPLY = {version!r}\n")
    (path / name / "note.txt").write_text(version)
    return path


def swap_link(link: Path, target: str) -> None:
    """As ``ln -sfn`` does it (GNU coreutils 9): a new link beside the old one, renamed over it in one step."""
    temp = link.with_name(f".{link.name}.tmp")
    temp.symlink_to(target)
    os.replace(temp, link)


@contextmanager
def booted_app(pipelines: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[FastAPI]:
    """A worker's app (in-process) that has loaded *pipelines*: no watcher, no metrics, state under its parent."""
    from hayhooks.settings import settings as hayhooks_settings

    from hayhooks_gunicorn.app_context import app_context
    from hayhooks_gunicorn.settings import kit_settings
    from hayhooks_gunicorn.worker.app import boot, create_app

    monkeypatch.setattr(hayhooks_settings, "pipelines_dir", str(pipelines))
    defaults = {"WATCH": "off", "STATE_DIR": str(pipelines.parent / "state"), "METRICS": "off"}
    for key, value in {**defaults, **env}.items():
        monkeypatch.setenv(f"HAYHOOKS_GUNICORN_{key}", value)
    kit_settings.cache_clear()
    app = create_app()
    boot(app)
    try:
        yield app
    finally:
        from hayhooks_gunicorn.traces import peer

        runtime = app_context(app).runtime
        assert runtime is not None
        runtime.stop()
        peer.stop()  # the worker's lifespan does it; this app's lifespan never ran
        for listener in runtime.reconciler.listeners:
            stop = getattr(getattr(listener, "__self__", None), "stop", None)
            if stop is not None:
                stop()
        kit_settings.cache_clear()


@dataclass
class Traffic:
    """Calls to the pipeline ``echo`` (``echo_wrapper("healthy")``) on fresh connections: (time, worker id, or
    None for a failed call)."""

    server: Server
    calls: list[tuple[float, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                response = self.server.post("/echo/run", json={"text": "x"}, timeout=10)
                ok = response.status_code == 200 and response.json() == {"result": {"reply": "healthy"}}
                self.calls.append((time.monotonic(), response.headers.get(WORKER_HEADER) if ok else None))
            except httpx.HTTPError:
                self.calls.append((time.monotonic(), None))

    def between(self, start: float, end: float) -> list[str | None]:
        return [worker for at, worker in list(self.calls) if start <= at < end]


@contextmanager
def traffic(server: Server) -> Iterator[Traffic]:
    """A client thread calling ``echo`` for the duration of the block."""
    calls = Traffic(server)
    thread = threading.Thread(target=calls.run, daemon=True)
    thread.start()
    try:
        yield calls
    finally:
        calls.stop.set()
        thread.join(timeout=30)
