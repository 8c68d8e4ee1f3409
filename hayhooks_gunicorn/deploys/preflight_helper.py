"""The warm pre-flight helper: one long-lived process per caller that forks a fresh child for each check.

Started by ``helper_handle`` as ``python -m hayhooks_gunicorn.deploys.preflight_helper``. It imports what a check
needs (Haystack, hayhooks, the worker's app) once, then reads one JSON request a line on stdin and forks a child
per request; the child runs ``preflight_check.check_here`` as the cold ``python -m ...preflight_check`` process does,
so pipelines never see each other's modules. Several children run at once; the helper multiplexes their pipes and
writes one JSON reply a line to the protocol descriptor (the original stdout; its fd 1 then points at stderr, so a
stray print in the helper cannot corrupt the protocol). A child's own stdout and stderr go to a pipe whose tail is
relayed when the child exits without a result. The helper ends on stdin's end of file or when its parent is gone,
and kills every child still running.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hayhooks_gunicorn.deploys.preflight import LOADING_MARK
from hayhooks_gunicorn.deploys.preflight_check import check_here
from hayhooks_gunicorn.reload.scan import Kind

OUTPUT_TAIL = 4096  # bytes of a child's stdout/stderr kept for the error of a child that exited without a result


@dataclass
class Check:
    """One running child and what it sent so far."""

    id: int
    pid: int
    deadline: float
    started: float
    result_fd: int
    output_fd: int
    result: bytearray = field(default_factory=bytearray)
    output: bytearray = field(default_factory=bytearray)
    loading: bool = False  # it printed LOADING_MARK: the pipeline's code ran (kept apart: the output is a tail)

    def add_output(self, data: bytes) -> None:
        self.loading = self.loading or LOADING_MARK.encode() in bytes(self.output[-len(LOADING_MARK) :]) + data
        self.output = (self.output + data)[-OUTPUT_TAIL:]


def run_child(request: dict[str, Any], result_fd: int, output_fd: int) -> None:
    """In the forked child: look like the cold pre-flight process, run the check, write the result, exit."""
    code = 1
    try:
        os.setpgid(0, 0)  # a timeout kills what setup() started too
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(devnull)
        os.close(output_fd)
        os.chdir(request["cwd"])
        name, path, kind, pipelines_dir, server_routes = request["args"]
        loader: Kind = "yaml" if kind == "yaml" else "files"
        result = check_here(name, Path(path), loader, Path(pipelines_dir), server_routes)
        _write_all(result_fd, json.dumps(asdict(result)).encode())
        code = 0
    finally:
        # Never return into the helper's loop; skip interpreter shutdown (threads setup() started).
        os._exit(code)


class CheckServer:
    """The helper's loop: one JSON request a line in, a forked child per check, one JSON reply a line out."""

    def __init__(self, protocol_fd: int, idle_exit: float) -> None:
        self.protocol_fd = protocol_fd
        # With no check for this long, exit: the caller starts a new helper for its next check (a request sent
        # as this one exits gets no reply, and is checked the cold way: helper_handle).
        self.idle_exit = idle_exit
        self.last_active = time.monotonic()
        self.parent = os.getppid()
        self.selector = selectors.DefaultSelector()
        self.checks: dict[int, Check] = {}  # by pid
        self.pending = b""
        self.stdin_open = True
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_fds = (wake_read, wake_write)
        # SIGCHLD wakes the selector at once: a child that exited is reaped and answered without polling.
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_write)
        self.selector.register(0, selectors.EVENT_READ)
        self.selector.register(wake_read, selectors.EVENT_READ)

    def serve(self) -> None:
        while self.stdin_open and os.getppid() == self.parent and not self.idle():
            deadline = min((c.deadline for c in self.checks.values()), default=time.monotonic() + 1.0)
            events = self.selector.select(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            for key, _ in events:
                if key.fd == 0:
                    self.read_requests()
                elif key.fd == self.wake_fds[0]:
                    _read_available(key.fd)
                else:
                    self.read_child(key.fd)
            self.reap()
        for check in list(self.checks.values()):
            _kill(check.pid)
            os.waitpid(check.pid, 0)

    def idle(self) -> bool:
        if self.checks:
            self.last_active = time.monotonic()
            return False
        return time.monotonic() - self.last_active > self.idle_exit

    def read_requests(self) -> None:
        data = os.read(0, 65536)
        if not data:
            self.stdin_open = False
            return
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            if line.strip():
                self.start(json.loads(line))

    def start(self, request: dict[str, Any]) -> None:
        result_read, result_write = os.pipe()
        output_read, output_write = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self.close_own_fds()
            os.close(result_read)
            os.close(output_read)
            run_child(request, result_write, output_write)
        os.close(result_write)
        os.close(output_write)
        for fd in (result_read, output_read):
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ)
        deadline = started + float(request["timeout"])
        self.checks[pid] = Check(request["id"], pid, deadline, started, result_read, output_read)

    def close_own_fds(self) -> None:
        """In a child: drop every descriptor of the helper's (the protocol, other children's pipes)."""
        fds = {self.protocol_fd, *self.wake_fds}
        fds.update(fd for c in self.checks.values() for fd in (c.result_fd, c.output_fd))
        self.selector.close()
        for fd in fds:
            os.close(fd)

    def read_child(self, fd: int) -> None:
        check = next(c for c in self.checks.values() if fd in (c.result_fd, c.output_fd))
        data, ended = _read_available(fd)
        if ended:  # the child closed it and may go on running: stop watching it, or every select() returns at once
            self.selector.unregister(fd)
        if fd == check.result_fd:
            check.result += data
        else:
            check.add_output(data)

    def reap(self) -> None:
        now = time.monotonic()
        for check in list(self.checks.values()):
            if check.deadline <= now:
                _kill(check.pid)
                os.waitpid(check.pid, 0)
                self.finish(check, {"timeout": True})
                continue
            pid, status = os.waitpid(check.pid, os.WNOHANG)
            if pid == 0:
                continue
            # What the child wrote before it exited is in the pipes; a grandchild may hold them open: no waiting
            # for their end of file.
            check.result += _read_available(check.result_fd)[0]
            check.add_output(_read_available(check.output_fd)[0])
            if (result := _parse(check.result)) is not None:
                self.finish(check, {"result": result})
            else:
                output = check.output.decode(errors="replace")
                exit_code = os.waitstatus_to_exitcode(status)
                self.finish(check, {"exit": exit_code, "output": output, "loading": check.loading})

    def finish(self, check: Check, reply: dict[str, Any]) -> None:
        del self.checks[check.pid]
        for fd in (check.result_fd, check.output_fd):
            if fd in self.selector.get_map():
                self.selector.unregister(fd)
            os.close(fd)
        reply["id"] = check.id
        reply["seconds"] = time.monotonic() - check.started
        _write_all(self.protocol_fd, json.dumps(reply).encode() + b"\n")


def _read_available(fd: int) -> tuple[bytes, bool]:
    """What *fd* (non-blocking) holds now, and whether its end of file came."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return b"".join(chunks), False
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def _parse(result: bytes | bytearray) -> dict[str, Any] | None:
    """The child's result, unless it was cut short (killed while writing it)."""
    try:
        parsed = json.loads(result) if result else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _kill(pid: int) -> None:
    for kill in (os.killpg, os.kill):  # the group, unless the child did not get to make one
        try:
            kill(pid, signal.SIGKILL)
            return
        except ProcessLookupError:
            continue


def main() -> None:
    # What every check needs, imported once (the child of a check with server routes builds the worker's app).
    import hayhooks.server.app  # noqa: F401

    import hayhooks_gunicorn.reload.loader  # noqa: F401
    import hayhooks_gunicorn.reload.names  # noqa: F401
    import hayhooks_gunicorn.worker.app  # noqa: F401

    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout.flush()
    # Ctrl-C in a terminal reaches the caller too; the helper ends on the end of file that follows.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from hayhooks_gunicorn.settings import kit_settings

    CheckServer(protocol_fd, kit_settings().preflight_helper_idle).serve()


if __name__ == "__main__":
    main()
