"""The bundled examples, served by the kit: every hayhooks feature works through it (drop-in for `hayhooks run`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, Server

pytestmark = pytest.mark.integration


@pytest.fixture(params=["threadpool", "inline"])
def examples_server(request: pytest.FixtureRequest, start_server, tmp_path: Path) -> Server:
    """The examples under both ways of running sync pipeline methods (HAYHOOKS_GUNICORN_SYNC_RUN)."""
    pipelines = tmp_path / "examples"
    shutil.copytree(REPO / "examples" / "pipelines", pipelines)
    return start_server(pipelines, env={"HAYHOOKS_GUNICORN_SYNC_RUN": request.param})


def test_examples_serve_run_chat_streaming_yaml_and_docs(examples_server: Server) -> None:
    server = examples_server
    by_worker = server.by_worker("POST", "/bm25_search/run", json={"query": "gunicorn worker timeout", "top_k": 2})
    assert len(by_worker) == 2
    for responses in by_worker.values():
        hits = responses[0].json()["result"]
        assert len(hits) == 2 and "timeout" in hits[0]["content"]

    assert server.post("/echo_stream/run", json={"text": "hi"}).json() == {"result": {"echo": "hi", "length": 2}}
    stats = server.post("/text_stats/run", json={"name": "Ada", "text": "one two\nthree"}).json()
    assert stats["result"]["stats"]["prompt"].startswith("Hi Ada! Your text has 13 characters, 3 words and 2 line")

    chat = server.post(
        "/v1/chat/completions",
        json={"model": "bm25_search", "messages": [{"role": "user", "content": "What does the gunicorn timeout do?"}]},
    ).json()
    assert "timeout" in chat["choices"][0]["message"]["content"]

    body = {"model": "echo_stream", "stream": True, "messages": [{"role": "user", "content": "hello from the kit"}]}
    response = server.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert len(events) >= 5
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == "Echo: hello from the kit"

    models = {m["id"] for m in server.get("/v1/models").json()["data"]}
    assert {"bm25_search", "echo_stream"} <= models
    paths = server.get("/openapi.json").json()["paths"]
    assert {"/bm25_search/run", "/echo_stream/run", "/text_stats/run", "/status", "/deploy_files"} <= paths.keys()
    assert server.get("/docs").status_code == 200
