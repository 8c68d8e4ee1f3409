"""The defects found by reading the reload path, each pinned by a test that failed before its fix."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Server, wait_until
from test_reload_core import Kit, kit  # noqa: F401  (the reload core fixture)

from hayhooks_gunicorn.reload.watcher import DirectoryWatcher
from hayhooks_gunicorn.settings import WatchMode


def test_a_callback_that_keeps_failing_never_ends_the_watcher(tmp_path: Path) -> None:
    calls: list[int] = []

    def on_change() -> None:
        calls.append(len(calls))
        if len(calls) <= 3:
            raise RuntimeError("scan failed")

    watcher = DirectoryWatcher(tmp_path, on_change, WatchMode.POLL, poll_interval_ms=20, debounce_ms=10)
    watcher.start()
    try:
        edits = iter(range(10_000))

        def edit_seen(seen: int) -> bool:
            (tmp_path / f"f{next(edits)}").write_text("x")  # edits until the watcher has its first look
            return len(calls) > seen

        for _ in range(6):
            seen = len(calls)
            wait_until(lambda seen=seen: edit_seen(seen), timeout=10, interval=0.2)
        assert watcher.is_alive() and len(calls) > 4
    finally:
        watcher.stop()
        watcher.join(timeout=10)


EXITING_COMPONENT = """
import sys

from haystack import component


@component
class Exits:
    def __init__(self) -> None:
        sys.exit(2)

    @component.output_types(out=str)
    def run(self, text: str) -> dict:
        return {"out": text}
"""

EXITING_YAML = """\
components:
  c:
    type: {module}.Exits
    init_parameters: {{}}
connections: []
inputs:
  text: c.text
outputs:
  out: c.out
"""


def test_a_yaml_component_calling_sys_exit_is_a_failed_load(
    kit: Kit,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = f"exits_{kit.prefix}"
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / f"{module}.py").write_text(EXITING_COMPONENT)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    monkeypatch.setenv("HAYSTACK_DESERIALIZATION_ALLOWLIST", f"{module}.*")
    name = kit.name("yaml_exits")
    (kit.dir / f"{name}.yml").write_text(EXITING_YAML.format(module=module))
    kit.sync()
    assert not kit.reconciler.loading
    assert name in kit.reconciler.failed and "SystemExit" in kit.reconciler.failed[name].error


VERSIONED = """
import time
from pathlib import Path

from hayhooks import BasePipelineWrapper

VERSION = {version!r}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        gate = Path({gate!r})
        while {wait} and not gate.exists():
            time.sleep(0.02)
        if {wait}:
            raise RuntimeError("failed after it was abandoned")

    def run_api(self, text: str = "") -> dict:
        \"\"\"Answer.

        Args:
            text: ignored
        \"\"\"
        return {{"reply": VERSION}}
"""


def test_an_abandoned_load_that_fails_later_leaves_the_newer_modules(
    kit: Kit,  # noqa: F811
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    source = {v: VERSIONED.format(version=v, gate=str(gate), wait=v == "v2") for v in ("v1", "v2", "v3")}
    name = kit.write("abandoned", source["v1"])
    kit.sync()
    kit.reconciler.load_timeout = 0.3
    kit.write("abandoned", source["v2"])
    kit.sync()
    assert "did not finish within" in kit.reconciler.failed[name].error and kit.run(name) == "v1"
    kit.write("abandoned", source["v3"])
    kit.sync()
    assert kit.run(name) == "v3"
    gate.write_text("go")  # the abandoned v2 fails now
    wait_until(lambda: not [t for t in threading.enumerate() if t.name == f"load-{name}" and t.is_alive()])
    assert sys.modules[f"{name}.pipeline_wrapper"].VERSION == "v3"


def test_withdrawing_a_route_never_skips_one_for_an_iteration_under_way() -> None:
    """Starlette matches a request by iterating ``router.routes`` on the event loop while loads swap routes."""
    from fastapi import FastAPI

    from hayhooks_gunicorn.reload.routes import _put_route

    app = FastAPI()
    for path in ("/gone/run", "/next/run", "/last/run"):
        app.add_api_route(path, lambda: {}, methods=["POST"])
    paths = [getattr(r, "path", "") for r in app.router.routes]
    matching = iter(app.router.routes)  # an iteration under way, past the route about to go
    before = [getattr(next(matching), "path", "") for _ in range(paths.index("/gone/run") + 1)]
    _put_route(app, "gone", None)
    after = [getattr(route, "path", "") for route in matching]
    assert before + after == paths  # nothing skipped: the iteration kept the list it started with
    assert "/gone/run" not in [getattr(r, "path", "") for r in app.router.routes]


def test_a_cold_check_whose_setup_leaves_a_grandchild_on_stdout_returns(tmp_path: Path) -> None:
    """The cold pre-flight child runs in a process group of its own, ended with it."""
    import os

    from conftest import setup_wrapper, write_wrapper

    from hayhooks_gunicorn.deploys import preflight
    from hayhooks_gunicorn.reload.scan import scan

    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    pid_file = tmp_path / "grandchild.pid"
    body = f"child = subprocess.Popen(['sleep', '30']); Path({str(pid_file)!r}).write_text(str(child.pid))"
    write_wrapper(pipelines, "spawns", setup_wrapper(body, imports="import subprocess\nfrom pathlib import Path"))
    source = scan(pipelines)["spawns"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    args = [source.name, str(source.path), source.kind, str(pipelines)]
    result = preflight._check_in_new_process(source, args, env, timeout=10)
    assert result.ok, result.error
    grandchild = int(pid_file.read_text())
    wait_until(
        lambda: not Path(f"/proc/{grandchild}").exists() or " Z " in Path(f"/proc/{grandchild}/stat").read_text()
    )


@pytest.mark.integration
def test_a_restart_that_gives_up_stops_the_new_worker_not_an_old_one(
    start_server: Callable[..., Server], pipelines_dir: Path, runtime_dir: Path, tmp_path: Path
) -> None:
    from conftest import kit_cli, setup_wrapper, write_wrapper

    hold = tmp_path / "hold"  # while it exists, a worker that loads the pipeline never gets ready
    write_wrapper(pipelines_dir, "held", setup_wrapper(f"while os.path.exists({str(hold)!r}): time.sleep(0.05)"))
    server = start_server(pipelines_dir, workers=2)
    before = server.worker_pids()
    hold.write_text("")
    env = {"XDG_RUNTIME_DIR": str(runtime_dir)}
    restart = kit_cli("restart", "--bind", f"127.0.0.1:{server.port}", "--timeout", "3", env=env)
    assert restart.returncode == 1 and "No new worker finished loading" in restart.stderr, restart.stderr
    wait_until(lambda: server.worker_pids() == before, timeout=30)
    hold.unlink()
    assert server.get("/readyz").status_code == 200 and server.worker_pids() == before
