"""Who may call the mutating routes: the token, loopback, and the forwarding headers a reverse proxy adds."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hayhooks.server.routers import deploy_router, undeploy_router
from starlette.datastructures import Headers

from hayhooks_gunicorn.app_context import AppContext, attach
from hayhooks_gunicorn.auth import forwarded_clients
from hayhooks_gunicorn.deploys import install_deploy_routes
from hayhooks_gunicorn.settings import KitSettings

DEPLOY = {"name": "p", "files": {"pipeline_wrapper.py": "x = 1\n"}}
# reject mode: a call that passes the guard gets this instead, and nothing is written either way
PASSED_THE_GUARD = "Deploy calls are disabled"


def client(tmp_path: Path, token: str | None = None, host: str = "127.0.0.1") -> TestClient:
    """The deploy routes as a worker installs them; the test client's host is the address the call arrives on."""
    app = FastAPI()
    app.include_router(deploy_router)
    app.include_router(undeploy_router)
    settings = KitSettings(admin_token=token, deploy_mode="reject", _env_file=None)  # type: ignore[call-arg]
    attach(app, AppContext(settings=settings, server_routes=[], state_dir=tmp_path))
    install_deploy_routes(app)
    return TestClient(app, base_url=f"http://{host}:1416")


@pytest.mark.parametrize(
    ("headers", "clients"),
    [
        ({"X-Forwarded-For": "203.0.113.7"}, ["203.0.113.7"]),
        ({"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}, ["203.0.113.7", "10.0.0.1"]),
        (
            {"Forwarded": 'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"'},
            ["192.0.2.60", "2001:db8:cafe::17"],
        ),
        ({"Forwarded": "For=unknown"}, ["unknown"]),
        ({"X-Real-IP": "198.51.100.2:5555"}, ["198.51.100.2"]),
        ({}, []),
    ],
)
def test_forwarded_clients_are_read_from_every_header(headers: dict[str, str], clients: list[str]) -> None:
    assert forwarded_clients(Headers(headers)) == clients


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.7"},
        {"X-Forwarded-For": "127.0.0.1, 203.0.113.7"},
        {"Forwarded": "for=203.0.113.7"},
        {"Forwarded": "for=_hidden"},  # an obfuscated identifier is not a loopback client
        {"X-Real-IP": "2001:db8::1"},
    ],
)
def test_without_a_token_a_forwarded_remote_client_gets_403(tmp_path: Path, headers: dict[str, str]) -> None:
    refused = client(tmp_path).post("/deploy_files", json=DEPLOY, headers=headers)
    assert refused.status_code == 403
    assert "HAYHOOKS_GUNICORN_ADMIN_TOKEN" in refused.json()["detail"]
    assert PASSED_THE_GUARD not in refused.json()["detail"]
    assert client(tmp_path).post("/undeploy/p", headers=headers).status_code == 403
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("headers", [{}, {"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": 'for="[::1]"'}])
def test_without_a_token_a_local_call_passes(tmp_path: Path, headers: dict[str, str]) -> None:
    answer = client(tmp_path).post("/deploy_files", json=DEPLOY, headers=headers)
    assert answer.status_code == 403 and PASSED_THE_GUARD in answer.json()["detail"]


def test_without_a_token_a_non_loopback_address_gets_403(tmp_path: Path) -> None:
    refused = client(tmp_path, host="192.0.2.10").post("/deploy_files", json=DEPLOY)
    assert refused.status_code == 403 and "non-loopback address 192.0.2.10" in refused.json()["detail"]


def test_with_a_token_the_token_alone_decides(tmp_path: Path) -> None:
    remote = {"X-Forwarded-For": "203.0.113.7"}
    kit = client(tmp_path, token="s3cret", host="192.0.2.10")
    missing = kit.post("/deploy_files", json=DEPLOY, headers=remote)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = kit.post("/deploy_files", json=DEPLOY, headers={**remote, "Authorization": "Bearer s3cre"})
    assert wrong.status_code == 401
    basic = kit.post("/deploy_files", json=DEPLOY, headers={**remote, "Authorization": "Basic czNjcmV0"})
    assert basic.status_code == 401
    right = kit.post("/deploy_files", json=DEPLOY, headers={**remote, "Authorization": "Bearer s3cret"})
    assert right.status_code == 403 and PASSED_THE_GUARD in right.json()["detail"]


def test_read_only_routes_stay_open_to_forwarded_clients(tmp_path: Path) -> None:
    kit = client(tmp_path, host="192.0.2.10")
    assert kit.get("/openapi.json", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 200
