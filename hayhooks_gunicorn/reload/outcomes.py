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


@dataclass(frozen=True)
class Change:
    """One result of a pass, handed to listeners (metrics, cluster state)."""

    name: str
    outcome: Outcome
    revision: str
    seconds: float  # how long the load took
    error: str | None = None
