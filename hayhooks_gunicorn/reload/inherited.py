"""Pipelines the master loaded before it forked (``HAYHOOKS_GUNICORN_SHARE_MODELS``), handed to each worker.

A worker whose first load of a pipeline finds the same revision here serves the master's copy as it is, so
every worker shares one copy of its weights, copy-on-write, instead of loading its own. Only the revision the
master loaded is handed down; any other revision loads in the worker as usual. A revision that failed the master's
pre-flight is handed down as that failure: a ``setup()`` that ends its process (``os._exit``) would otherwise end
every worker that loads it, and gunicorn would start the next one into the same end.
"""

from __future__ import annotations

from hayhooks.server.utils.models import PreparedPipeline

from hayhooks_gunicorn.errors import PipelineLoadError
from hayhooks_gunicorn.reload.scan import PipelineSource

_inherited: dict[str, tuple[str, PreparedPipeline]] = {}
_failed: dict[str, tuple[str, str]] = {}  # name -> (revision, the pre-flight's error)


def hand_down(source: PipelineSource, prepared: PreparedPipeline) -> None:
    """In the master: *prepared* is what every worker forked from now on serves for this revision."""
    _inherited[source.name] = (source.revision, prepared)


def hand_down_failure(source: PipelineSource, error: str) -> None:
    """In the master: this revision failed its pre-flight; workers report that instead of loading it."""
    _failed[source.name] = (source.revision, error)


def forget(name: str) -> None:
    _inherited.pop(name, None)
    _failed.pop(name, None)


def failed() -> dict[str, str]:
    """Pipeline name -> the revision that failed the master's pre-flight."""
    return {name: revision for name, (revision, _) in _failed.items()}


def handed_down() -> dict[str, str]:
    """Pipeline name -> the revision the master holds for the workers."""
    return {name: revision for name, (revision, _) in _inherited.items()}


def take(source: PipelineSource) -> PreparedPipeline | PipelineLoadError | None:
    """In a worker: the master's copy of exactly this revision, once (a later reload frees this worker's hold), or
    the master's failure to load it."""
    failure = _failed.get(source.name)
    if failure is not None and failure[0] == source.revision:
        return PipelineLoadError(f"Not loaded: it failed the master's pre-flight: {failure[1]}")
    entry = _inherited.get(source.name)
    if entry is None or entry[0] != source.revision:
        return None
    del _inherited[source.name]
    return entry[1]
