"""The kit serves what plain hayhooks serves for the same directory, name defined twice included.

Each layout is deployed twice in this process: by hayhooks' own app (``hayhooks.server.app:create_app``, whose
lifespan runs its startup deploy) and by a kit worker's app; ``POST /<name>/run`` must answer the same on both.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import booted_app, echo_wrapper
from fastapi.testclient import TestClient
from hayhooks.server.pipelines.registry import registry
from hayhooks.settings import settings as hayhooks_settings

YAML = textwrap.dedent(
    """\
    components:
      builder:
        type: haystack.components.builders.prompt_builder.PromptBuilder
        init_parameters:
          template: "From YAML, {{name}}"
    connections: []
    inputs:
      name: builder.name
    outputs:
      prompt: builder.prompt
    """
)
BROKEN_YAML = "components: [this is not a pipeline\n"
BROKEN_WRAPPER = "raise RuntimeError('broken on purpose')\n"
BODY = {"name": "World"}

# layout -> entries (``{name}`` is replaced by a name unique to the test), the names to call, and what the first
# name must answer (status, and a fragment of the body), so both sides being wrong the same way fails too.
LAYOUTS: dict[str, tuple[dict[str, str], list[str], tuple[int, str]]] = {
    "wrapper only": ({"{x}/pipeline_wrapper.py": echo_wrapper("from dir")}, ["{x}"], (200, "from dir")),
    "yaml only": ({"{x}.yml": YAML}, ["{x}"], (200, "From YAML, World")),
    "both": (
        {"{x}/pipeline_wrapper.py": echo_wrapper("from dir"), "{x}.yml": YAML},
        ["{x}"],
        (200, "From YAML, World"),
    ),
    "both, yaml broken": (
        {"{x}/pipeline_wrapper.py": echo_wrapper("from dir"), "{x}.yml": BROKEN_YAML},
        ["{x}"],
        (200, "from dir"),
    ),
    "both, wrapper broken": (
        {"{x}/pipeline_wrapper.py": BROKEN_WRAPPER, "{x}.yml": YAML},
        ["{x}"],
        (200, "From YAML, World"),
    ),
    "both broken": ({"{x}/pipeline_wrapper.py": BROKEN_WRAPPER, "{x}.yml": BROKEN_YAML}, ["{x}"], (404, "")),
    "broken beside good": (
        {"{x}/pipeline_wrapper.py": echo_wrapper("from dir"), "{y}/pipeline_wrapper.py": BROKEN_WRAPPER},
        ["{x}", "{y}"],
        (200, "from dir"),
    ),
}


def write_layout(root: Path, entries: dict[str, str], names: dict[str, str]) -> Path:
    pipelines = root / "pipelines"
    for rel, content in entries.items():
        path = pipelines / rel.format(**names)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return pipelines


def answers(client: TestClient, names: list[str]) -> list[tuple[int, object]]:
    calls = [client.post(f"/{name}/run", json=BODY) for name in names]
    return [(r.status_code, r.json() if r.status_code == 200 else None) for r in calls]


@pytest.fixture(autouse=True)
def empty_registry() -> Iterator[None]:
    """hayhooks' registry is one per process: neither side may see the other's pipelines."""
    registry.clear()
    yield
    registry.clear()


def hayhooks_answers(pipelines: Path, names: list[str], monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, object]]:
    from hayhooks.server.app import create_app

    monkeypatch.setattr(hayhooks_settings, "pipelines_dir", str(pipelines))
    with TestClient(create_app()) as client:  # the lifespan runs hayhooks' startup deploy
        return answers(client, names)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_kit_answers_as_hayhooks_does(layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries, calls, (status, fragment) = LAYOUTS[layout]
    # Unique names: hayhooks keeps the modules it loaded, and the kit refuses names of importable modules.
    names = {"x": f"x{uuid.uuid4().hex[:8]}", "y": f"y{uuid.uuid4().hex[:8]}"}
    pipelines = write_layout(tmp_path, entries, names)
    called = [c.format(**names) for c in calls]

    # The kit first: hayhooks' startup deploy leaves each temp copy's parent on sys.path (module_loader), after
    # which the kit would refuse the name as shadowing an importable module.
    with booted_app(pipelines, monkeypatch) as app:
        kit = answers(TestClient(app), called)
    registry.clear()
    plain = hayhooks_answers(pipelines, called, monkeypatch)

    assert kit == plain, f"{layout}: plain hayhooks {plain}, kit {kit}"
    assert plain[0][0] == status and fragment in str(plain[0][1])


def test_a_name_defined_twice_is_shown_in_the_cluster_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"x{uuid.uuid4().hex[:8]}"
    pipelines = write_layout(tmp_path, LAYOUTS["both"][0], {"x": name})
    with booted_app(pipelines, monkeypatch) as app:
        # /cluster answers calls made on this host when no token is set: the test client arrives on loopback
        (worker,) = TestClient(app, base_url="http://127.0.0.1").get("/cluster").json()["workers"]
    assert worker["conflicts"] == {
        name: f"Pipeline '{name}' is defined twice: '{name}.yml' and '{name}/'; serving '{name}.yml', as hayhooks does"
    }
