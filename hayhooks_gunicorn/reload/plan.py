"""What one reconcile pass does, decided from plain data: the directory as scanned, and what the worker serves,
failed on and is loading. ``reconcile.Reconciler`` gathers that data under its lock and carries the plan out.

Pure, so every rule of a pass (what counts as changed, what a busy name does, when a failure is final) is tested
on plain data, without files, threads or an app.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hayhooks_gunicorn.cluster.quarantine import refusal


@dataclass(frozen=True)
class OnDisk:
    """One pipeline name as the pass found it."""

    revision: str
    location: str  # the real path of its files (links resolved)
    broken: bool = False  # the scan already knows it cannot load (``PipelineSource.error``)
    conflict: bool = False  # defined by more than one entry (``x/`` and ``x.yml``)
    clashes: bool = False  # its name shadows a route of the server
    quarantined: str | None = None  # why this revision is quarantined (``cluster.quarantine``)


@dataclass(frozen=True)
class Current:
    """What the worker holds when the pass begins."""

    served: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (revision, location)
    failed: Mapping[str, str] = field(default_factory=dict)  # name -> revision that failed
    loading: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (revision, location)
    conflicts: Iterable[str] = ()  # names noted as defined twice


@dataclass(frozen=True)
class Plan:
    gone: list[str]  # served, no longer on disk, not loading: withdrawn once missing long enough
    forget_failed: list[str]  # failures of names no longer on disk
    forget_conflicts: list[str]  # conflicts that ended
    load: list[str]  # start loading these
    refuse: dict[str, str]  # name -> why it fails without a load (a route clash, a quarantined revision)
    rerun: bool  # a name busy loading changed again, or went away: look again when its load ends


def needs_load(name: str, disk: OnDisk, now: Current) -> bool:
    """New, changed, or now living elsewhere (a swapped link); not when this very revision failed to load."""
    up_to_date = now.served.get(name) == (disk.revision, disk.location)
    return not up_to_date and now.failed.get(name) != disk.revision


def plan_pass(desired: Mapping[str, OnDisk], now: Current) -> Plan:
    load: list[str] = []
    refuse: dict[str, str] = {}
    rerun = any(name not in desired for name in now.loading)
    for name, disk in desired.items():
        if not needs_load(name, disk, now):
            continue
        if name in now.loading:
            rerun = rerun or now.loading[name] != (disk.revision, disk.location)
        elif disk.clashes and not disk.broken:
            refuse[name] = f"Pipeline name {name!r} clashes with a server route"
        elif disk.quarantined is not None:
            refuse[name] = refusal(disk.revision, disk.quarantined)
        else:
            load.append(name)
    return Plan(
        gone=[name for name in now.served if name not in desired and name not in now.loading],
        forget_failed=[name for name in now.failed if name not in desired],
        forget_conflicts=[name for name in now.conflicts if name not in desired or not desired[name].conflict],
        load=load,
        refuse=refuse,
        rerun=rerun,
    )
