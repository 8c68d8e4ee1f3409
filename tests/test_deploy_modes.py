"""warn (hayhooks' one-worker deploy, said out loud), reject (nothing written, nothing served) and the admin token."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import echo_wrapper, wait_until
from deploy_helpers import hayhooks_cli, snapshot

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-tests"


def test_warn_mode_deploys_with_a_warning_header_and_requires_the_token(start_server, pipelines_dir: Path) -> None:
    server = start_server(
        pipelines_dir, env={"HAYHOOKS_GUNICORN_DEPLOY_MODE": "warn", "HAYHOOKS_GUNICORN_ADMIN_TOKEN": TOKEN}
    )
    payload = {"name": "warned", "files": {"pipeline_wrapper.py": echo_wrapper("warned")}}
    before = snapshot(pipelines_dir)

    # The token is required and checked, before anything is written.
    assert server.post("/deploy_files", json=payload).status_code == 401
    denied = server.post("/deploy_files", json=payload, headers={"Authorization": "Bearer wrong"})
    assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
    assert server.post("/undeploy/warned", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert snapshot(pipelines_dir) == before
    # hayhooks' CLI sends no token: with one set, it is refused too.
    cli = hayhooks_cli(server, "pipeline", "undeploy", "warned")
    assert cli.returncode != 0

    response = server.post("/deploy_files", json=payload, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"name": "warned", "success": True, "endpoint": "/warned/run"}
    worker = response.headers["x-hayhooks-worker"]
    warning = response.headers["warning"]
    assert warning.startswith('299 - "') and f"worker {worker} only" in warning
    assert "1 other live worker(s) did not get this change" in warning
    wait_until(lambda: f"Handled by worker {worker} only" in server.log_text(), timeout=10)


def test_reject_mode_refuses_and_writes_and_serves_nothing(start_server, pipelines_dir: Path) -> None:
    server = start_server(pipelines_dir, env={"HAYHOOKS_GUNICORN_DEPLOY_MODE": "reject"})
    before = snapshot(pipelines_dir)

    response = server.post("/deploy_files", json={"name": "nope", "files": {"pipeline_wrapper.py": echo_wrapper("x")}})
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "HAYHOOKS_GUNICORN_DEPLOY_MODE=reject" in detail and "hayhooks-gunicorn deploy" in detail
    assert str(pipelines_dir) in detail
    yaml = server.post("/deploy-yaml", json={"name": "nope_yaml", "source_code": "components: {}"})
    assert yaml.status_code == 403
    assert server.post("/undeploy/nope").status_code == 403

    assert snapshot(pipelines_dir) == before
    seen = server.by_worker("POST", "/nope/run", calls=12, json={})
    assert all(r.status_code == 404 for responses in seen.values() for r in responses)
    assert server.get("/status").json()["pipelines"] == []
    # The documented way still works: the shared directory.
    (pipelines_dir / "direct").mkdir()
    (pipelines_dir / "direct" / "pipeline_wrapper.py").write_text(echo_wrapper("direct"))
    wait_until(lambda: server.every_worker(lambda r: r.status_code == 200, "POST", "/direct/run", json={}), timeout=15)
