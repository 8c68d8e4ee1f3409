"""HAYHOOKS_GUNICORN_TRIAL_LOADS: a changed revision is loaded first in a separate process, once per host, so a
pipeline that kills the process loading it kills no serving worker."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Server, echo_wrapper, setup_wrapper, traffic, wait_until, write_wrapper

from hayhooks_gunicorn.cluster.quarantine import Quarantine
from hayhooks_gunicorn.cluster.trial_loads import TrialLoads, trial_cause
from hayhooks_gunicorn.deploys import helper_handle
from hayhooks_gunicorn.reload.scan import scan

pytestmark = pytest.mark.integration

TRIALS = {"HAYHOOKS_GUNICORN_TRIAL_LOADS": "true"}
WINDOW = 20.0  # how long each bad revision is watched after it lands


@pytest.fixture(autouse=True)
def own_helper() -> Iterator[None]:
    """The checks of the tests that call TrialLoads here run in this process's pre-flight helper: stopped after."""
    helper_handle.stop()
    yield
    helper_handle.stop()


def test_a_revision_that_kills_its_trial_kills_no_serving_worker(
    start_server: Callable[..., Server], pipelines_dir: Path
) -> None:
    write_wrapper(pipelines_dir, "echo", echo_wrapper("healthy"))
    server = start_server(pipelines_dir, workers=2, env=TRIALS)
    workers = server.worker_pids()
    bad = {
        "exits": "ended the process of its trial load (exit code 1)",
        "killer": "killed the process of its trial load (SIGKILL)",
    }
    bodies = {"exits": "os._exit(1)", "killer": "os.kill(os.getpid(), 9)"}
    with traffic(server) as calls:
        wait_until(lambda: len({w for w in calls.between(0, time.monotonic()) if w}) == 2)
        for name, cause in bad.items():
            landed = time.monotonic()
            write_wrapper(pipelines_dir, name, setup_wrapper(bodies[name]))

            def reported(name: str = name, cause: str = cause) -> bool:
                check = lambda r: cause in r.json().get("failures", {}).get(name, "")  # noqa: E731
                return server.every_worker(check, "GET", "/readyz")

            wait_until(reported, timeout=WINDOW)
            window = calls.between(landed, time.monotonic())
            assert window.count(None) == 0, f"{name}: {window.count(None)} failed calls of {len(window)}"
            assert server.worker_pids() == workers, f"{name}: a serving worker died"
    assert server.proc.poll() is None
    assert "killed the process of its trial load (SIGKILL)" in server.get("/cluster").text
    # A new revision of the name loads normally, after a trial that survives.
    write_wrapper(pipelines_dir, "killer", echo_wrapper("fixed"))
    wait_until(
        lambda: server.every_worker(
            lambda r: r.json() == {"result": {"reply": "fixed"}}, "POST", "/killer/run", json={"text": "x"}
        )
    )
    assert server.worker_pids() == workers


def test_one_trial_per_revision_whoever_asks(pipelines_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"  # one line per process that ran the setup()
    write_wrapper(pipelines_dir, "counted", setup_wrapper(f"open({str(runs)!r}, 'a').write(f'{{os.getpid()}}\\n')"))
    trials = TrialLoads(Quarantine(tmp_path / "state"), pipelines_dir, timeout=60)
    source = scan(pipelines_dir)["counted"]
    with ThreadPoolExecutor(max_workers=3) as pool:
        refusals = list(pool.map(lambda _: trials.refusal(source), range(3)))
    assert refusals == [None, None, None]
    assert len(runs.read_text().splitlines()) == 1
    assert trials.refusal(source) is None
    assert len(runs.read_text().splitlines()) == 1
    assert all(pid != str(os.getpid()) for pid in runs.read_text().split())  # not in the asking process


def test_a_trial_that_dies_quarantines_the_revision_and_an_exception_does_not(
    pipelines_dir: Path, tmp_path: Path
) -> None:
    write_wrapper(pipelines_dir, "dies", setup_wrapper("os._exit(3)"))
    write_wrapper(pipelines_dir, "raises", setup_wrapper("raise RuntimeError('no model')"))
    quarantine = Quarantine(tmp_path / "state")
    trials = TrialLoads(quarantine, pipelines_dir, timeout=60)
    sources = scan(pipelines_dir)
    refusal = trials.refusal(sources["dies"])
    cause = "ended the process of its trial load (exit code 3)"
    assert refusal == f"quarantined: rev {sources['dies'].revision} {cause}"
    assert quarantine.cause("dies", sources["dies"].revision) == cause
    assert trials.refusal(sources["raises"]) is None  # the worker's own load reports that failure
    assert quarantine.cause("raises", sources["raises"].revision) is None
    quarantine.tidy()
    assert not (tmp_path / "state" / "trials").exists()


@pytest.mark.parametrize(
    ("exit_code", "cause"),
    [
        (None, None),
        (0, None),
        (-15, None),  # SIGTERM: stopped on purpose
        (1, "ended the process of its trial load (exit code 1)"),
        (-9, "killed the process of its trial load (SIGKILL)"),
        (-11, "killed the process of its trial load (SIGSEGV)"),
    ],
)
def test_trial_causes(exit_code: int | None, cause: str | None) -> None:
    assert trial_cause(exit_code) == cause
