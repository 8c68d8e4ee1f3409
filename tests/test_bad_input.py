"""Bad input is the client's error (4xx) and reaches nothing: deploy calls that the filesystem would refuse, and chat
requests whose ``Host`` or path would steer the forwarder somewhere else."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import Server, free_port, wait_until
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hayhooks_gunicorn.chat.forward import ChatForwarder, close_at_shutdown, install_forwarder

WRAPPER = "from hayhooks import BasePipelineWrapper\n"
BAD_HOSTS = ("x/api?", "x/chat/../api?", "[::1", "x@y", "[zz::1]")


def everything_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["forward", "warn"])  # warn: hayhooks' own route writes the files
def test_deploys_the_filesystem_cannot_hold_are_4xx_and_write_nothing(
    start_server: Callable[..., Server], pipelines_dir: Path, mode: str
) -> None:
    server = start_server(pipelines_dir, workers=2, env={"HAYHOOKS_GUNICORN_DEPLOY_MODE": mode})
    long_key = "k" * 300  # longer than NAME_MAX (255)
    bodies = {
        "lone surrogate in a file": b'{"name": "p", "files": {"pipeline_wrapper.py": "x = \\"\\ud800\\"\\n"}}',
        "300-character name": json.dumps({"name": "n" * 300, "files": {"pipeline_wrapper.py": WRAPPER}}).encode(),
        "300-character key": json.dumps({"name": "p", "files": {"pipeline_wrapper.py": WRAPPER, long_key: "x"}}),
        "key over PATH_MAX": json.dumps({"name": "p", "files": {"pipeline_wrapper.py": WRAPPER, "d/" * 2100: "x"}}),
        "lone surrogate in a key": b'{"name": "p", "files": {"pipeline_wrapper.py": "", "\\udc00.txt": "x"}}',
    }
    for what, body in bodies.items():
        answer = server.post("/deploy_files", content=body, headers={"content-type": "application/json"})
        assert 400 <= answer.status_code < 500, f"{what}: {answer.status_code} {answer.text[:300]}"
    yaml_body = b'{"name": "y", "source_code": "components: {}\\n# \\ud800\\n"}'
    answer = server.post("/deploy-yaml", content=yaml_body, headers={"content-type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.text
    assert everything_under(pipelines_dir) == []  # no pipeline, no staging, no lock file
    assert server.every_worker(lambda r: r.status_code == 200, "GET", "/status")
    assert "Traceback" not in server.log_text()


# The chat forwarder, served by a real uvicorn over TCP, in front of a real uvicorn host on a unix socket.


def recording_host(seen: list[str]) -> Any:
    """A chat host that records every path and Host it is asked for, and answers anything."""
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        seen.append(f"http {request.url.path} {dict(request.headers)}")
        return await call_next(request)

    @app.get("/{path:path}")
    async def anything(path: str) -> dict[str, str]:
        return {"path": path}

    async def websocket_recorder(scope: Any, receive: Any, send: Any) -> None:
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        seen.append(f"websocket {scope['path']} {headers.get('host')}")
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await websocket_recorder(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


class Served:
    """One uvicorn in a thread, stopped at the end of the test."""

    def __init__(self, app: Any, **where: Any) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, **{"lifespan": "on", **where})
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def chat() -> Iterator[tuple[int, list[str], ChatForwarder]]:
    """(worker port, what the host saw, the worker's forwarder)."""
    directory = Path(tempfile.mkdtemp(prefix="hg-chat-", dir="/tmp"))
    seen: list[str] = []
    host = Served(recording_host(seen), uds=str(directory / "chat.sock"))
    worker_app = FastAPI()
    forwarder = install_forwarder(worker_app, directory / "chat.sock", "/chat")
    close_at_shutdown(worker_app, forwarder)
    port = free_port()
    worker = Served(worker_app, host="127.0.0.1", port=port)
    try:
        yield port, seen, forwarder
    finally:
        worker.stop()
        host.stop()
        shutil.rmtree(directory, ignore_errors=True)


def raw_request(port: int, lines: list[str]) -> str:
    """Send one request as bytes (httpx would refuse these Host values) and return the status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return conn.recv(65536).decode("latin-1").split("\r\n", 1)[0]


def upgrade(path: str, host: str) -> list[str]:
    return [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]


def status(line: str) -> int:
    return int(line.split()[1])


@pytest.mark.integration
@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_websocket_upgrade_with_a_malformed_host_is_400_and_reaches_nothing(
    chat: tuple[int, list[str], ChatForwarder], host: str
) -> None:
    port, seen, _ = chat
    assert status(raw_request(port, upgrade("/chat/ws/socket.io/?EIO=4", host))) == 400
    assert status(raw_request(port, ["GET /chat/page HTTP/1.1", f"Host: {host}"])) == 400
    assert seen == []


@pytest.mark.integration
def test_the_upstream_path_is_the_request_path(chat: tuple[int, list[str], ChatForwarder]) -> None:
    port, seen, _ = chat
    line = raw_request(port, upgrade("/chat/ws?EIO=4", "chat.example:8080"))
    assert status(line) == 101
    wait_until(lambda: seen)
    assert seen == ["websocket /chat/ws chat.example:8080"]
    for path in ("/chat/../api", "/chat/%2e%2e/api", "/chat/./x"):
        assert status(raw_request(port, upgrade(path, "chat.example"))) == 400, path
        assert status(raw_request(port, [f"GET {path} HTTP/1.1", "Host: chat.example"])) == 400, path
    assert len(seen) == 1


@pytest.mark.integration
def test_headers_named_in_connection_are_not_forwarded(chat: tuple[int, list[str], ChatForwarder]) -> None:
    port, seen, _ = chat
    headers = {"connection": "keep-alive, x-hop", "x-hop": "secret", "x-end": "kept"}
    with httpx.Client() as client:
        assert client.get(f"http://127.0.0.1:{port}/chat/echo", headers=headers).status_code == 200
    (line,) = seen
    assert "'x-end': 'kept'" in line and "x-hop" not in line


@pytest.mark.integration
def test_the_forwarders_connections_close_with_the_app(tmp_path: Path) -> None:
    directory = Path(tempfile.mkdtemp(prefix="hg-chat-", dir="/tmp"))
    seen: list[str] = []
    host = Served(recording_host(seen), uds=str(directory / "chat.sock"))
    try:
        app = FastAPI()
        forwarder = install_forwarder(app, directory / "chat.sock", "/chat")
        close_at_shutdown(app, forwarder)
        with TestClient(app) as client:
            assert client.get("/chat/x").status_code == 200
            assert forwarder._client is not None and not forwarder._client.is_closed
            opened = forwarder._client
        assert forwarder._client is None and opened.is_closed
    finally:
        host.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.integration
def test_the_pool_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two long polls with room for one: the second is answered 503 once it waited POOL_WAIT for a connection."""
    from hayhooks_gunicorn.chat import forward

    monkeypatch.setattr(forward, "MAX_CONNECTIONS", 1)
    monkeypatch.setattr(forward, "POOL_WAIT", 0.5)
    directory = Path(tempfile.mkdtemp(prefix="hg-chat-", dir="/tmp"))

    held = threading.Event()

    async def hold(scope: Any, receive: Any, send: Any) -> None:
        held.set()
        await asyncio.Event().wait()  # a long poll with nothing to send, for ever

    host = Served(hold, uds=str(directory / "chat.sock"), lifespan="off")
    scope = {"type": "http", "method": "GET", "path": "/chat/hold", "raw_path": b"/chat/hold", "headers": []}

    def staying_client() -> Any:
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the client stays connected
            return {}

        return receive

    async def scenario() -> list[int]:
        forwarder = ChatForwarder(directory / "chat.sock")
        statuses: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        first = asyncio.create_task(forwarder(dict(scope), staying_client(), send))
        assert await asyncio.to_thread(held.wait, 20)  # the first poll holds the one connection
        await asyncio.wait_for(forwarder(dict(scope), staying_client(), send), timeout=20)
        first.cancel()
        await forwarder.aclose()
        return statuses

    try:
        assert asyncio.run(scenario()) == [503]
    finally:
        host.stop()
        shutil.rmtree(directory, ignore_errors=True)
