"""What runs in the gunicorn master (the arbiter), and the CLI's side of talking to it.

``hooks`` are gunicorn's server hooks (start, ready, a worker's exit, exit); ``instance`` gives each master its
own control socket and the directory where workers leave their ready markers; ``readiness`` says "ready" (and
``READY=1`` to systemd) only once every worker has loaded the directory; ``control`` talks to gunicorn's control
socket; ``rolling`` replaces workers one at a time through it, each new one loading before an old one retires.
"""

from __future__ import annotations

from hayhooks_gunicorn.master.instance import Instance, for_socket

__all__ = ["Instance", "for_socket"]
