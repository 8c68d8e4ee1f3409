"""Boot and memory with 10 pipelines (half wrappers, half YAML).

``boot_s``: from process start to every worker answering ``/readyz`` with 200 (2 workers).
``uss_first_worker_mb``: USS (memory only that process holds: what its exit frees) of the worker of a 1-worker
server. ``uss_extra_worker_mb``: USS of the second worker of a 2-worker server, the memory one more worker costs.
Memory shared with the master (imports done before fork) is in neither; the details add the master's USS and the
servers' total PSS (shared pages split between the processes mapping them, so the sum is the real footprint).
Read from ``/proc/PID/smaps_rollup`` once every worker is ready. The naive recipe is measured the same way for
comparison; the full run also measures gunicorn's ``--preload`` (the app, and so the heavy imports, built in the
master before fork).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from benchmarks.pipelines import trivial, write_pipeline, write_yaml, yaml_pipeline
from benchmarks.plan import Plan
from benchmarks.procs import Memory, memory
from benchmarks.scenarios import Measured, Scenario
from benchmarks.servers import Kind, Server
from benchmarks.stats import median, rounded

SETTLE_S = 1.0  # let start-up stragglers (threads, lazy imports) finish before memory is read


def make_pipelines(plan: Plan) -> None:
    pipelines = plan.workdir / "boot"
    pipelines.mkdir()
    for index in range(plan.boot_pipelines):
        if index % 2 == 0:
            write_pipeline(pipelines, f"wrapper_{index}", trivial(f"b{index}"))
        else:
            write_yaml(pipelines, f"yaml_{index}", yaml_pipeline(f"pipeline {index}"))


@dataclass(frozen=True)
class Footprint:
    master: Memory
    workers: list[Memory]

    @property
    def total_pss_mb(self) -> float:
        return self.master.pss_mb + sum(w.pss_mb for w in self.workers)

    @property
    def last_worker_uss_mb(self) -> float | None:
        return self.workers[-1].uss_mb if self.workers else None


def footprint(server: Server) -> Footprint:
    """Workers in fork order (PIDs grow), so the last one is the one added last."""
    return Footprint(memory(server.pid), [memory(pid) for pid in sorted(server.worker_pids())])


def boot_once(plan: Plan, kind: Kind, workers: int, args: tuple[str, ...] = ()) -> tuple[float, Footprint]:
    label = f"{kind}-boot-{workers}w" + ("-preload" if args else "")
    server = Server(kind, plan.workdir / "boot", plan.workdir, workers=workers, args=args, label=label)
    try:
        server.start()
        seconds = server.wait_ready(timeout=300)
        time.sleep(SETTLE_S)
        return seconds, footprint(server)
    finally:
        server.stop()


def pair(plan: Plan, kind: Kind, args: tuple[str, ...] = ()) -> dict[str, float | None]:
    """One 2-worker and one 1-worker boot: boot time, the worker's USS, and what the second worker adds."""
    boot_2, two = boot_once(plan, kind, 2, args)
    _, one = boot_once(plan, kind, 1, args)
    return {
        "boot_s": boot_2,
        "uss_first_worker_mb": one.last_worker_uss_mb,
        "uss_extra_worker_mb": two.last_worker_uss_mb,
        "master_uss_mb": one.master.uss_mb,
        "total_pss_1w_mb": one.total_pss_mb,
        "total_pss_2w_mb": two.total_pss_mb,
        "pss_added_by_second_worker_mb": two.total_pss_mb - one.total_pss_mb,
    }


def run(plan: Plan) -> Measured:
    make_pipelines(plan)
    boots = [boot_once(plan, "kit", 2)[0] for _ in range(plan.boot_repeats - 1)]
    kit = pair(plan, "kit")
    boots.append(kit["boot_s"] or 0.0)
    keys = {
        "boot_s": rounded(median(boots), 2),
        "uss_first_worker_mb": rounded(kit["uss_first_worker_mb"], 1),
        "uss_extra_worker_mb": rounded(kit["uss_extra_worker_mb"], 1),
    }
    details: dict[str, object] = {
        "pipelines": plan.boot_pipelines,
        "boot_samples_s": [round(b, 2) for b in boots],
        "kit": {k: rounded(v, 2) for k, v in kit.items()},
        "naive": {k: rounded(v, 2) for k, v in pair(plan, "naive").items()},
    }
    notes = ["naive boot_s counts uvicorn's 'Application startup complete' lines (it names no worker)"]
    if plan.preload:
        try:
            details["kit_preload"] = {k: rounded(v, 2) for k, v in pair(plan, "kit", ("--preload",)).items()}
        except Exception as e:  # a variant the kit does not offer: report, do not fail the scenario
            notes.append(f"kit with gunicorn --preload did not boot: {str(e).splitlines()[0]}")
    return Measured(keys, details, notes)


SCENARIO = Scenario(
    "boot",
    "Boot and memory, 10 pipelines",
    ("boot_s", "uss_first_worker_mb", "uss_extra_worker_mb"),
    run,
)
