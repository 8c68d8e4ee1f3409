"""Where one gunicorn master keeps its control socket and its workers' ready markers.

gunicorn's default control socket (``gunicorn/config.py::_get_default_control_socket``:
``$XDG_RUNTIME_DIR/gunicorn.ctl`` or ``~/.gunicorn/gunicorn.ctl``) is one path for every instance on a host: the
last master to start takes it over and the first to stop deletes it. Each instance gets a path of its own, derived
from its first bind address, so ``hayhooks-gunicorn restart`` finds it the same way. A worker writes
``<socket>.ready/<pid>`` once it serves with its pipelines loaded; the master removes the marker when the worker
exits (``child_exit``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.files import ensure_private_dir, write_atomically
from hayhooks_gunicorn.sockets import check_ours


@dataclass(frozen=True)
class Instance:
    control_socket: Path
    derived: bool  # the kit chose the path (and may remove its directory on exit)

    @property
    def ready_dir(self) -> Path:
        return self.control_socket.with_name(self.control_socket.name + ".ready")

    @property
    def chat_socket(self) -> Path:
        """Where the master's Chainlit host listens (``chat``), for every worker to forward to."""
        return self.control_socket.with_name(self.control_socket.name + ".chat.sock")

    def prepare(self) -> None:
        """Create the directories and drop markers a crashed predecessor left behind.

        The control socket's directory is private (0700, ours) wherever it is, since the chat host's socket and the
        ready markers live beside it; a path of either socket taken by anything but a socket of ours is an error.
        """
        directory = self.control_socket.parent
        try:
            if not self.derived:
                directory.parent.mkdir(parents=True, exist_ok=True)
            ensure_private_dir(directory, parents=0)
        except PermissionError as e:
            raise KitError(f"{e}; choose a --control-socket path in a directory of your own") from e
        check_ours(self.control_socket)
        check_ours(self.chat_socket)
        shutil.rmtree(self.ready_dir, ignore_errors=True)
        self.ready_dir.mkdir(mode=0o700)

    def mark_ready(self, pid: int) -> None:
        """Written by a worker, atomically, once it accepts requests with its pipelines loaded."""
        write_atomically(self.ready_dir / str(pid), json.dumps({"pid": pid, "ready_at": time.time()}))

    def forget(self, pid: int) -> None:
        (self.ready_dir / str(pid)).unlink(missing_ok=True)

    @property
    def replacing_file(self) -> Path:
        """Names the worker a rolling replacement is about to replace, so its successor takes its slot
        (``slots``); next to the ready markers, which are the only digit-named files there."""
        return self.ready_dir / "replacing"

    def mark_replacing(self, pid: int | None) -> None:
        if pid is None:
            self.replacing_file.unlink(missing_ok=True)
        else:
            write_atomically(self.replacing_file, str(pid))

    def replacing(self) -> int | None:
        """Read by the master in ``pre_fork``; a marker whose worker is gone is ignored there."""
        try:
            return int(self.replacing_file.read_text())
        except (OSError, ValueError):
            return None

    def ask_retire(self, pid: int) -> None:
        """Ask the master to lower its worker count when worker *pid* exits (``take_retire``, in ``child_exit``)."""
        write_atomically(self.ready_dir / f"retire-{pid}", str(pid))

    def take_retire(self, pid: int) -> bool:
        """Whether the exit of worker *pid* was asked to lower the worker count; the request is used up."""
        try:
            (self.ready_dir / f"retire-{pid}").unlink()
        except FileNotFoundError:
            return False
        return True

    def ready_pids(self) -> set[int]:
        try:
            return {int(p.name) for p in self.ready_dir.iterdir() if p.name.isdigit()}
        except OSError:
            return set()

    def remove(self) -> None:
        """On master exit: the markers, and the kit's own directory when nothing else is left in it."""
        shutil.rmtree(self.ready_dir, ignore_errors=True)
        if self.derived:
            try:
                self.control_socket.parent.rmdir()
            except OSError:
                pass  # another instance of this user still runs


def default_socket(bind: str) -> Path:
    """``$XDG_RUNTIME_DIR`` (else the temp dir) ``/hayhooks-gunicorn-<uid>/<bind>.ctl``."""
    base = os.environ.get("XDG_RUNTIME_DIR") or ""
    if not (base and os.path.isdir(base) and os.access(base, os.W_OK)):
        base = tempfile.gettempdir()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", bind.removeprefix("unix:")).strip("-") or "default"
    return Path(base) / f"hayhooks-gunicorn-{os.getuid()}" / f"{slug}.ctl"


def for_socket(control_socket: str | os.PathLike[str] | None, bind: str) -> Instance:
    """The instance of an explicit control socket path, else the derived one for *bind*."""
    if control_socket:
        return Instance(Path(control_socket).absolute(), derived=False)
    return Instance(default_socket(bind), derived=True)


# The instance of this master, set in on_starting; forked workers inherit it.
_current: Instance | None = None


def activate(instance: Instance) -> None:
    global _current
    _current = instance


def current() -> Instance | None:
    return _current
