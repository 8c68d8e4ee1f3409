"""``hayhooks-gunicorn deploy | undeploy | status | check`` against a running 2-worker server."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import YAML_PIPELINE, Server
from deploy_helpers import snapshot, thirty_calls, tree, wrapper_files

from hayhooks_gunicorn.cli import main

pytestmark = pytest.mark.integration


@dataclass
class Kit:
    server: Server
    pipelines: Path
    state_dir: Path


@pytest.fixture(scope="module")
def kit(start_module_server, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    pipelines = tmp_path_factory.mktemp("pipelines")
    server = start_module_server(pipelines)
    return Kit(server, pipelines, Path(server.get("/cluster").json()["state_dir"]))


def run(kit: Kit, *args: str) -> Result:
    env = {"HAYHOOKS_PIPELINES_DIR": str(kit.pipelines), "HAYHOOKS_GUNICORN_STATE_DIR": str(kit.state_dir)}
    return CliRunner().invoke(main, list(args), env=env)


def write_source(directory: Path, files: dict[str, str]) -> Path:
    for key, content in files.items():
        (directory / key).parent.mkdir(parents=True, exist_ok=True)
        (directory / key).write_text(content)
    return directory


def test_every_command_has_help() -> None:
    for command in ([], ["run"], ["deploy"], ["undeploy"], ["status"], ["check"]):
        result = CliRunner().invoke(main, [*command, "--help"])
        assert result.exit_code == 0, result.output
    deploy_help = " ".join(CliRunner().invoke(main, ["deploy", "-h"]).output.split())
    assert "[default: (HAYHOOKS_GUNICORN_DEPLOY_WAIT, else 30)" in deploy_help


def test_deploy_status_undeploy(kit: Kit, tmp_path: Path) -> None:
    url = kit.server.url
    source = write_source(tmp_path / "v1", wrapper_files("cli v1"))
    result = run(kit, "deploy", str(source), "--name", "cli_pipe", "--url", url)
    assert result.exit_code == 0, result.output
    assert "serves on all 2 live worker(s)" in result.output
    replies = thirty_calls(kit.server, "cli_pipe")
    assert len(replies) == 2 and all(r == {"cli v1"} for r in replies.values())

    refused = run(kit, "deploy", str(source), "--name", "cli_pipe", "--url", url)
    assert refused.exit_code == 1 and "already exists" in refused.output
    v2 = write_source(tmp_path / "cli_pipe", wrapper_files("cli v2"))
    assert run(kit, "deploy", str(v2), "--overwrite", "--url", url).exit_code == 0
    assert all(r == {"cli v2"} for r in thirty_calls(kit.server, "cli_pipe").values())
    assert tree(kit.pipelines / "cli_pipe") == wrapper_files("cli v2")

    (tmp_path / "hello.yml").write_text(YAML_PIPELINE)
    result = run(kit, "deploy", str(tmp_path / "hello.yml"), "--url", url)
    assert result.exit_code == 0, result.output
    assert (kit.pipelines / "hello.yml").read_text() == YAML_PIPELINE

    status = run(kit, "status", "--url", url)
    assert status.exit_code == 0, status.output
    revision = json.loads(run(kit, "status", "--json", "--url", url).output)["disk"]["cli_pipe"]
    assert "cli_pipe" in status.output and revision in status.output and "Converged" in status.output
    # No server reachable: the state directory on this host gives the same view.
    offline = run(kit, "status", "--url", "http://127.0.0.1:9")
    assert offline.exit_code == 0 and f"from {kit.state_dir}" in offline.output

    # A live worker (on another host) still serving nothing: not converged, exit 1.
    lagging = kit.state_dir / "elsewhere-7.json"
    # A heartbeat of now: one from the future counts as stale (cluster.state_files.CLOCK_SKEW).
    state = {"host": "elsewhere", "pid": 7, "heartbeat": time.time(), "started_at": 0, "pipelines": {}}
    lagging.write_text(json.dumps(state))
    try:
        behind = run(kit, "status", "--url", url)
        assert behind.exit_code == 1 and "elsewhere:7 behind on cli_pipe, hello" in behind.output
    finally:
        lagging.unlink()

    result = run(kit, "undeploy", "cli_pipe", "--url", url)
    assert result.exit_code == 0, result.output
    assert "gone on all 2 live worker(s)" in result.output
    assert all(r == {404} for r in thirty_calls(kit.server, "cli_pipe").values())
    assert run(kit, "undeploy", "cli_pipe", "--url", url).exit_code == 1


def test_cli_deploy_refuses_what_would_not_load_and_writes_nothing(kit: Kit, tmp_path: Path) -> None:
    broken = write_source(tmp_path / "broken", {**wrapper_files("x"), "helper.py": "raise RuntimeError('kaput')\n"})
    good = write_source(tmp_path / "good", wrapper_files("x"))
    before = snapshot(kit.pipelines)

    result = run(kit, "deploy", str(broken), "--url", kit.server.url)
    assert result.exit_code == 1 and "failed to load" in result.output and "kaput" in result.output
    for name in ("json", "../evil", "undeploy"):
        result = run(kit, "deploy", str(good), "--name", name, "--url", kit.server.url)
        assert result.exit_code == 1, (name, result.output)
    assert snapshot(kit.pipelines) == before


def test_check_loads_each_pipeline_in_its_own_process(kit: Kit, tmp_path: Path) -> None:
    directory = tmp_path / "ci"
    write_source(directory / "good", wrapper_files("ok"))
    write_source(directory / "raises", {**wrapper_files("x"), "helper.py": "raise RuntimeError('no luck')\n"})
    write_source(directory / "exits", {"pipeline_wrapper.py": "import sys\nsys.exit(3)\n"})
    write_source(directory / "json", wrapper_files("shadow"))
    (directory / "bad.yml").write_text("components: [unclosed\n")
    before = snapshot(directory)

    result = run(kit, "check", str(directory))
    assert result.exit_code == 1, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.startswith(("ok", "error"))}
    assert lines["good"].startswith("ok")
    assert "no luck" in lines["raises"] and "SystemExit" in lines["exits"]
    assert "shadows the importable Python module" in lines["json"] and lines["bad"].startswith("error")
    assert "1 ok, 4 failed" in result.output
    assert snapshot(directory) == before  # no __pycache__, nothing else

    for name in ("raises", "exits", "json"):
        shutil.rmtree(directory / name)
    (directory / "bad.yml").unlink()
    result = run(kit, "check", str(directory))
    assert result.exit_code == 0, result.output
