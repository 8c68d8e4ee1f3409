"""The deploy modes through FastAPI's test client on the app every worker serves (no gunicorn process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hayhooks.settings import settings as hayhooks_settings

from hayhooks_gunicorn.settings import kit_settings
from hayhooks_gunicorn.worker.app import create_app

YAML = """\
components:
  builder:
    type: haystack.components.builders.prompt_builder.PromptBuilder
    init_parameters:
      template: "Hi {{name}}"
connections: []
inputs:
  name: builder.name
outputs:
  prompt: builder.prompt
"""
WRAPPER = "from hayhooks import BasePipelineWrapper\n"


@pytest.fixture
def make_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., TestClient]]:
    """The worker app in a given deploy mode over an empty pipelines directory, called from loopback."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    monkeypatch.setattr(hayhooks_settings, "pipelines_dir", str(pipelines))
    monkeypatch.setenv("HAYHOOKS_GUNICORN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HAYHOOKS_GUNICORN_METRICS", "off")
    monkeypatch.setenv("HAYHOOKS_GUNICORN_MAX_FILES", "3")
    monkeypatch.setenv("HAYHOOKS_GUNICORN_MAX_BYTES", "2000")

    def make(mode: str) -> TestClient:
        monkeypatch.setenv("HAYHOOKS_GUNICORN_DEPLOY_MODE", mode)
        kit_settings.cache_clear()
        return TestClient(create_app(), base_url="http://127.0.0.1:1416")

    yield make
    kit_settings.cache_clear()


def written(client: TestClient) -> list[str]:
    return sorted(p.name for p in Path(hayhooks_settings.pipelines_dir).iterdir())


def test_reject_mode_refuses_every_mutating_route_and_writes_nothing(make_client: Callable[..., TestClient]) -> None:
    client = make_client("reject")
    for path, body in (
        ("/deploy_files", {"name": "r", "files": {"pipeline_wrapper.py": WRAPPER}}),
        ("/deploy-yaml", {"name": "r", "source_code": YAML}),
        ("/undeploy/r", None),
    ):
        refused = client.post(path, json=body)
        assert refused.status_code == 403
        assert "HAYHOOKS_GUNICORN_DEPLOY_MODE=reject" in refused.json()["detail"]
    assert written(client) == []
    assert client.get("/status").status_code == 200


def test_warn_mode_does_what_hayhooks_does_and_says_so(make_client: Callable[..., TestClient]) -> None:
    client = make_client("warn")
    answer = client.post("/deploy-yaml", json={"name": "warned_yaml", "source_code": YAML})
    assert answer.status_code == 200, answer.text
    assert (
        "Handled by worker" in answer.headers["warning"]
        and "HAYHOOKS_GUNICORN_DEPLOY_MODE=warn" in answer.headers["warning"]
    )
    assert client.post("/warned_yaml/run", json={"name": "Ada"}).json() == {"result": {"builder": {"prompt": "Hi Ada"}}}
    assert client.post("/undeploy/warned_yaml").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"name": "n", "files": {"pipeline_wrapper.py": WRAPPER}, "save_files": False}, 400, "save_files=false"),
        ({"name": "../escape", "files": {"pipeline_wrapper.py": WRAPPER}}, 422, ""),
        ({"name": "json", "files": {"pipeline_wrapper.py": WRAPPER}}, 422, "shadows the importable Python module"),
        ({"name": "undeploy", "files": {"pipeline_wrapper.py": WRAPPER}}, 422, "clashes with a server route"),
        ({"name": "n", "files": {"helper.py": "x = 1\n"}}, 422, "pipeline_wrapper.py"),
        ({"name": "n", "files": {"pipeline_wrapper.py": WRAPPER, "../x": "x"}}, 422, ""),
        ({"name": "n", "files": {"pipeline_wrapper.py": WRAPPER, "a": "", "b": "", "c": ""}}, 413, "MAX_FILES"),
        ({"name": "n", "files": {"pipeline_wrapper.py": WRAPPER + "#" * 3000}}, 413, "MAX_BYTES"),
    ],
)
def test_forward_mode_refuses_a_bad_deploy_before_anything_touches_the_disk(
    make_client: Callable[..., TestClient], body: dict[str, object], status: int, says: str
) -> None:
    client = make_client("forward")
    refused = client.post("/deploy_files", json=body)
    assert refused.status_code == status, refused.text
    assert says in str(refused.json()["detail"])
    assert written(client) == []


@pytest.mark.integration  # loads in a separate Python process (the pre-flight or the check command)
def test_forward_mode_writes_a_good_deploy_and_refuses_it_twice_without_overwrite(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client("forward")
    deployed = client.post("/deploy-yaml", json={"name": "fwd_yaml", "source_code": YAML})
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["revision"] and deployed.json()["workers"] == 0
    assert (Path(hayhooks_settings.pipelines_dir) / "fwd_yaml.yml").read_text() == YAML
    again = client.post("/deploy-yaml", json={"name": "fwd_yaml", "source_code": YAML})
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    broken = client.post("/deploy-yaml", json={"name": "fwd_yaml", "source_code": "components: [", "overwrite": True})
    assert broken.status_code == 422
    assert (Path(hayhooks_settings.pipelines_dir) / "fwd_yaml.yml").read_text() == YAML
    assert client.post("/undeploy/fwd_yaml").status_code == 200
    assert written(client) == [".hayhooks-gunicorn"]
