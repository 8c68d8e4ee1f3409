"""Helpers shared by the deploy, cluster and admin CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import Server

HAYHOOKS_CLI = str(Path(sys.executable).with_name("hayhooks"))

WRAPPER = '''
from pathlib import Path

from hayhooks import BasePipelineWrapper

from .helper import REPLY


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.note = (Path(__file__).parent / "data" / "note.txt").read_text()

    def run_api(self, text: str = "") -> dict:
        """Answer with the deployed version.

        Args:
            text: ignored
        """
        return {"reply": REPLY, "note": self.note}
'''


def wrapper_files(reply: str, **extra: str) -> dict[str, str]:
    """A wrapper that imports a helper and reads a file beside it: all of it must arrive, and together."""
    return {"pipeline_wrapper.py": WRAPPER, "helper.py": f"REPLY = {reply!r}\n", "data/note.txt": reply, **extra}


def reply(response: httpx.Response) -> object:
    return response.json()["result"]["reply"] if response.status_code == 200 else response.status_code


def thirty_calls(server: Server, name: str) -> dict[str, set[object]]:
    """30 fresh-connection calls: the replies each worker gave."""
    seen = server.by_worker("POST", f"/{name}/run", calls=30, json={"text": "x"})
    return {worker: {reply(r) for r in responses} for worker, responses in seen.items()}


def snapshot(*roots: Path) -> dict[str, bytes | None]:
    """Every entry under *roots*, hidden ones included, with file contents."""
    return {str(p): None if p.is_dir() else p.read_bytes() for root in roots for p in sorted(root.rglob("*"))}


def tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


def hayhooks_cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """hayhooks' own CLI, unchanged, pointed at the server."""
    env = {
        **os.environ,
        "HAYHOOKS_HOST": "127.0.0.1",
        "HAYHOOKS_PORT": str(server.port),
        "HAYSTACK_TELEMETRY_ENABLED": "False",
    }
    return subprocess.run([HAYHOOKS_CLI, *args], env=env, capture_output=True, text=True, timeout=120)
