"""Reload propagation: an atomic write of a changed pipeline, until every worker serves the new version.

The change is a temp file renamed over ``pipeline_wrapper.py`` (what editors, ``cp`` to a temp name + ``mv``,
and deploy tools do); each worker is asked over its own keep-alive connection, so the moment the last worker
answers with the new version is seen within a few milliseconds. Measured with inotify and with polling.
Pauses between changes are drawn at random, so changes do not line up with the polling phase.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from benchmarks.pipelines import replace_wrapper, trivial, write_pipeline
from benchmarks.plan import Plan
from benchmarks.probe import ProbeError, WorkerPins
from benchmarks.scenarios import Measured, Scenario
from benchmarks.servers import Server, start_all
from benchmarks.stats import percentile, rounded

NAME = "reloaded"


@dataclass
class Propagation:
    first: list[float] = field(default_factory=list)  # per change: until the first worker served it
    every: list[float] = field(default_factory=list)  # per change: until every worker served it
    missed: int = 0  # changes not served everywhere within the timeout (recorded at the timeout)


def propagation(server: Server, changes: int, timeout: float, seed: int) -> Propagation:
    pins = WorkerPins(server.url, server.workers)
    pins.pin()
    rng = random.Random(seed)
    result = Propagation()
    try:
        for index in range(1, changes + 1):
            time.sleep(rng.uniform(0.05, 0.3))
            version = f"{server.label}-{index}"
            started = time.monotonic()
            replace_wrapper(server.pipelines, NAME, trivial(version))
            try:
                done = pins.wait_version(f"/{NAME}/run", version, timeout=timeout, started=started)
            except ProbeError:
                result.missed += 1
                result.first.append(timeout)
                result.every.append(timeout)
                continue
            result.first.append(min(done.values()))
            result.every.append(max(done.values()))
    finally:
        pins.close()
    return result


def run(plan: Plan) -> Measured:
    servers: dict[str, Server] = {}
    for mode in ("inotify", "poll"):
        pipelines = plan.workdir / f"reload-{mode}"
        pipelines.mkdir()
        write_pipeline(pipelines, NAME, trivial(f"{mode}-0"))
        env = {"HAYHOOKS_GUNICORN_WATCH": mode, "HAYHOOKS_GUNICORN_POLL_INTERVAL_MS": str(plan.poll_interval_ms)}
        servers[mode] = Server("kit", pipelines, plan.workdir, env=env, label=f"kit-{mode}")
    try:
        start_all(list(servers.values()))
        inotify = propagation(servers["inotify"], plan.reload_changes, plan.reload_timeout_s, seed=1)
        servers["inotify"].stop()
        poll = propagation(servers["poll"], plan.poll_changes, plan.reload_timeout_s, seed=2)
    finally:
        for server in servers.values():
            server.stop()
    keys = {
        "reload_p50_s": rounded(percentile(inotify.every, 50)),
        "reload_p99_s": rounded(percentile(inotify.every, 99)),
        "reload_poll_p50_s": rounded(percentile(poll.every, 50)),
    }
    details = {
        "changes_inotify": len(inotify.every),
        "changes_poll": len(poll.every),
        "poll_interval_s": plan.poll_interval_ms / 1000,
        "timeout_s": plan.reload_timeout_s,
        "missed_inotify": inotify.missed,
        "missed_poll": poll.missed,
        "inotify_first_worker_p50_s": rounded(percentile(inotify.first, 50)),
        "inotify_max_s": rounded(max(inotify.every, default=0.0)),
        "poll_first_worker_p50_s": rounded(percentile(poll.first, 50)),
        "poll_p99_s": rounded(percentile(poll.every, 99)),
        "inotify_samples_s": [round(x, 3) for x in inotify.every],
        "poll_samples_s": [round(x, 3) for x in poll.every],
    }
    notes = [
        f"{count} of {total} changes with {mode} were not served by every worker within {plan.reload_timeout_s} s "
        "(counted at that value)"
        for mode, count, total in (
            ("inotify", inotify.missed, len(inotify.every)),
            ("polling", poll.missed, len(poll.every)),
        )
        if count
    ]
    return Measured(keys, details, notes)


SCENARIO = Scenario(
    "reload",
    "Reload propagation: atomic write -> every worker serves it",
    ("reload_p50_s", "reload_p99_s", "reload_poll_p50_s"),
    run,
)
