"""The master's side of the chat host: start it once the server listens, start it again when it exits, stop it last.

gunicorn's master reaps every child it has (``Arbiter.reap_workers`` calls ``os.waitpid(-1)``), so the host's exit
status may be gone before the supervisor asks for it (``ECHILD``). The supervisor therefore relies only on the fact
that the host exited, and restarts it with a growing delay. What can be known before starting (Chainlit missing, no
app file) is checked first, in one sentence.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hayhooks_gunicorn.chat.config import unavailable_reason
from hayhooks_gunicorn.sockets import is_ours

# A host that ran at least this long is healthy again: the next restart waits only FIRST_DELAY.
STABLE_AFTER = 30.0
FIRST_DELAY, LONGEST_DELAY = 0.5, 30.0
STOP_GRACE = 5.0


def backend_env(listeners: list[Any]) -> dict[str, str]:
    """``HAYHOOKS_HOST``/``HAYHOOKS_PORT`` for the host: the UI calls the server at ``settings.chainlit_base_url``,
    built from those, and under gunicorn the address the server really listens on is the first TCP listener."""
    for listener in listeners:
        sock = getattr(listener, "sock", None)
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        host, port = sock.getsockname()[:2]
        # hayhooks' chainlit_base_url maps 0.0.0.0 and :: to 127.0.0.1; an IPv6 address needs brackets in a URL.
        host = f"[{host}]" if ":" in host and host != "::" else host
        return {"HAYHOOKS_HOST": host, "HAYHOOKS_PORT": str(port)}
    return {}


class ChatHost:
    """One chat host process at a time, restarted when it exits, until ``stop``."""

    def __init__(self, socket_path: Path, env: dict[str, str], log: Any, inherited: tuple[int, ...] = ()) -> None:
        self.socket_path = socket_path
        # gunicorn's listening sockets are inheritable (``gunicorn/sock.py`` calls ``set_inheritable(True)``): the
        # host closes them on its way in, so it never holds the server's port (and accepts nothing on it).
        self.inherited = inherited
        self.env = {**os.environ, **env}
        self.log = log
        self.pid: int | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="chat-host", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> int:
        # os.posix_spawn, not subprocess.Popen: Popen waits on a pipe until the child has exec'd, and gunicorn forks
        # workers from its main thread at any time; a worker forked in that window keeps the pipe's write end open
        # (a fork without exec keeps every descriptor), and Popen then waits until that worker exits.
        # The host binds its socket itself, replacing one of ours a crashed host left (``sockets.bind_private``).
        argv = [sys.executable, "-m", "hayhooks_gunicorn.chat.host", str(self.socket_path)]
        closing = [(os.POSIX_SPAWN_CLOSE, fd) for fd in self.inherited]
        return os.posix_spawn(sys.executable, argv, self.env, file_actions=closing)

    def _supervise(self) -> None:
        delay = FIRST_DELAY
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.pid = pid = self._spawn()
            except OSError as e:
                self.log.error("Could not start the Chainlit UI host: %s", e)
                return
            self.log.info("Chainlit UI host started (pid %d), serving %s", pid, self.socket_path)
            wait_for_exit(pid)
            if self._stopping.is_set():
                return
            ran = time.monotonic() - started
            delay = FIRST_DELAY if ran >= STABLE_AFTER else min(delay * 2, LONGEST_DELAY)
            self.log.warning(
                "Chainlit UI host (pid %d) exited after %.0fs; starting it again in %.1fs", pid, ran, delay
            )
            self._stopping.wait(delay)

    def stop(self) -> None:
        """Stop the host (TERM, then KILL after ``STOP_GRACE``) and remove its socket."""
        self._stopping.set()
        if (pid := self.pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            self._thread.join(timeout=STOP_GRACE)
            if self._thread.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._thread.join(timeout=1.0)
        if is_ours(self.socket_path):
            self.socket_path.unlink(missing_ok=True)


def wait_for_exit(pid: int) -> None:
    """Block until *pid* exits. Its status may already be reaped by gunicorn's ``waitpid(-1)``: ECHILD then."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# The master's chat host, started in when_ready and stopped in on_exit.
_host: ChatHost | None = None


def start(server: Any, socket_path: Path) -> None:
    """Start the chat host when hayhooks' UI is enabled; say in one sentence why not when it cannot run."""
    global _host
    if (reason := unavailable_reason()) is not None:
        server.log.error("%s; /chat is not served", reason)
        return
    env = backend_env(server.LISTENERS)
    if not env:
        server.log.warning("The Chainlit UI calls the server over HTTP, but it listens on no TCP address")
    inherited = tuple(listener.sock.fileno() for listener in server.LISTENERS if getattr(listener, "sock", None))
    _host = ChatHost(socket_path, env, server.log, inherited)
    _host.start()


def stop() -> None:
    if _host is not None:
        _host.stop()
