"""GPU placement (``HAYHOOKS_GUNICORN_GPUS``): the worker in slot *i* is told ``CUDA_VISIBLE_DEVICES=<gpus[i % n]>``.

The master decides the list once, at start, and never initialises CUDA: a process that did cannot fork children
that use CUDA (``torch.cuda`` raises "Cannot re-initialize CUDA in forked subprocess"). ``auto`` therefore asks
``nvidia-smi -L``, else counts ``/proc/driver/nvidia/gpus/``, and places by UUID where it has one: CUDA numbers
devices fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, while ``nvidia-smi`` numbers them by PCI bus, so an
index could name another GPU than the one listed. Each worker sets the variable in ``post_fork``, before its app
is built and before anything in it can import torch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hayhooks_gunicorn.errors import KitError

ENV = "CUDA_VISIBLE_DEVICES"
SETTING = "HAYHOOKS_GUNICORN_GPUS"
PROC_GPUS = Path("/proc/driver/nvidia/gpus")
GPU_LINE = re.compile(r"^GPU (\d+): .*\(UUID: (GPU-[0-9a-fA-F-]+)\)")


@dataclass(frozen=True)
class Gpu:
    index: str
    uuid: str = ""

    @property
    def name(self) -> str:
        """What a worker is told: the UUID when known (see the module docstring), else the index."""
        return self.uuid or self.index


@dataclass(frozen=True)
class Placement:
    """The devices slot *i* gets, round-robin; empty = leave ``CUDA_VISIBLE_DEVICES`` as the operator set it."""

    devices: tuple[str, ...] = ()

    def device_for(self, slot: int) -> str | None:
        return self.devices[slot % len(self.devices)] if self.devices else None


def list_gpus(proc: Path = PROC_GPUS) -> list[Gpu] | None:
    """The GPUs this machine has, without CUDA; ``None`` when it cannot tell (no NVIDIA driver to ask)."""
    if smi := shutil.which("nvidia-smi"):
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            pass  # a driver mismatch makes nvidia-smi fail: try the driver's own listing
        else:
            return [Gpu(m.group(1), m.group(2)) for line in out.splitlines() if (m := GPU_LINE.match(line))]
    try:
        buses = sorted(p for p in proc.iterdir() if p.is_dir())
    except OSError:
        return None
    return [Gpu(str(i), _proc_uuid(bus)) for i, bus in enumerate(buses)]


def _proc_uuid(bus: Path) -> str:
    try:
        text = (bus / "information").read_text()
    except OSError:
        return ""
    match = re.search(r"^GPU UUID:\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else ""


def parse_list(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def missing(entries: list[str], gpus: list[Gpu]) -> list[str]:
    """The entries of a list that name no GPU of *gpus*, by index or UUID (a MIG UUID is not checked)."""
    known = {g.index for g in gpus} | {g.uuid for g in gpus if g.uuid}
    return [e for e in entries if e not in known and not e.startswith("MIG-")]


@dataclass(frozen=True)
class Note:
    """One sentence for the master's log at start."""

    text: str
    warning: bool = True


def decide(setting: str | None, environ: dict[str, str], gpus: list[Gpu] | None) -> tuple[Placement, Note | None]:
    """The placement for *setting*, and one sentence to log (a warning, or what ``auto`` found).

    Raises :class:`KitError` when a list names a GPU that the machine, which could be asked, does not have.
    """
    if not setting:
        return Placement(), None
    if setting.strip().lower() == "auto":
        if operator := parse_list(environ.get(ENV, "")):
            # the operator (or the container runtime) already chose the GPUs: place within those
            return Placement(tuple(operator)), Note(
                f"{SETTING}=auto places workers on {ENV}={','.join(operator)}", False
            )
        if not gpus:
            return Placement(), Note(f"{SETTING}=auto found no GPU; workers are not placed on devices")
        names = tuple(g.name for g in gpus)
        return Placement(names), Note(f"{SETTING}=auto places workers round-robin on {len(names)} GPU(s)", False)
    entries = parse_list(setting)
    if gpus is None:
        return Placement(tuple(entries)), Note(
            f"{SETTING}={setting} is not checked: this machine lists no GPU (no nvidia-smi, no {PROC_GPUS}); "
            f"workers are told {ENV} as listed"
        )
    if unknown := missing(entries, gpus):
        have = ", ".join(g.index for g in gpus) or "none"
        msg = f"{SETTING} names GPU(s) {', '.join(unknown)}, which this machine does not have (it has: {have})"
        raise KitError(msg)
    return Placement(tuple(entries)), None


# The placement of this master, decided once while gunicorn first reads its configuration; workers inherit it.
_placement = Placement()
_note: Note | None = None
_decided = False


def prepare(setting: str | None) -> None:
    """In the master, once per process: decide the placement (listing GPUs only when the setting needs it).

    Once, because gunicorn reads its configuration again on HUP, and the GPUs a running master places on do not
    change under it. Raises :class:`KitError` as ``decide`` does.
    """
    global _placement, _note, _decided
    if _decided:
        return
    chosen = (setting or "").strip().lower() == "auto" and parse_list(os.environ.get(ENV, ""))
    gpus = list_gpus() if setting and not chosen else None
    _placement, _note = decide(setting, dict(os.environ), gpus)
    _decided = True


def log_placement(log: Any) -> None:
    """At start, what ``prepare`` found, as one line: info for what ``auto`` chose, a warning otherwise."""
    if _note is not None:
        (log.warning if _note.warning else log.info)("%s", _note.text)


def place(slot: int) -> str | None:
    """In the worker (``post_fork``): tell CUDA its device; returns what it was told, or ``None``."""
    device = _placement.device_for(slot)
    if device is not None:
        os.environ[ENV] = device
    return device
