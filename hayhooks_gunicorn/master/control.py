"""gunicorn's control socket (``gunicorn/ctl``), as the kit's commands use it: worker list, count, add, remove."""

from __future__ import annotations

from typing import Any

from gunicorn.ctl.client import ControlClient, ControlClientError

from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.polling import poll_until


class RestartError(KitError):
    """A rolling replacement that could not go on; the message says how far it got."""


class ControlSocket:
    """One connection per command: the master stops and restarts its control server around every fork
    (``gunicorn/ctl/server.py``, fork handlers), which drops open connections."""

    def __init__(self, path: str, connect_timeout: float = 10.0, poll: float = 0.05) -> None:
        self.path = path
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
        """Back to the worker count before the roll; through the socket gunicorn then stops its oldest worker."""
        self.change_target(-1)

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
