"""One log stream: gunicorn's, uvicorn's and hayhooks' lines share a format with the pid on each; JSON on demand."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from conftest import WORKER_HEADER, echo_wrapper, wait_until, write_wrapper

from hayhooks_gunicorn.logs import JsonFormatter, TextFormatter

TEXT_LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(\d+)\] \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] "
)


def record(message: str, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, message, None, None)
    entry.kit_extra = extra
    return entry


def test_text_format_is_gunicorns_with_extras() -> None:
    line = TextFormatter().format(record('127.0.0.1:5 - "GET / HTTP/1.1" 200', request_id="ab12"))
    match = TEXT_LINE.match(line)
    assert match and int(match.group(1)) == record("x").process
    assert line.endswith('"GET / HTTP/1.1" 200 | request_id=ab12')


def test_json_format_has_one_object_per_line() -> None:
    entry = json.loads(JsonFormatter().format(record("hello\nworld", request_id="ab12")))
    assert entry["message"] == "hello\nworld" and entry["request_id"] == "ab12"
    assert entry["level"] == "INFO" and entry["logger"] == "access" and isinstance(entry["pid"], int)
    assert entry["time"].endswith("+00:00") and isinstance(entry["ts"], float)


@pytest.mark.integration
def test_every_line_has_one_format_and_a_pid_and_access_lines_follow_gunicorn(
    start_server, pipelines_dir: Path
) -> None:
    write_wrapper(pipelines_dir, "echo", echo_wrapper("hi"))
    server = start_server(pipelines_dir)
    answered: set[str] = set()

    def both_answered() -> bool:
        # Which worker accepts a fresh connection is up to the kernel: call until each has answered at least once.
        answered.add(server.post("/echo/run", json={}).headers[WORKER_HEADER].split(":")[1])
        return len(answered) == 2

    wait_until(both_answered, timeout=30)
    server.stop()
    lines = server.log_text().splitlines()
    heads = [line for line in lines if not line.startswith((" ", "Traceback", "\t")) and line.strip()]
    assert heads and all(TEXT_LINE.match(line) for line in heads), [h for h in heads if not TEXT_LINE.match(h)][:5]
    assert len(answered) == 2
    for pid in answered:
        # uvicorn's access line, through gunicorn's access log, tagged with hayhooks' request id.
        assert any(
            f"[{pid}] [INFO] 127.0.0.1:" in line and '"POST /echo/run HTTP/1.1" 200 | request_id=' in line
            for line in lines
        )
        # hayhooks' (loguru) lines and the kit's own carry the worker's pid too.
        assert any(f"[{pid}] [INFO] Worker {pid} loaded pipeline 'echo'" in line for line in lines)
    assert "\x1b[" not in server.log_text()  # uvicorn's coloured messages are plain


@pytest.mark.integration
def test_json_lines_and_access_log_off(start_server, pipelines_dir: Path, tmp_path: Path) -> None:
    """HAYHOOKS_GUNICORN_LOG_FORMAT=json, and gunicorn's `accesslog = None` silences access lines."""
    write_wrapper(pipelines_dir, "echo", echo_wrapper("hi"))
    config = tmp_path / "quiet.conf.py"
    config.write_text("from hayhooks_gunicorn.gunicorn_conf import *  # noqa: F403\n\naccesslog = None\n")
    server = start_server(pipelines_dir, env={"HAYHOOKS_GUNICORN_LOG_FORMAT": "json"}, args=["-c", str(config)])
    for _ in range(4):
        assert server.post("/echo/run", json={}).status_code == 200
    server.stop()
    entries = [json.loads(line) for line in server.log_text().splitlines() if line.strip()]
    assert entries and all({"time", "level", "pid", "message"} <= set(e) for e in entries)
    assert not [e for e in entries if e["logger"] == "access" or "POST /echo/run" in e["message"]]
    loaded = [e for e in entries if "loaded pipeline 'echo'" in e["message"]]
    assert len(loaded) == 2 and all(e["message"].startswith(f"Worker {e['pid']} ") for e in loaded)


def test_hayhooks_access_log_exclusions_still_apply() -> None:
    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from hayhooks.server.logger import _InterceptHandler

    from hayhooks_gunicorn.logs import AccessToGunicorn

    handler = AccessToGunicorn(_InterceptHandler(access_log_excluded_path_prefixes=["/healthz"]), Logger(Config()))

    def access(path: str) -> logging.LogRecord:
        args = ("127.0.0.1:5", "GET", path, "1.1", 200)
        return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)

    assert handler.excluded(access("/healthz"))
    assert not handler.excluded(access("/status"))
