"""Overhead: the kit vs the naive gunicorn recipe vs ``hayhooks run``, same trivial pipeline, 2 workers each.

All servers run at once (idle ones cost nothing) and take turns under load, in a rotating order each round;
each key is the median of the per-round ratios, so slow drifts of a shared machine cancel out.
"""

from __future__ import annotations

import json

from benchmarks.load import LoadResult, measure
from benchmarks.pipelines import trivial, write_pipeline
from benchmarks.plan import Plan
from benchmarks.procs import cpu_seconds
from benchmarks.scenarios import Measured, Scenario, clean
from benchmarks.servers import Server, start_all
from benchmarks.stats import median, paired_ratio, rounded

PATH = "/trivial/run"
BODY = json.dumps({"text": "hello"})
# The "lean" profile: what a production deployment may turn off, with what it trades.
LEAN_ENV = {
    # no per-request INFO lines (hayhooks logs "Running pipeline", "completed in", and the access line)
    "HAYHOOKS_LOG_LEVEL": "WARNING",
    # no local trace capture for hayhooks' dashboard
    "HAYHOOKS_TRACING_ENABLED": "false",
}
# A run in which the kernel handed every keep-alive connection to one worker (its accept loop took them all
# before the other worker woke) measures one worker, not the server: such a run is made again, at most
# REDO_ONE_SIDED times, and the redone runs are counted in the details.
ONE_SIDED_SHARE = 0.1
REDO_ONE_SIDED = 2
# What the kit's per-pipeline Prometheus recording costs per request (a diagnostic, not a recommendation).
METRICS_OFF_ENV = {"HAYHOOKS_GUNICORN_METRICS": "off"}


def run(plan: Plan) -> Measured:
    pipelines = plan.workdir / "overhead"
    pipelines.mkdir()
    write_pipeline(pipelines, "trivial", trivial())
    servers = {
        "naive": Server("naive", pipelines, plan.workdir, label="naive"),
        "hayhooks_run": Server("hayhooks_run", pipelines, plan.workdir, label="hayhooks-run"),
        "kit": Server("kit", pipelines, plan.workdir, label="kit"),
        "kit_lean": Server("kit", pipelines, plan.workdir, env=LEAN_ENV, label="kit-lean"),
    }
    if plan.diagnostics:
        servers["kit_metrics_off"] = Server(
            "kit", pipelines, plan.workdir, env=METRICS_OFF_ENV, label="kit-metrics-off"
        )
    try:
        start_all(list(servers.values()))
        names = list(servers)
        for name in names:
            servers[name].expect_ok(PATH, BODY)
            if plan.warmup:
                measure(servers[name].url, PATH, BODY, plan.warmup, plan.connections)
        runs: dict[str, list[LoadResult]] = {name: [] for name in names}
        cpu_us: dict[str, list[float]] = {name: [] for name in names}
        one_sided: dict[str, int] = {name: 0 for name in names}
        for index in range(plan.rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                result, cpu, redone = balanced_run(servers[name], plan)
                runs[name].append(result)
                cpu_us[name].append(cpu)
                one_sided[name] += redone
    finally:
        for server in servers.values():
            server.stop()
    measured = summarize(runs, cpu_us)
    for name, count in one_sided.items():
        measured.details[name]["one_sided_runs_redone"] = count
    return measured


def one_sided(worker_cpu: list[float]) -> bool:
    total = sum(worker_cpu)
    return len(worker_cpu) > 1 and total > 0 and min(worker_cpu) / total < ONE_SIDED_SHARE


def balanced_run(server: Server, plan: Plan) -> tuple[LoadResult, float, int]:
    """One round on *server*: its result, server CPU µs per request, and how many one-sided runs were redone."""
    redone = 0
    while True:
        workers = server.worker_pids()
        before_total, before = server.cpu_seconds(), [cpu_seconds(pid) for pid in workers]
        result = clean(measure(server.url, PATH, BODY, plan.seconds, plan.connections), server.label)
        worker_cpu = [cpu_seconds(pid) - b for pid, b in zip(workers, before, strict=True)]
        cpu = (server.cpu_seconds() - before_total) / result.requests * 1e6
        if redone >= REDO_ONE_SIDED or not one_sided(worker_cpu):
            return result, cpu, redone
        redone += 1


def summarize(runs: dict[str, list[LoadResult]], cpu_us: dict[str, list[float]] | None = None) -> Measured:
    """Keys from paired rounds; *cpu_us* (server CPU per request, µs) adds a ratio a busy machine distorts less."""
    cpu_us = cpu_us or {name: [] for name in runs}
    rps = {name: [r.rps for r in results] for name, results in runs.items()}
    p99 = {name: [r.p99_ms or 0.0 for r in results] for name, results in runs.items()}
    keys = {
        "overhead_vs_naive": rounded(paired_ratio(rps["kit"], rps["naive"])),
        "ratio_vs_hayhooks_run": rounded(paired_ratio(rps["kit"], rps["hayhooks_run"])),
        "p99_ratio_vs_naive": rounded(paired_ratio(p99["kit"], p99["naive"])),
        "lean_vs_naive": rounded(paired_ratio(rps["kit_lean"], rps["naive"])),
        "metrics_off_vs_naive": rounded(paired_ratio(rps.get("kit_metrics_off", []), rps["naive"])),
        "cpu_per_request_vs_naive": rounded(paired_ratio(cpu_us["kit"], cpu_us["naive"])),
    }
    details = {
        name: {
            "rps_median": rounded(median(rps[name]), 1),
            "p99_ms_median": rounded(median(p99[name]), 2),
            "p50_ms_median": rounded(median([r.p50_ms or 0.0 for r in results]), 2),
            "cpu_us_per_request_median": rounded(median(cpu_us[name]), 1),
            "rps_rounds": [round(x, 1) for x in rps[name]],
            "errors": sum(r.errors for r in results),
            "tool": results[0].tool if results else None,
        }
        for name, results in runs.items()
    }
    notes = [f"{name}: {d['errors']} failed requests under load" for name, d in details.items() if d["errors"]]
    profile = " + ".join(f"{k}={v}" for k, v in LEAN_ENV.items())
    notes.append(f"kit_lean = {profile}: no per-request INFO log lines, no local trace capture")
    return Measured(keys, details, notes)


SCENARIO = Scenario(
    "overhead",
    "Overhead vs naive gunicorn recipe and `hayhooks run` (trivial pipeline, 2 workers)",
    (
        "overhead_vs_naive",
        "ratio_vs_hayhooks_run",
        "p99_ratio_vs_naive",
        "lean_vs_naive",
        "metrics_off_vs_naive",
        "cpu_per_request_vs_naive",
    ),
    run,
)
