"""The kit's exceptions; the CLI and HTTP boundaries turn them into exit codes and status codes."""

from __future__ import annotations


class KitError(Exception):
    """Base of every error the kit raises on purpose."""


class UnsupportedHayhooksError(KitError):
    """The installed hayhooks lacks an internal the kit builds on."""


class InvalidPipelineError(KitError):
    """A pipeline name or source the kit refuses before loading anything."""


class PipelineLoadError(KitError):
    """A pipeline failed to import, set up, or finish loading in time."""


class DeployError(KitError):
    """A deploy or undeploy request that cannot be carried out; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
