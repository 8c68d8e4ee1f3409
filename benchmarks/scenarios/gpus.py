"""GPU placement: per-GPU memory and throughput with 1 worker per GPU vs 2, on a real embedding pipeline.

The kit places workers with ``HAYHOOKS_GUNICORN_GPUS=auto`` (slot *i* on GPU ``i % n``), so ``n`` workers put one
copy of the model on each GPU and ``2n`` workers two. What a second worker per GPU buys is throughput while one
worker's requests wait on the CPU side (tokenising, HTTP); what it costs is a second copy of the weights and a
second CUDA context on every GPU. Each layout runs alone, so ``nvidia-smi`` reads only its memory; the rounds
alternate between the layouts, restarting each, so slow drift of a shared machine falls on both.

Skipped, saying so, where there is no GPU (no ``nvidia-smi``, or it lists none) or the ``bench`` extra is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from benchmarks.load import LoadResult, measure
from benchmarks.pipelines import embedding, write_pipeline
from benchmarks.plan import Plan
from benchmarks.scenarios import Measured, Scenario, Unavailable, clean
from benchmarks.scenarios.scaling import BODY, OFFLINE_ENV, embedding_missing
from benchmarks.servers import Server, start_all
from benchmarks.stats import median, paired_ratio, rounded

PATH = "/embed/run"
KEYS = ("gpu_rps_2v1", "gpu_memory_2v1")


def gpu_count() -> int:
    """GPUs ``nvidia-smi`` lists; raises :class:`Unavailable` where there are none."""
    if shutil.which("nvidia-smi") is None:
        raise Unavailable("no GPU here (nvidia-smi not found): GPU placement needs a machine with NVIDIA GPUs")
    from hayhooks_gunicorn.master.gpus import list_gpus

    gpus = list_gpus() or []
    if not gpus:
        raise Unavailable("no GPU here (nvidia-smi lists none)")
    return len(gpus)


def memory_used_mib() -> list[float]:
    """Memory in use on each GPU, as the driver counts it (every process's weights, caches and CUDA context)."""
    command = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout
    return [float(line) for line in out.split()]


def run(plan: Plan) -> Measured:
    gpus = gpu_count()
    if missing := embedding_missing():
        raise Unavailable(f"the `bench` extra is not installed (missing {', '.join(missing)})")
    pipelines = plan.workdir / "gpus"
    pipelines.mkdir()
    write_pipeline(pipelines, "embed", embedding())
    idle = memory_used_mib()
    layouts = {per_gpu: gpus * per_gpu for per_gpu in (1, 2)}
    rps: dict[int, list[float]] = {1: [], 2: []}
    memory: dict[int, list[float]] = {1: [], 2: []}
    for index in range(plan.cpu_rounds):
        for per_gpu in (1, 2) if index % 2 == 0 else (2, 1):
            result, used = measure_layout(plan, pipelines, layouts[per_gpu], f"gpus-{per_gpu}-per-gpu-{index}")
            rps[per_gpu].append(result.rps / gpus)
            memory[per_gpu].append(median([u - i for u, i in zip(used, idle, strict=True)]) or 0.0)
    keys = {
        "gpu_rps_2v1": rounded(paired_ratio(rps[2], rps[1])),
        "gpu_memory_2v1": rounded(paired_ratio(memory[2], memory[1])),
    }
    details = {
        "gpus": gpus,
        "memory_mib_per_gpu": {"1_per_gpu": rounded(median(memory[1]), 0), "2_per_gpu": rounded(median(memory[2]), 0)},
        "rps_per_gpu": {"1_per_gpu": rounded(median(rps[1]), 1), "2_per_gpu": rounded(median(rps[2]), 1)},
        "pipeline": "embedding (SentenceTransformers all-MiniLM-L6-v2, on cuda:0 of its CUDA_VISIBLE_DEVICES)",
        "rps_per_gpu_rounds": {f"{k}_per_gpu": [round(x, 1) for x in v] for k, v in rps.items()},
        "memory_mib_per_gpu_rounds": {f"{k}_per_gpu": [round(x) for x in v] for k, v in memory.items()},
    }
    return Measured(keys, details)


def measure_layout(plan: Plan, pipelines: Path, workers: int, label: str) -> tuple[LoadResult, list[float]]:
    """Start the kit with *workers* placed by ``auto``, read each GPU's memory once it serves, then load it."""
    env = {**OFFLINE_ENV, "HAYHOOKS_GUNICORN_GPUS": "auto", "TOKENIZERS_PARALLELISM": "false"}
    server = Server("kit", pipelines, plan.workdir, workers=workers, env=env, label=label)
    try:
        start_all([server], timeout=300)
        server.expect_ok(PATH, BODY)
        if plan.warmup:
            measure(server.url, PATH, BODY, plan.warmup, plan.cpu_connections * workers, close=True)
        used = memory_used_mib()
        result = measure(server.url, PATH, BODY, plan.cpu_seconds, plan.cpu_connections * workers, close=True)
        return clean(result, label), used
    finally:
        server.stop()


SCENARIO = Scenario("gpus", "GPU placement, 2 workers per GPU vs 1 (per GPU)", KEYS, run)
