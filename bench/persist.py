"""Persistence costs: snapshot encoding (marshal chunks vs JSON lines) and
the daemon's TCP ingest rate with the write-ahead log off / never / batch / always.

Run: .venv/bin/python bench/persist.py [--records N] [--runs R] [--quick]
The chosen format (collector/diskformat.py: marshal tuples in CRC32 chunks) is
measured through its real functions; JSON lines through the same tuples with
json.dumps/loads per line, the safe alternative. Ingest: a daemon process,
one blasting TCP sender, messages/s received over a few seconds, each mode
in turn, repeated R times (medians; the machine is shared, so compare ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import zlib

from collector.diskformat import no_gc, record_from_tuple, record_tuple
from collector.record import Record
from collector.snapshot import read_snapshot, write_snapshot


def make_records(n: int) -> list[tuple[int, Record]]:
    base = 1_767_225_600_000_000
    out = []
    for i in range(n):
        fields = {"user": f"u{i % 97}", "latency_ms": i % 1000} if i % 3 == 0 else None
        sd = {"origin@32473": {"ip": f"10.0.{i % 256}.{i % 7}"}} if i % 5 == 0 else None
        rec = Record(
            base + i * 1000,
            base + i * 1000 + 70,
            f"web-{i % 20}",
            ("sshd", "nginx", "cron", "app")[i % 4],
            str(1000 + i % 5000),
            None,
            4,
            i % 8,
            f"request {i} served in {i % 1000} ms for user u{i % 97} from 10.0.0.{i % 256}",
            sd,
            fields,
            "rfc5424" if i % 2 else "json",
        )
        out.append((i + 1, rec))
    return out


def bench_marshal(items: list[tuple[int, Record]], path: str) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    write_snapshot(path, items, items[-1][0], 0)
    t1 = time.perf_counter()
    snap = read_snapshot(path)
    t2 = time.perf_counter()
    assert len(snap.items) == len(items)
    assert snap.error is None
    return t1 - t0, t2 - t1, os.path.getsize(path)


def bench_json(items: list[tuple[int, Record]], path: str) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    with open(path, "w", encoding="utf-8") as f:
        for seq, rec in items:
            line = json.dumps(record_tuple(seq, rec), ensure_ascii=False, separators=(",", ":"))
            f.write(f"{zlib.crc32(line.encode()):08x} {line}\n")
        f.flush()
        os.fsync(f.fileno())
    t1 = time.perf_counter()
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            crc, _, body = line.rstrip("\n").partition(" ")
            if int(crc, 16) != zlib.crc32(body.encode()):
                raise ValueError("crc")
            record_from_tuple(tuple(json.loads(body)))
            n += 1
    t2 = time.perf_counter()
    assert n == len(items)
    return t1 - t0, t2 - t1, os.path.getsize(path)


def ingest_rate(workdir: str, fsync: str | None, seconds: float) -> float:
    """Messages/s one blasting TCP sender gets into a daemon process."""
    from pathlib import Path

    from common import DaemonProcess, poll
    from soak import Sender, received

    w = Path(tempfile.mkdtemp(dir=workdir))
    store: dict[str, object] = {"ttl": "1m"}
    if fsync is not None:
        store.update(persist_dir=str(w / "state"), fsync=fsync)
    d = DaemonProcess(w, store)
    d.start()
    try:
        sender = Sender(d.tcp_port, 0)
        poll(lambda: received(d) > 1000, 30, "first messages")
        r0, t0 = received(d), time.perf_counter()
        time.sleep(seconds)
        r1, t1 = received(d), time.perf_counter()
        sender.stop()
    finally:
        d.stop()
    return (r1 - r0) / (t1 - t0)


def bench_ingest(runs: int, seconds: float) -> None:
    modes: list[str | None] = [None, "never", "batch", "always"]
    rates: dict[str | None, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(runs):
            for m in modes:
                rates[m].append(ingest_rate(d, m, seconds))
    base = statistics.median(rates[None])
    print(f"TCP ingest into a daemon process, {seconds:g}s per mode, median of {runs} runs")
    print(f"{'persistence':<14} {'msg/s':>10} {'vs off':>7}")
    for m in modes:
        med = statistics.median(rates[m])
        print(f"{'off' if m is None else 'fsync ' + m:<14} {med:>10,.0f} {med / base:>7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="100k records, 1 run")
    ap.add_argument("--seconds", type=float, default=3.0, help="per ingest mode")
    ap.add_argument("--no-ingest", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.records, args.runs = 100_000, 1
    items = make_records(args.records)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, fn in (("marshal chunks", bench_marshal), ("JSON lines", bench_json)):
            w, r, size = [], [], 0
            for _ in range(args.runs):
                with no_gc():  # as the daemon reads and writes: the same for both formats
                    tw, tr, size = fn(items, os.path.join(d, "snap"))
                w.append(tw)
                r.append(tr)
            rows.append((name, statistics.median(w), statistics.median(r), size))
    n = args.records
    print(f"{n} records, median of {args.runs} runs")
    print(
        f"{'format':<16} {'write rec/s':>12} {'read rec/s':>12} {'write s':>8} {'read s':>8} {'bytes/rec':>9}"
    )
    for name, w, r, size in rows:
        print(f"{name:<16} {n / w:>12,.0f} {n / r:>12,.0f} {w:>8.2f} {r:>8.2f} {size / n:>9.1f}")
    base = rows[1]
    print(f"marshal vs JSON: write x{base[1] / rows[0][1]:.1f}, read x{base[2] / rows[0][2]:.1f}")
    if not args.no_ingest:
        print()
        bench_ingest(args.runs, 2.0 if args.quick else args.seconds)


if __name__ == "__main__":
    main()
