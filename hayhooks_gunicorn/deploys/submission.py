"""One deploy request, checked before anything touches the disk: name, file keys, size limits.

Whatever the filesystem would refuse later (text that is not UTF-8, a key longer than a file name may be) is
refused here with a 4xx: once a staging directory exists, a failure would be the server's (500) and leave work
to clean up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hayhooks.server.exceptions import PipelinePathError
from hayhooks.server.utils.pipeline_paths import validate_file_keys, validate_pipeline_name
from starlette.routing import BaseRoute

from hayhooks_gunicorn.errors import DeployError, InvalidPipelineError
from hayhooks_gunicorn.reload import ignored
from hayhooks_gunicorn.reload.names import NAME_PATTERN, check_length, check_name
from hayhooks_gunicorn.reload.scan import Kind

# Bytes of one file key: far below PATH_MAX (4096), which the pipelines directory and staging prefix share.
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class Submission:
    """One deploy request: a wrapper directory's files, or one YAML definition saved as ``<name>.yml``."""

    name: str
    kind: Kind
    files: dict[str, bytes]

    @classmethod
    def wrapper(cls, name: str, files: Mapping[str, str | bytes]) -> Submission:
        """Raises :class:`DeployError` (422) for content that cannot be written as UTF-8."""
        return cls(name, "files", {k: encoded(name, k, v) for k, v in files.items()})

    @classmethod
    def yaml(cls, name: str, source: str | bytes) -> Submission:
        return cls(name, "yaml", {f"{name}.yml": encoded(name, f"{name}.yml", source)})

    @property
    def entry(self) -> str:
        """Its name in the pipelines directory."""
        return self.name if self.kind == "files" else f"{self.name}.yml"

    @property
    def size(self) -> int:
        return sum(len(content) for content in self.files.values())


def encoded(name: str, key: str, content: str | bytes) -> bytes:
    """JSON may carry a lone surrogate (``"\\ud800"``), which no UTF-8 file can hold."""
    if isinstance(content, bytes):
        return content
    try:
        return content.encode()
    except UnicodeEncodeError as e:
        msg = f"File {key!r} of pipeline {name!r} is not valid Unicode text ({e.reason} at character {e.start})"
        raise DeployError(msg, 422) from e


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
        validate_file_keys(dict.fromkeys(submission.files, ""))  # checks the keys only
        if ignored(name):
            raise InvalidPipelineError(f"Pipeline name {name!r} is one the directory scan ignores; rename the pipeline")
        check_name(name, pipelines_dir, server_routes)
    except (PipelinePathError, InvalidPipelineError) as e:
        raise DeployError(str(e), 422) from e
    check_keys(submission, pipelines_dir)
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


def check_keys(submission: Submission, pipelines_dir: Path) -> None:
    """Every key must be a path the filesystem can hold: UTF-8, each part within ``NAME_MAX``, in all within
    ``MAX_KEY_BYTES`` (the staging directory adds its own prefix to ``PATH_MAX``)."""
    longest = name_max(pipelines_dir)
    for key in submission.files:
        try:
            raw = key.encode()
        except UnicodeEncodeError as e:
            raise DeployError(f"File key {key!r} of pipeline {submission.name!r} is not valid Unicode", 422) from e
        too_long = max(len(part) for part in raw.split(b"/")) > longest or len(raw) > MAX_KEY_BYTES
        if too_long:
            msg = (
                f"File key {key[:40]!r}... of pipeline {submission.name!r} is too long: each part may have "
                f"{longest} bytes, the whole key {MAX_KEY_BYTES}"
            )
            raise DeployError(msg, 422)


def check_storable(submission: Submission, pipelines_dir: Path) -> None:
    """What the filesystem would refuse, checked whatever the deploy mode: hayhooks' own route (``warn``) answers
    500 to a name or key too long to be a file name."""
    try:
        check_length(submission.name)
    except InvalidPipelineError as e:
        raise DeployError(str(e), 422) from e
    check_keys(submission, pipelines_dir)


def name_max(directory: Path) -> int:
    """The longest file name *directory*'s filesystem allows (255 on most)."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def check_removable(name: str) -> None:
    """Undeploy removes only what could be a pipeline: never ``.git``, the kit's own entries or caches."""
    try:
        validate_pipeline_name(name)
    except PipelinePathError as e:
        raise DeployError(str(e), 422) from e
    if not NAME_PATTERN.fullmatch(name) or ignored(name):
        raise DeployError(f"{name!r} is not a pipeline name (letters, digits, '_' and '-')", 422)
