"""The worker's chat forwarder against a real uvicorn on a unix socket, in-process: what reaches the host, and what
a client sees when no host listens."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn
from conftest import wait_until
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from hayhooks_gunicorn.chat.forward import install_forwarder


def host_app() -> FastAPI:
    app = FastAPI()

    @app.api_route("/chat/echo", methods=["GET", "POST"])
    async def echo(request: Request) -> dict[str, object]:
        body = await request.body()
        return {
            "path": request.url.path,
            "query": request.url.query,
            "headers": dict(request.headers),
            "body_length": len(body),
        }

    @app.get("/chat/slow-stream")
    async def slow_stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"chunk{n};".encode()
                await asyncio.sleep(0.05)

        return StreamingResponse(chunks(), headers={"x-from-host": "yes"})

    @app.get("/chat/hold")
    async def hold() -> dict[str, str]:
        await asyncio.Event().wait()  # a long poll with nothing to send, for ever
        return {}

    @app.get("/public/logo.txt")
    async def logo() -> dict[str, str]:
        return {"asset": "logo"}

    @app.websocket("/chat/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "bye":
                await websocket.close(code=4001)
                return
            if message.get("text") is not None:
                await websocket.send_text(f"host:{message['text']}")
            else:
                await websocket.send_bytes(b"host:" + message["bytes"])

    return app


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hg-chat-", dir="/tmp"))  # sun_path holds 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host_socket(socket_dir: Path) -> Iterator[Path]:
    path = socket_dir / "chat.sock"
    server = uvicorn.Server(
        uvicorn.Config(host_app(), uds=str(path), log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10)
    yield path
    server.should_exit = True
    thread.join(timeout=10)


def worker_client(socket_path: Path) -> TestClient:
    app = FastAPI()
    install_forwarder(app, socket_path, "/chat")
    return TestClient(app, base_url="http://chat.example:8080")


def test_http_keeps_path_query_headers_and_body(host_socket: Path) -> None:
    with worker_client(host_socket) as client:
        response = client.post(
            "/chat/echo?EIO=4&transport=polling&x=%2F",
            content=b"x" * 1_000_000,
            headers={"cookie": "session=abc", "keep-alive": "timeout=5", "x-custom": "1"},
        )
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/chat/echo" and seen["query"] == "EIO=4&transport=polling&x=%2F"
    assert seen["body_length"] == 1_000_000
    headers = seen["headers"]
    assert headers["host"] == "chat.example:8080"  # engine.io compares Origin with it
    assert headers["cookie"] == "session=abc" and headers["x-custom"] == "1"
    assert "keep-alive" not in headers  # hop-by-hop


def test_streamed_responses_and_public_assets_pass_through(host_socket: Path) -> None:
    with worker_client(host_socket) as client:
        response = client.get("/chat/slow-stream")
        assert response.status_code == 200 and response.text == "chunk0;chunk1;chunk2;"
        assert response.headers["x-from-host"] == "yes"
        assert client.get("/public/logo.txt").json() == {"asset": "logo"}


def test_websocket_frames_both_ways_and_the_hosts_close_code(host_socket: Path) -> None:
    with worker_client(host_socket) as client, client.websocket_connect("/chat/ws") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "host:hello"
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_bytes() == b"host:\x00\x01"
        ws.send_text("bye")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 4001


def test_no_host_is_a_503_and_a_refused_websocket(socket_dir: Path) -> None:
    with worker_client(socket_dir / "absent.sock") as client:
        response = client.get("/chat/")
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "restarting" in response.json()["detail"]
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/chat/ws"):
            pass
        assert refused.value.code == 1011


def test_a_client_that_leaves_ends_its_forwarded_long_poll(host_socket: Path) -> None:
    """Without the disconnect watch, forwarding this request would wait for the host for ever."""
    from hayhooks_gunicorn.chat.forward import ChatForwarder

    async def scenario() -> list[dict[str, object]]:
        forwarder = ChatForwarder(host_socket)
        incoming = [{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}]
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            if len(incoming) == 1:
                await asyncio.sleep(0.2)  # the client leaves while the host holds the request
            return incoming.pop(0)

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/chat/hold", "raw_path": b"/chat/hold", "headers": []}
        try:
            await asyncio.wait_for(forwarder(scope, receive, send), timeout=20)
        finally:
            await forwarder.aclose()
        return sent

    assert asyncio.run(scenario()) == []  # nothing was sent to the client that left
