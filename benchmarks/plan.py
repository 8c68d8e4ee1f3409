"""How much each scenario measures: ``--quick`` (under 5 minutes on 2 cores) or the full run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Plan:
    mode: str
    workdir: Path
    # Overhead: rounds of A/B/C/D runs, each server loaded for `seconds` per round
    rounds: int = 10
    seconds: float = 6.0
    warmup: float = 2.0
    connections: int = 16
    diagnostics: bool = True  # also the kit with metrics off: attributes per-request cost (full run only)
    # CPU-bound scaling: 1 worker vs 2 on the same pipeline
    cpu_rounds: int = 5
    cpu_seconds: float = 10.0
    cpu_connections: int = 8
    # pure-Python pipeline: ~40 ms of one core per request, so reconnecting and the load generator (same cores)
    # stay a small share of the work being scaled
    cpu_loops: int = 500_000
    embedding: bool = True  # the full run uses a real embedding pipeline (the `bench` extra)
    # Reload propagation
    reload_changes: int = 60
    poll_changes: int = 30
    poll_interval_ms: int = 500
    # How long to wait for every worker before a change counts as missed (and is recorded at this value)
    reload_timeout_s: float = 12.0
    # Availability during reloads
    swaps: int = 100
    min_requests: int = 10_000
    swap_interval: float = 0.2
    availability_connections: int = 8
    # Deploy convergence
    deploys: int = 30
    # Boot and memory
    boot_pipelines: int = 10
    boot_repeats: int = 3
    preload: bool = True
    # Memory: hot reloads of a pipeline holding 20 MB (the model part runs when `embedding` is on)
    memory_reloads: int = 20
    # Wait before reading memory: past the kit's delayed release (reload/release.py: LATER_SECONDS)
    memory_settle_s: float = 7.0
    # Scale: small pipelines per setup (the keys are named after 20, 200, 1000), the large file beside a wrapper
    scale_counts: tuple[int, int, int] = (20, 200, 1000)
    scale_big_file_mb: int = 300
    scale_requests: int = 200  # /readyz and /cluster calls per setup
    scale_idle_s: float = 20.0
    scale_edits: int = 10
    # Trial loads: changes per server, the model each revision holds and how long its setup() takes
    trial_changes: int = 5
    trial_model_mb: int = 200
    trial_setup_s: float = 1.0
    trial_settle_s: float = 2.0
    trial_timeout_s: float = 120.0
    quarantined_readyz_calls: int = 500


def full_plan(workdir: Path) -> Plan:
    return Plan(mode="full", workdir=workdir)


def quick_plan(workdir: Path) -> Plan:
    return replace(
        full_plan(workdir),
        mode="quick",
        rounds=7,
        seconds=2.0,
        diagnostics=False,
        warmup=1.0,
        cpu_rounds=3,
        cpu_seconds=5.0,
        embedding=False,
        reload_changes=30,
        poll_changes=30,
        reload_timeout_s=2.5,
        swaps=50,
        min_requests=5000,
        swap_interval=0.15,
        deploys=10,
        boot_repeats=1,
        preload=False,
        scale_idle_s=10.0,
        scale_edits=5,
        trial_changes=3,
        trial_model_mb=100,
    )


def tiny_plan(workdir: Path) -> Plan:
    """For the test suite: exercises every code path, measures nothing worth reading."""
    return replace(
        quick_plan(workdir),
        mode="tiny",
        rounds=1,
        seconds=1.0,
        warmup=0.0,
        cpu_rounds=1,
        cpu_seconds=1.0,
        cpu_loops=10_000,
        reload_changes=2,
        poll_changes=2,
        swaps=2,
        min_requests=20,
        swap_interval=0.1,
        deploys=2,
        memory_reloads=2,
        memory_settle_s=0.5,
        scale_counts=(2, 3, 4),
        scale_big_file_mb=2,
        scale_requests=3,
        scale_idle_s=0.5,
        scale_edits=1,
        trial_changes=1,
        trial_model_mb=2,
        trial_setup_s=0.1,
        trial_settle_s=0.2,
        quarantined_readyz_calls=3,
    )
