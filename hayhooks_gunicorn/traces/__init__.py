"""Live traces for the whole server: each worker serves its buffer to the others (``peer``), and whichever worker
answers ``GET /traces`` merges them all (``route``)."""

from __future__ import annotations

from hayhooks_gunicorn.traces.route import install_traces

__all__ = ["install_traces"]
