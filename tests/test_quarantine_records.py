"""Loading marks and quarantine records on real files, with real exit statuses of real child processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hayhooks_gunicorn.cluster.quarantine import Quarantine, exit_cause
from hayhooks_gunicorn.master.hooks import reaped_status


def status_of(code: str) -> tuple[int, int]:
    """(pid, wait status) of a real child that ran *code*."""
    child = subprocess.Popen([sys.executable, "-c", code])
    pid, status = os.waitpid(child.pid, 0)
    child.returncode = 0  # reaped here: keep Popen from waiting again
    return pid, status


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("import os; os._exit(1)", "ended its worker while loading (exit code 1)"),
        ("import os; os.kill(os.getpid(), 9)", "killed its worker while loading (SIGKILL)"),
        ("import os; os.abort()", "killed its worker while loading (SIGABRT)"),
        ("import os; os.kill(os.getpid(), 15)", None),  # stopped on purpose: a rolling restart during a slow setup()
        ("pass", None),  # max_requests and graceful stops exit 0
    ],
)
def test_exit_cause(code: str, cause: str | None) -> None:
    assert exit_cause(status_of(code)[1]) == cause


def test_a_mark_lasts_only_while_the_load_runs(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "state")
    with quarantine.loading("rag", "r1"):
        assert len(list(quarantine.marks.iterdir())) == 1
    with pytest.raises(RuntimeError), quarantine.loading("rag", "r1"):
        raise RuntimeError("a failed load is not a crash")
    assert list(quarantine.marks.iterdir()) == []
    assert quarantine.worker_died(os.getpid(), None) == []


def test_the_master_quarantines_what_a_dead_worker_was_loading(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "state")
    pid, status = status_of("import os; os.kill(os.getpid(), 9)")
    # The mark a worker writes before loading, as if *pid* had written it.
    with quarantine.loading("rag", "r2"):
        written = next(quarantine.marks.glob(f"*-{os.getpid()}.*.json"))
        stolen = written.with_name(written.name.replace(f"-{os.getpid()}.", f"-{pid}."))
        stolen.write_text(written.read_text().replace(f'"pid":{os.getpid()}', f'"pid":{pid}'))
    recorded = quarantine.worker_died(pid, status)
    assert [(r.name, r.revision, r.cause) for r in recorded] == [
        ("rag", "r2", "killed its worker while loading (SIGKILL)")
    ]
    assert quarantine.cause("rag", "r2") == "killed its worker while loading (SIGKILL)"
    assert quarantine.cause("rag", "r3") is None  # the next revision loads normally
    assert not stolen.exists()


def test_a_stopped_worker_quarantines_nothing(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "state")
    pid, status = status_of("import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    quarantine.marks.mkdir(parents=True)
    (quarantine.marks / f"{socket.gethostname()}-{pid}.k.json").write_text(
        f'{{"name": "rag", "revision": "r1", "host": "{socket.gethostname()}", "pid": {pid}}}'
    )
    assert quarantine.worker_died(pid, status) == []
    assert quarantine.cause("rag", "r1") is None
    assert list(quarantine.marks.iterdir()) == []


def test_a_booting_worker_claims_marks_of_dead_processes_under_a_dead_master(tmp_path: Path) -> None:
    """A SIGKILLed master never reaped its worker: the next worker of the host finds the mark. Under a live master
    the mark is left to the master, which records the exit status."""
    quarantine = Quarantine(tmp_path / "state")
    dead, _ = status_of("pass")
    dead_master, _ = status_of("pass")
    host = socket.gethostname()
    quarantine.marks.mkdir(parents=True)
    marks = {"orphan": (dead, dead_master), "reaped_soon": (dead, os.getpid()), "alive": (os.getpid(), dead_master)}
    for name, (pid, master) in marks.items():
        (quarantine.marks / f"{host}-{pid}.k{name}.json").write_text(
            f'{{"name": "{name}", "revision": "r1", "host": "{host}", "pid": {pid}, "master_pid": {master}}}'
        )
    assert [r.name for r in quarantine.claim_orphans()] == ["orphan"]
    assert quarantine.cause("orphan", "r1") is not None
    assert quarantine.cause("reaped_soon", "r1") is None and quarantine.cause("alive", "r1") is None


def test_the_hook_reads_the_status_gunicorn_reaped() -> None:
    """gunicorn 27's ``reap_workers`` hands ``child_exit`` no status: the hook reads it from that frame."""

    def reap_workers(wpid: int, status: int) -> int | None:
        return reaped_status(1234)

    assert reap_workers(1234, signal.SIGKILL) == signal.SIGKILL
    assert reap_workers(99, signal.SIGKILL) is None
