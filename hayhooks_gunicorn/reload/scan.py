"""Read the pipelines directory into named sources with content fingerprints.

Watch events are not trusted: hayhooks' overwrite moves files through ``.{name}-XXXX`` directories and a
Kubernetes ConfigMap swaps a ``..data`` symlink, so every change is answered by a full re-scan compared by
content (see ``server/utils/deploy_utils.py::_backup_pipeline_files``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
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
    # Why the kit refuses to load it (bad name, shadowing, defined twice), if it does
    error: str | None = None


def ignored(name: str) -> bool:
    """Hidden entries, caches and editor temp files are never part of a pipeline."""
    return name.startswith(".") or any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED_PATTERNS)


def scan(pipelines_dir: Path) -> dict[str, PipelineSource]:
    """Every pipeline of *pipelines_dir* by name; raises ``OSError`` when the directory cannot be read.

    A failure to read the directory must not look like "every pipeline was deleted", so it is raised, never
    turned into an empty result.
    """
    sources: dict[str, PipelineSource] = {}
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
        source = _source(name, entry, kind, pipelines_dir)
        if name in sources:
            first = sources[name]
            msg = f"Pipeline {name!r} is defined twice: '{first.path.name}' and '{entry.name}'; remove one"
            source = PipelineSource(name, entry, kind, first.revision + source.revision, msg)
        sources[name] = source
    return sources


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
