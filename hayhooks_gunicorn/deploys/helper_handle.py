"""The caller's side of the warm pre-flight helper (``preflight_helper``): start it, ask it, notice it is gone.

One helper per calling process, started on the first check: a gunicorn worker, the CLI and the master each start
their own. A process forked from one that has a helper (gunicorn forks workers from the master) closes its copies
of the helper's pipes at once (the helper must see its caller's end of file, not a worker's open copy) and starts
its own helper when it first needs one. A helper is also replaced when the caller's environment or working
directory changed, since a check runs with those of the helper. ``ask`` returns ``None`` when the helper cannot
start or dies before it answers: the caller then runs the check the cold way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from hayhooks_gunicorn.forking import no_fork_while_starting
from hayhooks_gunicorn.settings import kit_settings

# How long past a check's own timeout (which the helper enforces) the caller waits before it gives up on the helper.
GRACE_S = 10.0


class HelperProcess:
    """One running helper process and the checks waiting for its replies."""

    def __init__(self, key: tuple[object, ...], env: Mapping[str, str]) -> None:
        self.key = key
        self.lock = threading.Lock()  # one request line at a time; the reply table
        self.waiting: dict[int, Future[dict[str, Any] | None]] = {}
        self.next_id = 0
        self.alive = True
        command = [sys.executable, "-m", "hayhooks_gunicorn.deploys.preflight_helper"]
        # The caller keeps one end of each pipe; the helper's ends are closed here before any fork can copy them.
        with no_fork_while_starting():
            to_helper, self.request_fd = os.pipe()
            self.reply_fd, from_helper = os.pipe()
            try:
                self.process = subprocess.Popen(
                    command, stdin=to_helper, stdout=from_helper, stderr=subprocess.DEVNULL, env=dict(env)
                )
            except BaseException:
                os.close(self.request_fd)
                os.close(self.reply_fd)
                raise
            finally:
                os.close(to_helper)
                os.close(from_helper)
        threading.Thread(target=self.read_replies, name="preflight-helper-replies", daemon=True).start()

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        future: Future[dict[str, Any] | None] = Future()
        with self.lock:
            if not self.alive:
                return None
            self.next_id += 1
            request = {**request, "id": self.next_id, "timeout": timeout}
            self.waiting[self.next_id] = future
            try:
                data = json.dumps(request).encode() + b"\n"
                while data:
                    data = data[os.write(self.request_fd, data) :]
            except OSError:  # the helper is gone: the reader thread answers every waiting check with None
                pass
        try:
            return future.result(timeout=timeout + GRACE_S)
        except FutureTimeout:
            self.kill()  # it stopped answering; the next check starts a new one
            return {"timeout": True, "seconds": timeout}

    def read_replies(self) -> None:
        pending = b""
        try:
            while data := os.read(self.reply_fd, 65536):
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    reply = json.loads(line)
                    with self.lock:
                        future = self.waiting.pop(reply.pop("id"), None)
                    if future is not None:
                        future.set_result(reply)
        except (OSError, ValueError):
            pass
        with self.lock:
            self.alive = False
            waiting, self.waiting = self.waiting, {}
            self.close_fds()
        for future in waiting.values():
            future.set_result(None)
        self.process.wait()

    def kill(self) -> None:
        self.process.kill()  # its end of file ends read_replies, which answers the checks still waiting

    def stop(self) -> None:
        """Let the helper end: it sees the end of file of its requests, and read_replies its end of file."""
        with self.lock:
            self.alive = False
            with _fd_lock:
                if self.request_fd >= 0:
                    os.close(self.request_fd)
                    self.request_fd = -1

    def close_fds(self) -> None:
        with _fd_lock:  # never while a fork copies them (the child closes its copies by number)
            for fd in (self.request_fd, self.reply_fd):
                if fd >= 0:
                    os.close(fd)
            self.request_fd = self.reply_fd = -1


_current: HelperProcess | None = None
_lock = threading.Lock()
_fd_lock = threading.Lock()
# Helpers of the process this one was forked from. Kept referenced: their Popen objects must never be collected
# (Popen.__del__ would warn about, and try to reap, a process that is not this process's child).
_inherited: list[HelperProcess] = []


def ask(request: dict[str, Any], timeout: float, env: Mapping[str, str]) -> dict[str, Any] | None:
    """Send *request* to this process's helper (started now if needed); ``None``: run the check the cold way."""
    global _current
    if kit_settings().preflight_helper_idle == 0:
        return None
    key = (os.getpid(), os.getcwd(), tuple(sorted(env.items())))
    with _lock:
        helper = _current
        if helper is None or helper.key != key or not helper.alive:
            if helper is not None:
                helper.stop()
            try:
                helper = _current = HelperProcess(key, env)
            except OSError:
                _current = None
                return None
    return helper.ask({**request, "cwd": key[1]}, timeout)


def stop() -> None:
    """End this process's helper, if any, and wait for it (it also ends by itself when this process ends)."""
    global _current
    with _lock:
        helper, _current = _current, None
    if helper is not None and helper.key[0] == os.getpid():
        helper.stop()
        helper.process.wait()


def _forget_in_child() -> None:
    """A forked process must not hold its parent's helper pipes: the helper would never see its end of file."""
    global _current, _lock, _fd_lock
    _lock, _fd_lock = threading.Lock(), threading.Lock()
    if _current is not None:
        helper, _current = _current, None
        helper.alive = False
        for fd in (helper.request_fd, helper.reply_fd):
            if fd >= 0:
                os.close(fd)
        _inherited.append(helper)


# The fork waits while a helper's pipe is being closed, so the child's copies are exactly the numbers recorded.
os.register_at_fork(before=lambda: _fd_lock.acquire(), after_in_parent=lambda: _fd_lock.release())
os.register_at_fork(after_in_child=_forget_in_child)
