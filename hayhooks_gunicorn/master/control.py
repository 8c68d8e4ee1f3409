"""gunicorn's control socket (``gunicorn/ctl``), as the kit's commands use it: worker list, count, add, remove."""

from __future__ import annotations

from typing import Any

from gunicorn.ctl.client import ControlClient, ControlClientError

from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.master.instance import Instance
from hayhooks_gunicorn.polling import poll_until


class RestartError(KitError):
    """A rolling replacement that could not go on; the message says how far it got."""


class ControlSocket:
    """One connection per command: the master stops and restarts its control server around every fork
    (``gunicorn/ctl/server.py``, fork handlers), which drops open connections."""

    def __init__(
        self, path: str, connect_timeout: float = 10.0, poll: float = 0.05, instance: Instance | None = None
    ) -> None:
        self.path = path
        # Where this master's ready markers are: ``give_up`` leaves its request to the master there
        self.instance = instance
        self.connect_timeout = connect_timeout
        self.poll = poll

    def send(self, command: str) -> dict[str, Any]:
        """Send *command*, retrying while the socket is being re-created after a fork."""
        answers: list[dict[str, Any]] = []

        def sent() -> bool:
            try:
                with ControlClient(self.path, timeout=30) as client:
                    answers.append(client.send_command(command))
                return True
            except ControlClientError:
                return False

        try:
            poll_until(sent, self.connect_timeout, self.poll)
        except TimeoutError:
            return self._send_once(command)  # raises the client's own error, with its reason
        return answers[0]

    def _send_once(self, command: str) -> dict[str, Any]:
        with ControlClient(self.path, timeout=30) as client:
            answer: dict[str, Any] = client.send_command(command)
            return answer

    def workers(self) -> list[dict[str, Any]]:
        workers: list[dict[str, Any]] = self.send("show workers").get("workers", [])
        return workers

    def target(self) -> int:
        return int(self.send("show stats")["workers_target"])

    def give_up(self, started_after: int, kept: set[int]) -> None:
        """Back to the worker count before the roll, by stopping the new worker that did not get ready.

        ``worker remove`` would stop the oldest worker, a good one (``Arbiter.manage_workers`` stops the lowest
        ``age`` first), and keep the new one. The socket cannot pick the worker the count goes down with, so the
        request is left in the instance directory and the master lowers the count when it reaps that worker
        (``master.hooks.child_exit``), before its main loop could fork a replacement.
        """
        new = [w for w in self.workers() if w["age"] > started_after and w["pid"] not in kept]
        if self.instance is None or not new:
            self.change_target(-1)
            return
        pid = int(max(new, key=lambda w: w["age"])["pid"])
        self.instance.ask_retire(pid)
        self.send(f"worker kill {pid}")

    def change_target(self, delta: int) -> None:
        """``worker add``/``worker remove`` exactly once, even when a fork cut the connection before the answer."""
        expected = self.target() + delta
        if expected < 1:
            raise RestartError("Cannot go below one worker")
        try:
            self._send_once("worker add" if delta > 0 else "worker remove")
        except ControlClientError:
            if self.target() != expected:
                self.send("worker add" if delta > 0 else "worker remove")
