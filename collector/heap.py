"""The C heap under the interpreter (glibc malloc): tuned at start-up and
handed back to the kernel after the store frees a lot, so that resident
memory follows what the store holds (the contract: under max_memory + 128 MiB).

Why: glibc raises its mmap threshold each time a large block is freed (up
to 32 MiB), so after the store's first big column is freed, every array,
text chunk and answer below that size comes from the brk heap and the
arenas, where free memory between live blocks is kept, not returned. Soaked
at 80k msg/s with max_memory 256 MiB, the process grew to ~470 MiB while
the store held ~215 MiB; with a fixed threshold, a bounded number of arenas
and a trim after eviction, it stays near 300 MiB. Elsewhere than glibc,
nothing is done.
"""

from __future__ import annotations

import ctypes
import logging
import time

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

# Blocks of this size and more get their own mapping, unmapped when freed;
# set once, so glibc stops moving it up.
MMAP_THRESHOLD = 1024 * 1024
# Free memory at the heap's top kept before it is returned (returning and
# taking it back in a loop costs page faults).
TRIM_THRESHOLD = 16 * 1024 * 1024
# Heaps for threads besides the main one: worker threads (sealing, writes,
# scans) allocate little and briefly; 8 per core (the default) only spreads
# the same free memory over more arenas.
ARENA_MAX = 2


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def tune() -> bool:
    """Set the heap's parameters (call once, before threads start); False
    when this is not glibc."""
    if _LIBC is None:
        return False
    ok = True
    for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_ARENA_MAX, ARENA_MAX),
    ):
        ok = bool(_LIBC.mallopt(param, value)) and ok
    return ok


def give_back() -> float:
    """Hand free heap pages back to the kernel (malloc_trim: the top of each
    heap and whole free pages inside it); returns the seconds it took. Run
    it in a worker thread: it walks the heaps."""
    if _LIBC is None:
        return 0.0
    t0 = time.perf_counter()
    _LIBC.malloc_trim(0)
    return time.perf_counter() - t0
