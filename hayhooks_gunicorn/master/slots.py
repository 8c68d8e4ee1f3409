"""Worker slots: every worker of a master holds a stable index ``0..N-1`` (``HAYHOOKS_GUNICORN_WORKER_SLOT``).

gunicorn has no stable worker index (benoitc/gunicorn#1352; its pull request #1354 was closed unmerged):
configs use ``worker.age % N``, which drifts after every restart and collides. Here the slot is decided in the
master, from plain data, by two pure functions, and kept on gunicorn's own worker object (``worker.slot``): the
arbiter forgets a worker's object when it reaps it, so a slot is free again the moment its holder is gone, with
no table to keep in step.

- ``slot_for_new`` (``pre_fork``): a worker named as the one being replaced by a rolling replacement
  (``rolling``, through ``Instance.mark_replacing``) hands its slot to the new one; else the lowest free slot
  below the worker count, which is the slot of a crashed, ``max_requests`` or timed-out worker (gunicorn reaps it
  before it forks the replacement); else, when every slot is held (HUP forks the new generation while the old one
  still runs), the slot of the oldest worker whose slot is not held twice yet: the worker HUP then stops.
- ``stop_order`` (``nworkers_changed``): when the count goes down (TTOU, ``worker remove``, a smaller ``workers``
  on HUP), which workers go first: those holding slots at or above the new count, highest first, then the older
  holder of a slot held twice (the old side of a roll), then the oldest.

Why ``age``: ``Arbiter.manage_workers`` stops the workers of lowest ``age`` first, and has no hook of its own.
gunicorn calls ``nworkers_changed`` from the ``num_workers`` setter, before every ``manage_workers`` that follows
a count change (``handle_ttou``, the control socket's ``worker_remove``, ``Arbiter.setup`` on HUP), so the hook
gives the workers to stop the lowest ages; the arbiter stays one thread, and a later pass of ``manage_workers``
stops the same workers again. The kit's ``rolling.ArbiterPool.give_up`` uses the same lever. A rolling
replacement retires the oldest worker, which is the older holder of the doubled slot: both rules agree.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# gunicorn's Worker objects have no attribute of this name (gunicorn/workers/base.py)
ATTRIBUTE = "slot"


@dataclass(frozen=True)
class Holder:
    """A live worker as the slot rules see it."""

    pid: int
    slot: int
    age: int


def slot_for_new(holders: Sequence[Holder], target: int, replacing: int | None = None) -> int:
    """The slot of the worker about to be forked, with *holders* the workers alive now and *target* the count."""
    held = Counter(h.slot for h in holders)
    for holder in holders:
        if holder.pid == replacing and held[holder.slot] == 1:
            return holder.slot
    if free := [slot for slot in range(target) if not held[slot]]:
        return free[0]
    single = sorted((h for h in holders if held[h.slot] == 1 and h.slot < target), key=lambda h: h.age)
    if single:
        return single[0].slot
    return next(slot for slot in itertools.count() if not held[slot])


def stop_order(holders: Sequence[Holder], target: int) -> list[int]:
    """The pids to stop so that *target* workers remain, first to stop first."""
    excess = len(holders) - target
    if excess <= 0:
        return []
    held = Counter(h.slot for h in holders)
    by_age = sorted(holders, key=lambda h: h.age)
    above = sorted((h for h in holders if h.slot >= target), key=lambda h: (-h.slot, h.age))
    doubled: list[Holder] = []
    for slot, count in held.items():  # of a slot held twice, the older holder goes; the youngest keeps it
        if count > 1 and slot < target:
            doubled += sorted((h for h in holders if h.slot == slot), key=lambda h: h.age)[: count - 1]
    doubled.sort(key=lambda h: h.age)
    order = _unique([*above, *doubled, *by_age])
    return [h.pid for h in order[:excess]]


def _unique(holders: Iterable[Holder]) -> list[Holder]:
    seen: set[int] = set()
    unique: list[Holder] = []
    for holder in holders:
        if holder.pid not in seen:
            seen.add(holder.pid)
            unique.append(holder)
    return unique


def holders(workers: dict[int, Any]) -> list[Holder]:
    """The arbiter's ``WORKERS`` as plain data; a worker forked before the kit's hooks were loaded holds none."""
    return [
        Holder(pid, slot, worker.age)
        for pid, worker in list(workers.items())
        if (slot := getattr(worker, ATTRIBUTE, None)) is not None
    ]


def assign(arbiter: Any, worker: Any, replacing: int | None) -> int:
    """In ``pre_fork``: give *worker* its slot."""
    slot = slot_for_new(holders(arbiter.WORKERS), arbiter.num_workers, replacing)
    setattr(worker, ATTRIBUTE, slot)
    return slot


def order_for_stop(arbiter: Any, target: int) -> list[int]:
    """In ``nworkers_changed``: make the workers ``stop_order`` names the ones ``manage_workers`` stops."""
    pids = stop_order(holders(arbiter.WORKERS), target)
    for pid in pids:
        if (worker := arbiter.WORKERS.get(pid)) is not None:
            worker.age = 0
    return pids
