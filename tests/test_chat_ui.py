"""hayhooks' Chainlit UI on a real gunicorn with 2 workers: one chat host, every worker forwarding to it.

Sessions are driven the three ways a user's browser can: raw engine.io long-polling with every request on a new
connection (so consecutive requests of one session reach either worker), python-socketio over polling and over
websocket, and a real headless Chromium that types a message and reads the pipeline's answer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from chat_client import SocketIOChat, polling_session
from conftest import REPO, Server, require_tool, wait_until

pytestmark = pytest.mark.integration
# Not importorskip: importing chainlit writes .chainlit/ into the working directory (chainlit/config.py).
if importlib.util.find_spec("chainlit") is None:
    pytest.skip("Chainlit is not installed: pip install -e '.[test]' installs it", allow_module_level=True)

CHAT = {"HAYHOOKS_CHAINLIT_ENABLED": "true"}
CONNECTED = "Connected to **echo_stream**"


def start_chat_server(start: Callable[..., Server], pipelines: Path) -> Server:
    # The bundled chat example, alone: the UI selects the only chat pipeline by itself.
    shutil.copytree(REPO / "examples" / "pipelines" / "echo_stream", pipelines / "echo_stream")
    server = start(pipelines, workers=2, env=CHAT)
    wait_until(lambda: server.get("/chat/").status_code == 200, timeout=30)
    return server


@pytest.fixture(scope="module")
def shared_chat_server(start_module_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Server:
    """One server for the tests that leave it as they found it."""
    return start_chat_server(start_module_server, tmp_path_factory.mktemp("chat-pipelines"))


@pytest.fixture
def chat_server(start_server: Callable[..., Server], pipelines_dir: Path) -> Server:
    return start_chat_server(start_server, pipelines_dir)


def chat_host_pids(server: Server) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(server.proc.pid)], capture_output=True, text=True)
    return {int(line.split()[0]) for line in out.stdout.splitlines() if "hayhooks_gunicorn.chat.host" in line}


def session_succeeds(server: Server) -> bool:
    try:
        return bool(polling_session(server.url, CONNECTED, timeout=10))
    except AssertionError as e:  # 503 while the host starts, or a session the killed host had opened
        print(e)
        return False


def gone(pid: int) -> bool:
    """Exited: no process, or a zombie waiting for the parent (here: init) to reap it."""
    try:
        return "(zombie)" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_polling_sessions_reach_either_worker_and_all_succeed(shared_chat_server: Server) -> None:
    assert shared_chat_server.get("/chat/").status_code == 200
    sessions = [polling_session(shared_chat_server.url, CONNECTED) for _ in range(10)]
    workers = {w for session in sessions for w in session}
    across = sum(1 for session in sessions if len(set(session)) > 1)
    print(f"10 of 10 polling sessions succeeded; {across} had requests answered by both workers {sorted(workers)}")
    assert len(workers) == 2 and across >= 1


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_a_chat_over_socketio_gets_the_pipelines_answer(shared_chat_server: Server, transport: str) -> None:
    async def chat() -> None:
        async with SocketIOChat(shared_chat_server.url, transport) as session:
            for n in range(3):
                await session.say(f"hello {n} over {transport}")

    asyncio.run(chat())
    assert len(chat_host_pids(shared_chat_server)) == 1


def test_an_open_chat_survives_the_replacement_of_every_worker(chat_server: Server) -> None:
    """The session lives in the host: the client's reconnect through a new worker resumes it, with no new greeting."""
    host = chat_host_pids(chat_server)
    old_workers = chat_server.worker_pids() - host  # the host is a child of the master too

    async def chat() -> SocketIOChat:
        async with SocketIOChat(chat_server.url, "websocket") as session:
            await session.say("before")
            os.kill(chat_server.proc.pid, signal.SIGHUP)  # gunicorn: new workers, then the old ones stop

            def replaced() -> bool:
                return not chat_server.worker_pids() & old_workers and session.connects >= 2

            await asyncio.to_thread(wait_until, replaced, 60)
            await session.say("after")
            return session

    session = asyncio.run(chat())
    assert session.count("Connected to") == 1
    assert chat_host_pids(chat_server) == host


def test_a_browser_sends_a_message_and_sees_the_answer(shared_chat_server: Server) -> None:
    chromium = require_tool("chromium", "chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{shared_chat_server.url}/chat/")
            page.get_by_text("Connected to").wait_for(timeout=30_000)
            box = page.locator("#chat-input")
            box.fill("hello from the browser")
            box.press("Enter")
            page.get_by_text("Echo: hello from the browser").wait_for(timeout=30_000)
        finally:
            browser.close()


def test_the_master_restarts_a_chat_host_that_died_and_stops_it_last(chat_server: Server) -> None:
    (first,) = chat_host_pids(chat_server)
    os.kill(first, signal.SIGKILL)
    # A new host serves new sessions; meanwhile /chat answers 503 rather than hang.
    wait_until(lambda: chat_host_pids(chat_server) - {first}, timeout=15)
    wait_until(lambda: session_succeeds(chat_server), timeout=30, interval=0.5)
    assert f"Chainlit UI host (pid {first}) exited" in chat_server.log_text()
    (second,) = chat_host_pids(chat_server)
    socket_files = list(Path("/tmp").glob(f"hg-*/hayhooks-gunicorn-*/127.0.0.1-{chat_server.port}.ctl.chat.sock"))
    assert len(socket_files) == 1
    chat_server.stop()
    wait_until(lambda: gone(second), timeout=10)
    assert not [f for f in socket_files if f.exists()]


def test_a_chat_host_outlives_no_master(chat_server: Server) -> None:
    """A master killed without its exit hook: the host notices it has a new parent and exits."""
    (host,) = chat_host_pids(chat_server)
    workers = chat_server.worker_pids()
    chat_server.proc.kill()
    chat_server.proc.wait(timeout=10)
    for pid in workers:  # gunicorn's workers notice a new parent too (Worker.notify); do not wait for them here
        os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: not Path(f"/proc/{host}").exists() or "zombie" in Path(f"/proc/{host}/status").read_text().lower(),
        timeout=10,
    )


def test_a_missing_chat_app_is_one_sentence_from_the_master(
    start_server: Callable[..., Server], pipelines_dir: Path
) -> None:
    shutil.copytree(REPO / "examples" / "pipelines" / "echo_stream", pipelines_dir / "echo_stream")
    env = {**CHAT, "HAYHOOKS_CHAINLIT_APP": str(pipelines_dir / "no-such-app.py")}
    server = start_server(pipelines_dir, workers=2, env=env)
    assert server.get("/chat/").status_code == 404  # as hayhooks: nothing mounted
    assert server.post("/echo_stream/run", json={"text": "x"}).status_code == 200
    log = server.log_text()
    assert log.count("which is not a file") == 1, log[-3000:]
    assert not chat_host_pids(server)
