"""Read the pipelines directory into named sources with content fingerprints.

Watch events are not trusted: hayhooks' overwrite moves files through ``.{name}-XXXX`` directories and a
Kubernetes ConfigMap swaps a ``..data`` symlink, so every change is answered by a full re-scan compared by
content (see ``server/utils/deploy_utils.py::_backup_pipeline_files``).

A name defined twice (``x/`` and ``x.yml``) is served as hayhooks' startup deploy serves it
(``server/app.py::deploy_pipelines``): it prepares every ``*.y*ml`` file before any directory and commits them in
that order, and a later commit of a name already deployed fails with "already exists"
(``deploy_utils.commit_prepared_pipeline``). So the YAML file wins, and the directory serves only when the YAML
file fails to load. The scan keeps that order as a source with a ``fallback``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import operator
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from hayhooks_gunicorn.errors import InvalidPipelineError
from hayhooks_gunicorn.reload.names import check_name
from hayhooks_gunicorn.reload.revisions import revision_of
from hayhooks_gunicorn.settings import kit_settings

YAML_SUFFIXES = (".yml", ".yaml")
_BY_NAME = operator.attrgetter("name")
Kind = Literal["files", "yaml"]
# Editor and tool droppings that never belong to a pipeline: vim swap files and its 4913 probe, emacs locks,
# backups and partial downloads.
IGNORED_PATTERNS = ("__pycache__", "*.pyc", "*.pyo", "*~", "*.swp", "*.swx", "*.tmp", "#*#", "4913", "*.part")


@dataclass(frozen=True)
class PipelineSource:
    """One pipeline as it is on disk: a wrapper directory or a YAML file."""

    name: str
    path: Path
    kind: Kind
    revision: str
    # Why the kit refuses to load it (bad name, shadowing, no wrapper), if it does
    error: str | None = None
    # Another entry of the same name, loaded when this one fails (hayhooks' startup deploy order)
    fallback: PipelineSource | None = None
    # Set when the name is defined by more than one entry: names them all
    conflict: str | None = None
    # Where its files really are (links resolved), as the scan found it; None: not known, resolve when asked
    real_path: str | None = None

    @property
    def entry(self) -> str:
        """The entry as a user sees it in the directory: ``x.yml`` or ``x/``."""
        return self.path.name + ("/" if self.kind == "files" else "")


_IGNORED = re.compile("|".join(fnmatch.translate(pattern) for pattern in IGNORED_PATTERNS))


def ignored(name: str) -> bool:
    """Hidden entries, caches and editor temp files are never part of a pipeline."""
    return name.startswith(".") or _IGNORED.match(name) is not None


def scan(pipelines_dir: Path, verify: bool = True) -> dict[str, PipelineSource]:
    """Every pipeline of *pipelines_dir* by name; raises ``OSError`` when the directory cannot be read.

    A failure to read the directory must not look like "every pipeline was deleted", so it is raised, never
    turned into an empty result. Revisions come from file metadata (``reload.revisions``); hot paths pass
    *verify* False so they never re-read a file only because its last read is old.
    """
    found: dict[str, list[PipelineSource]] = {}
    with os.scandir(pipelines_dir) as listing:
        entries = sorted(listing, key=_BY_NAME)
    real_dir = os.path.realpath(pipelines_dir)  # once: an entry that is no link lies right in it
    for entry in entries:  # DirEntry: the type comes with the listing, a stat only for links
        if ignored(entry.name):
            continue
        kind: Kind
        stem, suffix = os.path.splitext(entry.name)
        if entry.is_dir():
            name, kind = entry.name, "files"
        elif entry.is_file() and suffix in YAML_SUFFIXES and stem:
            name, kind = stem, "yaml"
        else:
            continue
        real = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real_dir, entry.name)
        found.setdefault(name, []).append(_source(name, Path(entry.path), kind, pipelines_dir, verify, real))
    return {name: _first_of(entries) for name, entries in found.items()}


def _first_of(entries: list[PipelineSource]) -> PipelineSource:
    """One source for a name: YAML files first (by file name), then the directory, each the next one's fallback.

    The revision covers every entry, so an edit of any of them reloads the name.
    """
    if len(entries) == 1:
        return entries[0]
    ordered = sorted(entries, key=lambda s: (s.kind != "yaml", s.path.name))
    chain: PipelineSource | None = None
    for source in reversed(ordered[1:]):
        chain = replace(source, fallback=chain)
    listed = " and ".join(f"'{s.entry}'" for s in ordered)
    conflict = f"Pipeline {ordered[0].name!r} is defined twice: {listed}"
    revision = hashlib.sha256(" ".join(s.revision for s in ordered).encode()).hexdigest()[:12]
    return replace(ordered[0], revision=revision, fallback=chain, conflict=conflict)


def _source(name: str, path: Path, kind: Kind, pipelines_dir: Path, verify: bool, real: str) -> PipelineSource:
    error = _name_error(name, pipelines_dir, verify)
    files = _walk(path, kind)
    try:
        revision = revision_of(files, verify)
    except OSError as e:
        # A file that vanished or cannot be read mid-scan: the next event re-scans it.
        revision, error = "unreadable", f"Cannot read pipeline {name!r}: {e}"
    if kind == "files" and error is None and not any(rel == "pipeline_wrapper.py" for rel, _ in files):
        error = f"Pipeline directory '{path.name}' has no pipeline_wrapper.py"
    return PipelineSource(name, path, kind, revision, error, real_path=real)


# (name, directory) -> (when it was checked, why it is refused). Whether a name shadows a module depends on sys.path,
# not on the files, and looking it up cost as much as the rest of a scan: it is checked again, like a file's
# content, only after HAYHOOKS_GUNICORN_REHASH_INTERVAL and only by background scans.
_name_errors: dict[tuple[str, str], tuple[float, str | None]] = {}


def _name_error(name: str, pipelines_dir: Path, verify: bool) -> str | None:
    key = (name, str(pipelines_dir))
    known = _name_errors.get(key)
    if known is not None and not (verify and time.monotonic() - known[0] >= kit_settings().rehash_interval):
        return known[1]
    try:
        check_name(name, pipelines_dir)
        error = None
    except InvalidPipelineError as e:
        error = str(e)
    if len(_name_errors) > 10_000:
        _name_errors.clear()
    _name_errors[key] = (time.monotonic(), error)
    return error


def entries_named(pipelines_dir: Path, name: str) -> list[Path]:
    """The paths that would define pipeline *name* in *pipelines_dir* (whether they exist or not): its directory,
    then ``<name>.yml`` and ``<name>.yaml``."""
    return [pipelines_dir / name, *(pipelines_dir / f"{name}{suffix}" for suffix in YAML_SUFFIXES)]


def pipeline_files(path: Path) -> list[Path]:
    """The files that make up a pipeline, relative to its directory, in a stable order."""
    return [Path(rel) for rel, _ in _walk(path, "yaml" if path.is_file() else "files")]


def _walk(path: Path, kind: Kind) -> list[tuple[str, str]]:
    """``(relative, full)`` path of every file of a pipeline, in ``os.walk`` top-down order (a directory's files by
    name, then its subdirectories by name), links followed; unreadable directories are skipped, as ``os.walk``
    skips them. One ``scandir`` a directory and the type from its entries: ``os.walk`` cost three times as much."""
    if kind == "yaml":
        return [(path.name, str(path))]
    files: list[tuple[str, str]] = []
    pending = [("", str(path))]
    while pending:
        rel, full = pending.pop()
        try:
            with os.scandir(full) as listing:
                entries = sorted(listing, key=_BY_NAME)
        except OSError:
            continue
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            if ignored(entry.name):
                continue
            named = os.path.join(rel, entry.name) if rel else entry.name
            (subdirs if entry.is_dir() else files).append((named, entry.path))
        pending.extend(reversed(subdirs))
    return files


def fingerprint(path: Path, verify: bool = True) -> str:
    """Short hash over relative paths and content: equal content, equal revision, whatever the mtimes.

    Content is read only for files whose stat key changed since this process last read them
    (``reload.revisions``).
    """
    return revision_of(_walk(path, "yaml" if path.is_file() else "files"), verify)
