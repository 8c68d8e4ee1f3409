"""Merging workers' trace buffers, and asking a worker that is gone or silent, in one process."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from hayhooks_gunicorn.traces import peer
from hayhooks_gunicorn.traces.route import WORKER_TAG, merge


def trace(trace_id: str, start: int, duration: int = 10) -> dict[str, object]:
    return {"trace_id": trace_id, "start_time_ms": start, "duration_ms": duration, "tags": [], "span_count": 1}


def test_merge_keeps_the_most_recent_newest_first_and_tags_each_with_its_worker() -> None:
    answers = {
        "a:1": [trace("a-old", 100), trace("a-new", 400)],
        "b:2": [trace("b-mid", 300), trace("b-long", 50, 500)],
    }
    page, has_more = merge(answers, limit=3)
    assert [t["trace_id"] for t in page] == ["a-new", "b-mid", "b-long"]  # b-long ended at 550: recent
    assert has_more
    assert [t["worker"] for t in page] == ["a:1", "b:2", "b:2"]
    assert page[0]["tags"][0] == {"key": WORKER_TAG, "value": "a:1"}
    assert merge(answers, limit=4) == (merge(answers, limit=4)[0], False)


def test_asking_a_gone_or_silent_worker_gives_nothing_within_the_timeout(tmp_path: Path) -> None:
    assert asyncio.run(peer.ask(str(tmp_path / "gone.sock"), 10, 1.0)) is None
    path = Path("/tmp") / f"pt-silent-{time.monotonic_ns()}.sock"
    with socket.socket(socket.AF_UNIX) as silent:
        silent.bind(str(path))
        silent.listen()  # accepts connections in the kernel, never answers: a stopped worker
        try:
            started = time.monotonic()
            assert asyncio.run(peer.ask(str(path), 10, 0.3)) is None
            assert time.monotonic() - started < 2
        finally:
            path.unlink()


def test_a_worker_serves_its_buffer_on_its_socket(runtime_dir: Path) -> None:
    from hayhooks.server.utils.live_trace_buffer import clear_live_traces, record_live_span_start

    state = runtime_dir / "state"  # a short path: sun_path holds 108 bytes
    clear_live_traces()
    record_live_span_start(
        trace_id="t1", span_id="s1", parent_span_id=None, operation_name="run", start_time_ms=5, tags={}
    )
    try:
        peer.start(state)
        path = peer.listening_socket()
        assert path.startswith(str(state))
        answer = asyncio.run(peer.ask(path, 10, 2.0))
        assert answer is not None and [t["trace_id"] for t in answer] == ["t1"]
    finally:
        peer.stop()
        clear_live_traces()
    assert list(state.iterdir()) == []
    assert peer.listening_socket() == ""
