"""The warm pre-flight helper: every check in a fresh child forked from one long-lived helper per process, with the
errors of the cold pre-flight process, and the cold process whenever the helper is gone."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import PREFLIGHT_HELPER, setup_wrapper, wait_until, write_wrapper

from hayhooks_gunicorn.deploys import helper_handle
from hayhooks_gunicorn.deploys.preflight import CheckResult, check_in_subprocess
from hayhooks_gunicorn.reload.scan import scan

pytestmark = pytest.mark.integration

TIMEOUT = 60.0


def check(pipelines: Path, name: str, timeout: float = TIMEOUT, server_routes: bool = False) -> CheckResult:
    return check_in_subprocess(scan(pipelines)[name], pipelines, timeout, server_routes)


def helper_pid() -> int | None:
    """This process's running helper, seen from outside: a live child running ``-m ...preflight_helper``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(parent) == os.getpid() and state != "Z" and PREFLIGHT_HELPER.encode() in command:
            return int(stat.parent.name)
    return None


@pytest.fixture(autouse=True)
def own_helper() -> Iterator[None]:
    helper_handle.stop()
    yield
    helper_handle.stop()  # and waits for it: no process is left behind


def test_checks_share_one_helper_but_not_their_modules(pipelines_dir: Path) -> None:
    write_wrapper(
        pipelines_dir,
        "first",
        setup_wrapper("sys.modules['left_by_first'] = sys", imports="from first.helper_module import VALUE  # noqa"),
        extra={"helper_module.py": "VALUE = 1\n"},
    )
    leaks = "[m for m in sys.modules if m == 'left_by_first' or m.startswith('first')]"
    write_wrapper(pipelines_dir, "second", setup_wrapper(f"assert not {leaks}, {leaks}"))

    assert check(pipelines_dir, "first").ok
    helper = helper_pid()
    assert helper is not None
    second = check(pipelines_dir, "second", server_routes=True)
    assert second.ok, second.error
    assert helper_pid() == helper


def test_a_child_that_exits_or_prints_leaves_the_helper_answering(pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "exits", setup_wrapper("print('last words'); sys.stdout.flush(); os._exit(3)"))
    write_wrapper(pipelines_dir, "quits", setup_wrapper("sys.exit(4)"))
    write_wrapper(pipelines_dir, "chatty", setup_wrapper("print('x' * 300_000); print('y' * 300_000, file=sys.stderr)"))
    write_wrapper(pipelines_dir, "fine", setup_wrapper("pass"))

    exits = check(pipelines_dir, "exits")
    assert not exits.ok and exits.error is not None
    assert "exited with code 3 before reporting" in exits.error and "last words" in exits.error
    quits = check(pipelines_dir, "quits")
    assert not quits.ok and quits.error == "SystemExit(4) while loading"
    chatty = check(pipelines_dir, "chatty")
    assert chatty.ok, chatty.error
    assert check(pipelines_dir, "fine").ok
    assert helper_pid() is not None


def test_a_hanging_child_is_killed_at_the_timeout(pipelines_dir: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "hanging.pid"
    hang = f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    write_wrapper(pipelines_dir, "hangs", setup_wrapper(hang))
    write_wrapper(pipelines_dir, "fine", setup_wrapper("pass"))
    assert check(pipelines_dir, "fine").ok  # the helper is up: the timeout below is all the hanging check's

    hangs = check(pipelines_dir, "hangs", timeout=3.0)
    assert not hangs.ok and hangs.error == "Loading pipeline 'hangs' did not finish within 3s"
    child = int(pid_file.read_text())
    assert not Path(f"/proc/{child}").exists()  # killed and reaped by the helper
    assert check(pipelines_dir, "fine").ok


def test_a_killed_helper_is_replaced_and_its_check_runs_the_cold_way(pipelines_dir: Path, tmp_path: Path) -> None:
    started = tmp_path / "slow.started"
    write_wrapper(pipelines_dir, "slow", setup_wrapper(f"open({str(started)!r}, 'w').close(); time.sleep(3)"))
    write_wrapper(pipelines_dir, "fine", setup_wrapper("pass"))
    assert check(pipelines_dir, "fine").ok
    first = helper_pid()
    assert first is not None

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(check, pipelines_dir, "slow")
        wait_until(started.exists, timeout=TIMEOUT)
        os.kill(first, signal.SIGKILL)
        result = slow.result(timeout=TIMEOUT * 2)
    assert result.ok, result.error  # loaded again in a new cold process
    assert check(pipelines_dir, "fine").ok
    assert helper_pid() not in (None, first)


def test_concurrent_checks_run_side_by_side(pipelines_dir: Path, tmp_path: Path) -> None:
    # Each setup() waits until all eight have started: eight checks one after the other would fail.
    arrived = tmp_path / "arrived"
    arrived.mkdir()
    together = textwrap.dedent(
        f"""
        def wait_for_all_eight() -> None:
            open(os.path.join({str(arrived)!r}, str(os.getpid())), "w").close()
            deadline = time.monotonic() + 45
            while len(os.listdir({str(arrived)!r})) < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(os.listdir({str(arrived)!r})) == 8, "checked one after the other"
        """
    )
    names = [f"side_{i}" for i in range(8)]
    for name in names:
        write_wrapper(pipelines_dir, name, setup_wrapper("wait_for_all_eight()", imports=together))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda name: check(pipelines_dir, name), names))
    assert [r.name for r in results] == names
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert len({r.revision for r in results}) == 1


def test_a_forked_process_starts_its_own_helper_and_holds_none_of_the_parents_pipes(pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "fine", setup_wrapper("pass"))
    assert check(pipelines_dir, "fine").ok
    parents = helper_pid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # what gunicorn does when it spawns a worker
        code = 1
        try:
            os.close(read_end)
            ok = check(pipelines_dir, "fine").ok
            os.write(write_end, f"{ok} {helper_pid()}".encode())
            helper_handle.stop()
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        ok, childs = os.read(read_end, 100).decode().split()
        assert ok == "True" and int(childs) not in (parents, os.getpid())
        # The forked process closed its copies: the parent's helper ends as soon as the parent lets it.
        assert parents is not None
        helper_handle.stop()
        assert not Path(f"/proc/{parents}").exists()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


@pytest.fixture
def helper_idle(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    from hayhooks_gunicorn.settings import kit_settings

    def set_idle(seconds: str) -> None:
        monkeypatch.setenv("HAYHOOKS_GUNICORN_PREFLIGHT_HELPER_IDLE", seconds)
        kit_settings.cache_clear()

    yield set_idle
    monkeypatch.delenv("HAYHOOKS_GUNICORN_PREFLIGHT_HELPER_IDLE", raising=False)
    kit_settings.cache_clear()


def test_an_idle_helper_exits_and_the_next_check_starts_another(
    pipelines_dir: Path, helper_idle: Callable[[str], None]
) -> None:
    helper_idle("1")
    write_wrapper(pipelines_dir, "first", setup_wrapper("self.pipeline = None"))
    assert check(pipelines_dir, "first").ok
    first = helper_pid()
    assert first is not None
    # It exits by itself, and is reaped: a zombie still has its /proc entry (helper_pid skips zombies).
    wait_until(lambda: helper_pid() is None and not Path(f"/proc/{first}").exists(), timeout=30)
    assert check(pipelines_dir, "first").ok
    assert helper_pid() not in (None, first)


def test_no_helper_when_its_idle_time_is_zero(pipelines_dir: Path, helper_idle: Callable[[str], None]) -> None:
    helper_idle("0")
    write_wrapper(pipelines_dir, "cold", setup_wrapper("self.pipeline = None"))
    assert check(pipelines_dir, "cold").ok
    assert helper_pid() is None
