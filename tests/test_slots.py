"""Worker slots on plain data: the two rules, and an arbiter that forks and stops as gunicorn's does."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hayhooks_gunicorn.master.slots import Holder, assign, order_for_stop, slot_for_new, stop_order


class Arbiter:
    """gunicorn's ``Arbiter`` reduced to what decides slots: ``spawn_worker`` (``pre_fork`` then fork),
    ``manage_workers`` (spawn up to the count, then stop the lowest ``age`` first) and the ``num_workers`` setter
    that calls ``nworkers_changed``; a stopped worker is reaped at once."""

    def __init__(self, workers: int) -> None:
        self.WORKERS: dict[int, Any] = {}
        self.worker_age = 0
        self.next_pid = 100
        self.replacing: int | None = None
        self._num_workers = 0
        self.num_workers = workers
        self.manage_workers()

    @property
    def num_workers(self) -> int:
        return self._num_workers

    @num_workers.setter
    def num_workers(self, value: int) -> None:
        self._num_workers = value
        order_for_stop(self, value)  # the kit's nworkers_changed hook

    def spawn_worker(self) -> int:
        self.worker_age += 1
        worker = SimpleNamespace(age=self.worker_age)
        assign(self, worker, self.replacing)  # the kit's pre_fork hook
        self.next_pid += 1
        self.WORKERS[self.next_pid] = worker
        return self.next_pid

    def manage_workers(self) -> None:
        for _ in range(self.num_workers - len(self.WORKERS)):
            self.spawn_worker()
        workers = sorted(self.WORKERS.items(), key=lambda w: w[1].age)
        while len(workers) > self.num_workers:
            pid, _ = workers.pop(0)
            del self.WORKERS[pid]

    def reload(self) -> None:
        """HUP: ``setup`` sets the count again, the new generation is forked, then the old one is stopped."""
        self.num_workers = self.num_workers
        for _ in range(self.num_workers):
            self.spawn_worker()
        self.manage_workers()

    def slots(self) -> list[int]:
        return sorted(w.slot for w in self.WORKERS.values())

    def pid_of(self, slot: int) -> int:
        return next(pid for pid, w in self.WORKERS.items() if w.slot == slot)


def test_first_workers_take_slots_in_order() -> None:
    assert Arbiter(4).slots() == [0, 1, 2, 3]


def test_replacement_of_a_crashed_worker_takes_its_slot() -> None:
    arbiter = Arbiter(4)
    crashed = arbiter.pid_of(2)
    del arbiter.WORKERS[crashed]  # reaped: SIGKILL, max_requests, timeout kill alike
    arbiter.manage_workers()
    assert arbiter.slots() == [0, 1, 2, 3]
    assert arbiter.pid_of(2) != crashed


def test_rolling_replacement_hands_each_slot_over() -> None:
    arbiter = Arbiter(4)
    old = set(arbiter.WORKERS)
    while old & set(arbiter.WORKERS):
        oldest = min(arbiter.WORKERS, key=lambda pid: arbiter.WORKERS[pid].age)
        slot = arbiter.WORKERS[oldest].slot
        arbiter.replacing = oldest
        arbiter.num_workers += 1
        arbiter.manage_workers()
        new = max(arbiter.WORKERS, key=lambda pid: arbiter.WORKERS[pid].age)
        assert arbiter.WORKERS[new].slot == slot  # at most one slot is held twice, and only during the step
        arbiter.replacing = None
        arbiter.num_workers -= 1
        arbiter.manage_workers()
        assert oldest not in arbiter.WORKERS  # the worker the roll retires is the one gunicorn stopped
        assert arbiter.slots() == [0, 1, 2, 3]
    assert not old & set(arbiter.WORKERS)


def test_without_the_roll_marker_an_extra_worker_takes_a_new_slot() -> None:
    arbiter = Arbiter(4)
    arbiter.num_workers += 1  # TTIN
    arbiter.manage_workers()
    assert arbiter.slots() == [0, 1, 2, 3, 4]


def test_ttou_stops_the_highest_slot_and_ttin_takes_the_lowest_free() -> None:
    arbiter = Arbiter(4)
    arbiter.num_workers -= 1
    arbiter.manage_workers()
    assert arbiter.slots() == [0, 1, 2]
    arbiter.num_workers -= 1
    arbiter.manage_workers()
    assert arbiter.slots() == [0, 1]
    arbiter.num_workers += 2
    arbiter.manage_workers()
    assert arbiter.slots() == [0, 1, 2, 3]


def test_hup_gives_the_new_generation_the_same_slots() -> None:
    arbiter = Arbiter(4)
    old = set(arbiter.WORKERS)
    arbiter.reload()
    assert not old & set(arbiter.WORKERS)
    assert arbiter.slots() == [0, 1, 2, 3]


def test_hup_with_fewer_workers_keeps_the_lowest_slots() -> None:
    arbiter = Arbiter(4)
    arbiter._num_workers = 4
    arbiter.num_workers = 2  # a smaller `workers` read again on HUP (Arbiter.setup)
    for _ in range(2):
        arbiter.spawn_worker()
    arbiter.manage_workers()
    assert arbiter.slots() == [0, 1]


def test_hup_with_more_workers_fills_the_new_slots() -> None:
    arbiter = Arbiter(2)
    arbiter.num_workers = 4
    for _ in range(4):
        arbiter.spawn_worker()
    arbiter.manage_workers()
    assert arbiter.slots() == [0, 1, 2, 3]


def test_a_crash_during_a_roll_frees_its_slot_for_the_next_worker() -> None:
    arbiter = Arbiter(3)
    arbiter.replacing = arbiter.pid_of(0)
    arbiter.num_workers += 1
    arbiter.manage_workers()
    del arbiter.WORKERS[arbiter.pid_of(1)]
    arbiter.replacing = None
    arbiter.manage_workers()
    arbiter.num_workers -= 1
    arbiter.manage_workers()
    assert arbiter.slots() == [0, 1, 2]


def test_a_marker_naming_a_gone_worker_is_ignored() -> None:
    holders = [Holder(1, 0, 1), Holder(2, 1, 2)]
    assert slot_for_new(holders, 3, replacing=99) == 2


def test_a_slot_is_handed_over_once() -> None:
    holders = [Holder(1, 0, 1), Holder(2, 1, 2), Holder(3, 0, 3)]
    assert slot_for_new(holders, 3, replacing=1) == 2


def test_stop_order_on_plain_data() -> None:
    holders = [Holder(1, 0, 1), Holder(2, 1, 2), Holder(3, 2, 3), Holder(4, 0, 4)]
    assert stop_order(holders, 3) == [1]  # the old side of the doubled slot 0
    assert stop_order(holders, 2) == [3, 1]
    assert stop_order(holders, 4) == []
