"""Production lifecycle against real gunicorn masters: readiness, health, rolling restart, signals, supervision."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import WORKER_HEADER, Server, echo_wrapper, kit_cli, wait_until, write_wrapper

pytestmark = pytest.mark.integration

LOADED_AT = '''
import time

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        time.sleep({sleep})
        self.loaded_at = time.time()

    def run_api(self, text: str = "") -> dict:
        """Say when this worker finished loading this pipeline.

        Args:
            text: ignored
        """
        return {{"loaded_at": self.loaded_at}}
'''

SLOW_RUN = '''
import time
from pathlib import Path

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, marker: str, seconds: float) -> dict:
        """Touch *marker*, then take *seconds* to answer.

        Args:
            marker: file created when the request starts running
            seconds: how long the request runs
        """
        Path(marker).touch()
        time.sleep(seconds)
        return {"slept": seconds}
'''


def serves_all(server: Server, expected: dict[str, object]) -> bool:
    """Every worker answers each pipeline's run with *expected* (a reply, or a status code)."""

    def check(name: str, want: object) -> bool:
        def ok(r: httpx.Response) -> bool:
            got = r.json().get("result", {}).get("reply") if r.status_code == 200 else r.status_code
            return got == want

        return server.every_worker(ok, "POST", f"/{name}/run", json={"text": "x"})

    return all(check(name, want) for name, want in expected.items())


def test_ready_only_once_every_worker_loaded_then_healthy(start_server, pipelines_dir: Path, runtime_dir: Path) -> None:
    """systemd hears READY=1 only after both workers loaded a slow pipeline; /healthz and /readyz answer 200."""
    write_wrapper(pipelines_dir, "slow", LOADED_AT.format(sleep=1.5))
    # Pipelines may be called like the kit's routes: their routes are /healthz/run and /readyz/run.
    write_wrapper(pipelines_dir, "healthz", echo_wrapper("pipeline healthz"))
    write_wrapper(pipelines_dir, "readyz", echo_wrapper("pipeline readyz"))
    notify_path = runtime_dir / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(30)
        server = start_server(pipelines_dir, env={"NOTIFY_SOCKET": str(notify_path)}, wait=False)
        message = notify.recv(4096).decode()
        ready_dir = next(runtime_dir.glob("hayhooks-gunicorn-*/127.0.0.1-*.ctl.ready"))
        markers = {p.name for p in ready_dir.iterdir()}
        notify.settimeout(0.5)
        with pytest.raises(TimeoutError):
            notify.recv(4096)  # gunicorn's own early READY=1 was never sent
    assert message.startswith("READY=1\n"), message
    assert "2 workers serve the pipelines directory" in message
    # At that moment both workers had loaded the slow pipeline and were serving.
    assert markers == {str(pid) for pid in server.worker_pids()}
    log = server.log_text()
    for pid in server.worker_pids():
        assert f"Worker {pid} serves 3 pipeline(s)" in log

    server.wait_ready()
    healthz = server.by_worker("GET", "/healthz", calls=12)
    assert len(healthz) == 2 and all(
        r.status_code == 200 and r.json()["status"] == "ok" for rs in healthz.values() for r in rs
    )
    readyz = server.by_worker("GET", "/readyz", calls=12)
    assert len(readyz) == 2
    for responses in readyz.values():
        for response in responses:
            assert response.status_code == 200
            assert response.json()["status"] == "ready"
            assert response.json()["pipelines"] == ["healthz", "readyz", "slow"]
    assert serves_all(server, {"healthz": "pipeline healthz", "readyz": "pipeline readyz"})


ACTIVATE = """
import os
import sys

# What systemd does for a socket-activated service: the listening socket as fd 3, LISTEN_FDS, LISTEN_PID.
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.executable, [sys.executable, "-m", "gunicorn", *sys.argv[2:]])
"""


def test_socket_activation_notify_and_reload_as_the_systemd_unit_runs_them(
    pipelines_dir: Path, runtime_dir: Path, tmp_path: Path
) -> None:
    """The unit's ExecStart (inherited socket, explicit control socket, NOTIFY_SOCKET) and ExecReload."""
    write_wrapper(pipelines_dir, "echo", echo_wrapper("hi"))
    control = runtime_dir / "run" / "gunicorn.ctl"
    log = tmp_path / "activated.log"
    with (
        socket.socket() as listener,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify,
        log.open("wb") as out,
    ):
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        notify.bind(str(runtime_dir / "notify.sock"))
        notify.settimeout(60)
        env = {
            **os.environ,
            "HAYHOOKS_PIPELINES_DIR": str(pipelines_dir),
            "HAYHOOKS_GUNICORN_STATE_DIR": str(runtime_dir / "state"),
            "NOTIFY_SOCKET": str(runtime_dir / "notify.sock"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        args = ["-c", "python:hayhooks_gunicorn.gunicorn_conf", "--workers", "2", "--control-socket", str(control)]
        command = [sys.executable, "-c", ACTIVATE, str(listener.fileno()), *args]
        proc = subprocess.Popen(command, pass_fds=(listener.fileno(),), env=env, cwd=tmp_path, stdout=out, stderr=out)
        server = Server(proc, listener.getsockname()[1], log, workers=2)
        try:
            assert notify.recv(4096).startswith(b"READY=1\n")
            listener.close()  # only gunicorn holds it now
            server.wait_ready()
            assert serves_all(server, {"echo": "hi"})
            before = server.worker_pids()
            reload = kit_cli("restart", "--control-socket", str(control))
            assert reload.returncode == 0, reload.stderr
            assert not server.worker_pids() & before and serves_all(server, {"echo": "hi"})
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(timeout=30) == 0
        finally:
            server.stop()
    assert f"Listening at: http://127.0.0.1:{server.port}" in server.log_text()
    assert f"Control socket listening at {control}" in server.log_text()
    assert sorted(p.name for p in control.parent.iterdir()) == []  # socket and ready markers removed on exit


LOAD_SECONDS = 2


def test_rolling_restart_under_load_has_no_failure_and_no_wait(
    start_server, pipelines_dir: Path, runtime_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hayhooks-gunicorn restart` replaces both workers while clients call a pipeline whose setup() takes 2 s:
    every request succeeds, and every request was sent after the answering worker had loaded the pipeline."""
    write_wrapper(pipelines_dir, "slow", LOADED_AT.format(sleep=LOAD_SECONDS))
    server = start_server(pipelines_dir)
    before = server.worker_pids()
    # Another instance on this host (same user, same runtime directory) has a control socket of its own.
    neighbour = start_server(pipelines_dir, workers=1)
    neighbour_pids = neighbour.worker_pids()
    results: list[tuple[float, int | str, float | None, str]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            sent = time.time()
            try:
                with httpx.Client(base_url=server.url, timeout=30) as http:
                    response = http.post("/slow/run", json={})
                body = response.json() if response.status_code == 200 else {}
                loaded = body.get("result", {}).get("loaded_at")
                results.append((sent, response.status_code, loaded, response.headers.get(WORKER_HEADER, "?")))
            except httpx.HTTPError as e:
                results.append((sent, type(e).__name__, None, "?"))

    with ThreadPoolExecutor(max_workers=3) as pool:
        for _ in range(3):
            pool.submit(client)
        wait_until(lambda: len(results) > 20, timeout=30)
        restart = kit_cli("restart", "--bind", f"127.0.0.1:{server.port}", env={"XDG_RUNTIME_DIR": str(runtime_dir)})
        after = server.worker_pids()
        count = len(results)
        wait_until(lambda: len(results) > count + 20, timeout=30)
        stop.set()

    assert restart.returncode == 0, restart.stderr
    assert "Restarted 2 worker(s)" in restart.stdout
    assert not after & before and len(after) == 2
    failures = [r for r in results if r[1] != 200]
    # Waiting for the load means being held through the 2 s setup(); a connection that sits a few milliseconds in the
    # shared listen backlog while the old worker is not scheduled, and is then accepted by the new worker the moment
    # it serves, did not (seen once in CI: sent 1.2 ms before the load ended).
    waited = [r for r in results if r[1] == 200 and r[0] < r[2] - LOAD_SECONDS / 4]
    answered_by = {r[3] for r in results}
    with capsys.disabled():
        print(
            f"\nrolling restart under load: {len(results)} requests sent, {len(failures)} failed, {len(waited)} waited"
        )
    assert failures == []
    assert waited == []  # no request was answered by a worker that loaded the pipeline after it was sent
    assert {f"{socket.gethostname()}:{pid}" for pid in before | after} <= answered_by
    assert neighbour.worker_pids() == neighbour_pids
    sockets = {p.name for p in runtime_dir.glob("hayhooks-gunicorn-*/*.ctl")}
    assert sockets == {f"127.0.0.1-{server.port}.ctl", f"127.0.0.1-{neighbour.port}.ctl"}
    server.stop()
    assert {p.name for p in runtime_dir.glob("hayhooks-gunicorn-*/*.ctl")} == {f"127.0.0.1-{neighbour.port}.ctl"}


def test_sigkill_of_a_worker_is_replaced_by_one_serving_the_directory_as_it_is_now(
    start_server, pipelines_dir: Path
) -> None:
    write_wrapper(pipelines_dir, "kept", echo_wrapper("kept v1"))
    write_wrapper(pipelines_dir, "removed", echo_wrapper("removed"))
    server = start_server(pipelines_dir)
    before = server.worker_pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    write_wrapper(pipelines_dir, "kept", echo_wrapper("kept v2"))
    write_wrapper(pipelines_dir, "added", echo_wrapper("added"))
    (pipelines_dir / "removed" / "pipeline_wrapper.py").unlink()
    (pipelines_dir / "removed").rmdir()

    def replaced_and_current() -> bool:
        """Both live workers (so the new one) answered each call as the directory is now."""
        pids = server.worker_pids()
        return (
            victim not in pids
            and len(pids - before) == 1
            and serves_all(server, {"kept": "kept v2", "added": "added", "removed": 404})
        )

    try:
        wait_until(replaced_and_current, timeout=30)
    except AssertionError as e:
        raise AssertionError(
            f"{e}; workers {server.worker_pids()} (before {before}):\n{server.log_text()[-4000:]}"
        ) from e
    assert f"Worker (pid:{victim}) was sent SIGKILL" in server.log_text()


def test_max_requests_recycling_keeps_every_worker_current(start_server, pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "echo", echo_wrapper("v1"))
    server = start_server(pipelines_dir, args=["--max-requests", "15", "--max-requests-jitter", "0"])
    first = server.worker_pids()
    write_wrapper(pipelines_dir, "echo", echo_wrapper("v2"))
    statuses: list[int] = []

    def recycled_and_current() -> bool:
        responses = server.by_worker("POST", "/echo/run", calls=12, json={"text": "x"})
        statuses.extend(r.status_code for rs in responses.values() for r in rs)
        return not (server.worker_pids() & first) and serves_all(server, {"echo": "v2"})

    wait_until(recycled_and_current, timeout=60)
    assert set(statuses) == {200}
    assert "Maximum request limit of 15 exceeded" in server.log_text()


def test_sigterm_lets_in_flight_requests_finish_and_exits_0(start_server, pipelines_dir: Path, tmp_path: Path) -> None:
    write_wrapper(pipelines_dir, "slowrun", SLOW_RUN)
    server = start_server(pipelines_dir, args=["--graceful-timeout", "30"])
    marker = tmp_path / "running"
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(server.post("/slowrun/run", json={"marker": str(marker), "seconds": 2}))
        except httpx.HTTPError as e:
            outcome.append(e)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(marker.exists, timeout=15)
    server.proc.send_signal(signal.SIGTERM)
    caller.join(timeout=30)
    assert server.proc.wait(timeout=30) == 0
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.Response), outcome
    assert outcome[0].status_code == 200 and outcome[0].json()["result"] == {"slept": 2}
    assert "SIGKILL" not in server.log_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["SIGINT", "SIGQUIT"])
def test_sigint_and_sigquit_stop_quickly(start_server, pipelines_dir: Path, tmp_path: Path, sig: int) -> None:
    """A quick shutdown does not wait for a 60 s request nor for graceful_timeout (60 s): no worker needs SIGKILL."""
    write_wrapper(pipelines_dir, "slowrun", SLOW_RUN)
    server = start_server(pipelines_dir, args=["--graceful-timeout", "60"])
    marker = tmp_path / "running"
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(server.post("/slowrun/run", json={"marker": str(marker), "seconds": 60}))
        except httpx.HTTPError as e:
            outcome.append(e)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(marker.exists, timeout=15)
    server.proc.send_signal(sig)
    assert server.proc.wait(timeout=50) == 0
    caller.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError), outcome  # cut, not awaited
    log = server.log_text()
    assert "SIGKILL" not in log
    assert "Shutting down: Master" in log
