"""Store v2 benchmark: memory and query latencies of a store of sealed blocks.

Run from the repo root:  .venv/bin/python bench/sealed.py [--records N] [--rounds R]

With the DEFAULT store config (max_memory 512 MiB, 60 s shards) it stores N
records (default 2M; ~257-byte messages, 20 services, 50 hosts, structured
data on 20%, 10% up to 30 s late) over one hour of event time, sealing as the
daemon's sweeper does (once per second of event time passed, here per ~0.5%
of the records), and prints:
  - RSS growth of the process and the store's own account, against the raw
    message bytes, and how many records were evicted (the target is none);
  - sealing: microseconds per record, and the longest the main thread waited
    for the GIL while a worker thread sealed (the event loop's worst stall);
  - query latencies (p50/p99 over R rounds, medians): a 100-record page in a
    1-minute window, service= at 1%, a filter matching nothing, a word in no
    message (word filters), q= in no message (one thread, two threads), a
    common word's first page, /stats by=level, a record by id;
  - a restore of every record into a new store (what a restart replays).

With --http it measures the same queries over HTTP instead, against a real
daemon in a child process (default config but ephemeral ports, no
listeners, a 3 h TTL so that the bench's hour of records stays): the child
stores the records in batches while its sweeper seals them off the loop,
as it would while receiving them; then this process asks each query back to
back on one keep-alive connection and prints p50/p99 per round (medians).
`--max-memory 4GiB --max-records 30000000 --records 20000000` is the 20M run.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from store import HOUR_US, T0, make_records

from collector.config import StoreConfig
from collector.query import Query
from collector.record import make_id
from collector.search import parse
from collector.store import Store
from collector.wordfilter import word_keys, words


def parse_size(text: str) -> int:
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    t = text.lower().removesuffix("ib").removesuffix("b")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1:] in units else int(t)


def malloc_trim() -> None:
    """What the daemon does after sealing: hand glibc's free heap pages back."""
    ctypes.CDLL(None).malloc_trim(0)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def default_store(
    max_memory: int | None = None, max_records: int | None = None, **kw: object
) -> Store:
    cfg = StoreConfig()
    return Store(
        ttl_us=int(cfg.ttl * 1e6) * 10,  # the records are in the past: keep them all
        max_records=cfg.max_records if max_records is None else max_records,
        max_memory=cfg.max_memory if max_memory is None else max_memory,
        shard_span_us=int(cfg.shard_span * 1e6),
        **kw,  # type: ignore[arg-type]
    )


def chunk(n: int, c: int, size: int) -> list:  # type: ignore[type-arg]
    recs = make_records(size, seed=100 + c, late_fraction=0.1)
    step = HOUR_US // n
    rng = random.Random(c)
    out = []
    for i, r in enumerate(recs):
        arrival = T0 + (c + i) * step
        late = r.received_at - r.timestamp
        sd = r.structured_data
        if sd is None and rng.random() < 0.17:  # make_records gives 3%: 20% in all
            sd = {"meta@32473": {"region": "eu-west-1", "req": f"{rng.getrandbits(32):08x}"}}
        out.append(
            dataclasses.replace(
                r, timestamp=arrival - late, received_at=arrival, structured_data=sd
            )
        )
    return out


def latencies(fn: Callable[[int], object], rounds: int, per_round: int) -> tuple[float, float]:
    p50s, p99s = [], []
    for r in range(rounds):
        times = []
        for i in range(per_round):
            t = time.perf_counter()
            fn(r * per_round + i)
            times.append(time.perf_counter() - t)
        times.sort()
        p50s.append(times[len(times) // 2] * 1e3)
        p99s.append(times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3)
    return statistics.median(p50s), statistics.median(p99s)


# -- over HTTP: a daemon in a child process ---------------------------------


def pooled(n: int, c: int, size: int, pool: list) -> list:  # type: ignore[type-arg]
    """chunk(n, c, size), but reusing records of `pool` (made once; each keeps
    its lateness) with new times: for runs where making 20M records one by one
    would take longer than storing them. A block never sees a message twice
    (the pool is far longer than a block)."""
    step = HOUR_US // n
    out = []
    for i in range(c, c + size):
        r = pool[i % len(pool)]
        arrival = T0 + i * step
        out.append(
            dataclasses.replace(
                r, timestamp=arrival - (r.received_at - r.timestamp), received_at=arrival
            )
        )
    return out


def serve(n: int, max_memory: int, max_records: int, shift_us: int, pool_size: int) -> None:
    """The child: a daemon seeded with the bench's records (event times moved
    by `shift_us` into the last hour), sealing as it goes; prints one JSON
    line of figures once everything older than the two newest shards is
    sealed, then serves until stdin closes."""
    import asyncio

    import uvloop

    from collector.config import Config, HttpConfig
    from collector.daemon import start, stop, tune_gc

    async def main() -> None:
        config = dataclasses.replace(
            Config(),
            listeners=(),
            http=HttpConfig(bind="127.0.0.1:0"),
            store=dataclasses.replace(
                StoreConfig(), ttl=3 * 3600.0, max_memory=max_memory, max_records=max_records
            ),
        )
        gc.collect()
        base = rss()
        d = await start(config)
        store = d.store
        raw = 0
        ids: list[str] = []
        t0 = time.perf_counter()
        pool: list = []  # type: ignore[type-arg]
        for c in range(0, min(pool_size, n), 5_000):
            pool.extend(chunk(pool_size, c, min(5_000, pool_size - c)))
        for c in range(0, n, 5_000):
            size = min(5_000, n - c)
            recs = [
                dataclasses.replace(
                    r, timestamp=r.timestamp + shift_us, received_at=r.received_at + shift_us
                )
                for r in (pooled(n, c, size, pool) if pool else chunk(n, c, size))
            ]
            raw += sum(len(r.message.encode()) for r in recs)
            for i in range(0, len(recs), 1000):
                first = store.add_many(recs[i : i + 1000])
                if (c + i) % 20_000 == 0:
                    ids.append(make_id(recs[i].timestamp, first))
            await asyncio.sleep(0)
            # As a listener would be: held back while the sweeper seals.
            while waiting(store) > 200_000:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        seeded = time.perf_counter() - t0
        while store.shard_count - sum(1 for s in store._shards.values() if s.run is not None) > 2:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # the sweep's malloc_trim
        tune_gc()
        gc.collect()
        grown = rss() - base
        info = {
            "http": d.http_address[1],
            "records": len(store),
            "raw": raw,
            "rss_growth": grown,
            "account": store.memory_bytes(),
            "evicted": store.evicted_total,
            "sealed": store.sealed_records,
            "seed_seconds": round(seeded, 1),
            "ids": ids,
        }
        print(json.dumps(info), flush=True)
        stop_event = asyncio.Event()
        asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop_event.set)
        await stop_event.wait()
        await stop(d)

    uvloop.run(main())


def waiting(store: Store) -> int:
    """Records in open shards that the sweeper will seal (all but the newest two)."""
    keys = store._keys[:-2]
    return sum(len(s) for s in map(store._shards.__getitem__, keys) if s.run is None)


def http_bench(args: argparse.Namespace) -> None:
    shift = (time.time_ns() // 1000 - 60_000_000 - HOUR_US) - T0  # the hour up to a minute ago
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--serve",
            str(args.records),
            str(args.max_memory),
            str(args.max_records),
            str(shift),
            str(args.pool),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("bench daemon failed to start")
    info = json.loads(line)
    n, raw = info["records"], info["raw"]
    print(
        f"{n:,} records over HTTP (daemon pid {proc.pid}; max_memory {args.max_memory / 2**20:.0f} MiB);"
        f" seeded and sealed in {info['seed_seconds']} s; evicted {info['evicted']:,};"
        f" sealed {info['sealed']:,}"
    )
    print(
        f"  daemon RSS growth {info['rss_growth'] / 2**20:.0f} MiB = {info['rss_growth'] / raw:.3f}x"
        f" raw message bytes ({info['rss_growth'] / n:.0f} B/record); store's account"
        f" {info['account'] / 2**20:.0f} MiB; load average {os.getloadavg()[0]:.1f}"
    )
    conn = http.client.HTTPConnection("127.0.0.1", info["http"], timeout=120)

    def get(target: str) -> bytes:
        conn.request("GET", target)
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise SystemExit(f"{target}: HTTP {answer.status} {body[:200]!r}")
        return body

    rng = random.Random(7)
    base = (T0 + shift) / 1e6
    windows = [base + rng.randrange(HOUR_US - 120_000_000) / 1e6 for _ in range(10_000)]
    ids = info["ids"]

    def logs(**params: object) -> str:
        return "/logs?" + urllib.parse.urlencode(params)

    rows: list[tuple[str, Callable[[int], str], int]] = [
        (
            "page of 100, 1-minute window",
            lambda i: logs(
                start=f"{windows[i]:.6f}", end=f"{windows[i] + 59.999999:.6f}", limit=100
            ),
            200,
        ),
        (
            "service= 1% (rare-svc), first page",
            lambda i: logs(start=f"{windows[i]:.6f}", service="rare-svc", limit=100),
            200,
        ),
        ("filter matching nothing", lambda i: logs(service="no-such-service", limit=100), 200),
        ("query= a word in no message", lambda i: logs(query=f"zq{i}x", limit=100), 200),
        ("q= substring in no message", lambda i: logs(q=f"no such {i}"), 4),
        ("q= a substring in no message, one token", lambda i: logs(q=f"zq{i}x"), 4),
        ("query= a common word (timed), first page", lambda i: logs(query="timed", limit=100), 200),
        ("q= a common word (timed), first page", lambda i: logs(q="timed", limit=100), 200),
        ("/stats?by=level, everything", lambda i: "/stats?by=level", 200),
        ("GET by id", lambda i: f"/logs/{ids[i % len(ids)]}", 200),
    ]
    for name, target, per_round in rows:
        get(target(0))  # a first request (connection, code paths) is not counted
        p50, p99 = latencies(lambda i, target=target: get(target(i)), args.rounds, per_round)  # type: ignore[misc]
        print(
            f"  {name:<44} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    conn.close()
    proc.stdin.close()
    proc.wait(60)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(*map(int, sys.argv[2:7]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--no-trim",
        action="store_true",
        help="do not give freed heap pages back after each seal (the daemon does)",
    )
    ap.add_argument("--memory-only", action="store_true", help="stop after the memory figures")
    ap.add_argument("--http", action="store_true", help="the queries over HTTP, to a daemon")
    ap.add_argument("--max-memory", type=parse_size, default=StoreConfig().max_memory)
    ap.add_argument("--max-records", type=int, default=StoreConfig().max_records)
    ap.add_argument("--pool", type=int, default=0, help="reuse this many made records (20M runs)")
    args = ap.parse_args()
    if args.http:
        http_bench(args)
        return
    trim = (lambda: None) if args.no_trim else malloc_trim
    n, rounds = args.records, args.rounds
    made: list = []  # type: ignore[type-arg]
    for c in range(0, min(args.pool, n), 5_000):
        made.extend(chunk(args.pool, c, min(5_000, args.pool - c)))
    gc.collect()
    base = rss()
    store = default_store(args.max_memory, args.max_records, seal_inline=False)
    raw = 0
    size = 5_000  # small transient batches, as listeners hand them over
    seal_every = max(1, n // 200)
    sealed_at = 0
    seal_secs = 0.0
    sealed_records = 0
    ids = []
    stalls: list[float] = []
    for c in range(0, n, size):
        recs = pooled(n, c, min(size, n - c), made) if made else chunk(n, c, min(size, n - c))
        raw += sum(len(r.message.encode()) for r in recs)
        for i in range(0, len(recs), 1000):
            first = store.add_many(recs[i : i + 1000])
            if (c + i) % 100_000 == 0:
                ids.append(make_id(recs[i].timestamp, first))
            if c + i - sealed_at >= seal_every:
                sealed_at = c + i
                jobs = store.seal_jobs()
                if jobs:
                    # As the daemon: sealed in a worker while this thread
                    # (the loop) keeps going; measure its GIL waits.
                    done = threading.Event()
                    results: list[object] = []

                    def work(
                        jobs: list = jobs,  # type: ignore[type-arg]
                        results: list = results,  # type: ignore[type-arg]
                        done: threading.Event = done,
                    ) -> None:
                        results.extend(job.run() for job in jobs)
                        done.set()

                    t = time.perf_counter()
                    threading.Thread(target=work).start()
                    last = time.perf_counter()
                    while not done.is_set():
                        time.sleep(0.001)
                        now = time.perf_counter()
                        stalls.append(now - last)
                        last = now
                    seal_secs += time.perf_counter() - t
                    for job, sealed in zip(jobs, results, strict=True):
                        if store.install(job, sealed):  # type: ignore[arg-type]
                            sealed_records += len(sealed)  # type: ignore[arg-type]
                    del results
                    trim()
        del recs
    gc.collect()
    trim()
    grown = rss() - base
    print(
        f"{n:,} records, {raw / n:.0f} message bytes each, default config but max_memory"
        f" {store.max_memory / 2**20:.0f} MiB, max_records {store.max_records:,}"
    )
    print(
        f"  evicted: {store.evicted_total:,}; sealed: {store.sealed_records:,}; shards: {store.shard_count}"
    )
    print(
        f"  RSS growth {grown / 2**20:.0f} MiB = {grown / raw:.3f}x raw message bytes"
        f" ({grown / n:.0f} B/record); store's account {store.memory_bytes() / 2**20:.0f} MiB"
        f" = {store.memory_bytes() / raw:.3f}x"
    )
    stalls.sort()
    # The same loop with no worker: what the machine's other tenants cost.
    idle: list[float] = []
    last = time.perf_counter()
    while len(idle) < 2000:
        time.sleep(0.001)
        now = time.perf_counter()
        idle.append(now - last)
        last = now
    idle.sort()
    print(
        f"  sealing: {seal_secs / max(sealed_records, 1) * 1e6:.1f} us/record in a worker;"
        f" main thread's sleep(1 ms) gaps meanwhile: p99 {stalls[int(len(stalls) * 0.99)] * 1e3:.1f} ms,"
        f" max {stalls[-1] * 1e3:.1f} ms; with no worker: p99 {idle[int(len(idle) * 0.99)] * 1e3:.1f} ms,"
        f" max {idle[-1] * 1e3:.1f} ms (load average {os.getloadavg()[0]:.1f})"
    )

    rng = random.Random(7)
    windows = [T0 + rng.randrange(HOUR_US - 120_000_000) for _ in range(10_000)]
    per = 100

    def report(name: str, fn: Callable[[int], object], per_round: int = per) -> None:
        store.cache.clear()
        p50, p99 = latencies(fn, rounds, per_round)
        print(f"  {name:<52} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms", flush=True)

    print("queries (in-process; cache starts empty each row):")
    if args.memory_only:
        return
    report(
        "page of 100, 1-minute window",
        lambda i: store.query(Query(start=windows[i], end=windows[i] + 59_999_999, limit=100)),
    )
    report(
        "service= 1% (rare-svc), first page",
        lambda i: store.query(Query(start=windows[i], services=frozenset({"rare-svc"}), limit=100)),
    )
    report(
        "filter matching nothing",
        lambda i: store.query(Query(services=frozenset({"no-such-service"}), limit=100)),
    )

    def word_scan(word: str) -> int:
        keys = word_keys(words(word))
        hits = 0
        for shard in store._shards.values():  # what the search language will do per block
            if shard.run is not None:
                hits += sum(b.may_contain_keys(keys) for b in shard.run.live_blocks())
        return hits

    blocks = sum(len(s.run.live_blocks()) for s in store._shards.values() if s.run is not None)
    report(
        f"word in no message: probe all {blocks} blocks' filters", lambda i: word_scan(f"zq{i}x")
    )
    print(
        f"    blocks passing a word in no message (false positives): "
        f"{statistics.mean(word_scan(f'zq{i}y') for i in range(200)):.2f} of {blocks}"
    )
    report(
        "query= a word in no message (the whole query)",
        lambda i: store.query(Query(search=parse(f"zq{i}x"), limit=100)),
    )
    report(
        "q= substring in no message, 1 thread", lambda i: store.query(Query(q=f"no such {i}")), 2
    )
    with ThreadPoolExecutor(2) as pool:
        store.cache.mapper = pool.map
        report(
            "q= substring in no message, 2 threads",
            lambda i: store.query(Query(q=f"no such {i}")),
            2,
        )
        store.cache.mapper = map
    report("q= common word (timed), first page", lambda i: store.query(Query(q="timed")))
    report("stats by=level, everything", lambda i: store.stats(Query(), ("level",), None), 20)
    report("GET by id", lambda i: store.get(ids[i % len(ids)]))

    if made or n > 5_000_000:
        print("  (no restore at this size: the persist bench measures restarts)")
        return
    items = list(store.snapshot_items())
    fresh = default_store()
    t = time.perf_counter()
    fresh.restore(items)
    fresh.seal()
    print(
        f"  restore of {len(items):,} records into a new store, sealing as it goes:"
        f" {time.perf_counter() - t:.1f} s; evicted {fresh.evicted_total}"
    )


if __name__ == "__main__":
    main()
