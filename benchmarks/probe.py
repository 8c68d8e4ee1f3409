"""Ask every worker, one by one: a keep-alive connection pinned to each, found by the ``X-Hayhooks-Worker`` header.

Fresh connections land on whichever worker accepts first, so "every worker serves it" cannot be seen reliably
through them; a connection per worker is asked in turn instead, so each worker is sampled every few ms.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable

from benchmarks.load import split_url

WORKER_HEADER = "X-Hayhooks-Worker"


class ProbeError(RuntimeError):
    pass


class WorkerPins:
    def __init__(self, url: str, workers: int, timeout: float = 10.0) -> None:
        self.host, self.port = split_url(url)
        self.workers = workers
        self.timeout = timeout
        self.connections: dict[str, http.client.HTTPConnection] = {}

    def pin(self, deadline_s: float = 20.0) -> list[str]:
        """Open connections until one reaches each worker; the extra ones are closed."""
        self.close()
        spare: list[http.client.HTTPConnection] = []
        deadline = time.monotonic() + deadline_s
        try:
            while len(self.connections) < self.workers and time.monotonic() < deadline:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                try:
                    connection.request("GET", "/healthz")
                    response = connection.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException):
                    connection.close()
                    time.sleep(0.01)
                    continue
                worker = response.getheader(WORKER_HEADER)
                if worker and worker not in self.connections:
                    self.connections[worker] = connection
                else:
                    # Held open while searching, so the next connect is not handed straight back to the same worker.
                    spare.append(connection)
        finally:
            for connection in spare:
                connection.close()
        if len(self.connections) < self.workers:
            found = len(self.connections)
            raise ProbeError(f"reached {found} of {self.workers} workers through the {WORKER_HEADER} header")
        return sorted(self.connections)

    def call(self, worker: str, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        connection = self.connections[worker]
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
        if response.getheader(WORKER_HEADER) != worker:
            raise ProbeError(f"connection pinned to {worker} answered from {response.getheader(WORKER_HEADER)}")
        return response.status, text

    def wait_all(
        self,
        path: str,
        body: dict,
        accept: Callable[[int, str], bool],
        timeout: float,
        started: float,
    ) -> dict[str, float]:
        """Seconds from *started* (a ``time.monotonic()``) until each worker's answer passes *accept*.

        A worker swaps a pipeline atomically, so the first accepted answer from a worker is the moment it serves
        the change. A broken connection (worker restarted, keep-alive closed) re-pins and goes on.
        """
        done: dict[str, float] = {}
        deadline = started + timeout
        while time.monotonic() < deadline:
            if len(self.connections) < self.workers:
                try:
                    self.pin(deadline_s=max(0.1, deadline - time.monotonic()))
                except ProbeError:
                    continue
            for worker in list(self.connections):
                if worker in done:
                    continue
                try:
                    status, text = self.call(worker, "POST", path, body)
                except (OSError, http.client.HTTPException, ProbeError):
                    self.close()  # re-pinned on the next pass
                    break
                if accept(status, text):
                    done[worker] = time.monotonic() - started
            if self.connections and all(w in done for w in self.connections):
                return done
        missing = sorted(set(self.connections) - set(done)) or "(unreachable)"
        raise ProbeError(f"workers {missing} did not serve the change within {timeout:g}s")

    def wait_version(self, path: str, version: str, timeout: float, started: float) -> dict[str, float]:
        """``wait_all`` for the trivial pipeline, whose answer to ``{"text": ""}`` is ``"<version>:"``."""
        expected = f"{version}:"
        return self.wait_all(
            path,
            {"text": ""},
            accept=lambda status, text: status == 200 and result_of(text) == expected,
            timeout=timeout,
            started=started,
        )

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()


def result_of(text: str) -> object:
    """hayhooks wraps a run_api return value as ``{"result": ...}``."""
    try:
        return json.loads(text).get("result")
    except (ValueError, AttributeError):
        return None
