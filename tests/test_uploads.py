"""File uploads (multipart ``files`` on a run endpoint) on a real gunicorn with 2 workers, before and after a reload."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Server, wait_until, write_wrapper

pytestmark = pytest.mark.integration

UPLOAD = """
from fastapi import UploadFile
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, files: list[UploadFile] | None = None, label: str = "") -> dict:
        return {"version": "VERSION", "label": label, "sizes": {f.filename: len(f.file.read()) for f in files or []}}
"""


def test_uploads_reach_every_worker_before_and_after_a_reload(
    start_server: Callable[..., Server], pipelines_dir: Path
) -> None:
    write_wrapper(pipelines_dir, "upload", UPLOAD.replace("VERSION", "v1"))
    server = start_server(pipelines_dir, workers=2)
    files = [("files", ("a.txt", b"abc")), ("files", ("big.bin", b"\0" * 2_000_000))]

    def every_worker_counts(version: str) -> bool:
        want = {"version": version, "label": "x", "sizes": {"a.txt": 3, "big.bin": 2_000_000}}
        return server.every_worker(
            lambda r: r.status_code == 200 and r.json()["result"] == want,
            "POST",
            "/upload/run",
            files=files,
            data={"label": "x"},
        )

    assert every_worker_counts("v1")
    write_wrapper(pipelines_dir, "upload", UPLOAD.replace("VERSION", "v2"))
    wait_until(lambda: every_worker_counts("v2"), timeout=30)
