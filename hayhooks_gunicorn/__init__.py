"""Run Hayhooks under a gunicorn master whose Uvicorn workers all follow one shared pipelines directory."""

from __future__ import annotations

from hayhooks_gunicorn.worker import HayhooksWorker

__all__ = ["HayhooksWorker", "__version__"]
__version__ = "0.1.0"
