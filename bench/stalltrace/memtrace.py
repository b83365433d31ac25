"""What the soaked daemon's memory is made of, every 20 s: RSS, the C heap
(glibc mallinfo2: brk heap, in use, mmapped) and the Python objects
allocated (sys.getallocatedblocks). Loaded by sitecustomize.py when
MEMTRACE=<file> (bench/soak.py --trace-memory FILE). A count of Python
blocks that grows while RSS creeps and the C heap stays flat is a leak of
Python objects: how the leak of one tuple per TCP batch was found.
Not part of the daemon: a diagnostic for the bench only.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
import time

_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks")
_FIELDS += ("uordblks", "fordblks", "keepcost")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS]


def _run(path: str) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    t0 = time.monotonic()
    mib = 1 << 20
    with open(path, "w") as out:
        out.write("t s, RSS, C heap (brk, in use, mmapped) MiB, Python blocks, gc collections\n")
        while True:
            m = libc.mallinfo2()
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * 4096
            out.write(
                f"{time.monotonic() - t0:5.0f} rss {rss / mib:6.1f} brk {m.arena / mib:6.1f} "
                f"inuse {m.uordblks / mib:6.1f} mmap {m.hblkhd / mib:6.1f} "
                f"blocks {sys.getallocatedblocks():,} "
                f"gc {[s['collections'] for s in gc.get_stats()]}\n"
            )
            out.flush()
            time.sleep(20)


def install(path: str) -> None:
    threading.Thread(target=_run, args=(path,), daemon=True, name="memtrace").start()
