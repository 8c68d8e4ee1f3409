"""Process facts read straight from ``/proc``: children, descendants and per-process memory (USS, PSS)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


def free_port() -> int:
    """A free ephemeral port on 127.0.0.1 (benchmark traffic never leaves loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parent_map(proc: Path = PROC) -> dict[int, int]:
    """pid -> ppid for every visible process."""
    parents: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def children(pid: int, proc: Path = PROC) -> list[int]:
    return sorted(child for child, parent in parent_map(proc).items() if parent == pid)


def descendants(pid: int, proc: Path = PROC) -> list[int]:
    """Every process below *pid*, breadth first."""
    parents = parent_map(proc)
    found: list[int] = []
    frontier = [pid]
    while frontier:
        level = [child for child, parent in parents.items() if parent in frontier]
        found.extend(sorted(level))
        frontier = level
    return found


def cpu_seconds(pid: int, proc: Path = PROC) -> float:
    """User + system CPU time of *pid* so far (0 once it is gone)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of stat(5); fields here start at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    try:
        state = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2 :].split()[0] != "Z"


@dataclass(frozen=True)
class Memory:
    """One process's memory in MiB: USS is what its exit would free, PSS splits shared pages fairly."""

    rss_mb: float
    pss_mb: float
    uss_mb: float


def parse_smaps_rollup(text: str) -> Memory:
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            values[parts[0][:-1]] = int(parts[1])  # kB
    uss = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0) + values.get("Private_Hugetlb", 0)
    return Memory(values.get("Rss", 0) / 1024, values.get("Pss", 0) / 1024, uss / 1024)


def memory(pid: int, proc: Path = PROC) -> Memory:
    """From ``/proc/PID/smaps_rollup`` (Linux >= 4.14), so no third-party package is needed."""
    return parse_smaps_rollup((proc / str(pid) / "smaps_rollup").read_text())


def signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
