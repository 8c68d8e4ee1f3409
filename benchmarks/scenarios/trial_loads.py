"""Crash isolation: what ``HAYHOOKS_GUNICORN_TRIAL_LOADS`` adds to a hot reload, and ``/readyz`` once a pipeline
that killed its workers is quarantined.

Two 2-worker kits side by side, one with trial loads: each change is a new revision of a pipeline whose ``setup()``
holds a model-sized block and takes a while, written atomically, alternately into either server's directory. For
each change: the time until every worker serves it, and the peak PSS of the whole process tree (master, workers,
pre-flight helpers and their checks: ``/proc/PID/smaps_rollup``) above what the tree held just before. With trial
loads the revision is first loaded once in a separate process, then by the workers: the reload takes the trial's
time longer, and the trial's copy of the model adds to the peak unless the workers' own loads outweigh it.

Then a pipeline whose ``setup()`` calls ``os._exit(1)`` lands in the server without trial loads: its workers die
once and are replaced; once every worker's ``/readyz`` names it, ``quarantined_readyz_p99_ms`` is the p99 of
``GET /readyz`` over a keep-alive connection per worker.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field

from benchmarks.pipelines import replace_wrapper, write_pipeline
from benchmarks.plan import Plan
from benchmarks.probe import ProbeError, WorkerPins
from benchmarks.procs import descendants, memory
from benchmarks.scenarios import Measured, Scenario
from benchmarks.servers import Server, start_all
from benchmarks.stats import percentile, rounded

NAME = "model"
SAMPLE_S = 0.05

MODEL = '''
import time

from hayhooks import BasePipelineWrapper

VERSION = {version!r}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.weights = bytearray({size})
        for page in range(0, len(self.weights), 4096):  # touched, so it is resident like loaded weights
            self.weights[page] = 1
        time.sleep({seconds})

    def run_api(self, text: str = "") -> str:
        """Answer with the version.

        Args:
            text: any text
        """
        return VERSION + ":" + text
'''


def model(version: str, plan: Plan) -> str:
    return MODEL.format(version=version, size=plan.trial_model_mb * 1024 * 1024, seconds=plan.trial_setup_s)


def tree_pss_mb(server: Server) -> float:
    total = 0.0
    for pid in [server.pid, *descendants(server.pid)]:
        try:
            total += memory(pid).pss_mb
        except OSError:  # a check that ended meanwhile
            continue
    return total


@dataclass
class Reloads:
    seconds: list[float] = field(default_factory=list)  # until every worker served the change
    peak_extra_mb: list[float] = field(default_factory=list)  # peak tree PSS above the tree's before the change


def reload_once(server: Server, pins: WorkerPins, version: str, plan: Plan, into: Reloads) -> None:
    before = tree_pss_mb(server)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_pss_mb(server))
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    replace_wrapper(server.pipelines, NAME, model(version, plan))
    try:
        served = pins.wait_version(f"/{NAME}/run", version, timeout=plan.trial_timeout_s, started=started)
    finally:
        done.set()
        sampler.join()
    into.seconds.append(max(served.values()))
    into.peak_extra_mb.append(peak[0] - before)


CRASHER = """
import os

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        os._exit(1)

    def run_api(self, text: str = "") -> str:
        \"\"\"Never served.

        Args:
            text: any text
        \"\"\"
        return text
"""


def quarantined_readyz_ms(server: Server, pins: WorkerPins, calls: int, timeout: float) -> list[float]:
    """Drop the crasher in, wait until every worker's ``/readyz`` names it, then time *calls* ``/readyz``."""
    write_pipeline(server.pipelines, "crasher", CRASHER)
    named: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(named) < server.workers:
        if time.monotonic() > deadline:
            raise ProbeError(f"/readyz of {server.workers - len(named)} worker(s) did not name the crasher")
        try:
            if len(pins.connections) < server.workers:
                pins.pin()
            for worker in list(pins.connections):
                _, text = pins.call(worker, "GET", "/readyz")
                if "crasher" in json.loads(text).get("failures", {}):
                    named.add(worker)
        except (OSError, http.client.HTTPException, ProbeError, ValueError):
            pins.close()  # a worker died meanwhile: pinned again
            named.clear()
            time.sleep(0.1)
    times = []
    workers = list(pins.connections)
    for index in range(calls):
        started = time.perf_counter()
        pins.call(workers[index % len(workers)], "GET", "/readyz")
        times.append((time.perf_counter() - started) * 1000)
    return times


def ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else rounded(value / base)


def run(plan: Plan) -> Measured:
    servers: dict[str, Server] = {}
    for mode, trials in (("default", "false"), ("trial", "true")):
        pipelines = plan.workdir / f"trial-loads-{mode}"
        pipelines.mkdir()
        write_pipeline(pipelines, NAME, model(f"{mode}-0", plan))
        env = {"HAYHOOKS_GUNICORN_TRIAL_LOADS": trials}
        servers[mode] = Server("kit", pipelines, plan.workdir, env=env, label=f"kit-{mode}-trials")
    pins: dict[str, WorkerPins] = {}
    results = {mode: Reloads() for mode in servers}
    try:
        start_all(list(servers.values()))
        for mode, server in servers.items():
            pins[mode] = WorkerPins(server.url, server.workers)
            pins[mode].pin()
        for index in range(1, plan.trial_changes + 1):
            for mode, server in servers.items():  # side by side: the same moment's noise on both
                time.sleep(plan.trial_settle_s)
                reload_once(server, pins[mode], f"{mode}-{index}", plan, results[mode])
        crashed = servers["default"]
        readyz = quarantined_readyz_ms(crashed, pins["default"], plan.quarantined_readyz_calls, plan.trial_timeout_s)
    finally:
        for pin in pins.values():
            pin.close()
        for server in servers.values():
            server.stop()
    default, trial = results["default"], results["trial"]
    reload_default, reload_trial = percentile(default.seconds, 50), percentile(trial.seconds, 50)
    peak_default, peak_trial = percentile(default.peak_extra_mb, 50), percentile(trial.peak_extra_mb, 50)
    keys = {
        "trial_reload_p50_s": rounded(reload_trial),
        "trial_reload_over_default": ratio(reload_trial, reload_default),
        "trial_peak_extra_mb": rounded(peak_trial, 1),
        "trial_peak_over_default": ratio(peak_trial, peak_default),
        "quarantined_readyz_p99_ms": rounded(percentile(readyz, 99), 2),
    }
    details = {
        "changes": plan.trial_changes,
        "model_mb": plan.trial_model_mb,
        "setup_s": plan.trial_setup_s,
        "default_reload_p50_s": rounded(reload_default),
        "default_peak_extra_mb": rounded(peak_default, 1),
        "default_reload_samples_s": [round(x, 3) for x in default.seconds],
        "trial_reload_samples_s": [round(x, 3) for x in trial.seconds],
        "default_peak_extra_samples_mb": [round(x, 1) for x in default.peak_extra_mb],
        "trial_peak_extra_samples_mb": [round(x, 1) for x in trial.peak_extra_mb],
        "quarantined_readyz_calls": len(readyz),
        "quarantined_readyz_p50_ms": rounded(percentile(readyz, 50), 2),
    }
    return Measured(keys, details)


KEYS = (
    "trial_reload_p50_s",
    "trial_reload_over_default",
    "trial_peak_extra_mb",
    "trial_peak_over_default",
    "quarantined_readyz_p99_ms",
)
SCENARIO = Scenario("trial_loads", "Crash isolation: trial loads' cost, /readyz with a quarantined pipeline", KEYS, run)
