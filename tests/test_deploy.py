"""Forwarded deploy calls (the default mode): a deploy, overwrite or undeploy answers once every worker serves it."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import YAML_PIPELINE, Server, free_port, setup_wrapper, wait_until
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
        # Each call pre-flights in its own Python process: eight at once on two cores take a while.
        statuses.append(kit.server.post("/deploy_files", json=payload, timeout=180).status_code)

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


def slow_or_fatal_wrapper(setup_body: str) -> dict[str, str]:
    return {"pipeline_wrapper.py": setup_wrapper(setup_body, reply="loaded")}


def test_a_slow_preflight_holds_up_no_reload_of_the_worker_that_received_it(kit: Kit) -> None:
    """The upload's setup() runs in a separate process: the receiving worker reloads other pipelines meanwhile."""
    assert kit.server.post("/deploy_files", json={"name": "quick", "files": wrapper_files("q1")}).status_code == 200
    answers: list[httpx.Response] = []
    slow = slow_or_fatal_wrapper("time.sleep(8)")
    deploying = threading.Thread(
        target=lambda: answers.append(kit.server.post("/deploy_files", json={"name": "slow_model", "files": slow}))
    )
    deploying.start()
    try:
        time.sleep(0.5)  # the deploy call is in its pre-flight now
        (kit.pipelines / "quick" / "helper.py").write_text("REPLY = 'q2'\n")
        wait_until(lambda: all(r == {"q2"} for r in thirty_calls(kit.server, "quick").values()), timeout=6)
        assert deploying.is_alive(), "the edit was served only after the slow pre-flight had finished"
    finally:
        deploying.join(timeout=60)
    assert answers and answers[0].status_code == 200, answers


def test_a_preflight_that_kills_its_process_leaves_every_worker_serving(kit: Kit) -> None:
    pids = kit.server.worker_pids()
    before = snapshot(kit.pipelines)
    response = kit.server.post("/deploy_files", json={"name": "exits", "files": slow_or_fatal_wrapper("os._exit(3)")})
    assert response.status_code == 422
    assert "exited with code 3" in response.json()["detail"]
    assert snapshot(kit.pipelines) == before
    assert kit.server.worker_pids() == pids
    assert kit.server.every_worker(lambda r: r.status_code == 200, "GET", "/readyz")


class ForwardingProxy:
    """A reverse proxy on this host, as nginx with ``proxy_set_header X-Forwarded-For`` is: it connects from
    loopback and names its client in a header (here a fixed remote address standing in for one)."""

    def __init__(self, upstream: str, header: str, client: str) -> None:
        import http.server

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = httpx.post(
                    f"{upstream}{self.path}", content=body, headers={**headers, header: client}, timeout=60
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("header", "client"),
    [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-For", "203.0.113.7, 127.0.0.1"),
        ("Forwarded", "for=203.0.113.7;proto=https"),
        ("Forwarded", 'for="[2001:db8::7]:4711"'),
        ("X-Real-IP", "203.0.113.7"),
    ],
)
def test_without_a_token_a_deploy_through_a_proxy_is_refused_and_writes_nothing(
    kit: Kit, header: str, client: str
) -> None:
    proxy = ForwardingProxy(kit.server.url, header, client)
    try:
        before = snapshot(kit.pipelines)
        refused = httpx.post(
            f"{proxy.url}/deploy_files", json={"name": "via_proxy", "files": wrapper_files("proxied")}, timeout=60
        )
        assert refused.status_code == 403
        assert "HAYHOOKS_GUNICORN_ADMIN_TOKEN" in refused.json()["detail"]
        assert snapshot(kit.pipelines) == before
        assert httpx.post(f"{proxy.url}/undeploy/quick", timeout=60).status_code == 403
    finally:
        proxy.close()
    # The same call straight from loopback, with no forwarding header, is a local call: it works and reaches all.
    direct = kit.server.post("/deploy_files", json={"name": "via_proxy", "files": wrapper_files("direct")})
    assert direct.status_code == 200
    replies = thirty_calls(kit.server, "via_proxy")
    assert len(replies) == 2 and all(r == {"direct"} for r in replies.values())
    assert kit.server.post("/undeploy/via_proxy").status_code == 200


def test_a_proxy_forwarding_a_local_client_is_a_local_call(kit: Kit) -> None:
    proxy = ForwardingProxy(kit.server.url, "X-Forwarded-For", "127.0.0.1")
    try:
        deployed = httpx.post(
            f"{proxy.url}/deploy_files", json={"name": "local_proxy", "files": wrapper_files("lp")}, timeout=60
        )
        assert deployed.status_code == 200, deployed.text
    finally:
        proxy.close()
    assert kit.server.post("/undeploy/local_proxy").status_code == 200
