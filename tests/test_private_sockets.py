"""Every unix socket of the server's processes is private (0600, in a directory of ours), with the default paths and
with explicit ones: another local user cannot connect to any. A socket path someone else holds is an error at start.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PREFLIGHT_HELPER, Server, echo_wrapper, wait_until
from other_user import as_other_user, directory, other_user_connects

CHAT = {"HAYHOOKS_CHAINLIT_ENABLED": "true", "HAYHOOKS_TRACING_TOKEN": "t"}
LISTENING = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's Flags column


def process_tree(root: int) -> set[int]:
    pids, todo = {root}, [root]
    while todo:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(todo.pop())], capture_output=True, text=True).stdout
        children = {int(p) for p in out.split()}
        todo += children - pids
        pids |= children
    return pids


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with_link = os.readlink(f"/proc/{pid}/fd/{fd}") if os.path.exists(f"/proc/{pid}/fd/{fd}") else ""
            if match := re.fullmatch(r"socket:\[(\d+)\]", with_link):
                inodes.add(int(match[1]))
    except OSError:
        pass
    return inodes


def listening_unix_sockets(server: Server) -> dict[str, int]:
    """Path -> inode of every listening unix socket with a path that a process of *server* holds."""
    held = set().union(*(socket_inodes(pid) for pid in process_tree(server.proc.pid)))
    found = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and int(fields[3], 16) & LISTENING and int(fields[6]) in held:
            found[fields[7]] = int(fields[6])
    return found


def tcp_listener_inode(port: int) -> int:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            return int(fields[9])
    raise AssertionError(f"no TCP listener on port {port}")


def chat_host_pid(server: Server) -> int:
    out = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(server.proc.pid)], capture_output=True, text=True
    )
    (pid,) = [int(line.split()[0]) for line in out.stdout.splitlines() if "hayhooks_gunicorn.chat.host" in line]
    return pid


def check_all_private(server: Server, expected: list[str]) -> dict[str, int]:
    """Wait until the expected kinds of socket exist; each is 0600 and refuses the other user."""

    def complete() -> dict[str, int] | None:
        found = listening_unix_sockets(server)
        return found if all(any(kind in p for p in found) for kind in expected) else None

    found = wait_until(complete, timeout=60)
    assert isinstance(found, dict)
    for path in found:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        assert other_user_connects(Path(path)).startswith("refused"), path
    return found


@pytest.fixture
def reachable(runtime_dir: Path) -> Path:
    """The test's runtime directory, which the other user may enter: the modes of the kit's own must stop it."""
    runtime_dir.chmod(0o755)
    return runtime_dir


@pytest.mark.integration
@pytest.mark.usefixtures("reachable")
def cmdline(pid: int) -> str:
    """A process's command line; empty for one that ended since the tree was listed (a check child)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def test_no_socket_of_the_server_accepts_another_user_with_default_paths(
    start_server: Callable[..., Server], pipelines_dir: Path
) -> None:
    server = start_server(pipelines_dir, workers=2, env=CHAT)
    # A deploy call starts the worker's warm pre-flight helper: its process is in the tree searched below.
    deployed = server.post("/deploy_files", json={"name": "p", "files": {"pipeline_wrapper.py": echo_wrapper("p")}})
    assert deployed.status_code in (200, 202), deployed.text
    helpers = [pid for pid in process_tree(server.proc.pid) if PREFLIGHT_HELPER in cmdline(pid)]
    assert helpers, "no pre-flight helper runs"
    found = check_all_private(server, [".ctl", ".chat.sock", ".traces.sock"])
    assert len([p for p in found if p.endswith(".traces.sock")]) == 2
    assert tcp_listener_inode(server.port) not in socket_inodes(chat_host_pid(server))


@pytest.mark.integration
def test_no_socket_of_the_server_accepts_another_user_with_explicit_paths(
    start_server: Callable[..., Server], pipelines_dir: Path, reachable: Path
) -> None:
    shared = directory(reachable / "shared", 0o1777)
    control = reachable / "explicit" / "run" / "gunicorn.ctl"
    env = {**CHAT, "HAYHOOKS_GUNICORN_STATE_DIR": str(shared)}
    server = start_server(pipelines_dir, workers=2, env=env, args=["--control-socket", str(control)])
    found = check_all_private(server, [str(control), ".chat.sock", str(shared)])
    assert str(control) in found and str(control) + ".chat.sock" in found
    assert stat.S_IMODE(control.parent.stat().st_mode) == 0o700


@pytest.mark.integration
def test_a_socket_path_another_user_holds_is_an_error_at_start(
    start_server: Callable[..., Server], pipelines_dir: Path, reachable: Path
) -> None:
    run = directory(reachable / "run", 0o700)
    control = run / "gunicorn.ctl"
    planted = Path(f"{control}.chat.sock")
    planted.touch()
    nobody = int(as_other_user("import os; print(os.getuid())").stdout.read())  # type: ignore[union-attr]
    os.chown(planted, nobody, -1)
    server = start_server(pipelines_dir, env=CHAT, args=["--control-socket", str(control)], wait=False)
    assert server.proc.wait(timeout=60) != 0
    assert f"'{planted}' is a file that is not a socket of uid {nobody}" in server.log_text()
    run.chmod(0o755)  # a control directory others may enter is not private
    planted.unlink()
    server = start_server(pipelines_dir, args=["--control-socket", str(control)], wait=False)
    assert server.proc.wait(timeout=60) != 0
    assert f"Refusing directory '{run}'" in server.log_text()
