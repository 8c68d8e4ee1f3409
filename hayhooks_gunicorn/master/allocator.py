"""glibc's mmap threshold under ``SHARE_MODELS``: a replaced version's memory goes back to the OS from the master.

glibc serves a block above its mmap threshold (128 KiB at start) with a mapping of its own, unmapped when freed;
but each time such a block is freed it raises the threshold to that block's size, and the trim threshold to
twice that (``malloc/malloc.c``, "dynamic mmap threshold"). The master loads on a thread other than the main one,
so the next model-sized blocks come from that thread's arena, and a freed block at the top of a thread arena is
given back only above the raised trim threshold: ``malloc_trim(0)`` trims the main arena's top, not the other
arenas' (``mtrim``). Measured: 10 reloads of a 20 MB component left the master 21 MB larger, and 61 MB when the
loads fell on different arenas, with every old version collected.

So the master fixes the threshold (``mallopt(M_MMAP_THRESHOLD)``, which also stops the dynamic raise) at 1 MiB
before it loads anything: every block of a model's size gets its own mapping and is unmapped when freed.
A mapping per block costs page faults on each large temporary, which the master, running no inference, never
makes; a worker, which does, gets the ceiling the dynamic threshold would have reached (32 MiB on 64-bit) right
after the fork. A threshold the operator set (``MALLOC_MMAP_THRESHOLD_``, or ``glibc.malloc.mmap_threshold`` in
``GLIBC_TUNABLES``) is left alone, in both.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

M_MMAP_THRESHOLD = -3  # <malloc.h>
MASTER_THRESHOLD = 1024 * 1024
WORKER_THRESHOLD = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)  # DEFAULT_MMAP_THRESHOLD_MAX in malloc.c


def operator_set(environ: Mapping[str, str]) -> bool:
    """Whether the environment already sets glibc's mmap threshold."""
    return "MALLOC_MMAP_THRESHOLD_" in environ or "glibc.malloc.mmap_threshold" in environ.get("GLIBC_TUNABLES", "")


def set_mmap_threshold(size: int, environ: Mapping[str, str] = os.environ) -> bool:
    """Fix glibc's mmap threshold at *size* bytes; False where the operator set one or the libc is not glibc."""
    if operator_set(environ):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, size))  # musl's mallopt does nothing and answers 0


def for_master() -> bool:
    return set_mmap_threshold(MASTER_THRESHOLD)


def for_worker() -> bool:
    return set_mmap_threshold(WORKER_THRESHOLD)
