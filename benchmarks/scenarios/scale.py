"""Scale: what the kit costs as the pipelines directory grows, against one small pipeline measured in the same run.

Each setup is a 2-worker kit on its own directory: the baseline (1 small pipeline), 20, 200 and 1000 small
pipelines, and 1 small pipeline with a 300 MB file beside its wrapper (weights shipped with the pipeline). For each:
``boot_s`` (start -> every worker answers ``/readyz``), the largest worker RSS and the tree's total PSS
(``/proc/PID/smaps_rollup``), ``/readyz`` and ``/cluster`` p50 over one keep-alive connection, each worker's CPU
while nobody calls it (scaled to 20 s: the watcher re-scans every 10 s), and an edit of one wrapper (an atomic
rename) until every worker serves it. Ratios are against the baseline.
"""

from __future__ import annotations

import http.client
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import split_url
from benchmarks.pipelines import replace_wrapper, trivial, write_pipeline
from benchmarks.plan import Plan
from benchmarks.probe import WorkerPins
from benchmarks.procs import cpu_seconds, memory
from benchmarks.scenarios import Measured, Scenario
from benchmarks.servers import Server
from benchmarks.stats import percentile, ratio, rounded

EDITED = "p0"
BIG_FILE = "model.bin"
IDLE_WINDOW_S = 20.0  # idle CPU is reported per this many seconds


@dataclass
class Figures:
    pipelines: int
    big_file_mb: int
    boot_s: float
    worker_rss_mb: float
    total_pss_mb: float
    readyz_p50_ms: float | None
    cluster_p50_ms: float | None
    idle_cpu_s: float  # the busiest worker, per IDLE_WINDOW_S
    edit_p50_s: float | None


def make_dir(plan: Plan, label: str, count: int, big_file_mb: int = 0) -> Path:
    pipelines = plan.workdir / f"scale-{label}"
    pipelines.mkdir()
    for index in range(count):
        write_pipeline(pipelines, f"p{index}", trivial(f"{label}-{index}"))
    if big_file_mb:
        chunk = os.urandom(1 << 20)  # real bytes: a sparse file would be cheaper to read than weights are
        with (pipelines / EDITED / BIG_FILE).open("wb") as f:
            for _ in range(big_file_mb):
                f.write(chunk)
    return pipelines


def p50_ms(server: Server, path: str, requests: int) -> float | None:
    """Median of *requests* sequential GETs over one keep-alive connection; None if any failed."""
    host, port = split_url(server.url)
    connection = http.client.HTTPConnection(host, port, timeout=30)
    took: list[float] = []
    try:
        for _ in range(requests):
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                return None
            took.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return percentile(took, 50)


def idle_cpu_s(server: Server, seconds: float) -> float:
    """The busiest worker's CPU over *seconds* of no requests, scaled to IDLE_WINDOW_S."""
    workers = server.worker_pids()
    before = {pid: cpu_seconds(pid) for pid in workers}
    time.sleep(seconds)
    used = max((cpu_seconds(pid) - before[pid] for pid in workers), default=0.0)
    return used * IDLE_WINDOW_S / seconds


def edit_p50_s(server: Server, edits: int, label: str) -> float | None:
    pins = WorkerPins(server.url, server.workers)
    pins.pin()
    took: list[float] = []
    try:
        for index in range(1, edits + 1):
            time.sleep(0.3)  # apart, so each edit is its own change
            version = f"{label}-edit-{index}"
            started = time.monotonic()
            replace_wrapper(server.pipelines, EDITED, trivial(version))
            took.append(max(pins.wait_version(f"/{EDITED}/run", version, timeout=30, started=started).values()))
    finally:
        pins.close()
    return percentile(took, 50)


def measure(plan: Plan, label: str, count: int, big_file_mb: int = 0) -> Figures:
    pipelines = make_dir(plan, label, count, big_file_mb)
    server = Server("kit", pipelines, plan.workdir, label=f"kit-scale-{label}")
    try:
        server.start()
        boot = server.wait_ready(timeout=1800)
        time.sleep(1.0)  # start-up stragglers
        tree = [server.pid, *server.worker_pids()]
        workers = [memory(pid) for pid in tree[1:]]
        total_pss = sum(memory(pid).pss_mb for pid in tree)
        readyz = p50_ms(server, "/readyz", plan.scale_requests)
        cluster = p50_ms(server, "/cluster", plan.scale_requests)
        idle = idle_cpu_s(server, plan.scale_idle_s)
        edit = edit_p50_s(server, plan.scale_edits, label)
    finally:
        server.stop()
    return Figures(count, big_file_mb, boot, max(w.rss_mb for w in workers), total_pss, readyz, cluster, idle, edit)


def keys_of(setups: dict[str, Figures], counts: tuple[int, ...]) -> dict[str, float | int | None]:
    """The summary keys; the full plan's counts (20, 200, 1000) name them."""
    few, many, most = (setups[f"{n}_pipelines"] for n in counts)
    big = setups["large_file"]
    return {
        "scale_readyz_p50_ms_large_file": rounded(big.readyz_p50_ms, 1),
        "scale_cluster_p50_ms_large_file": rounded(big.cluster_p50_ms, 1),
        "scale_idle_cpu_s_large_file": rounded(big.idle_cpu_s, 2),
        "scale_readyz_p50_ms_200": rounded(many.readyz_p50_ms, 1),
        "scale_cluster_p50_ms_200": rounded(many.cluster_p50_ms, 1),
        "scale_idle_cpu_s_200": rounded(many.idle_cpu_s, 2),
        "scale_edit_s_200": rounded(many.edit_p50_s),
        "scale_edit_200_over_20": rounded(ratio(many.edit_p50_s, few.edit_p50_s), 2),
        "scale_boot_s_1000": rounded(most.boot_s, 1),
        "scale_worker_rss_mb_1000": rounded(most.worker_rss_mb, 1),
    }


# Each key: the setup and figure it is read from, shown beside the baseline's in the report.
BASELINE_OF = {
    "scale_readyz_p50_ms_large_file": ("large_file", "readyz_p50_ms"),
    "scale_cluster_p50_ms_large_file": ("large_file", "cluster_p50_ms"),
    "scale_idle_cpu_s_large_file": ("large_file", "idle_cpu_s"),
    "scale_readyz_p50_ms_200": ("200_pipelines", "readyz_p50_ms"),
    "scale_cluster_p50_ms_200": ("200_pipelines", "cluster_p50_ms"),
    "scale_idle_cpu_s_200": ("200_pipelines", "idle_cpu_s"),
    "scale_edit_s_200": ("200_pipelines", "edit_p50_s"),
    "scale_edit_200_over_20": ("20_pipelines", "edit_p50_s"),
    "scale_boot_s_1000": ("1000_pipelines", "boot_s"),
    "scale_worker_rss_mb_1000": ("1000_pipelines", "worker_rss_mb"),
}

COLUMNS = (
    ("boot_s", "boot s"),
    ("worker_rss_mb", "worker RSS MiB"),
    ("total_pss_mb", "total PSS MiB"),
    ("readyz_p50_ms", "/readyz p50 ms"),
    ("cluster_p50_ms", "/cluster p50 ms"),
    ("idle_cpu_s", "idle worker CPU s / 20 s"),
    ("edit_p50_s", "edit -> every worker p50 s"),
)


def table(setups: dict[str, Figures]) -> str:
    """Markdown: each setup's figures, and in brackets its ratio to the baseline (1 small pipeline)."""
    base = asdict(setups["baseline"])
    lines = [
        "| setup | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, figures in setups.items():
        row = asdict(figures)
        cells = []
        for key, _ in COLUMNS:
            value, times = row[key], ratio(row[key], base[key])
            shown = "—" if value is None else f"{value:.3g}"
            if name != "baseline" and times is not None:
                shown += f" ({times:.1f}x)" if times < 10 else f" ({times:.0f}x)"
            cells.append(shown)
        what = f"{figures.pipelines} small" + (f" + {figures.big_file_mb} MB file" if figures.big_file_mb else "")
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(plan: Plan) -> Measured:
    setups = {"baseline": measure(plan, "baseline", 1)}
    for count in plan.scale_counts:
        setups[f"{count}_pipelines"] = measure(plan, f"{count}", count)
    setups["large_file"] = measure(plan, "large-file", 1, plan.scale_big_file_mb)
    details: dict[str, Any] = {name: asdict(f) for name, f in setups.items()}
    details["table_md"] = table(setups)
    details["requests"], details["edits"], details["idle_s"] = plan.scale_requests, plan.scale_edits, plan.scale_idle_s
    notes = ["figures in brackets are ratios to 1 small pipeline measured in the same run"]
    return Measured(keys_of(setups, plan.scale_counts), details, notes)


SCENARIO = Scenario(
    "scale",
    "Scale: many pipelines and a large file beside a wrapper",
    (
        "scale_readyz_p50_ms_large_file",
        "scale_cluster_p50_ms_large_file",
        "scale_idle_cpu_s_large_file",
        "scale_readyz_p50_ms_200",
        "scale_cluster_p50_ms_200",
        "scale_idle_cpu_s_200",
        "scale_edit_s_200",
        "scale_edit_200_over_20",
        "scale_boot_s_1000",
        "scale_worker_rss_mb_1000",
    ),
    run,
)
