"""Each scenario measures the kit side by side with its baseline and returns its summary keys and details.

A scenario that cannot run here (an optional extra missing, a server that does not start, an API that is not
there yet) raises :class:`Unavailable` or a server/probe error: its keys are reported as null with the reason.
Any other exception is a fault of the harness itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.load import LoadResult
from benchmarks.plan import Plan

# Figures from a load run where more requests failed than this are not reported.
MAX_FAILED_FRACTION = 0.001


class Unavailable(RuntimeError):
    """The scenario cannot produce its figures here; the message says why."""


@dataclass
class Measured:
    keys: dict[str, float | int | None]
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    keys: tuple[str, ...]
    run: Callable[[Plan], Measured]


def clean(result: LoadResult, label: str) -> LoadResult:
    """Throughput of failing requests is not throughput: refuse to report it."""
    if result.requests == 0 or result.errors > MAX_FAILED_FRACTION * result.requests:
        msg = f"{label}: {result.errors} of {result.requests} requests failed under load"
        raise Unavailable(msg)
    return result


def all_scenarios() -> list[Scenario]:
    from benchmarks.scenarios import (
        availability,
        boot,
        convergence,
        gpus,
        memory,
        overhead,
        reload,
        scale,
        scaling,
        trial_loads,
    )

    return [
        overhead.SCENARIO,
        scaling.SCENARIO,
        reload.SCENARIO,
        availability.SCENARIO,
        convergence.SCENARIO,
        boot.SCENARIO,
        memory.SCENARIO,
        scale.SCENARIO,
        gpus.SCENARIO,
        trial_loads.SCENARIO,
    ]
