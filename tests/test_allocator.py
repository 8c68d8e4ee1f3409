"""glibc's mmap threshold: fixed low in the SHARE_MODELS master, at its ceiling in its workers (``allocator``)."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest

from hayhooks_gunicorn.master import allocator

# In a fresh interpreter: fix the thresholds, then count glibc's mmapped blocks (mallinfo2's hblks) around a 2 MiB
# allocation (above the mmap threshold the block gets a mapping of its own; below it, it comes from the heap), and
# read how much free memory the heap's top keeps once it is freed (keepcost: under the trim threshold, all of it).
PROBE = """
import ctypes, sys
from hayhooks_gunicorn.master import allocator
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
assert allocator.set_thresholds(*map(int, sys.argv[1:]), environ={})
before = mallinfo2().hblks
block = bytearray(2 * 1024 * 1024)
mapped = mallinfo2().hblks - before
del block
print(mapped, mallinfo2().keepcost)
"""


def probe(*thresholds: int) -> tuple[int, int]:
    command = [sys.executable, "-c", PROBE, *map(str, thresholds)]
    mapped, kept = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    return int(mapped), int(kept)


GLIBC = pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc 2.33 or later (mallinfo2), which this libc lacks"
)


@GLIBC
def test_the_master_maps_a_large_block_and_a_worker_takes_it_from_the_heap_and_keeps_it() -> None:
    assert probe(allocator.MASTER_THRESHOLD)[0] == 1
    mapped, kept = probe(allocator.WORKER_THRESHOLD, allocator.WORKER_TRIM)
    assert mapped == 0 and kept >= 2 * 1024 * 1024


@pytest.mark.parametrize(
    ("environ", "option"),
    [
        ({"MALLOC_MMAP_THRESHOLD_": "65536"}, allocator.M_MMAP_THRESHOLD),
        ({"MALLOC_TRIM_THRESHOLD_": "65536"}, allocator.M_TRIM_THRESHOLD),
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, allocator.M_MMAP_THRESHOLD),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=65536"}, allocator.M_TRIM_THRESHOLD),
    ],
)
def test_a_threshold_the_operator_set_is_left_alone(environ: dict[str, str], option: int) -> None:
    assert allocator.operator_set(option, environ)
    other = allocator.M_TRIM_THRESHOLD if option == allocator.M_MMAP_THRESHOLD else allocator.M_MMAP_THRESHOLD
    assert not allocator.operator_set(other, environ)  # the other one is still the kit's to set


SET_WITH = """
import json, sys
from hayhooks_gunicorn.master import allocator
print(allocator.set_thresholds(allocator.MASTER_THRESHOLD, environ=json.loads(sys.argv[1])))
"""


def set_with(environ: dict[str, str]) -> bool:
    """``set_thresholds`` in a fresh interpreter (it changes the allocator of the process that calls it)."""
    command = [sys.executable, "-c", SET_WITH, json.dumps(environ)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip() == "True"


@GLIBC
def test_the_master_fixes_its_mmap_threshold_when_only_the_trim_threshold_is_set() -> None:
    assert set_with({"MALLOC_TRIM_THRESHOLD_": "65536"})
    assert not set_with({"MALLOC_MMAP_THRESHOLD_": "65536"})


def test_other_tunables_do_not_count_as_a_threshold() -> None:
    assert not allocator.operator_set(allocator.M_MMAP_THRESHOLD, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
