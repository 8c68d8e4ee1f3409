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
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from hayhooks_gunicorn.errors import InvalidPipelineError
from hayhooks_gunicorn.reload.names import check_name

YAML_SUFFIXES = (".yml", ".yaml")
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

    @property
    def entry(self) -> str:
        """The entry as a user sees it in the directory: ``x.yml`` or ``x/``."""
        return self.path.name + ("/" if self.kind == "files" else "")


def ignored(name: str) -> bool:
    """Hidden entries, caches and editor temp files are never part of a pipeline."""
    return name.startswith(".") or any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED_PATTERNS)


def scan(pipelines_dir: Path) -> dict[str, PipelineSource]:
    """Every pipeline of *pipelines_dir* by name; raises ``OSError`` when the directory cannot be read.

    A failure to read the directory must not look like "every pipeline was deleted", so it is raised, never
    turned into an empty result.
    """
    found: dict[str, list[PipelineSource]] = {}
    for entry in sorted(pipelines_dir.iterdir()):
        if ignored(entry.name):
            continue
        kind: Kind
        if entry.is_dir():
            name, kind = entry.name, "files"
        elif entry.is_file() and entry.suffix in YAML_SUFFIXES:
            name, kind = entry.stem, "yaml"
        else:
            continue
        found.setdefault(name, []).append(_source(name, entry, kind, pipelines_dir))
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


def _source(name: str, path: Path, kind: Kind, pipelines_dir: Path) -> PipelineSource:
    error = None
    try:
        check_name(name, pipelines_dir)
    except InvalidPipelineError as e:
        error = str(e)
    try:
        revision = fingerprint(path)
    except OSError as e:
        # A file that vanished or cannot be read mid-scan: the next event re-scans it.
        revision, error = "unreadable", f"Cannot read pipeline {name!r}: {e}"
    if kind == "files" and error is None and not (path / "pipeline_wrapper.py").is_file():
        error = f"Pipeline directory '{path.name}' has no pipeline_wrapper.py"
    return PipelineSource(name, path, kind, revision, error)


def entries_named(pipelines_dir: Path, name: str) -> list[Path]:
    """The paths that would define pipeline *name* in *pipelines_dir* (whether they exist or not): its directory,
    then ``<name>.yml`` and ``<name>.yaml``."""
    return [pipelines_dir / name, *(pipelines_dir / f"{name}{suffix}" for suffix in YAML_SUFFIXES)]


def pipeline_files(path: Path) -> list[Path]:
    """The files that make up a pipeline, relative to its directory, in a stable order."""
    if path.is_file():
        return [Path(path.name)]
    files: list[Path] = []
    for root, dirs, names in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not ignored(d))
        rel = Path(root).relative_to(path)
        files.extend(rel / n for n in sorted(names) if not ignored(n))
    return files


def fingerprint(path: Path) -> str:
    """Short content hash over relative paths and bytes: equal content, equal revision, whatever the mtimes."""
    digest = hashlib.sha256()
    base = path.parent if path.is_file() else path
    for rel in pipeline_files(path):
        digest.update(str(rel).encode() + b"\0")
        digest.update((base / rel).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]
