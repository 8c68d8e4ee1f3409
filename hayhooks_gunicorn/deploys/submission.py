"""One deploy request, checked before anything touches the disk: name, file keys, size limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hayhooks.server.exceptions import PipelinePathError
from hayhooks.server.utils.pipeline_paths import validate_file_keys, validate_pipeline_name
from starlette.routing import BaseRoute

from hayhooks_gunicorn.errors import DeployError, InvalidPipelineError
from hayhooks_gunicorn.reload import ignored
from hayhooks_gunicorn.reload.names import NAME_PATTERN, check_name
from hayhooks_gunicorn.reload.scan import Kind


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
        validate_file_keys(dict.fromkeys(submission.files, ""))  # checks the keys only
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
