"""glibc's mmap threshold: fixed low in the SHARE_MODELS master, at its ceiling in its workers (``allocator``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hayhooks_gunicorn.master import allocator

# In a fresh interpreter: fix the threshold, then count glibc's mmapped blocks (mallinfo2's hblks) around a 2 MiB
# allocation. Above the threshold the block gets a mapping of its own; below it, it comes from the heap.
PROBE = """
import ctypes, sys
from hayhooks_gunicorn.master import allocator
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
assert allocator.set_mmap_threshold(int(sys.argv[1]), {})
before = mallinfo2().hblks
block = bytearray(2 * 1024 * 1024)
print(mallinfo2().hblks - before)
"""


def new_mappings(threshold: int) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, str(threshold)], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc (mallinfo2)")
def test_below_the_master_threshold_a_block_gets_its_own_mapping_and_below_the_worker_one_it_does_not() -> None:
    assert new_mappings(allocator.MASTER_THRESHOLD) == 1
    assert new_mappings(allocator.WORKER_THRESHOLD) == 0


@pytest.mark.parametrize(
    "environ",
    [{"MALLOC_MMAP_THRESHOLD_": "65536"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}],
)
def test_a_threshold_the_operator_set_is_left_alone(environ: dict[str, str]) -> None:
    assert allocator.operator_set(environ)
    assert not allocator.set_mmap_threshold(allocator.MASTER_THRESHOLD, environ)


def test_other_tunables_do_not_count_as_a_threshold() -> None:
    assert not allocator.operator_set({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
