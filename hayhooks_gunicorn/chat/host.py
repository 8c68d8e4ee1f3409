"""The chat host process: hayhooks' Chainlit app alone, served by uvicorn on the unix socket the master names.

Run by the master (``supervisor``) as ``python -m hayhooks_gunicorn.chat.host SOCKET``. It builds the app the way
hayhooks' ``create_app`` mounts its UI (``server/app.py::_mount_chainlit_ui``), without hayhooks' server: the UI
only talks to the server over HTTP, at ``settings.chainlit_base_url``, which the master points at its own listener.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

# EX_CONFIG (sysexits.h): the UI cannot start with this configuration.
EXIT_MISCONFIGURED = 78


def app_root() -> Path:
    """The directory Chainlit reads its config, theme and translations from: the custom app's, else hayhooks' own."""
    from hayhooks.settings import settings

    if settings.chainlit_app:
        return Path(settings.chainlit_app).absolute().parent
    from hayhooks.server.utils.chainlit_utils import DEFAULT_CHAINLIT_APP_DIR

    return DEFAULT_CHAINLIT_APP_DIR


def build_app() -> FastAPI:
    from fastapi import FastAPI
    from hayhooks.server.utils.chainlit_utils import mount_chainlit_app
    from hayhooks.settings import settings

    # chainlit.config reads CHAINLIT_APP_ROOT when first imported; hayhooks sets it when server/app.py is imported,
    # before mount_chainlit_app imports chainlit. This process never imports server/app.py, so it sets it here.
    os.environ.setdefault("CHAINLIT_APP_ROOT", str(app_root()))
    app = FastAPI(root_path=settings.root_path) if settings.root_path else FastAPI()
    mount_chainlit_app(app, target=settings.chainlit_app or None, path=settings.chainlit_path)
    return app


async def exit_with_master(master: int) -> None:
    """The host must not outlive a master that was killed without running its exit hook."""
    while os.getppid() == master:
        await asyncio.sleep(1.0)
    os._exit(0)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m hayhooks_gunicorn.chat.host SOCKET", file=sys.stderr)
        return 2
    import uvicorn

    try:
        app = build_app()
    except (ImportError, FileNotFoundError) as e:
        print(f"The Chainlit UI cannot start: {e}", file=sys.stderr)
        return EXIT_MISCONFIGURED
    from hayhooks_gunicorn.errors import KitError
    from hayhooks_gunicorn.sockets import bind_private

    master = os.getppid()
    # Bound here, 0600 from the start: uvicorn's own ``uds`` binding makes the socket 0666 (``uvicorn/server.py``).
    try:
        sock = bind_private(Path(argv[1]))
    except (OSError, KitError) as e:
        print(f"The Chainlit UI cannot listen on {argv[1]}: {e}", file=sys.stderr)
        return EXIT_MISCONFIGURED
    config = uvicorn.Config(app, fd=sock.fileno(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    async def serve() -> None:
        watch = asyncio.create_task(exit_with_master(master))
        try:
            await server.serve()
        finally:
            watch.cancel()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
