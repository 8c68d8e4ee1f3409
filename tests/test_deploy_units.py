"""Fast checks of the deploy building blocks: route coverage, atomic renames, validation, the workspace, loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hayhooks.server.routers import deploy_router, undeploy_router

from hayhooks_gunicorn import files as atomic
from hayhooks_gunicorn.app_context import AppContext, attach
from hayhooks_gunicorn.auth import is_loopback
from hayhooks_gunicorn.deploys.routes import install_deploy_routes
from hayhooks_gunicorn.deploys.shared_dir import Workspace
from hayhooks_gunicorn.deploys.submission import Limits, Submission, validate
from hayhooks_gunicorn.errors import DeployError
from hayhooks_gunicorn.reload.scan import scan
from hayhooks_gunicorn.settings import KitSettings

WRAPPER = "from hayhooks import BasePipelineWrapper\n"


def endpoints(router: APIRouter) -> dict[str, object]:
    return {r.path: r.endpoint for r in router.routes if isinstance(r, APIRoute)}


def test_every_mutating_route_is_covered_and_hayhooks_routers_stay_untouched(tmp_path: Path) -> None:
    before = endpoints(deploy_router), endpoints(undeploy_router)
    app = FastAPI()
    app.include_router(deploy_router)
    app.include_router(undeploy_router)
    future = APIRouter()
    future.add_api_route("/reload_all", lambda: {"done": True}, methods=["POST"], tags=["config"])
    future.add_api_route("/draw_like", lambda: {}, methods=["GET"], tags=["config"])
    app.include_router(future)
    app.add_api_route("/flat", lambda: {"flat": True}, methods=["DELETE"], tags=["config"])  # a flattened route
    settings = KitSettings(admin_token="t0k", _env_file=None)  # type: ignore[call-arg]
    attach(app, AppContext(settings=settings, server_routes=[], state_dir=tmp_path))
    covered = install_deploy_routes(app)

    assert sorted(covered) == ["/deploy-yaml", "/deploy_files", "/flat", "/reload_all", "/undeploy/{pipeline_name}"]
    assert (endpoints(deploy_router), endpoints(undeploy_router)) == before
    client = TestClient(app)
    auth = {"Authorization": "Bearer t0k"}
    assert client.post("/reload_all").status_code == 401
    refused = client.post("/reload_all", headers=auth)
    assert refused.status_code == 403 and "cannot be forwarded" in refused.json()["detail"]
    assert client.delete("/flat", headers=auth).status_code == 403
    assert client.get("/draw_like").status_code == 200
    assert "/deploy_files" in client.get("/openapi.json").json()["paths"]


def test_exchange_swaps_whole_directories_and_rename_new_never_replaces(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a").write_text("new")
    (tmp_path / "cur").mkdir()
    (tmp_path / "cur" / "b").write_text("old")
    atomic.exchange(tmp_path / "new", tmp_path / "cur")
    assert [p.name for p in (tmp_path / "cur").iterdir()] == ["a"]
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["b"]

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileExistsError):
        atomic.rename_new(tmp_path / "new", tmp_path / "empty")
    atomic.rename_new(tmp_path / "new", tmp_path / "fresh")
    assert (tmp_path / "fresh" / "b").read_text() == "old"


@pytest.mark.parametrize(
    ("name", "files", "status"),
    [
        ("ok", {"pipeline_wrapper.py": WRAPPER}, None),
        ("os", {"pipeline_wrapper.py": WRAPPER}, 422),
        ("has space", {"pipeline_wrapper.py": WRAPPER}, 422),
        ("ok", {"helper.py": "x"}, 422),
        ("ok", {"pipeline_wrapper.py": WRAPPER, "a/../../b": "x"}, 422),
        ("ok", {"pipeline_wrapper.py": WRAPPER, "a.txt": "x", "b.txt": "x"}, 413),
        ("ok", {"pipeline_wrapper.py": WRAPPER + "#" * 100}, 413),
    ],
)
def test_validation_refuses_with_a_status(tmp_path: Path, name: str, files: dict[str, str], status: int | None) -> None:
    submission = Submission.wrapper(name, files)
    if status is None:
        validate(submission, tmp_path, Limits(max_files=2, max_bytes=100))
        return
    with pytest.raises(DeployError) as refused:
        validate(submission, tmp_path, Limits(max_files=2, max_bytes=100))
    assert refused.value.status == status


def test_workspace_publishes_replaces_changes_kind_and_removes(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)

    def publish(submission: Submission, overwrite: bool = False) -> str:
        staged = workspace.stage(submission)
        try:
            return workspace.write_into_dir(staged, overwrite)
        finally:
            workspace.cleanup(staged)

    first = publish(Submission.yaml("p", "components: {}\n"))
    assert scan(tmp_path)["p"].revision == first and (tmp_path / "p.yml").is_file()
    with pytest.raises(DeployError) as exists:
        publish(Submission.yaml("p", "other: 1\n"))
    assert exists.value.status == 409
    # From YAML to a wrapper directory: the YAML file goes, the directory stays.
    second = publish(Submission.wrapper("p", {"pipeline_wrapper.py": WRAPPER, "x/y.txt": "y"}), overwrite=True)
    assert scan(tmp_path)["p"].revision == second and not (tmp_path / "p.yml").exists()
    third = publish(Submission.wrapper("p", {"pipeline_wrapper.py": WRAPPER + "\n"}), overwrite=True)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["pipeline_wrapper.py"] and third != second
    assert workspace.remove("p") == [tmp_path / "p"] and workspace.remove("p") == []
    # Only the lock directory is left; no staging or trash entries.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hayhooks-gunicorn"]


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "192.0.2.2", "example.com", "testserver"))
