"""Pipelines the master loaded before it forked (``HAYHOOKS_GUNICORN_SHARE_MODELS``), handed to each worker.

A worker whose first load of a pipeline finds the same revision here serves the master's copy as it is, so
every worker shares one copy of its weights, copy-on-write, instead of loading its own. Only the revision the
master loaded is handed down; any other revision loads in the worker as usual.
"""

from __future__ import annotations

from hayhooks.server.utils.models import PreparedPipeline

from hayhooks_gunicorn.reload.scan import PipelineSource

_inherited: dict[str, tuple[str, PreparedPipeline]] = {}


def hand_down(source: PipelineSource, prepared: PreparedPipeline) -> None:
    """In the master: *prepared* is what every worker forked from now on serves for this revision."""
    _inherited[source.name] = (source.revision, prepared)


def forget(name: str) -> None:
    _inherited.pop(name, None)


def handed_down() -> dict[str, str]:
    """Pipeline name -> the revision the master holds for the workers."""
    return {name: revision for name, (revision, _) in _inherited.items()}


def take(source: PipelineSource) -> PreparedPipeline | None:
    """In a worker: the master's copy of exactly this revision, once (a later reload frees this worker's hold)."""
    entry = _inherited.get(source.name)
    if entry is None or entry[0] != source.revision:
        return None
    del _inherited[source.name]
    return entry[1]
