"""Where the daemon's event loop stalls: a sampler loaded into a daemon
started with PYTHONPATH=bench/stalltrace and STALLTRACE=<file> (bench/soak.py
--trace-stalls FILE does both).

A thread pings the loop every 5 ms (call_soon_threadsafe); while a ping has
not run for 30 ms, it samples the loop thread's Python stack (and what other
threads run Python), and every 5 s writes how many stalls it saw, the
longest, and the stacks most often sampled inside them. The sampler needs
the GIL, so a long C call shows up at the first Python line after it.
Not part of the daemon: a diagnostic for the bench only.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
import traceback
from typing import Any

STALL = 0.03  # seconds without the loop running a ping: a stall
SKIP = ("runpy", "__main__.py", "cli.py", "sitecustomize.py", "runners.py", "uvloop")


def _stack(frame: Any, depth: int) -> str:
    lines = []
    for f in traceback.extract_stack(frame)[-depth:]:
        if not any(s in f.filename for s in SKIP):
            lines.append(f"  {os.path.basename(f.filename)}:{f.lineno} {f.name}")
    return "\n".join(lines)


def _sample(main: int, counts: collections.Counter[str]) -> None:
    frames = sys._current_frames()
    frame = frames.get(main)
    if frame is None:
        return
    key = _stack(frame, 14)
    for ident, other in frames.items():
        if ident in (main, threading.get_ident()):
            continue
        top = _stack(other, 3).replace("\n", " >")
        if top and "wait" not in top:
            key += f"\n    [thread]{top}"
    counts[key] += 1


def _write(path: str, stalls: list[float], counts: collections.Counter[str]) -> None:
    longest = sorted(stalls)
    with open(path, "w") as out:
        out.write(
            f"stalls over {STALL * 1000:.0f} ms: {len(longest)}; longest (s): "
            f"{[round(s, 3) for s in longest[-10:]]}\n"
        )
        for key, n in counts.most_common(25):
            out.write(f"--- {n} samples\n{key}\n")


def _run(path: str, loops: list[Any]) -> None:
    while not loops:
        time.sleep(0.2)
    loop = loops[0]
    main = threading.main_thread().ident or 0
    last = [time.monotonic()]

    def ping() -> None:
        last[0] = time.monotonic()

    counts: collections.Counter[str] = collections.Counter()
    stalls: list[float] = []
    began: float | None = None
    written = time.monotonic()
    while True:
        time.sleep(0.005)
        try:
            loop.call_soon_threadsafe(ping)
        except RuntimeError:  # the loop is closed
            return
        now = time.monotonic()
        if now - last[0] > STALL:
            _sample(main, counts)
            began = now if began is None else began
        elif began is not None:
            stalls.append(now - began + STALL)
            began = None
        if now - written > 5:
            written = now
            _write(path, stalls, counts)


def _install(path: str) -> None:
    import uvloop

    loops: list[Any] = []
    original = uvloop.run

    def run(main: Any, **kw: Any) -> Any:
        def factory() -> Any:
            loop = uvloop.new_event_loop()
            loops.append(loop)
            return loop

        kw.setdefault("loop_factory", factory)
        return original(main, **kw)

    uvloop.run = run
    threading.Thread(target=_run, args=(path, loops), daemon=True).start()


if os.environ.get("STALLTRACE"):
    _install(os.environ["STALLTRACE"])
if os.environ.get("MEMTRACE"):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import memtrace

    memtrace.install(os.environ["MEMTRACE"])
