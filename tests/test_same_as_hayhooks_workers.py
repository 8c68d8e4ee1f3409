"""A name defined twice, on a real gunicorn with 2 workers: every worker answers as plain hayhooks does."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Server, echo_wrapper, wait_until
from hayhooks.server.pipelines.registry import registry
from test_same_as_hayhooks import BODY, YAML, hayhooks_answers

pytestmark = pytest.mark.integration


def test_every_worker_serves_the_entry_hayhooks_serves(
    start_server: Callable[..., Server], pipelines_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"x{uuid.uuid4().hex[:8]}"
    (pipelines_dir / name).mkdir()
    (pipelines_dir / name / "pipeline_wrapper.py").write_text(echo_wrapper("from dir"))
    (pipelines_dir / f"{name}.yml").write_text(YAML)
    server = start_server(pipelines_dir, workers=2)

    seen = server.by_worker("POST", f"/{name}/run", json=BODY)
    registry.clear()
    try:
        ((status, result),) = hayhooks_answers(pipelines_dir, [name], monkeypatch)
    finally:
        registry.clear()

    assert len(seen) == 2
    assert status == 200 and result == {"result": {"builder": {"prompt": "From YAML, World"}}}
    for worker, responses in seen.items():
        assert {(r.status_code, str(r.json())) for r in responses} == {(status, str(result))}, worker

    def conflicts_shown() -> bool:
        workers = server.get("/cluster").json()["workers"]
        return len(workers) == 2 and all(f"serving '{name}.yml'" in w["conflicts"].get(name, "") for w in workers)

    wait_until(conflicts_shown)
    assert server.log_text().count(f"Pipeline '{name}' is defined twice: '{name}.yml' and '{name}/'") >= 2
