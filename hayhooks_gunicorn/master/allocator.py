"""glibc's mmap threshold under ``SHARE_MODELS``: a replaced version's memory goes back to the OS from the master.

glibc serves a block above its mmap threshold (128 KiB at start) with a mapping of its own, unmapped when freed;
but each time such a block is freed it raises the threshold to that block's size, and the trim threshold to
twice that (``malloc/malloc.c``, "dynamic mmap threshold"). The master loads on a thread other than the main one,
so the next model-sized blocks come from that thread's arena, and a freed block at the top of a thread arena is
given back only above the raised trim threshold: ``malloc_trim(0)`` trims the main arena's top, not the other
arenas' (``mtrim``). Measured: 10 reloads of a 20 MB component left the master 21 MB larger (41 and 61 MB in
some runs), with every old version collected.

So the master fixes the threshold (``mallopt(M_MMAP_THRESHOLD)``, which also stops the dynamic raise) at 1 MiB
before it loads anything: every block of a model's size gets its own mapping and is unmapped when freed.
A mapping per block costs page faults on each large temporary, which the master, running no inference, never
makes; a worker, which does, gets right after the fork the ceilings the dynamic raise reaches after large frees
(32 MiB, and a trim threshold of 64 MiB, on 64-bit). A threshold the operator set (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, or its ``glibc.malloc.*`` name in ``GLIBC_TUNABLES``) is left alone, each on its own.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MASTER_THRESHOLD = 1024 * 1024
WORKER_THRESHOLD = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)  # DEFAULT_MMAP_THRESHOLD_MAX in malloc.c
# Set beside the mmap threshold by the dynamic raise: without it, the heap's top would be given back and taken again
# around every large temporary.
WORKER_TRIM = 2 * WORKER_THRESHOLD


def operator_set(option: int, environ: Mapping[str, str]) -> bool:
    """Whether the environment already sets this threshold (``M_MMAP_THRESHOLD`` or ``M_TRIM_THRESHOLD``)."""
    name = {M_MMAP_THRESHOLD: "mmap_threshold", M_TRIM_THRESHOLD: "trim_threshold"}[option]
    return f"MALLOC_{name.upper()}_" in environ or f"glibc.malloc.{name}" in environ.get("GLIBC_TUNABLES", "")


def set_thresholds(mmap: int, trim: int | None = None, environ: Mapping[str, str] = os.environ) -> bool:
    """Fix glibc's mmap threshold at *mmap* bytes (and its trim threshold at *trim*, if given), each unless the
    operator set it; True when every one asked for was set here."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on (no ldconfig run per fork)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = True
    for option, size in ((M_MMAP_THRESHOLD, mmap), (M_TRIM_THRESHOLD, trim)):
        if size is not None:
            # musl's mallopt does nothing and answers 0
            done = not operator_set(option, environ) and bool(mallopt(option, size)) and done
    return done


def for_master() -> bool:
    return set_thresholds(MASTER_THRESHOLD)


def for_worker() -> bool:
    return set_thresholds(WORKER_THRESHOLD, WORKER_TRIM)
