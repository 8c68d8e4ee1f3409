"""Revisions from file metadata (``reload.revisions``): content is read only when a file's stat key changes, and no
edit is missed for that: same-size edits in the same second, no-op writes, files replaced by a rename."""

from __future__ import annotations

import builtins
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from hayhooks_gunicorn.reload import revisions
from hayhooks_gunicorn.reload.scan import fingerprint, scan
from hayhooks_gunicorn.settings import kit_settings

# A fixed modification time, set after every write: only ctime and the inode can tell the writes apart.
FIXED_MTIME = (1_700_000_000, 1_700_000_000)


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(revisions, "digests", revisions.DigestCache())
    monkeypatch.delenv("HAYHOOKS_GUNICORN_REHASH_INTERVAL", raising=False)
    kit_settings.cache_clear()
    yield
    kit_settings.cache_clear()


def write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    os.utime(path, FIXED_MTIME)


def settled(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make *path*'s digest trusted without waiting two seconds: a short racy window, and wait until it passed."""
    monkeypatch.setattr(revisions, "RACY_NS", 20_000_000)
    changed = max(path.stat().st_mtime_ns, path.stat().st_ctime_ns)
    wait_until(lambda: time.time_ns() - changed > 40_000_000)


def test_a_second_scan_of_an_unchanged_directory_opens_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``open`` itself, whatever reads the files: a 2 MB file beside a wrapper is not read again."""
    write(tmp_path / "p" / "pipeline_wrapper.py", "x = 1")
    (tmp_path / "p" / "model.bin").write_bytes(os.urandom(2_000_000))
    settled(tmp_path / "p" / "model.bin", monkeypatch)  # written last: past the racy window, the digests are trusted
    before = scan(tmp_path)["p"].revision
    opened: list[str] = []
    real_open = io.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file).startswith(str(tmp_path)):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(builtins, "open", counting_open)
    assert scan(tmp_path)["p"].revision == before
    assert opened == []


def test_same_size_edit_with_the_same_mtime_is_seen(tmp_path: Path) -> None:
    write(tmp_path / "p" / "pipeline_wrapper.py", "x = 1")
    before = fingerprint(tmp_path / "p")
    write(tmp_path / "p" / "pipeline_wrapper.py", "x = 2")
    assert fingerprint(tmp_path / "p") != before


def test_a_trusted_digest_is_not_read_again_and_ctime_carries_a_same_size_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapper = tmp_path / "p" / "pipeline_wrapper.py"
    write(wrapper, "x = 1")
    write(tmp_path / "p" / "model.bin", "weights")
    settled(wrapper, monkeypatch)
    before = fingerprint(tmp_path / "p")
    reads = revisions.digests.reads
    assert [fingerprint(tmp_path / "p", verify=False) for _ in range(3)] == [before] * 3
    assert fingerprint(tmp_path / "p") == before
    assert revisions.digests.reads == reads  # nothing read: every stat key is as it was

    write(wrapper, "x = 2")  # same size, same mtime: a later ctime tick
    assert wrapper.stat().st_mtime_ns == FIXED_MTIME[0] * 1_000_000_000
    assert fingerprint(tmp_path / "p", verify=False) != before
    assert revisions.digests.reads == reads + 1  # only the edited file


def test_a_freshly_written_file_is_read_again_until_its_tick_has_passed(tmp_path: Path) -> None:
    write(tmp_path / "p.yml", "components: {}")
    fingerprint(tmp_path / "p.yml")
    reads = revisions.digests.reads
    # Written less than RACY_NS ago: another same-size write may land in the same timestamp tick unseen
    fingerprint(tmp_path / "p.yml", verify=False)
    assert revisions.digests.reads == reads + 1


def test_a_no_op_write_keeps_the_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "p" / "pipeline_wrapper.py", "x = 1")
    settled(tmp_path / "p" / "pipeline_wrapper.py", monkeypatch)
    before = scan(tmp_path)["p"].revision
    write(tmp_path / "p" / "pipeline_wrapper.py", "x = 1")
    reads = revisions.digests.reads
    assert scan(tmp_path)["p"].revision == before
    assert revisions.digests.reads == reads + 1  # read again (new ctime), found equal


def test_a_file_renamed_over_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrapper = tmp_path / "p" / "pipeline_wrapper.py"
    write(wrapper, "x = 1")
    settled(wrapper, monkeypatch)
    before = fingerprint(tmp_path / "p", verify=False)
    write(tmp_path / "p" / ".pipeline_wrapper.py.new", "x = 2")
    os.replace(tmp_path / "p" / ".pipeline_wrapper.py.new", wrapper)
    assert fingerprint(tmp_path / "p", verify=False) != before


def test_background_scans_read_old_digests_again_and_hot_paths_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAYHOOKS_GUNICORN_REHASH_INTERVAL", "0.05")
    kit_settings.cache_clear()
    write(tmp_path / "p" / "pipeline_wrapper.py", "x = 1")
    settled(tmp_path / "p" / "pipeline_wrapper.py", monkeypatch)
    scan(tmp_path)
    hashed = time.monotonic()
    wait_until(lambda: time.monotonic() - hashed > 0.1)
    reads = revisions.digests.reads
    scan(tmp_path, verify=False)
    assert revisions.digests.reads == reads
    scan(tmp_path)
    assert revisions.digests.reads == reads + 1


def test_rehash_interval_zero_reads_every_file_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAYHOOKS_GUNICORN_REHASH_INTERVAL", "0")
    kit_settings.cache_clear()
    write(tmp_path / "p.yml", "components: {}")
    settled(tmp_path / "p.yml", monkeypatch)
    fingerprint(tmp_path / "p.yml")
    reads = revisions.digests.reads
    fingerprint(tmp_path / "p.yml", verify=False)
    assert revisions.digests.reads == reads + 1
