"""The kit's Prometheus metrics, created on first use in the process that records them.

Created lazily, not at import: with ``preload_app`` the app is built in the master, and a gauge created there
would leave a file for the master's pid in the multiprocess directory. Gauges use ``live*`` modes so a dead
worker's samples vanish with ``mark_process_dead``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

REQUESTS = "hayhooks_pipeline_requests"
REQUEST_DURATION = "hayhooks_pipeline_request_duration_seconds"
RELOADS = "hayhooks_pipeline_reloads"
LOAD_DURATION = "hayhooks_pipeline_load_duration_seconds"
LOAD_FAILED = "hayhooks_pipeline_load_failed"
REVISION_INFO = "hayhooks_pipeline_revision_info"
CONVERGENCE = "hayhooks_pipeline_convergence_seconds"
WORKERS = "hayhooks_workers"
PIPELINES_DIR_INFO = "hayhooks_pipelines_dir_info"

# Pipelines answer in milliseconds (a prompt template) or minutes (an agent): prometheus_client's default
# buckets stop at 10 s.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass(frozen=True)
class Instruments:
    requests: Any
    request_duration: Any
    reloads: Any
    load_duration: Any
    load_failed: Any
    revision_info: Any
    convergence: Any
    workers: Any
    pipelines_dir_info: Any


@functools.cache
def instruments() -> Instruments:
    from prometheus_client import Counter, Gauge, Histogram

    return Instruments(
        requests=Counter(
            REQUESTS, "Pipeline calls (run, chat completions, responses) by HTTP status", ["pipeline", "status"]
        ),
        request_duration=Histogram(
            REQUEST_DURATION,
            "Time from request to the last byte of the response (streams included)",
            ["pipeline"],
            buckets=REQUEST_BUCKETS,
        ),
        reloads=Counter(
            RELOADS, "Pipeline load results in each worker (loaded, failed, removed)", ["pipeline", "result"]
        ),
        load_duration=Histogram(
            LOAD_DURATION, "Time to load a pipeline and run its setup()", ["pipeline"], buckets=LOAD_BUCKETS
        ),
        load_failed=Gauge(
            LOAD_FAILED,
            "Live workers whose last load of the pipeline failed (they keep serving the previous revision)",
            ["pipeline"],
            multiprocess_mode="livesum",
        ),
        revision_info=Gauge(
            REVISION_INFO,
            "1 for the revision each live worker serves (slot: the worker's stable index, master/slots)",
            ["pipeline", "revision", "worker", "slot"],
            multiprocess_mode="livesum",
        ),
        convergence=Histogram(
            CONVERGENCE,
            "Time from a change in the pipelines directory to a worker serving it",
            ["pipeline"],
            buckets=LOAD_BUCKETS,
        ),
        workers=Gauge(WORKERS, "Live worker processes", multiprocess_mode="livesum"),
        pipelines_dir_info=Gauge(
            PIPELINES_DIR_INFO,
            "1 for the real directory (links resolved) each live worker serves its pipelines from",
            ["worker", "slot", "path"],
            multiprocess_mode="livesum",
        ),
    )
