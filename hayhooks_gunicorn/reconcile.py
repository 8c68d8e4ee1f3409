"""Bring this worker's served pipelines in line with the pipelines directory.

The directory is the single source of truth: each pass scans it, loads what is new or changed (by content
revision), withdraws what is gone, and keeps the last good version serving when an update fails to load.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from hayhooks.server.logger import log
from hayhooks.server.utils.models import PreparedPipeline
from starlette.routing import BaseRoute

from hayhooks_gunicorn.errors import InvalidPipelineError
from hayhooks_gunicorn.loader import install_source_only_imports, prepare_with_deadline
from hayhooks_gunicorn.names import shadows_route
from hayhooks_gunicorn.scan import PipelineSource, scan
from hayhooks_gunicorn.serving import publish, withdraw

Outcome = Literal["loaded", "failed", "removed"]


@dataclass(frozen=True)
class Served:
    revision: str
    kind: str
    loaded_at: float


@dataclass(frozen=True)
class Failure:
    revision: str
    error: str
    at: float


@dataclass(frozen=True)
class Change:
    """One result of a pass, handed to listeners (metrics, cluster state)."""

    name: str
    outcome: Outcome
    revision: str
    seconds: float  # how long the load took
    error: str | None = None


@dataclass
class Reconciler:
    app: FastAPI
    pipelines_dir: Path
    server_routes: list[BaseRoute]
    load_timeout: float = 600.0
    parallel: int = 4
    served: dict[str, Served] = field(default_factory=dict)
    failed: dict[str, Failure] = field(default_factory=dict)
    listeners: list[Callable[[Change], None]] = field(default_factory=list)
    synced_once: bool = False
    last_pass_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        install_source_only_imports(self.pipelines_dir)

    def sync(self) -> list[Change]:
        """One pass; never raises, so neither a gunicorn hook nor the watcher thread can die of a bad file."""
        with self._lock:
            try:
                changes = self._sync()
            except OSError as e:
                # An unreadable directory (network share hiccup) must not undeploy everything.
                log.error("Worker {} cannot read pipelines directory '{}': {}", os.getpid(), self.pipelines_dir, e)
                return []
            self.synced_once = True
            self.last_pass_at = time.time()
        for change in changes:
            for listener in self.listeners:
                try:
                    listener(change)
                except Exception as e:  # a listener must never break reloading
                    log.warning("Pipeline change listener failed: {}", e)
        return changes

    def pending(self) -> list[str]:
        """Names whose revision on disk differs from what this worker serves or last failed to load."""
        desired = scan(self.pipelines_dir)
        stale = [n for n in self.served if n not in desired]
        return stale + [n for n, s in desired.items() if self._needs_load(s)]

    def _needs_load(self, source: PipelineSource) -> bool:
        served, failed = self.served.get(source.name), self.failed.get(source.name)
        return not (served and served.revision == source.revision) and not (
            failed and failed.revision == source.revision
        )

    def _sync(self) -> list[Change]:
        desired = scan(self.pipelines_dir)
        changes = [self._remove(name) for name in list(self.served) if name not in desired]
        for name in [n for n in self.failed if n not in desired]:
            del self.failed[name]
        todo = [s for s in desired.values() if self._needs_load(s)]
        for source in todo:
            if source.error is None and shadows_route(source.name, self.server_routes):
                error = InvalidPipelineError(f"Pipeline name {source.name!r} clashes with a server route")
                changes.append(self._fail(source, error, 0.0))
        todo = [s for s in todo if s.name not in {c.name for c in changes}]
        for source, result, seconds in self._prepare_all(todo):
            if isinstance(result, PreparedPipeline):
                changes.append(self._publish(source, result, seconds))
            else:
                changes.append(self._fail(source, result, seconds))
        return changes

    def _prepare_all(self, sources: list[PipelineSource]) -> list[tuple[PipelineSource, object, float]]:
        """Prepare in a few threads (hayhooks' ``startup_deploy_workers``); publish one at a time afterwards."""
        results: list[tuple[PipelineSource, object, float]] = []
        slots = threading.Semaphore(max(1, self.parallel))

        def run(source: PipelineSource) -> None:
            with slots:
                started = time.monotonic()
                try:
                    result: object = prepare_with_deadline(source, self.load_timeout)
                except Exception as e:
                    result = e
                results.append((source, result, time.monotonic() - started))

        threads = [threading.Thread(target=run, args=(s,), name=f"prepare-{s.name}") for s in sources]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def _publish(self, source: PipelineSource, prepared: PreparedPipeline, seconds: float) -> Change:
        try:
            publish(self.app, prepared)
        except Exception as e:
            return self._fail(source, e, seconds)
        verb = "reloaded" if source.name in self.served else "loaded"
        self.served[source.name] = Served(source.revision, source.kind, time.time())
        self.failed.pop(source.name, None)
        log.info(
            "Worker {} {} pipeline '{}' (rev {}) in {:.2f}s", os.getpid(), verb, source.name, source.revision, seconds
        )
        return Change(source.name, "loaded", source.revision, seconds)

    def _fail(self, source: PipelineSource, error: BaseException, seconds: float) -> Change:
        message = str(error)
        self.failed[source.name] = Failure(source.revision, message, time.time())
        keeps = self.served.get(source.name)
        tail = f"; still serving rev {keeps.revision}" if keeps else ""
        log.error(
            "Worker {} failed to load pipeline '{}' (rev {}){}: {}",
            os.getpid(),
            source.name,
            source.revision,
            tail,
            message,
        )
        return Change(source.name, "failed", source.revision, seconds, message)

    def _remove(self, name: str) -> Change:
        revision = self.served.pop(name).revision
        withdraw(self.app, name)
        log.info("Worker {} removed pipeline '{}' (rev {})", os.getpid(), name, revision)
        return Change(name, "removed", revision, 0.0)
