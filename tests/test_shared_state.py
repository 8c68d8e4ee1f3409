"""A state directory others can write is verified, not trusted: files and sockets another user plants there are
neither listed by ``/cluster`` nor contacted by ``/traces``; a directory open to them without the sticky bit is
refused at start."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Server, wait_until
from other_user import as_other_user, directory, stop_other_user

from hayhooks_gunicorn.cluster.state_files import read_workers
from hayhooks_gunicorn.cluster.trust import StateDirError, check_state_dir

TOKEN = "trace-token"
# Listens as the other user on a trace socket of its own and notes every connection it gets.
LISTENER = """
import os, socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o777)
s.listen(16)
print("listening", flush=True)
while True:
    conn, _ = s.accept()
    with open(log, "a") as f:
        f.write("contacted\\n")
    conn.close()
"""
PLANT = """
import json, sys
path, body = sys.argv[1], sys.argv[2]
with open(path, "w") as f:
    f.write(body)
"""


def worker_file(host: str, pid: int, heartbeat: float, socket_path: Path) -> str:
    return json.dumps(
        {
            "host": host,
            "pid": pid,
            "heartbeat": heartbeat,
            "pipelines": {"planted": "x"},
            "traces_socket": str(socket_path),
        }
    )


@pytest.mark.integration
def test_another_users_files_in_a_shared_state_dir_are_ignored(
    start_server: Callable[..., Server], pipelines_dir: Path, runtime_dir: Path
) -> None:
    runtime_dir.chmod(0o755)  # the other user reaches the shared directory through it
    shared = directory(runtime_dir / "shared", 0o1777)  # a shared volume's usual mode
    notes = directory(runtime_dir / "notes", 0o777)
    contacts = notes / "contacts"
    planted_socket = shared / "otherhost-4242.traces.sock"
    listener = as_other_user(LISTENER, str(planted_socket), str(contacts), background=True)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"
        for pid, heartbeat in ((4242, time.time() + 86_400), (4343, time.time())):
            body = worker_file("otherhost", pid, heartbeat, planted_socket)
            assert as_other_user(PLANT, str(shared / f"otherhost-{pid}.json"), body).returncode == 0
        env = {
            "HAYHOOKS_GUNICORN_STATE_DIR": str(shared),
            "HAYHOOKS_GUNICORN_HEARTBEAT_TTL": "600",
            "HAYHOOKS_TRACING_TOKEN": TOKEN,
        }
        server = start_server(pipelines_dir, workers=2, env=env)
        for _ in range(6):
            view = server.get("/cluster").json()
            hosts = {w["worker"] for w in view["workers"]}
            assert len(hosts) == 2 and not any(h.startswith("otherhost") for h in hosts), view
        # A file of ours naming the other user's socket (or any path but its own): that worker is missing, never asked.
        ours = shared / "otherhost-5555.json"
        ours.write_text(worker_file("otherhost", 5555, time.time(), planted_socket))
        for _ in range(6):
            answer = server.get("/traces", headers={"Authorization": f"Bearer {TOKEN}"})
            assert answer.status_code == 200, answer.text
            workers = answer.json()["workers"]
            assert len(workers["answered"]) == 2  # the two real workers still ask each other
            assert workers["missing"] == ["otherhost:5555"]
        assert not contacts.exists(), "a planted trace socket was contacted"
        ignored = f"Ignoring state file '{shared / 'otherhost-4343.json'}'"
        wait_until(lambda: ignored in server.log_text())
        assert 1 <= server.log_text().count(ignored) <= server.workers
    finally:
        stop_other_user(listener)


@pytest.mark.integration
def test_a_state_dir_others_may_write_without_the_sticky_bit_is_refused_at_start(
    start_server: Callable[..., Server], pipelines_dir: Path, runtime_dir: Path
) -> None:
    open_dir = directory(runtime_dir / "open", 0o777)
    server = start_server(pipelines_dir, env={"HAYHOOKS_GUNICORN_STATE_DIR": str(open_dir)}, wait=False)
    assert server.proc.wait(timeout=60) != 0
    assert f"Refusing the state directory '{open_dir}'" in server.log_text()


def test_an_explicit_state_dir_is_created_private(tmp_path: Path) -> None:
    created = tmp_path / "a" / "state"
    check_state_dir(created, create=True)
    info = created.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    open_dir = directory(tmp_path / "open", 0o777)
    with pytest.raises(StateDirError, match="lacks the sticky bit"):
        check_state_dir(open_dir, create=True)
    open_dir.chmod(0o1777)
    check_state_dir(open_dir, create=True)


def test_a_heartbeat_from_the_future_is_stale(tmp_path: Path) -> None:
    now = time.time()
    for pid, heartbeat in ((1, now + 86_400), (2, now)):
        (tmp_path / f"elsewhere-{pid}.json").write_text(worker_file("elsewhere", pid, heartbeat, tmp_path / "x"))
    assert [w.pid for w in read_workers(tmp_path, ttl=10, now=now)] == [2]
