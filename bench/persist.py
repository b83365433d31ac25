"""Persistence costs: restart of a store of sealed blocks (block files and
the snapshot manifest) and the event loop's worst stall while a snapshot is
written; snapshot encoding (marshal chunks vs JSON lines); and the daemon's
TCP ingest rate with the write-ahead log off / never / batch / always.

Run: .venv/bin/python bench/persist.py [--records N] [--runs R] [--quick]
     .venv/bin/python bench/persist.py --restart-only [--restart-records 2000000]
     .venv/bin/python bench/persist.py --daemon-restart [--restart-records 2000000]
Restart: the bench/sealed.py record mix (~250 B, 20 services, 50 hosts, SD on
20%, 10% late) over one hour into a store with the default config, sealed;
the snapshot written through `Persistence` while a ticker task measures the
loop's longest gap (a 1 ms sleep); then `Persistence.open` into a fresh
store, R times (median), checking every record came back with its id.
The chosen format (collector/diskformat.py: marshal tuples in CRC32 chunks) is
measured through its real functions; JSON lines through the same tuples with
json.dumps/loads per line, the safe alternative. Ingest: a daemon process,
one blasting TCP sender, messages/s received over a few seconds, each mode
in turn, repeated R times (medians; the machine is shared, so compare ratios).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import tempfile
import time
import zlib
from collections.abc import Iterator
from itertools import islice

from collector.daemon import tune_gc
from collector.diskformat import RecordTuple, encode_chunk, no_gc, record_from_tuple, record_tuple
from collector.persist import Persistence
from collector.record import Record
from collector.shard import Shard
from collector.snapshot import read_snapshot, write_snapshot
from collector.store import Store


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


def build_sealed_store(n: int) -> tuple[Store, int]:
    """A store of `n` records of the bench/sealed.py mix, sealed as the
    daemon's sweeper seals it; returns it and the time just after its newest record."""
    from sealed import chunk, default_store
    from store import HOUR_US, T0

    store = default_store()  # seal_inline: expire() seals as it goes
    size = 5_000
    for c in range(0, n, size):
        recs = chunk(n, c, min(size, n - c))
        for i in range(0, len(recs), 1000):
            store.add_many(recs[i : i + 1000])
        store.seal()
    return store, T0 + HOUR_US + 1


SLICE_CPU: list[float] = []  # CPU seconds of each slice the loop serialised


def _timed_open_records() -> None:
    """Measure each slice of open records the loop serialises, in CPU time
    of the loop's thread (wall time on a shared machine includes waiting
    for a core)."""
    import collector.persist as cp

    inner = cp._open_records

    def timed(shard: Shard) -> Iterator[list[RecordTuple]]:
        it = inner(shard)
        while True:
            t = time.thread_time()
            try:
                tuples = next(it)
            except StopIteration:
                return
            encode_chunk(tuples)  # what the loop does with it next, timed alike
            SLICE_CPU.append(time.thread_time() - t)
            yield tuples

    cp._open_records = timed


async def idle_gap(seconds: float) -> float:
    """The loop's longest gap between 1 ms sleeps with nothing else to do:
    what the machine's other tenants cost, the baseline for the stalls."""
    worst = 0.0
    end = time.perf_counter() + seconds
    last = time.perf_counter()
    while last < end:
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    return worst


async def busy_gap(seconds: float, slice_s: float = 0.005) -> float:
    """The loop's longest gap between 1 ms sleeps while another task keeps it
    busy in `slice_s` pieces of plain CPU work (no I/O, no threads): on a
    shared machine, what a busy process waits for a core, the baseline for
    a snapshot's stalls (the loop is as busy while it serialises)."""
    done = False

    async def busy() -> None:
        while not done:
            t = time.thread_time()
            while time.thread_time() - t < slice_s:
                sum(range(1000))
            await asyncio.sleep(0)

    task = asyncio.ensure_future(busy())
    worst = await idle_gap(seconds)
    done = True
    await task
    return worst


async def snapshot_with_ticker(p: Persistence) -> tuple[float, float, float]:
    """(seconds the snapshot took, the loop's longest gap meanwhile in s,
    the longest slice's CPU seconds on the loop's thread)."""
    worst = 0.0
    done = False
    SLICE_CPU.clear()

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    ok = await p.snapshot()
    took = time.perf_counter() - t0
    done = True
    await task
    assert ok
    return took, worst, max(SLICE_CPU, default=0.0)


def bench_restart(n: int, runs: int) -> None:
    from sealed import default_store

    _timed_open_records()
    t = time.perf_counter()
    store, now = build_sealed_store(n)
    tune_gc()  # as the daemon does once started (collector/daemon.py)
    print(
        f"restart: {len(store):,} records ({store.sealed_records:,} sealed, {store.shard_count} shards,"
        f" evicted {store.evicted_total:,}), built in {time.perf_counter() - t:.0f}s"
    )
    sample = list(islice(store.snapshot_items(), 0, None, 997))
    with tempfile.TemporaryDirectory() as d:
        state = os.path.join(d, "state")
        p = Persistence(state, store)
        p.open(now)

        async def snapshots(p: Persistence) -> list[tuple[float, float, float]]:
            idle = [await idle_gap(1.0) for _ in range(runs)]
            busy = [await busy_gap(1.0) for _ in range(runs)]
            print(
                f"  baselines, the loop's longest gap (1 s, median of {runs}): with nothing to do"
                f" {statistics.median(idle) * 1e3:.1f} ms; busy in 5 ms slices of plain CPU work"
                f" {statistics.median(busy) * 1e3:.1f} ms"
            )
            out = [await snapshot_with_ticker(p)]  # writes every block file
            for _ in range(runs):
                out.append(await snapshot_with_ticker(p))  # the manifest and open tails only
            await p.close()
            return out

        results = asyncio.run(snapshots(p))
        files = [f for f in os.listdir(state) if f.startswith("blocks-")]
        size = sum(os.path.getsize(os.path.join(state, f)) for f in os.listdir(state))
        print(
            f"  first snapshot (writes {len(files)} block files, {size / 2**20:.0f} MiB on disk):"
            f" {results[0][0]:.2f}s, loop's longest gap {results[0][1] * 1e3:.1f} ms"
            f" (longest slice {results[0][2] * 1e3:.1f} ms CPU)"
        )
        later = results[1:]
        print(
            f"  later snapshots (manifest + open shards' {p.stats.snapshot_records:,} records), median of {runs}:"
            f" {statistics.median(x[0] for x in later):.2f}s,"
            f" loop's longest gap {statistics.median(x[1] for x in later) * 1e3:.1f} ms"
            f" (max {max(x[1] for x in later) * 1e3:.1f} ms);"
            f" longest slice {max(x[2] for x in later) * 1e3:.1f} ms CPU"
        )
        del store, p
        gc.collect()
        times = []
        for _ in range(runs):
            fresh = default_store()
            q = Persistence(state, fresh)
            t = time.perf_counter()
            q.open(now)
            times.append(time.perf_counter() - t)
            assert len(fresh) == n, (len(fresh), n)
            got = list(islice(fresh.snapshot_items(), 0, None, 997))
            assert got == sample
            q.unlock()
            q.wal.close()
            del fresh, q, got
            gc.collect()
        print(
            f"  restart (Persistence.open) of {n:,} records, median of {runs}:"
            f" {statistics.median(times):.2f}s (runs: {', '.join(f'{x:.2f}' for x in times)})"
        )


def bench_daemon_restart(n: int, runs: int) -> None:
    """A daemon process holding `n` records of the bench/sealed.py mix (sent
    over TCP, event times over the hour before now) is stopped, then started
    `runs` times: seconds from the process's start to /health answering with
    every record (Python's start-up and imports included)."""
    import socket
    from pathlib import Path

    from common import DaemonProcess, poll
    from sealed import chunk

    from collector.times import format_timestamp

    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        state = work / "state"
        daemon = DaemonProcess(work, {"persist_dir": str(state), "ttl": "2h"})
        daemon.start()
        shift = time.time_ns() // 1000 - (1_767_225_600_000_000 + 3_600_000_000)
        try:
            with socket.create_connection(("127.0.0.1", daemon.tcp_port)) as sock:
                for c in range(0, n, 5_000):
                    lines = []
                    for r in chunk(n, c, min(5_000, n - c)):
                        pri = (r.facility or 1) * 8 + r.level
                        ts = format_timestamp(r.timestamp + shift)
                        lines.append(
                            f"<{pri}>1 {ts} {r.host} {r.service or '-'} {r.procid or '-'} - - {r.message}\n"
                        )
                    sock.sendall("".join(lines).encode())
            poll(lambda: daemon.get("/health")["records"] >= n, 600, "every record stored")
            # Every shard but the two newest sealed and on disk.
            poll(lambda: len(list(state.glob("blocks-*.bin"))) >= 55, 600, "block files written")
        finally:
            daemon.stop()
        empty = DaemonProcess(work / "empty", {"persist_dir": str(work / "empty" / "state")})
        (work / "empty").mkdir()
        base = []
        for _ in range(runs):
            t = time.perf_counter()
            empty.start()
            base.append(time.perf_counter() - t)
            empty.stop()
        times = []
        restores = []
        for _ in range(runs):
            t = time.perf_counter()
            daemon.start(timeout=120)
            try:
                times.append(time.perf_counter() - t)
                held = daemon.get("/health")["records"]
            finally:
                daemon.stop()
            assert held == n, (held, n)
            line = next(x for x in daemon.log_path.read_text().splitlines() if "restored" in x)
            restores.append(float(line.rsplit(" in ", 1)[1].rstrip("s")))
        print(
            f"daemon restart with {n:,} records (process start to /health), median of {runs}:"
            f" {statistics.median(times):.2f}s (runs: {', '.join(f'{x:.2f}' for x in times)});"
            f" an empty daemon's start: {statistics.median(base):.2f}s; the restore its log"
            f" reports: {statistics.median(restores):.2f}s"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="100k records, 1 run")
    ap.add_argument("--seconds", type=float, default=3.0, help="per ingest mode")
    ap.add_argument("--no-ingest", action="store_true")
    ap.add_argument("--restart-records", type=int, default=2_000_000)
    ap.add_argument("--restart-only", action="store_true")
    ap.add_argument("--no-restart", action="store_true")
    ap.add_argument(
        "--daemon-restart", action="store_true", help="only: a daemon process's restart"
    )
    args = ap.parse_args()
    if args.daemon_restart:
        bench_daemon_restart(100_000 if args.quick else args.restart_records, args.runs)
        return
    if args.restart_only or not args.no_restart:
        bench_restart(100_000 if args.quick else args.restart_records, args.runs)
        if args.restart_only:
            return
        print()
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
