"""The README and the docs pages against the assets they describe: every ``deploy/...`` path they name exists, and the
status code they give for deploy calls on the overlays that refuse them is the one those overlays answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import YAML_PIPELINE, booted_app
from fastapi.testclient import TestClient
from test_deploy_files import OVERLAYS, env_of, rendered

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DEPLOY_PATH = re.compile(r"(?<![\w/.-])deploy/[\w./-]*[\w/]")


def named_paths(page: Path) -> set[str]:
    return set(DEPLOY_PATH.findall(page.read_text()))


def test_the_pattern_finds_what_a_page_names() -> None:
    text = "see `deploy/kubernetes/overlays/readonly`, deploy/Dockerfile. Not hayhooks_gunicorn/deploys/ nor x/deploy/y"
    assert set(DEPLOY_PATH.findall(text)) == {"deploy/kubernetes/overlays/readonly", "deploy/Dockerfile"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_deploy_path_a_page_names_exists(page: Path) -> None:
    missing = sorted(path for path in named_paths(page) if not (REPO / path).exists())
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


def refusing_overlays() -> list[str]:
    refusing = []
    for overlay in OVERLAYS:
        resources = rendered(overlay)
        pod = resources[("Deployment", "hayhooks")]["spec"]["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == "hayhooks")
        if env_of(container, resources).get("HAYHOOKS_GUNICORN_DEPLOY_MODE") == "reject":
            refusing.append(overlay)
    return refusing


def test_deploy_calls_on_a_rejecting_overlay_get_403_and_the_docs_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert refusing_overlays() == ["git-sync", "readonly"]
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "docs_greeting.yml").write_text(YAML_PIPELINE)
    with booted_app(pipelines, monkeypatch, DEPLOY_MODE="reject", ADMIN_TOKEN="docs-token") as app:
        answer = TestClient(app).post("/undeploy/docs_greeting", headers={"Authorization": "Bearer docs-token"})
    assert answer.status_code == 403 and "DEPLOY_MODE=reject" in answer.json()["detail"]
    page = (REPO / "docs" / "deploying.md").read_text()  # the shipping table
    for overlay in refusing_overlays():
        rows = [line for line in page.splitlines() if f"deploy/kubernetes/overlays/{overlay}`" in line and "|" in line]
        assert rows, overlay
        for row in rows:
            assert "deploy calls get `403`" in row, row
