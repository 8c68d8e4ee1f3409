"""Publish a pipeline into the shared pipelines directory so every watcher sees all of it or none of it.

validate -> stage on the same filesystem (a hidden directory the scanner ignores) -> pre-flight load ->
lock the name (threads, processes and hosts sharing the directory) -> rename or swap into place.
A submission that fails any step before the rename leaves nothing behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hayhooks.server.exceptions import PipelinePathError
from hayhooks.server.utils.module_loader import pipeline_modules, unload_pipeline_modules
from hayhooks.server.utils.pipeline_paths import require_contained_path, validate_file_keys, validate_pipeline_name
from starlette.routing import BaseRoute

from hayhooks_gunicorn.atomic import exchange, rename_new, write_file
from hayhooks_gunicorn.errors import DeployError, InvalidPipelineError, PipelineLoadError
from hayhooks_gunicorn.loader import prepare_with_deadline
from hayhooks_gunicorn.names import NAME_PATTERN, check_name
from hayhooks_gunicorn.scan import YAML_SUFFIXES, PipelineSource, fingerprint, ignored

# The kit's entries in the pipelines directory all start with this: hidden, so scans skip them (scan.ignored).
WORKSPACE = ".hayhooks-gunicorn"
LOCK_TIMEOUT = 60.0
# Scratch entries older than this were left by a process that died mid-deploy.
STALE_SECONDS = 3600
READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}

Kind = Literal["files", "yaml"]


@dataclass(frozen=True)
class Submission:
    """One deploy request: a wrapper directory's files, or one YAML definition saved as ``<name>.yml``."""

    name: str
    kind: Kind
    files: dict[str, bytes]

    @classmethod
    def wrapper(cls, name: str, files: Mapping[str, str | bytes]) -> Submission:
        return cls(name, "files", {k: v.encode() if isinstance(v, str) else v for k, v in files.items()})

    @classmethod
    def yaml(cls, name: str, source: str | bytes) -> Submission:
        return cls(name, "yaml", {f"{name}.yml": source.encode() if isinstance(source, str) else source})

    @property
    def entry(self) -> str:
        """Its name in the pipelines directory."""
        return self.name if self.kind == "files" else f"{self.name}.yml"

    @property
    def size(self) -> int:
        return sum(len(content) for content in self.files.values())


@dataclass(frozen=True)
class Limits:
    max_files: int
    max_bytes: int


def validate(
    submission: Submission, pipelines_dir: Path, limits: Limits, server_routes: list[BaseRoute] | None = None
) -> None:
    """Refuse a bad submission before anything touches the disk."""
    name = submission.name
    try:
        validate_pipeline_name(name)
        validate_file_keys(submission.files)
        if ignored(name):
            raise InvalidPipelineError(f"Pipeline name {name!r} is one the directory scan ignores; rename the pipeline")
        check_name(name, pipelines_dir, server_routes)
    except (PipelinePathError, InvalidPipelineError) as e:
        raise DeployError(str(e), 422) from e
    if submission.kind == "files" and "pipeline_wrapper.py" not in submission.files:
        raise DeployError("Missing required file: pipeline_wrapper.py", 422)
    if len(submission.files) > limits.max_files:
        count = len(submission.files)
        msg = f"Pipeline {name!r} has {count} files; the limit is {limits.max_files} (HAYHOOKS_GUNICORN_MAX_FILES)"
        raise DeployError(msg, 413)
    if submission.size > limits.max_bytes:
        size = submission.size
        msg = f"Pipeline {name!r} is {size} bytes; the limit is {limits.max_bytes} (HAYHOOKS_GUNICORN_MAX_BYTES)"
        raise DeployError(msg, 413)


def check_removable(name: str) -> None:
    """Undeploy removes only what could be a pipeline: never ``.git``, the kit's own entries or caches."""
    try:
        validate_pipeline_name(name)
    except PipelinePathError as e:
        raise DeployError(str(e), 422) from e
    if not NAME_PATTERN.fullmatch(name) or ignored(name):
        raise DeployError(f"{name!r} is not a pipeline name (letters, digits, '_' and '-')", 422)


@dataclass(frozen=True)
class Staged:
    """A complete copy of a submission inside the workspace, named as it will be in the pipelines directory."""

    submission: Submission
    holder: Path  # .hayhooks-gunicorn-stage-<id>, removed afterwards whatever happened
    path: Path  # holder/<name> or holder/<name>.yml

    def source(self) -> PipelineSource:
        """What a pre-flight loads: the staged files under the pipeline's final name."""
        return PipelineSource(self.submission.name, self.path, self.submission.kind, fingerprint(self.path))


def read_only_error(pipelines_dir: Path, error: OSError) -> DeployError:
    msg = (
        f"The pipelines directory '{pipelines_dir}' is read-only ({error.strerror}): deploy calls cannot change it. "
        "Change the pipelines where they come from (ConfigMap, image, volume); workers keep serving and watching it."
    )
    return DeployError(msg, 409)


def write_error(pipelines_dir: Path, error: OSError) -> DeployError:
    if error.errno in READ_ONLY_ERRNOS:
        return read_only_error(pipelines_dir, error)
    return DeployError(f"Cannot write to the pipelines directory '{pipelines_dir}': {error}", 500)


_local_locks: dict[Path, threading.Lock] = {}
_local_locks_guard = threading.Lock()


class Workspace:
    """Staging, locks and trash of one pipelines directory, all inside it so renames never cross filesystems.

    Staging and trash are hidden entries that live only as long as one call; the lock files are created at the
    first commit. A refused or failed deploy leaves the directory exactly as it found it.
    """

    def __init__(self, pipelines_dir: Path) -> None:
        self.pipelines_dir = pipelines_dir
        self.locks = pipelines_dir / WORKSPACE / "locks"

    def check_writable(self) -> None:
        """Refuse a read-only directory (``:ro`` volume, ConfigMap) before anything else is tried."""
        try:
            self.pipelines_dir.mkdir(parents=True, exist_ok=True)  # as hayhooks' init_pipeline_dir does
        except OSError as e:
            raise write_error(self.pipelines_dir, e) from e
        if not os.access(self.pipelines_dir, os.W_OK):
            raise read_only_error(self.pipelines_dir, OSError(errno.EROFS, "not writable"))

    def stage(self, submission: Submission) -> Staged:
        holder = self._scratch("stage")
        path = holder / submission.entry
        try:
            holder.mkdir()
            if submission.kind == "yaml":
                write_file(path, submission.files[submission.entry])
            else:
                path.mkdir()
                for key, content in submission.files.items():
                    target = require_contained_path(path / key, path)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    write_file(target, content)
        except PipelinePathError as e:
            shutil.rmtree(holder, ignore_errors=True)
            raise DeployError(str(e), 422) from e
        except OSError as e:
            shutil.rmtree(holder, ignore_errors=True)
            if e.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
                raise DeployError(f"File keys of pipeline {submission.name!r} collide: {e}", 422) from e
            raise write_error(self.pipelines_dir, e) from e
        return Staged(submission, holder, path)

    def existing(self, name: str) -> list[Path]:
        """Every entry that defines *name* on disk: its directory and any ``<name>.yml`` / ``<name>.yaml``."""
        candidates = [self.pipelines_dir / name, *(self.pipelines_dir / f"{name}{ext}" for ext in YAML_SUFFIXES)]
        return [p for p in candidates if os.path.lexists(p)]

    @contextmanager
    def lock(self, name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Exclusive per pipeline name: a thread lock (flock over NFS is per process) plus ``flock`` on a file."""
        lock_path = self.locks / f"{name}.lock"
        with _local_locks_guard:
            local = _local_locks.setdefault(lock_path.absolute(), threading.Lock())
        busy = DeployError(f"Another deploy of pipeline {name!r} did not finish within {timeout:g}s; retry", 503)
        if not local.acquire(timeout=timeout):
            raise busy
        try:
            try:
                self.locks.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise write_error(self.pipelines_dir, e) from e
            try:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise busy from None
                        time.sleep(0.02)
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            local.release()

    def commit(self, staged: Staged, overwrite: bool) -> str:
        """Move *staged* into place under the lock and return the revision now on disk."""
        name = staged.submission.name
        target = self.pipelines_dir / staged.submission.entry
        self._sweep()
        with self.lock(name):
            present = self.existing(name)
            if present and not overwrite:
                names = ", ".join(f"'{p.name}'" for p in present)
                msg = f"Pipeline {name!r} already exists ({names} in '{self.pipelines_dir}'); use overwrite=true"
                raise DeployError(msg, 409)
            try:
                if not os.path.lexists(target):
                    rename_new(staged.path, target)
                elif staged.submission.kind == "files":
                    exchange(staged.path, target)
                else:
                    os.replace(staged.path, target)
                # A pipeline changing kind: the new entry is in place first, so the name never goes missing.
                for other in present:
                    if other != target:
                        self.discard(other)
                return fingerprint(target)
            except FileExistsError as e:
                raise DeployError(f"Pipeline {name!r} appeared on disk during the deploy; retry", 409) from e
            except OSError as e:
                raise write_error(self.pipelines_dir, e) from e

    def remove(self, name: str) -> list[Path]:
        """Undeploy: every entry of *name* leaves the directory in one rename each; returns what was removed."""
        if not self.existing(name):
            return []
        with self.lock(name):
            present = self.existing(name)
            try:
                for path in present:
                    self.discard(path)
            except OSError as e:
                raise write_error(self.pipelines_dir, e) from e
            return present

    def discard(self, path: Path) -> None:
        """Rename to a hidden name (one step for watchers), then delete."""
        trash = self._scratch("trash")
        os.rename(path, trash)
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink(missing_ok=True)

    def cleanup(self, staged: Staged) -> None:
        shutil.rmtree(staged.holder, ignore_errors=True)

    def _scratch(self, kind: str) -> Path:
        return self.pipelines_dir / f"{WORKSPACE}-{kind}-{uuid.uuid4().hex}"

    def _sweep(self) -> None:
        """Remove scratch entries a process that died mid-deploy left behind."""
        cutoff = time.time() - STALE_SECONDS
        for entry in self.pipelines_dir.glob(f"{WORKSPACE}-*-*"):
            try:
                if entry.lstat().st_mtime >= cutoff:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError:
                pass


def preflight(staged: Staged, timeout: float, lock: threading.Lock | None = None) -> None:
    """Load and set up the staged pipeline once in this process, then put the serving version's modules back.

    hayhooks' loader replaces ``sys.modules['<name>']`` and adds the wrapper's parent directory to ``sys.path``
    (``server/utils/module_loader.py::_PipelineModuleLoader``); both are undone here so the version serving now
    keeps its modules. Nothing is published: no registry entry, no route. *lock* keeps this process's own
    reloads of the same name from interleaving with the module swap.
    """
    source = staged.source()
    name = source.name
    with lock or nullcontext():
        serving = pipeline_modules(name)
        path_before = list(sys.path)
        try:
            prepare_with_deadline(source, timeout)
        except PipelineLoadError as e:
            raise DeployError(f"Pipeline {name!r} failed to load, nothing was written: {e}", 422) from e
        finally:
            unload_pipeline_modules(name)
            sys.modules.update(serving)
            holder = str(staged.holder.resolve())
            for entry in [p for p in sys.path if p not in path_before and p.startswith(holder)]:
                sys.path.remove(entry)
            for cached in [p for p in list(sys.path_importer_cache) if p and p.startswith(holder)]:
                sys.path_importer_cache.pop(cached, None)
