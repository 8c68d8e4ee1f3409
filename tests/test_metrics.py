"""One Prometheus scrape covers every worker of a master, dead ones included, and the directory stays bounded."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import Server, echo_wrapper, run_wrapper, wait_until, write_wrapper
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

REQUESTS = "hayhooks_pipeline_requests_total"
CONVERGED = "hayhooks_pipeline_convergence_seconds_count"
CHANGING = "/changing/run"
TOKEN = "s3cret-admin-token"

CHAT_WRAPPER = '''
from hayhooks import BasePipelineWrapper
from haystack.dataclasses import StreamingChunk


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, text: str = "") -> dict:
        """Echo the text.

        Args:
            text: what to echo
        """
        return {"reply": text}

    def run_chat_completion(self, model: str, messages: list[dict], body: dict):
        words = messages[-1]["content"].split()
        return (StreamingChunk(content=word + " ") for word in words)

    def run_response(self, model: str, input_items: list[dict], body: dict) -> str:
        return "answered"
'''

FAILING_WRAPPER = run_wrapper('raise RuntimeError("boom")', doc="Always fail.")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Server, **kwargs: object) -> Samples:
    response = server.get("/metrics", **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def reply(response: httpx.Response) -> object:
    return response.json()["result"]["reply"] if response.status_code == 200 else response.status_code


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of *name* whose labels include *labels*."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def label_values(samples: Samples, name: str, label: str, **labels: str) -> set[str]:
    wanted = set(labels.items())
    return {dict(ls)[label] for (n, ls), v in samples.items() if n == name and wanted <= ls and label in dict(ls)}


@dataclass
class Kit:
    server: Server
    pipelines: Path
    statsd: socket.socket


@pytest.fixture(scope="module")
def kit(start_module_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    pipelines = tmp_path_factory.mktemp("pipelines")
    write_wrapper(pipelines, "echo", CHAT_WRAPPER)
    write_wrapper(pipelines, "failing", FAILING_WRAPPER)
    write_wrapper(pipelines, "changing", echo_wrapper("v1"))
    # A pipeline named like the route: its /metrics/run must not take /metrics, nor the reverse.
    write_wrapper(pipelines, "metrics", echo_wrapper("a pipeline"))
    statsd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    statsd.bind(("127.0.0.1", 0))
    statsd.settimeout(10)
    statsd_host = f"127.0.0.1:{statsd.getsockname()[1]}"
    server = start_module_server(pipelines, args=["--statsd-host", statsd_host, "--statsd-prefix", "hg"])
    try:
        yield Kit(server, pipelines, statsd)
    finally:
        statsd.close()


def test_one_scrape_counts_every_call_answered_by_every_worker(kit: Kit) -> None:
    before = total(scrape(kit.server), REQUESTS, pipeline="echo")

    answered = kit.server.by_worker("POST", "/echo/run", calls=100, json={"text": "hi"})
    sent = sum(len(rs) for rs in answered.values())  # 100, plus any extra calls until both workers answered

    assert len(answered) == 2
    assert all(r.status_code == 200 for rs in answered.values() for r in rs)
    after = scrape(kit.server)
    assert total(after, REQUESTS, pipeline="echo") - before == sent
    assert total(after, REQUESTS, pipeline="echo", status="200") - before == sent
    assert total(after, "hayhooks_pipeline_request_duration_seconds_count", pipeline="echo") >= sent
    assert total(after, "hayhooks_workers") == 2


def test_chat_completions_streams_and_errors_count_under_their_pipeline(kit: Kit) -> None:
    before = scrape(kit.server)
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hello kit"}]}

    whole = kit.server.post("/v1/chat/completions", json=chat)
    with httpx.Client(base_url=kit.server.url, timeout=30) as client:
        with client.stream("POST", "/chat/completions", json={**chat, "stream": True}) as stream:
            streamed = "".join(stream.iter_text())
    response = kit.server.post("/v1/responses", json={"model": "echo", "input": "hi"})
    unknown = kit.server.post("/v1/chat/completions", json={**chat, "model": "no-such-pipeline"})
    failed = kit.server.post("/failing/run", json={})
    named_metrics = kit.server.post("/metrics/run", json={})

    # The body read by the middleware reached the pipeline unchanged.
    assert whole.status_code == 200 and whole.json()["choices"][0]["message"]["content"].strip() == "hello kit"
    assert stream.status_code == 200 and "hello" in streamed and "kit" in streamed
    assert response.status_code == 200, response.text
    assert unknown.status_code == 404
    assert failed.status_code == 500
    assert named_metrics.json()["result"]["reply"] == "a pipeline"
    after = scrape(kit.server)

    def grew(**labels: str) -> float:
        return total(after, REQUESTS, **labels) - total(before, REQUESTS, **labels)

    assert grew(pipeline="echo", status="200") == 3
    assert grew(pipeline="failing", status="500") == 1
    assert grew(pipeline="metrics", status="200") == 1
    # Names no worker serves never become label values.
    assert "no-such-pipeline" not in label_values(after, REQUESTS, "pipeline")


def test_reloads_revisions_and_convergence_lag(kit: Kit) -> None:
    before = scrape(kit.server)
    (old,) = label_values(before, "hayhooks_pipeline_revision_info", "revision", pipeline="changing")

    write_wrapper(kit.pipelines, "changing", echo_wrapper("v2"))
    wait_until(lambda: kit.server.every_worker(lambda r: reply(r) == "v2", "POST", CHANGING, json={}))
    wait_until(lambda: total(scrape(kit.server), CONVERGED, pipeline="changing") == 2)
    after = scrape(kit.server)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("hayhooks_pipeline_reloads_total", pipeline="changing", result="loaded") == 2
    (new,) = label_values(after, "hayhooks_pipeline_revision_info", "revision", pipeline="changing")
    assert new != old
    assert total(after, "hayhooks_pipeline_revision_info", pipeline="changing", revision=new) == 2
    assert len(label_values(after, "hayhooks_pipeline_revision_info", "worker", pipeline="changing")) == 2

    (kit.pipelines / "changing" / "pipeline_wrapper.py").write_text("this is not python")
    wait_until(lambda: total(scrape(kit.server), "hayhooks_pipeline_load_failed", pipeline="changing") == 2)
    broken = scrape(kit.server)
    assert total(broken, "hayhooks_pipeline_reloads_total", pipeline="changing", result="failed") >= 2
    # The last good revision keeps serving, and says so.
    assert label_values(broken, "hayhooks_pipeline_revision_info", "revision", pipeline="changing") == {new}

    write_wrapper(kit.pipelines, "changing", echo_wrapper("v3"))
    wait_until(lambda: total(scrape(kit.server), "hayhooks_pipeline_load_failed", pipeline="changing") == 0)


def test_a_killed_workers_counts_survive_and_its_live_gauges_vanish(kit: Kit) -> None:
    kit.server.by_worker("POST", "/echo/run", calls=10, json={"text": "hi"})
    before = scrape(kit.server)
    victim = min(kit.server.worker_pids())
    assert any(w.endswith(f":{victim}") for w in label_values(before, "hayhooks_pipeline_revision_info", "worker"))

    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in kit.server.worker_pids() and len(kit.server.worker_pids()) == 2)
    kit.server.wait_ready()
    after = scrape(kit.server)

    assert total(after, REQUESTS) == total(before, REQUESTS)
    assert total(after, "hayhooks_pipeline_request_duration_seconds_count") == total(
        before, "hayhooks_pipeline_request_duration_seconds_count"
    )
    # The new worker loaded every pipeline once more; nothing the dead one counted was lost.
    assert total(after, "hayhooks_pipeline_reloads_total", result="loaded") == (
        total(before, "hayhooks_pipeline_reloads_total", result="loaded") + 4
    )
    workers = label_values(after, "hayhooks_pipeline_revision_info", "worker")
    assert len(workers) == 2 and not any(w.endswith(f":{victim}") for w in workers)
    assert total(after, "hayhooks_workers") == 2


def test_gunicorn_statsd_options_keep_working(kit: Kit) -> None:
    received: list[bytes] = []
    while not any(m.startswith(b"hg.gunicorn.workers:") for m in received):
        received.append(kit.statsd.recv(4096))
    assert b"hg.gunicorn.workers:2|g" in received


def test_metrics_directory_stays_bounded_over_hundreds_of_worker_exits(
    start_server, pipelines_dir: Path, runtime_dir: Path
) -> None:
    """Workers recycled by ``max_requests``, then killed: each exit folds the worker's files into the archive."""
    write_wrapper(pipelines_dir, "echo", echo_wrapper("hi"))
    # --preload: forked workers boot in a fraction of a second, so many exits fit in a short test.
    server = start_server(pipelines_dir, args=["--max-requests", "1", "--preload"])
    answered: list[str] = []

    def call(count: int) -> None:
        for _ in range(count):
            # A connection a recycling worker accepted but never read is dropped: send the call again.
            for _attempt in range(20):
                try:
                    response = server.post("/echo/run", json={})
                except httpx.TransportError:
                    continue
                assert response.status_code == 200
                answered.append(response.headers["x-hayhooks-worker"])
                break

    threads = [threading.Thread(target=call, args=(10,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answered) == 40
    recycled = len(set(answered))

    # Then kill both workers again and again, each time once their replacements have recorded their boot.
    directory = next((runtime_dir / "metrics").iterdir())
    killed: set[int] = set()
    while recycled + len(killed) < 200:
        for pid in wait_until(lambda: _booted(server, directory, exclude=killed)):
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
    # No /readyz here: with max_requests=1 every call, a scrape too, recycles the worker that answers it.
    wait_until(lambda: _booted(server, directory, exclude=killed))
    booted = server.log_text().count("Booting worker with pid")
    files = sorted(p.name for p in directory.iterdir())
    samples = scrape(server)

    assert booted >= 200
    assert total(samples, REQUESTS, pipeline="echo") == 40
    # Every worker that ever booted loaded the pipeline once: no dead worker's count was lost or counted twice.
    assert total(samples, "hayhooks_pipeline_reloads_total", pipeline="echo", result="loaded") == booted
    assert total(samples, "hayhooks_workers") == 2
    # Two live workers (counter, histogram, live gauges each), one archive per type, two lock files.
    assert len(files) <= 3 * 2 + 2 + 2, files


def _booted(server: Server, directory: Path, exclude: set[int]) -> set[int] | None:
    """Both workers are new and have recorded their pipeline load (histograms are written after the counters)."""
    pids = server.worker_pids() - exclude
    if len(pids) == 2 and all((directory / f"histogram_{pid}.db").exists() for pid in pids):
        return pids
    return None


def test_metrics_token_and_off(start_server, pipelines_dir: Path, runtime_dir: Path) -> None:
    write_wrapper(pipelines_dir, "echo", echo_wrapper("hi"))
    env = {"HAYHOOKS_GUNICORN_METRICS": "token", "HAYHOOKS_GUNICORN_ADMIN_TOKEN": TOKEN}
    protected = start_server(pipelines_dir, workers=1, env=env)
    off = start_server(pipelines_dir, workers=1, env={"HAYHOOKS_GUNICORN_METRICS": "off"})

    assert protected.get("/metrics").status_code == 401
    assert protected.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    samples = scrape(protected, headers={"Authorization": f"Bearer {TOKEN}"})
    assert total(samples, "hayhooks_workers") == 1
    assert off.get("/metrics").status_code == 404
    assert off.post("/echo/run", json={}).status_code == 200
    # Only the protected master made a metrics directory.
    assert len(list((runtime_dir / "metrics").iterdir())) == 1
