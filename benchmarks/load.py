"""Load generation: ``wrk`` when installed (``benchmarks/setup.sh``), else a Python asyncio client.

Both report the same :class:`LoadResult`, so scenarios do not care which one ran. The Python client shares
the interpreter's single core with its own bookkeeping, so its absolute figures are lower; ratios between
servers measured with the same client stay comparable.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.stats import percentile

WRK_MARK = "WRK_JSON "

# wrk calls done() once at the end; it prints one line the harness parses (latencies in microseconds).
WRK_SCRIPT = """\
wrk.method = "POST"
wrk.path = {path}
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{close}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int  # transport errors and non-2xx answers
    p50_ms: float | None
    p99_ms: float | None
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def generator_name() -> str:
    return "wrk" if wrk_path() else "python-asyncio"


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII text


def parse_wrk(output: str) -> LoadResult:
    for line in output.splitlines():
        if line.startswith(WRK_MARK):
            data = json.loads(line[len(WRK_MARK) :])
            errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
            return LoadResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                errors=errors,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                tool="wrk",
            )
    raise RuntimeError(f"wrk printed no summary:\n{output[-2000:]}")


def run_wrk(
    url: str, path: str, body: str, seconds: float, connections: int, threads: int = 1, close: bool = False
) -> LoadResult:
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    script = WRK_SCRIPT.format(
        path=lua_string(path),
        body=lua_string(body),
        close='wrk.headers["Connection"] = "close"' if close else "",
        mark=WRK_MARK,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-") as lua:
        lua.write(script)
        lua.flush()
        command = [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            lua.name,
            url,
        ]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(out.stdout + out.stderr)


def measure(
    url: str, path: str, body: str, seconds: float, connections: int, close: bool = False, threads: int = 1
) -> LoadResult:
    """Closed-loop load for *seconds* with *connections* in flight; wrk if available."""
    if wrk_path():
        return run_wrk(url, path, body, seconds, connections, threads=threads, close=close)
    return asyncio.run(python_load(url, path, body, seconds, connections, close=close))


# ---- Python client ---------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    requests: int = 0
    # why requests failed: an HTTP status code, "transport" or "unexpected body"
    reasons: Counter[str] = field(default_factory=Counter)

    def fail(self, reason: str) -> None:
        self.errors += 1
        self.reasons[reason] += 1


def request_bytes(method: str, path: str, host: str, body: bytes = b"", close: bool = False) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.read()
    return Response(status, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


Check = Callable[[str, Response], bool]


async def client_loop(
    host: str,
    port: int,
    requests: list[tuple[str, bytes]],
    deadline: float,
    tally: Tally,
    close: bool = False,
    check: Check | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """One connection's closed loop over *requests* (cycled) until *deadline* or *stop*; errors are counted."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    payloads = [(path, request_bytes("POST", path, f"{host}:{port}", body, close)) for path, body in requests]
    index = 0
    while time.monotonic() < deadline and not (stop and stop.is_set()):
        path, payload = payloads[index % len(payloads)]
        index += 1
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            await writer.drain()
            assert reader is not None
            response = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            tally.requests += 1
            tally.fail("transport")
            writer = _close(writer)
            continue
        tally.requests += 1
        tally.latencies.append(time.perf_counter() - started)
        if not 200 <= response.status < 300:
            tally.fail(f"HTTP {response.status}")
        elif check is not None and not check(path, response):
            tally.fail("unexpected body")
        if close or response.headers.get("connection", "").lower() == "close":
            writer = _close(writer)
    _close(writer)


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
    return None


def split_url(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port.rstrip("/"))


async def python_load(
    url: str, path: str, body: str, seconds: float, connections: int, close: bool = False
) -> LoadResult:
    host, port = split_url(url)
    tally = Tally()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(client_loop(host, port, [(path, body.encode())], deadline, tally, close) for _ in range(connections))
    )
    elapsed = time.monotonic() - started
    p50, p99 = percentile(tally.latencies, 50), percentile(tally.latencies, 99)
    return LoadResult(
        requests=tally.requests,
        seconds=elapsed,
        errors=tally.errors,
        p50_ms=None if p50 is None else p50 * 1000,
        p99_ms=None if p99 is None else p99 * 1000,
        tool="python-asyncio",
    )


def wrk_version() -> str | None:
    wrk = wrk_path()
    if wrk is None:
        return None
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    text = (out.stdout + out.stderr).strip().splitlines()
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
    return text[0].split(" Copyright")[0].strip() if text else "wrk"
