"""Tokens by role: the read token opens ``/metrics`` and ``/cluster`` (and the CLI's reads) but never a deploy; the
admin token opens everything; without tokens the loopback rule applies, and fails closed when nothing says where a
call arrived."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, kit_cli
from fastapi import Depends, FastAPI

from hayhooks_gunicorn.app_context import AppContext, attach
from hayhooks_gunicorn.auth import require_admin, require_read
from hayhooks_gunicorn.settings import KitSettings

READ, ADMIN = "read-token", "admin-token"
BAD_DEPLOY = {"name": "not a name", "files": {"pipeline_wrapper.py": "x = 1\n"}}  # 422 once past the guard


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.integration
def test_the_read_token_reads_and_never_deploys(start_server: Callable[..., Server], pipelines_dir: Path) -> None:
    env = {
        "HAYHOOKS_GUNICORN_READ_TOKEN": READ,
        "HAYHOOKS_GUNICORN_ADMIN_TOKEN": ADMIN,
        "HAYHOOKS_GUNICORN_METRICS": "token",
    }
    server = start_server(pipelines_dir, workers=2, env=env)
    for path in ("/metrics", "/cluster"):
        assert server.every_worker(lambda r: r.status_code == 401, "GET", path)
        assert server.every_worker(lambda r: r.status_code == 401, "GET", path, headers=bearer("wrong"))
        assert server.every_worker(lambda r: r.status_code == 200, "GET", path, headers=bearer(READ))
        assert server.every_worker(lambda r: r.status_code == 200, "GET", path, headers=bearer(ADMIN))
    assert server.post("/deploy_files", json=BAD_DEPLOY, headers=bearer(READ)).status_code == 401
    assert server.post("/deploy_files", json=BAD_DEPLOY, headers=bearer(ADMIN)).status_code == 422
    url = ["--url", server.url, "--pipelines-dir", str(pipelines_dir)]
    for token_env in ({"HAYHOOKS_GUNICORN_READ_TOKEN": READ}, {"HAYHOOKS_GUNICORN_ADMIN_TOKEN": ADMIN}):
        status = kit_cli("status", "--json", *url, env=token_env)
        assert json.loads(status.stdout)["source"] == f"{server.url}/cluster", status.stderr
    no_token = {"HAYHOOKS_GUNICORN_READ_TOKEN": "", "HAYHOOKS_GUNICORN_ADMIN_TOKEN": ""}
    refused = kit_cli("status", "--json", *url, env=no_token)
    assert json.loads(refused.stdout)["source"] != f"{server.url}/cluster"  # the server did not answer it


@pytest.mark.integration
def test_metrics_token_mode_needs_no_admin_token(start_server: Callable[..., Server], pipelines_dir: Path) -> None:
    env = {"HAYHOOKS_GUNICORN_READ_TOKEN": READ, "HAYHOOKS_GUNICORN_METRICS": "token"}
    server = start_server(pipelines_dir, workers=1, env=env)
    assert server.get("/metrics").status_code == 401
    assert server.get("/metrics", headers=bearer(READ)).status_code == 200
    assert server.get("/cluster").status_code == 401  # either token set: /cluster needs one
    assert server.get("/cluster", headers=bearer(READ)).status_code == 200


def call(app: FastAPI, method: str, path: str, scope_changes: dict[str, Any], body: bytes = b"") -> int:
    """One request straight through ASGI, with *scope_changes* applied (``None`` removes a key)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 1416),
    }
    for key, value in scope_changes.items():
        if value is None:
            scope.pop(key, None)
        else:
            scope[key] = value
    statuses: list[int] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    asyncio.run(app(scope, receive, send))
    return statuses[0]


@pytest.mark.parametrize("guard", [require_admin, require_read])
def test_without_tokens_an_unknown_arrival_address_is_refused(tmp_path: Path, guard: Any) -> None:
    app = FastAPI()
    attach(app, AppContext(settings=KitSettings(_env_file=None), server_routes=[], state_dir=tmp_path))  # type: ignore[call-arg]

    @app.get("/guarded", dependencies=[Depends(guard)])
    async def guarded() -> dict[str, bool]:
        return {"passed": True}

    assert call(app, "GET", "/guarded", {}) == 200  # arrived on 127.0.0.1
    assert call(app, "GET", "/guarded", {"server": ("/run/hayhooks/h.sock", None), "client": None}) == 200
    assert call(app, "GET", "/guarded", {"server": ("10.0.0.5", 1416)}) == 403
    assert call(app, "GET", "/guarded", {"server": None}) == 403  # nothing says where: fails closed
