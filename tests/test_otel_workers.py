"""OpenTelemetry on a real gunicorn with 2 workers: each worker's spans reach a local OTLP/HTTP receiver, named
with the worker, and are flushed when the server stops gracefully."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Server, echo_wrapper, write_wrapper
from test_traces_workers import run_until_both_workers

pytestmark = pytest.mark.integration

# hayhooks' OTLP bootstrap needs both on Haystack 3 (server/tracing.py); the test extra installs them.
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
pytest.importorskip("haystack_integrations.tracing.opentelemetry")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402


class Receiver(ThreadingHTTPServer):
    """Accepts ``POST /v1/traces`` (protobuf) and keeps (resource attributes, span name) of every span."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[tuple[dict[str, str], str]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    self.server.spans.extend((attributes, span.name) for span in scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_every_worker_exports_its_spans_named_with_it(
    start_server: Callable[..., Server], pipelines_dir: Path, receiver: Receiver
) -> None:
    write_wrapper(pipelines_dir, "traced", echo_wrapper("traced"))
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        # Nothing is exported on a timer during the test: every span that arrives was flushed at shutdown.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    server = start_server(pipelines_dir, workers=2, env=env)
    served = run_until_both_workers(server, runs=10)
    server.stop()  # SIGTERM to the master: a graceful stop of both workers

    with receiver.lock:
        spans = list(receiver.spans)
    by_worker = Counter(attributes.get("hayhooks_gunicorn.worker", "?") for attributes, _ in spans)
    print(f"runs served {dict(served)}; spans received by worker {dict(by_worker)}")
    assert set(by_worker) == set(served), by_worker
    assert all(attributes.get("deployment.environment") == "test" for attributes, _ in spans)
    assert all(attributes.get("service.name") for attributes, _ in spans)
