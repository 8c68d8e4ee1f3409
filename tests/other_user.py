"""Another local user, for tests of what the server's files and sockets let it do: ``nobody``, through ``runuser``
(the tests run as root, as CI does). It runs the system Python: the virtualenv may not be readable by it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
from pathlib import Path

from conftest import require_tool

PYTHON = "/usr/bin/python3"
USER = "nobody"


def directory(path: Path, mode: int) -> Path:
    """Create *path* with exactly *mode* (the umask left out): a shared volume's 1777, a careless 777, a private 700."""
    path.mkdir()
    path.chmod(mode)
    return path


def as_other_user(code: str, *args: str, background: bool = False) -> subprocess.Popen[str]:
    """Run *code* as ``nobody``; *args* reach it as ``sys.argv[1:]``."""
    if os.getuid() != 0:
        import pytest

        pytest.skip("acting as another user needs root (runuser)")
    runuser = require_tool("runuser", "util-linux")
    command = [runuser, "-u", USER, "--", PYTHON, "-c", textwrap.dedent(code), *args]
    # A session of its own: stop_other_user ends the whole group (runuser waits for its child; killing runuser
    # alone would leave the child running).
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    if not background:
        proc.wait(timeout=60)
    return proc


def stop_other_user(proc: subprocess.Popen[str]) -> None:
    """End a background process of :func:`as_other_user` and its children, by its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    print("connected")
except OSError as e:
    print(f"refused: {e}")
"""


def other_user_connects(path: Path) -> str:
    """What ``nobody`` gets when it connects to the unix socket at *path*: ``connected`` or ``refused: <why>``."""
    proc = as_other_user(CONNECT, str(path))
    assert proc.stdout is not None
    return proc.stdout.read().strip()
