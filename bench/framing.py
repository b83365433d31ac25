"""The TCP framer alone: frames per second for LF-framed, octet-counted and
NUL-framed syslog streams, fed in 64 KiB reads as a socket delivers them.

    .venv/bin/python bench/framing.py                      # this checkout's framer
    .venv/bin/python bench/framing.py --compare OLD.py     # and another framing.py, interleaved
    .venv/bin/python bench/framing.py --vs-pure            # and the pure StreamFramer, interleaved

`this` is the framer the listener uses (the native one when it is built).

With `--compare`, the two framers run alternately (A B A B ...) on the same
bytes, so machine noise hits both alike; the table gives each one's median
and the median of the per-round ratios (this / other). Stdlib only, plus collector itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

from messages import lf_framed, mixed, octet_counted

READ = 65536


def _load(path: str | None) -> ModuleType:
    if path is None:
        import collector.framing

        return collector.framing
    spec = importlib.util.spec_from_file_location(f"framing_{abs(hash(path))}", path)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _chunks(blob: bytes) -> list[bytes]:
    return [blob[i : i + READ] for i in range(0, len(blob), READ)]


def _once(make: Callable[..., Any], chunks: list[bytes]) -> tuple[float, int]:
    framer = make(65536)
    n = 0
    t0 = time.process_time()  # CPU time: other processes on the machine count less
    for c in chunks:
        n += len(framer.feed(c))
    n += len(framer.eof())
    return time.process_time() - t0, n


async def _latency(n: int) -> None:
    """The continuation wait's cost on a real TCP listener: send to sink."""
    import asyncio

    from collector.config import ListenerConfig
    from collector.listeners import start_listener
    from collector.settings import Settings

    got: asyncio.Queue[float] = asyncio.Queue()

    def sink(recs: list[Any]) -> None:
        for _ in recs:
            got.put_nowait(time.perf_counter())

    cfg = ListenerConfig(name="t", transport="tcp", bind="127.0.0.1:0")
    lst = await start_listener(cfg, sink, Settings(), 65536)
    assert isinstance(lst.address, tuple)
    host, port = lst.address
    _, w = await asyncio.open_connection(host, port)
    cases = {
        "LF line, last of its burst": lambda i: b"<13>app: lone %d\n" % i,
        "LF line followed by another": lambda i: b"<13>app: a %d\n<13>app: b" % i,
        "octet-counted frame": lambda i: b"14 <13>app: %05d" % i,
    }
    for name, make in cases.items():
        waits = []
        for i in range(n):
            t0 = time.perf_counter()
            w.write(make(i))
            await w.drain()
            waits.append(await got.get() - t0)
            while name.startswith("LF line followed") and got.empty():
                w.write(b"\n")  # end the trailing "b" line so the next round starts clean
                await w.drain()
                await got.get()
                break
        print(
            f"{name:<30} median {statistics.median(waits) * 1e3:7.2f} ms, max {max(waits) * 1e3:7.2f} ms"
        )
    w.close()
    await lst.aclose(1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--compare", metavar="FRAMING_PY", help="another framing.py to run beside")
    ap.add_argument(
        "--vs-pure", action="store_true", help="the pure-Python StreamFramer beside (interleaved)"
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run")
    ap.add_argument(
        "--latency", action="store_true", help="the continuation wait's cost on a TCP listener"
    )
    args = ap.parse_args(argv)
    if args.latency:
        import asyncio

        asyncio.run(_latency(5 if args.quick else 20))
        return 0
    if args.quick:
        args.messages, args.rounds = 20_000, 3
    msgs = mixed(args.messages, seed=1)
    streams = {
        "LF": _chunks(lf_framed(msgs)),
        "octet-counted": _chunks(octet_counted(msgs)),
        "NUL": _chunks(b"".join(m + b"\x00" for m in msgs)),
    }
    mods: dict[str, Any] = {"this": _load(None)}
    if args.compare:
        mods["compare"] = _load(args.compare)
    elif args.vs_pure:
        pure = mods["this"].StreamFramer
        mods["pure"] = SimpleNamespace(syslog_framer=lambda n: pure(n))
    other = "compare" if args.compare else "pure" if args.vs_pure else None
    print(f"{args.messages} messages, {args.rounds} rounds, {READ}-byte reads; median ns/frame")
    header = f"{'stream':<15}" + "".join(f"{k:>12}" for k in mods)
    print(header + ("       ratio" if other else ""))
    for name, chunks in streams.items():
        times: dict[str, list[float]] = {k: [] for k in mods}
        counts: dict[str, int] = {}
        for _ in range(args.rounds):
            for k, mod in mods.items():
                dt, n = _once(mod.syslog_framer, chunks)
                times[k].append(dt)
                counts[k] = n
        med = {k: statistics.median(v) / counts[k] * 1e9 for k, v in times.items()}
        line = f"{name:<15}" + "".join(f"{med[k]:>12.1f}" for k in mods)
        if other:
            # The median of each round's ratio: a noisy round moves both sides.
            pairs = zip(times["this"], times[other], strict=True)
            line += f"{statistics.median(a / b for a, b in pairs):>12.3f}"
        print(line)
        if len(set(counts.values())) != 1:
            print(f"  frame counts differ: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
