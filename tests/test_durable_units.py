"""Durable mode's master checks that need no process: the redacted URL, the missing package, the wrapper scan."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import write_wrapper

from hayhooks_gunicorn.errors import KitError
from hayhooks_gunicorn.master.durable import check_redis, durable_wrappers, redacted


def test_redacted_hides_only_the_password() -> None:
    assert redacted("redis://user:pw@redis.internal:6380/2") == "redis://user:***@redis.internal:6380/2"
    assert redacted("redis://:pw@localhost/0") == "redis://:***@localhost/0"
    assert redacted("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_missing_redis_package_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # what `import redis` sees when it is not installed
    with pytest.raises(KitError, match=r"needs the redis package: pip install 'hayhooks-gunicorn\[durable\]'"):
        check_redis("redis://localhost:6379/0")


def test_durable_wrappers_found_by_their_revision(pipelines_dir: Path) -> None:
    write_wrapper(pipelines_dir, "job", "class PipelineWrapper:\n    durable_revision = 'v1'\n")
    write_wrapper(pipelines_dir, "plain", "class PipelineWrapper:\n    durable_revision = None\n")
    assert durable_wrappers(pipelines_dir) == ["job"]
