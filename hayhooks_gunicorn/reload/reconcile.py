"""Bring this worker's served pipelines in line with the pipelines directory.

The directory is the single source of truth: each pass scans it, loads what is new or changed (by content
revision), withdraws what stays gone (``reload.missing``), and keeps the last good version serving when an update
fails to load.

Each pass resolves the configured path again (``reload.follow``) and scans the real directory it leads to, so a
link swap (git-sync, a ``current`` link) is followed and one pass never mixes two releases. A pipeline whose files
now live elsewhere is loaded again from there even when its content is unchanged: its ``__file__`` must point at
files that exist, and git-sync and the kubelet delete the release they swapped away from. While the path leads
nowhere (a dangling link, a directory missing mid-swap), nothing is withdrawn.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from hayhooks.server.logger import log
from hayhooks.server.utils.models import PreparedPipeline
from starlette.routing import BaseRoute

from hayhooks_gunicorn.errors import PipelineLoadError
from hayhooks_gunicorn.reload import inherited
from hayhooks_gunicorn.reload.follow import resolve_dir
from hayhooks_gunicorn.reload.loader import Guard, install_source_only_imports, prepare_first
from hayhooks_gunicorn.reload.missing import MissingEntries
from hayhooks_gunicorn.reload.names import shadows_route
from hayhooks_gunicorn.reload.outcomes import Change, Failure, Served, Snapshot, Unresolved
from hayhooks_gunicorn.reload.plan import Current, OnDisk, plan_pass
from hayhooks_gunicorn.reload.release import release_replaced
from hayhooks_gunicorn.reload.routes import swap_routes, withdraw_routes
from hayhooks_gunicorn.reload.scan import PipelineSource, scan

if TYPE_CHECKING:
    from hayhooks_gunicorn.cluster.quarantine import Quarantine


@dataclass
class Reconciler:
    """Each pipeline loads on its own thread and is swapped in when ready, so a slow ``setup()`` (model loading)
    never holds back the reload of another pipeline; one name never has two loads at once."""

    app: FastAPI
    pipelines_dir: Path
    server_routes: list[BaseRoute]
    load_timeout: float = 600.0
    parallel: int = 4
    served: dict[str, Served] = field(default_factory=dict)
    failed: dict[str, Failure] = field(default_factory=dict)
    loading: dict[str, PipelineSource] = field(default_factory=dict)  # name -> the source being loaded
    listeners: list[Callable[[Change], None]] = field(default_factory=list)
    # Called with the new directory whenever serves_from changes (metrics, cluster state)
    dir_listeners: list[Callable[[Path], None]] = field(default_factory=list)
    # The real directory the last pass scanned, and the one whose loads have all finished (what it serves from)
    root: Path | None = None
    serves_from: Path | None = None
    unresolved: Unresolved | None = None
    # Names defined by more than one entry (``x/`` and ``x.yml``): which entries, and which one this worker serves
    conflicts: dict[str, str] = field(default_factory=dict)
    # What the last pass found on disk (name -> revision and real path), and when (``time.monotonic()``)
    on_disk: dict[str, Served] = field(default_factory=dict)
    scanned_at: float | None = None
    # Revisions that killed a worker while it loaded them: never loaded again (``cluster.quarantine``)
    quarantine: Quarantine | None = None
    # Why a changed revision must not load here, asked before each load once serving (``cluster.trial_loads``)
    trial: Callable[[PipelineSource], str | None] | None = None
    _rerun: bool = False  # a pass skipped a name that was busy loading: look again when that load ends
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: threading.Semaphore = field(init=False)
    # Served names whose entry is missing: withdrawn once missing for a grace period, by a follow-up pass
    missing: MissingEntries = field(init=False)
    # A consistent copy of the state, replaced at the end of every change: readers take it without the lock
    _published: Snapshot = field(init=False)

    def __post_init__(self) -> None:
        self._slots = threading.Semaphore(max(1, self.parallel))
        self.missing = MissingEntries(self.sync)
        self._published = self._copy()

    def stop(self) -> None:
        self.missing.stop()

    def sync(self, wait: bool = False) -> None:
        """One pass: withdraw what stayed gone, start loading what is new or changed; *wait* for those loads (boot).

        Never raises, so neither a gunicorn hook nor the watcher thread can die of a bad file.
        """
        with self._changing():
            resolution = resolve_dir(self.pipelines_dir)
            if resolution.path is None:
                self._lost(resolution.reason)
                return
            self._follow(resolution.path)
            try:
                desired = scan(resolution.path)
            except OSError as e:
                # An unreadable directory (network share hiccup) must not undeploy everything.
                log.error("Worker {} cannot read pipelines directory '{}': {}", os.getpid(), resolution.path, e)
                return
            self.on_disk = {name: Served(source.revision, location(source)) for name, source in desired.items()}
            self.scanned_at = time.monotonic()
            plan = plan_pass({name: self._on_disk(source) for name, source in desired.items()}, self._current())
            changes = [self._remove(name) for name in self.missing.due(plan.gone)]
            for name in plan.forget_failed:
                del self.failed[name]
            for name in plan.forget_conflicts:
                del self.conflicts[name]
            changes += [self._fail(desired[name], reason, 0.0) for name, reason in plan.refuse.items()]
            self._rerun = self._rerun or plan.rerun
            threads = [self._start_load(desired[name]) for name in plan.load]
            moved = self._settle()
        self._notify(changes, moved)
        if any(change.outcome == "removed" for change in changes):
            release_replaced()
        for thread in threads:
            thread.start()
        if wait:
            for thread in threads:
                thread.join()

    def pending(self) -> list[str]:
        """Names this worker does not serve as the last pass found them on disk (loading, or not yet started), nor
        failed on: from memory, so ``/readyz`` never waits for a disk, nor for a pass or a load holding the lock."""
        return self._published.pending()

    def snapshot(self) -> Snapshot:
        """Copies of what this worker serves, failed on, is loading and last found on disk, consistent with each
        other, taken without the lock: a reference to the copy the last change published."""
        return self._published

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the lock while the state changes, then publish a copy of it for readers that must not wait."""
        with self._lock:
            try:
                yield
            finally:
                self._published = self._copy()

    def _copy(self) -> Snapshot:
        loading = {name: source.revision for name, source in self.loading.items()}
        return Snapshot(
            dict(self.served),
            dict(self.failed),
            loading,
            self.serves_from,
            self.unresolved,
            dict(self.conflicts),
            dict(self.on_disk),
            self.scanned_at,
        )

    def _current(self) -> Current:
        """What this worker holds, as plain data for the planner (``reload.plan``); under the lock."""
        return Current(
            served={name: (served.revision, served.location) for name, served in self.served.items()},
            failed={name: failure.revision for name, failure in self.failed.items()},
            loading={name: (source.revision, location(source)) for name, source in self.loading.items()},
            conflicts=list(self.conflicts),
        )

    def _on_disk(self, source: PipelineSource) -> OnDisk:
        """*source* as plain data, with whether its name clashes with a route and whether this revision is
        quarantined."""
        clashes = shadows_route(source.name, self.server_routes)
        quarantined = self.quarantine.cause(source.name, source.revision) if self.quarantine else None
        return OnDisk(
            revision=source.revision,
            location=location(source),
            broken=source.error is not None,
            conflict=source.conflict is not None,
            clashes=clashes,
            quarantined=quarantined,
        )

    def _start_load(self, source: PipelineSource) -> threading.Thread:
        self.loading[source.name] = source
        return threading.Thread(target=self._load, args=(source,), name=f"load-{source.name}")

    def _lost(self, reason: str | None) -> None:
        """The path leads nowhere: keep serving the last good set, and say so once."""
        if self.unresolved is not None:
            return
        self.unresolved = Unresolved(time.monotonic(), reason or "unknown reason")
        where = f" from '{self.serves_from}'" if self.serves_from else ""
        log.error(
            "Worker {} cannot follow pipelines directory '{}': {}; still serving {} pipeline(s){}",
            os.getpid(),
            self.pipelines_dir,
            reason,
            len(self.served),
            where,
        )

    def _follow(self, path: Path) -> None:
        """Called by every pass that resolved the path: note a new directory (a swap) or a path back again."""
        if self.unresolved is not None or (path != self.root and path != self.pipelines_dir):
            log.info("Worker {} follows pipelines directory '{}' to '{}'", os.getpid(), self.pipelines_dir, path)
        self.unresolved = None
        if path != self.root:
            install_source_only_imports(path)
            self.root = path

    def _settle(self) -> bool:
        """Once no load is running, the worker serves from the directory last scanned; True when that changed."""
        if self.loading or self.root is None or self.root == self.serves_from:
            return False
        self.serves_from = self.root
        return True

    def _load(self, source: PipelineSource) -> None:
        with self._slots:
            started = time.monotonic()
            chosen = source
            try:
                result: PreparedPipeline | Exception | None = inherited.take(source)
                if result is None and self.trial is not None and (refused := self.trial(source)) is not None:
                    result = PipelineLoadError(refused)
                if result is None:
                    result, chosen = prepare_first(source, self.load_timeout, self._guard(source))
            except Exception as e:
                result = e
        seconds = time.monotonic() - started
        with self._changing():
            del self.loading[source.name]
            replacing = source.name in self.served
            self._note_conflict(source, chosen if isinstance(result, PreparedPipeline) else None)
            if isinstance(result, PreparedPipeline):
                change = self._serve(source, result, seconds)
            else:
                change = self._fail(source, result, seconds)
            rerun, self._rerun = self._rerun, False
            moved = self._settle()
        del result  # this thread must not keep the new version's objects alive either
        self._notify([change], moved)
        if replacing and change.outcome == "loaded":
            release_replaced()
        if rerun:
            self.sync()

    def _guard(self, source: PipelineSource) -> Guard:
        """The loading mark of *source*, held while its load runs (``cluster.quarantine``)."""
        if self.quarantine is None:
            return contextlib.nullcontext
        return functools.partial(self.quarantine.loading, source.name, source.revision)

    def _note_conflict(self, source: PipelineSource, chosen: PipelineSource | None) -> None:
        if source.conflict is None:
            self.conflicts.pop(source.name, None)
            return
        outcome = f"serving '{chosen.entry}', as hayhooks does" if chosen else "none of them loads"
        self.conflicts[source.name] = f"{source.conflict}; {outcome}"
        log.warning("Worker {}: {}", os.getpid(), self.conflicts[source.name])

    def _notify(self, changes: list[Change], moved: bool = False) -> None:
        calls: list[tuple[Callable[..., None], object]] = [(ls, c) for c in changes for ls in self.listeners]
        if moved and self.serves_from is not None:
            calls += [(listener, self.serves_from) for listener in self.dir_listeners]
        for listener, argument in calls:
            try:
                listener(argument)
            except Exception as e:  # a listener must never break reloading
                log.warning("Pipeline change listener failed: {}", e)

    def _serve(self, source: PipelineSource, prepared: PreparedPipeline, seconds: float) -> Change:
        try:
            swap_routes(self.app, prepared)
        except Exception as e:
            return self._fail(source, e, seconds)
        verb = "reloaded" if source.name in self.served else "loaded"
        self.served[source.name] = Served(source.revision, location(source))
        self.failed.pop(source.name, None)
        log.info(
            "Worker {} {} pipeline '{}' (rev {}) in {:.2f}s", os.getpid(), verb, source.name, source.revision, seconds
        )
        return Change(source.name, "loaded", source.revision, seconds)

    def _fail(self, source: PipelineSource, error: BaseException | str, seconds: float) -> Change:
        message = str(error)
        self.failed[source.name] = Failure(source.revision, message)
        keeps = self.served.get(source.name)
        tail = f"; still serving rev {keeps.revision}" if keeps else ""
        what = f"pipeline '{source.name}' (rev {source.revision})"
        log.error("Worker {} failed to load {}{}: {}", os.getpid(), what, tail, message)
        return Change(source.name, "failed", source.revision, seconds, message)

    def _remove(self, name: str) -> Change:
        revision = self.served.pop(name).revision
        withdraw_routes(self.app, name)
        log.info("Worker {} removed pipeline '{}' (rev {})", os.getpid(), name, revision)
        return Change(name, "removed", revision, 0.0)


def location(source: PipelineSource) -> str:
    """Where a source's files really are: a link swap changes it even when the content (revision) is the same."""
    return source.real_path or os.path.realpath(source.path)
