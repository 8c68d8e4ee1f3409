"""What a reconcile pass records and reports: each served or failed pipeline, the state of the path, the results
handed to listeners. Plain records, so readers (health, cluster state, metrics) need not import the loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Outcome = Literal["loaded", "failed", "removed"]


@dataclass(frozen=True)
class Served:
    revision: str
    location: str  # the real path it was loaded from (links resolved)


@dataclass(frozen=True)
class Failure:
    revision: str
    error: str


@dataclass(frozen=True)
class Unresolved:
    """The configured path has led nowhere since *since* (``time.monotonic()``), for *reason*."""

    since: float
    reason: str


@dataclass(frozen=True)
class Snapshot:
    served: dict[str, Served]
    failed: dict[str, Failure]
    loading: dict[str, str]  # name -> revision being loaded
    serves_from: Path | None = None
    unresolved: Unresolved | None = None
    conflicts: dict[str, str] = field(default_factory=dict)  # name -> its entries and the one served
    on_disk: dict[str, Served] = field(default_factory=dict)  # what the last pass found, by name
    scanned_at: float | None = None  # when that pass read the directory (``time.monotonic()``)

    def pending(self) -> list[str]:
        """Names not served as the last pass found them on disk (loading, gone, new or changed), but for a
        revision that failed to load: pure, so a health check computes it on the event loop in O(pipelines)."""
        stale = [name for name in self.served if name not in self.on_disk]
        changed = [
            name
            for name, wanted in self.on_disk.items()
            if self.served.get(name) != wanted
            and not ((failed := self.failed.get(name)) and failed.revision == wanted.revision)
        ]
        return sorted({*stale, *self.loading, *changed})


@dataclass(frozen=True)
class Change:
    """One result of a pass, handed to listeners (metrics, cluster state)."""

    name: str
    outcome: Outcome
    revision: str
    seconds: float  # how long the load took
    error: str | None = None
