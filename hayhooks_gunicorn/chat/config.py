"""Whether the kit serves hayhooks' UI through its chat host, decided the same way in the master and every worker."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hayhooks_gunicorn.master import instance


def unavailable_reason() -> str | None:
    """Why hayhooks' UI cannot run here, in one sentence, or None; checked without importing Chainlit."""
    from hayhooks.settings import settings

    if importlib.util.find_spec("chainlit") is None:
        return "HAYHOOKS_CHAINLIT_ENABLED is set but Chainlit is not installed: pip install 'hayhooks[chainlit]'"
    if settings.chainlit_app and not Path(settings.chainlit_app).is_file():
        return f"HAYHOOKS_CHAINLIT_APP names {settings.chainlit_app}, which is not a file"
    return None


def take_over_ui(settings: Any) -> Path | None:
    """In a worker of the kit's master with hayhooks' UI enabled: the chat host's socket to forward to.

    hayhooks' ``create_app`` mounts a Chainlit of the worker's own when ``chainlit_enabled`` is set
    (``server/app.py::_mount_chainlit_ui``); the worker turns that off and forwards instead. Outside gunicorn (the
    app factory under plain uvicorn) there is one process, and hayhooks' own mount is left as it is.
    """
    current = instance.current()
    if not settings.chainlit_enabled or current is None:
        return None
    settings.chainlit_enabled = False
    # Without Chainlit nothing is mounted, as in hayhooks; the master has said why, once.
    return current.chat_socket if unavailable_reason() is None else None
