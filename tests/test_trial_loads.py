"""HAYHOOKS_GUNICORN_TRIAL_LOADS: a changed revision is loaded first in a separate process, once per server, so a
pipeline that kills the process loading it kills no serving worker."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Server, echo_wrapper, setup_wrapper, traffic, wait_until, write_wrapper

from hayhooks_gunicorn.cluster import trial_loads
from hayhooks_gunicorn.cluster.quarantine import Quarantine, key
from hayhooks_gunicorn.cluster.trial_loads import TrialLoads, trial_cause
from hayhooks_gunicorn.deploys import helper_handle, preflight
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


def test_one_trial_per_revision_whoever_asks_in_a_process_the_kernel_kills_first(
    pipelines_dir: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"  # per process that ran the setup(): its pid and its oom_score_adj
    record = "open({runs!r}, 'a').write(f'{{os.getpid()}} {{open(\"/proc/self/oom_score_adj\").read().strip()}}\\n')"
    write_wrapper(pipelines_dir, "counted", setup_wrapper(record.format(runs=str(runs))))
    trials = TrialLoads(Quarantine(tmp_path / "state"), pipelines_dir, timeout=60, master_pid=os.getpid())
    source = scan(pipelines_dir)["counted"]
    with ThreadPoolExecutor(max_workers=3) as pool:
        refusals = list(pool.map(lambda _: trials.refusal(source), range(3)))
    assert refusals == [None, None, None]
    assert trials.refusal(source) is None
    lines = runs.read_text().splitlines()
    assert len(lines) == 1
    pid, score = lines[0].split()
    assert pid != str(os.getpid()) and score == "1000"


def test_a_trial_that_dies_quarantines_the_revision_and_an_exception_does_not(
    pipelines_dir: Path, tmp_path: Path
) -> None:
    # Its last words fill the helper's output tail: the death is still seen as the pipeline's.
    write_wrapper(pipelines_dir, "dies", setup_wrapper("print('x' * 20000, flush=True); os._exit(3)"))
    write_wrapper(pipelines_dir, "quits", setup_wrapper("os._exit(0)"))
    write_wrapper(pipelines_dir, "raises", setup_wrapper("raise RuntimeError('no model')"))
    quarantine = Quarantine(tmp_path / "state")
    trials = TrialLoads(quarantine, pipelines_dir, timeout=60, master_pid=os.getpid())
    sources = scan(pipelines_dir)
    for name, code in (("dies", 3), ("quits", 0)):
        cause = f"ended the process of its trial load (exit code {code})"
        assert trials.refusal(sources[name]) == f"quarantined: rev {sources[name].revision} {cause}"
        assert quarantine.cause(name, sources[name].revision) == cause
    assert trials.refusal(sources["raises"]) is None  # the worker's own load reports that failure
    assert quarantine.cause("raises", sources["raises"].revision) is None
    quarantine.tidy()
    assert not (tmp_path / "state" / "trials").exists()


def test_a_trial_held_for_ever_by_another_is_given_up_on(
    pipelines_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    write_wrapper(pipelines_dir, "counted", setup_wrapper(f"open({str(runs)!r}, 'a').write('ran\\n')"))
    monkeypatch.setattr(trial_loads, "LOCK_GRACE", 0.0)
    trials = TrialLoads(Quarantine(tmp_path / "state"), pipelines_dir, timeout=0.5, master_pid=os.getpid())
    source = scan(pipelines_dir)["counted"]
    verdicts = Quarantine(tmp_path / "state").verdicts(os.getpid())
    verdicts.mkdir(parents=True)
    with open(verdicts / f"{key(source.name, source.revision)}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a forked child of the trial's worker would keep it
        assert trials.refusal(source) is None  # no verdict: the worker loads as it would without trials
    assert not runs.exists()


def test_a_check_process_that_died_before_the_pipeline_code_ran_is_no_verdict(pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "fine", echo_wrapper("fine"))
    source = scan(pipelines_dir)["fine"]
    assert preflight._exited(source, 1, "ImportError: ...", 0.1, loading=False).exit_code is None
    assert preflight._exited(source, -9, "", 0.1, loading=True).exit_code == -9


@pytest.mark.parametrize(
    ("exit_code", "cause"),
    [
        (None, None),
        (0, "ended the process of its trial load (exit code 0)"),  # it died with no result: os._exit(0)
        (-15, None),  # SIGTERM: the server stopping sends it too
        (1, "ended the process of its trial load (exit code 1)"),
        (-9, "killed the process of its trial load (SIGKILL)"),
        (-11, "killed the process of its trial load (SIGSEGV)"),
    ],
)
def test_trial_causes(exit_code: int | None, cause: str | None) -> None:
    assert trial_cause(exit_code) == cause
