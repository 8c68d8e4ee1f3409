"""Forwarded deploy calls (the default mode): a deploy, overwrite or undeploy answers once every worker serves it."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import YAML_PIPELINE, Server, free_port, wait_until
from deploy_helpers import hayhooks_cli, snapshot, thirty_calls, tree, wrapper_files

pytestmark = pytest.mark.integration


def outward_address() -> str | None:
    """An address of this host that is not loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


@dataclass
class Kit:
    server: Server
    pipelines: Path
    tmp: Path  # the workers' TMPDIR: hayhooks' save_files=false path would write here
    outward: str | None


@pytest.fixture(scope="module")
def kit(start_module_server, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    pipelines = tmp_path_factory.mktemp("pipelines")
    tmp = tmp_path_factory.mktemp("workers-tmp")
    port = free_port()
    outward = outward_address()
    binds = ["--bind", f"127.0.0.1:{port}"] + (["--bind", f"{outward}:{port}"] if outward else [])
    env = {
        "TMPDIR": str(tmp),
        "HAYHOOKS_GUNICORN_METRICS_DIR": str(tmp_path_factory.mktemp("metrics")),
        "HAYHOOKS_GUNICORN_MAX_FILES": "8",
        "HAYHOOKS_GUNICORN_MAX_BYTES": "20000",
    }
    server = start_module_server(pipelines, env=env, args=binds, port=port)
    return Kit(server, pipelines, tmp, outward)


def test_deploy_files_answers_when_every_worker_serves_it(kit: Kit) -> None:
    files = wrapper_files("v1")
    response = kit.server.post("/deploy_files", json={"name": "http_files", "files": files})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "http_files" and body["success"] is True and body["endpoint"] == "/http_files/run"
    assert body["workers"] == 2 and body["behind"] == [] and body["failed"] == {}
    replies = thirty_calls(kit.server, "http_files")
    assert len(replies) == 2 and all(r == {"v1"} for r in replies.values())
    # On disk: exactly the submission, nothing else; no scratch entry left beside it.
    assert tree(kit.pipelines / "http_files") == files
    assert sorted(p.name for p in kit.pipelines.iterdir() if p.name.startswith(".")) == [".hayhooks-gunicorn"]

    cluster = kit.server.get("/cluster").json()
    assert cluster["converged"] is True
    assert cluster["disk"]["http_files"] == body["revision"]
    assert [w["pipelines"]["http_files"] for w in cluster["workers"]] == [body["revision"]] * 2


def test_hayhooks_cli_deploy_files_then_undeploy(kit: Kit, tmp_path: Path) -> None:
    source = tmp_path / "cli_files"
    for key, content in wrapper_files("from the cli").items():
        (source / key).parent.mkdir(parents=True, exist_ok=True)
        (source / key).write_text(content)

    done = hayhooks_cli(kit.server, "pipeline", "deploy-files", "-n", "cli_files", str(source))
    assert done.returncode == 0, done.stdout + done.stderr
    replies = thirty_calls(kit.server, "cli_files")
    assert len(replies) == 2 and all(r == {"from the cli"} for r in replies.values())

    done = hayhooks_cli(kit.server, "pipeline", "undeploy", "cli_files")
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(r == {404} for r in thirty_calls(kit.server, "cli_files").values())
    assert not (kit.pipelines / "cli_files").exists()
    assert kit.server.post("/undeploy/cli_files").status_code == 404


def test_yaml_deploy_over_http_then_replaced_by_the_cli(kit: Kit, tmp_path: Path) -> None:
    response = kit.server.post("/deploy-yaml", json={"name": "greet", "source_code": YAML_PIPELINE})
    assert response.status_code == 200, response.text
    assert (kit.pipelines / "greet.yml").read_text() == YAML_PIPELINE
    seen = kit.server.by_worker("POST", "/greet/run", calls=30, json={"name": "kit"})
    assert len(seen) == 2
    assert {r.json()["result"]["builder"]["prompt"] for rs in seen.values() for r in rs} == {"Hello kit!"}

    changed = tmp_path / "greet.yml"
    changed.write_text(YAML_PIPELINE.replace("Hello", "Howdy"))
    done = hayhooks_cli(kit.server, "pipeline", "deploy-yaml", "-n", "greet", "--overwrite", str(changed))
    assert done.returncode == 0, done.stdout + done.stderr
    seen = kit.server.by_worker("POST", "/greet/run", calls=12, json={"name": "kit"})
    assert {r.json()["result"]["builder"]["prompt"] for rs in seen.values() for r in rs} == {"Howdy kit!"}


def test_overwrite_swaps_the_whole_directory(kit: Kit) -> None:
    first = wrapper_files("v1", **{"old_only.txt": "old"})
    assert kit.server.post("/deploy_files", json={"name": "swapped", "files": first}).status_code == 200

    again = kit.server.post("/deploy_files", json={"name": "swapped", "files": wrapper_files("v2")})
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    assert tree(kit.pipelines / "swapped") == first

    second = wrapper_files("v2", **{"new_only.txt": "new"})
    response = kit.server.post("/deploy_files", json={"name": "swapped", "files": second, "overwrite": True})
    assert response.status_code == 200, response.text
    replies = thirty_calls(kit.server, "swapped")
    assert len(replies) == 2 and all(r == {"v2"} for r in replies.values())
    assert tree(kit.pipelines / "swapped") == second


def test_broken_pipeline_gets_422_and_nothing_is_written(kit: Kit) -> None:
    assert kit.server.post("/deploy_files", json={"name": "steady", "files": wrapper_files("good")}).status_code == 200
    before = snapshot(kit.pipelines, kit.tmp)
    broken = {**wrapper_files("bad"), "helper.py": "raise RuntimeError('helper exploded')\n"}

    for name, overwrite in (("broken_new", False), ("steady", True)):
        response = kit.server.post("/deploy_files", json={"name": name, "files": broken, "overwrite": overwrite})
        assert response.status_code == 422
        assert "helper exploded" in response.json()["detail"]
    response = kit.server.post("/deploy-yaml", json={"name": "broken_yaml", "source_code": "components: [unclosed"})
    assert response.status_code == 422

    assert snapshot(kit.pipelines, kit.tmp) == before
    assert all(r == {"good"} for r in thirty_calls(kit.server, "steady").values())
    assert kit.server.post("/broken_new/run", json={}).status_code == 404


def test_bad_names_paths_and_sizes_get_4xx_and_write_nothing_anywhere(kit: Kit) -> None:
    good = wrapper_files("x")
    refused = [
        ({"name": "../evil", "files": good}, 422, None),
        ({"name": "json", "files": good}, 422, "shadows the importable Python module"),
        ({"name": "undeploy", "files": good}, 422, "clashes with a server route"),
        ({"name": "a b", "files": good}, 422, "Invalid pipeline name"),
        ({"name": "__pycache__", "files": good}, 422, "scan ignores"),
        ({"name": "keys", "files": {**good, "../../evil.txt": "x"}}, 422, None),
        ({"name": "keys", "files": {**good, "/tmp/evil.txt": "x"}}, 422, None),
        ({"name": "many", "files": {**good, **{f"f{i}.txt": "x" for i in range(8)}}}, 413, "MAX_FILES"),
        ({"name": "big", "files": {**good, "big.txt": "x" * 30_000}}, 413, "MAX_BYTES"),
        ({"name": "unsaved", "files": good, "save_files": False}, 400, "other workers could never serve it"),
    ]
    before = snapshot(kit.pipelines, kit.tmp)
    for payload, status, message in refused:
        response = kit.server.post("/deploy_files", json=payload)
        assert response.status_code == status, (payload["name"], response.text)
        assert message is None or message in str(response.json()["detail"])
    response = kit.server.post("/deploy-yaml", json={"name": "y", "source_code": YAML_PIPELINE, "save_file": False})
    assert response.status_code == 400
    assert kit.server.post("/undeploy/..%2Fevil").status_code in (404, 422)
    # Undeploy removes pipelines only: never the kit's own entries, a .git or other hidden files.
    assert kit.server.post("/undeploy/.hayhooks-gunicorn").status_code == 422

    assert snapshot(kit.pipelines, kit.tmp) == before
    assert not (kit.pipelines.parent / "evil").exists() and not Path("/tmp/evil.txt").exists()
    for name in ("json", "keys", "many", "big", "unsaved", "y"):
        assert kit.server.post(f"/{name}/run", json={}).status_code in (404, 405)


def test_many_concurrent_deploys_of_one_name_leave_one_whole_submission(kit: Kit) -> None:
    submissions = [wrapper_files(f"c{i}", **{f"only_{i}.txt": str(i)}) for i in range(8)]
    statuses: list[int] = []

    def deploy(files: dict[str, str]) -> None:
        payload = {"name": "contended", "files": files, "overwrite": True}
        statuses.append(kit.server.post("/deploy_files", json=payload).status_code)

    threads = [threading.Thread(target=deploy, args=(files,)) for files in submissions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 8
    final = tree(kit.pipelines / "contended")
    assert final in submissions
    expected = final["helper.py"].split("'")[1]
    wait_until(lambda: all(r == {expected} for r in thirty_calls(kit.server, "contended").values()), timeout=15)


def test_admin_calls_need_a_token_on_a_non_loopback_address(kit: Kit) -> None:
    if kit.outward is None:
        pytest.skip("this host has no non-loopback address")
    url = f"http://{kit.outward}:{kit.server.port}"
    before = snapshot(kit.pipelines)
    response = httpx.post(f"{url}/deploy_files", json={"name": "remote", "files": wrapper_files("r")}, timeout=30)
    assert response.status_code == 403
    assert "HAYHOOKS_GUNICORN_ADMIN_TOKEN" in response.json()["detail"]
    assert httpx.post(f"{url}/undeploy/steady", timeout=30).status_code == 403
    assert snapshot(kit.pipelines) == before
    # Serving is not an admin call.
    assert httpx.get(f"{url}/status", timeout=30).status_code == 200


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make *path* refuse new entries, even for root (immutable attribute), like a ``:ro`` volume."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    try:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    except FileNotFoundError:
        done = None
    if done is None or done.returncode != 0:
        pytest.skip("cannot make a directory read-only for root here (no chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_pipelines_dir_refuses_deploys_and_keeps_serving(kit: Kit) -> None:
    assert kit.server.post("/deploy_files", json={"name": "frozen", "files": wrapper_files("ice")}).status_code == 200
    with read_only(kit.pipelines):
        response = kit.server.post("/deploy_files", json={"name": "thaw", "files": wrapper_files("x")})
        assert response.status_code == 409
        assert "read-only" in response.json()["detail"]
        assert kit.server.post("/undeploy/frozen").status_code == 409
        assert all(r == {"ice"} for r in thirty_calls(kit.server, "frozen").values())
        assert kit.server.get("/readyz").status_code == 200
    # The watchers kept going: a change made afterwards is served.
    (kit.pipelines / "frozen" / "helper.py").write_text(textwrap.dedent("REPLY = 'melted'\n"))
    wait_until(lambda: all(r == {"melted"} for r in thirty_calls(kit.server, "frozen").values()), timeout=15)
