"""Write a pipeline into the shared pipelines directory so every watcher sees all of it or none of it.

stage on the same filesystem (a hidden directory the scanner ignores) -> pre-flight load in another process
(``preflight``) -> lock the name (threads, processes and hosts sharing the directory) -> rename or swap into
place. A submission that fails any step before the rename leaves nothing behind.

A pipelines path with a link on it (git-sync, a ``current`` release link) is refused with 409: a write lands in
the release the link leads to now, and the next swap replaces that release, so the deploy would serve for a
while and then vanish from every worker.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hayhooks.server.exceptions import PipelinePathError
from hayhooks.server.utils.pipeline_paths import require_contained_path

from hayhooks_gunicorn.deploys.preflight import check_in_subprocess
from hayhooks_gunicorn.deploys.submission import Submission
from hayhooks_gunicorn.errors import DeployError
from hayhooks_gunicorn.files import exchange, rename_new, try_flock, write_file
from hayhooks_gunicorn.polling import poll_until
from hayhooks_gunicorn.reload.follow import links_on, resolve_dir
from hayhooks_gunicorn.reload.scan import PipelineSource, entries_named, fingerprint
from hayhooks_gunicorn.settings import KitSettings

# The kit's entries in the pipelines directory all start with this: hidden, so scans skip them (scan.ignored).
WORKSPACE = ".hayhooks-gunicorn"
LOCK_TIMEOUT = 60.0
# Scratch entries older than this were left by a process that died mid-deploy.
STALE_SECONDS = 3600
READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


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


def link_managed_error(pipelines_dir: Path, link: Path, target: str) -> DeployError:
    resolved = resolve_dir(pipelines_dir).path or target
    msg = (
        f"The pipelines directory '{pipelines_dir}' is published through the link '{link}' -> '{target}': a deploy "
        f"written into '{resolved}' would be lost at the next swap of that link, so deploy calls cannot change it. "
        "Change the pipelines where the release is made (the git repository, the release directory) and swap the "
        f"link; if the link never changes, set HAYHOOKS_PIPELINES_DIR to '{resolved}'."
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

    Staging and trash are hidden entries that live only as long as one call; the lock files are created by the
    first write. A refused or failed deploy leaves the directory exactly as it found it.
    """

    def __init__(self, pipelines_dir: Path) -> None:
        self.pipelines_dir = pipelines_dir
        self.locks = pipelines_dir / WORKSPACE / "locks"

    def check_writable(self) -> None:
        """Refuse a directory behind a link (``link_managed_error``) or read-only (``:ro`` volume, ConfigMap) before
        anything else is tried."""
        if links := links_on(self.pipelines_dir):
            raise link_managed_error(self.pipelines_dir, *links[-1])
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
            if e.errno == errno.ENAMETOOLONG:  # submission.check_keys should have refused it first
                raise DeployError(f"A file key of pipeline {submission.name!r} is too long: {e}", 422) from e
            raise write_error(self.pipelines_dir, e) from e
        return Staged(submission, holder, path)

    def existing(self, name: str) -> list[Path]:
        """Every entry that defines *name* on disk: its directory and any ``<name>.yml`` / ``<name>.yaml``."""
        return [p for p in entries_named(self.pipelines_dir, name) if os.path.lexists(p)]

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
                try:
                    poll_until(lambda: try_flock(fd), timeout, interval=0.02)
                except TimeoutError:
                    raise busy from None
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            local.release()

    def write_into_dir(self, staged: Staged, overwrite: bool) -> str:
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


def write_submission(
    submission: Submission, pipelines_dir: Path, overwrite: bool, settings: KitSettings, server_routes: bool
) -> str:
    """Pre-flight in a separate process, then write into the directory; returns the revision on disk. The callers
    have validated *submission* first (``submission.validate``).

    One implementation for deploy calls and the CLI. *server_routes*: let the pre-flight check the name against
    the server's routes (the CLI); a worker passes its own routes to ``validate`` instead.
    """
    workspace = Workspace(pipelines_dir)
    workspace.check_writable()
    if workspace.existing(submission.name) and not overwrite:
        msg = f"Pipeline {submission.name!r} already exists in '{pipelines_dir}'; deploy with overwrite to replace it"
        raise DeployError(msg, 409)
    staged = workspace.stage(submission)
    try:
        result = check_in_subprocess(staged.source(), pipelines_dir, settings.load_timeout, server_routes)
        if not result.ok:
            msg = f"Pipeline {submission.name!r} failed to load, nothing was written: {result.error}"
            raise DeployError(msg, 422)
        return workspace.write_into_dir(staged, overwrite)
    finally:
        workspace.cleanup(staged)
