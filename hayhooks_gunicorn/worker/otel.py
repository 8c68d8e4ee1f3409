"""Name the worker in the OpenTelemetry resource of every span it exports.

hayhooks builds its tracer provider inside ``create_app()`` from the ``OTEL_EXPORTER_OTLP_*`` variables with
``Resource.create({service.name})`` (``server/tracing.py::_configure_otel_tracer_from_env``), which merges
``OTEL_RESOURCE_ATTRIBUTES``; nothing in it says which gunicorn worker exported a span. Each worker adds
``hayhooks_gunicorn.worker=<host>:<pid>`` (the ``X-Hayhooks-Worker`` value) to that variable before it builds
hayhooks' app. The worker builds the app after the fork (no ``preload_app``), so its span processor threads are
its own; with gunicorn's ``--preload`` the app, its exporter threads and this tag would be the master's.
"""

from __future__ import annotations

import os

from hayhooks_gunicorn.cluster.identity import worker_id

WORKER_ATTRIBUTE = "hayhooks_gunicorn.worker"
VARIABLE = "OTEL_RESOURCE_ATTRIBUTES"


def tag_worker_resource() -> str:
    """Set this process's worker in ``OTEL_RESOURCE_ATTRIBUTES``, keeping the user's attributes; returns the value.

    An inherited value of the kit's own attribute (set by a parent that built the app before forking) is replaced.
    """
    kept = [
        pair
        for pair in os.environ.get(VARIABLE, "").split(",")
        if pair.strip() and pair.split("=", 1)[0].strip() != WORKER_ATTRIBUTE
    ]
    value = ",".join([*kept, f"{WORKER_ATTRIBUTE}={worker_id()}"])
    os.environ[VARIABLE] = value
    return value


def flush_spans(timeout_ms: int = 5000) -> None:
    """Export the spans this worker still holds, at graceful shutdown; never raises.

    hayhooks' ``BatchSpanProcessor`` exports on a timer (``OTEL_BSP_SCHEDULE_DELAY``, 5 s by default) and leaves
    the last batch to the SDK's ``atexit`` shutdown; measured under gunicorn with 2 workers and a long delay, no
    span of a gracefully stopped worker arrived. The lifespan's shutdown runs on every graceful stop.
    """
    try:
        from opentelemetry import trace
    except ImportError:
        return
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is None:
        return  # no SDK provider: tracing to OTLP is off
    try:
        flush(timeout_ms)
    except Exception as e:  # a receiver that is down must not fail the worker's exit
        from hayhooks.server.logger import log

        log.warning("Worker {} could not flush its OpenTelemetry spans: {}", os.getpid(), e)
