"""Store benchmark: add rates, query latencies, stats, TTL sweep, bytes/record.

Run from the repo root:  .venv/bin/python bench/store.py [--quick] [--records N]

At N stored records (default 1M; 20 services, 50 hosts, ~250-byte messages,
one hour of event time) it prints medians of 5 runs: adds in order and with
10% arriving up to 30 s late, query pages (1-minute window, service= at 1%,
a filter matching nothing, q= matching nothing), /stats by level, the TTL
sweep of everything, and the store's memory (tracemalloc) against the raw
message bytes. It also runs the seed designs on fewer records and prints the
speed-up. The machine is shared and noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable

from collector.query import Query
from collector.record import Record
from collector.store import Store

HOUR_US = 3_600_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
SERVICES = [
    "sshd",
    "nginx",
    "api",
    "worker",
    "cron",
    "postgres",
    "redis",
    "kernel",
    "systemd",
    "dockerd",
    "kubelet",
    "haproxy",
    "postfix",
    "sudo",
    "auth-svc",
    "billing",
    "search",
    "gateway",
    "scheduler",
    "rare-svc",
]
# rare-svc is 1% of records: the `service=` benchmark's selectivity.
WEIGHTS = [12, 14, 14, 10, 4, 6, 4, 3, 6, 3, 4, 4, 2, 1, 4, 2, 2, 2, 2, 1]
HOSTS = (
    [f"web-{i:02d}" for i in range(30)]
    + [f"db-{i}" for i in range(10)]
    + [f"k8s-node-{i}" for i in range(10)]
)
USERS = ["root", "deploy", "alice", "bob", "postgres", "admin", "ubuntu", "git"]
PATHS = ["/api/v1/orders", "/api/v1/orders/8812/items", "/login", "/healthz", "/api/v2/search"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "curl/8.5.0",
    "Go-http-client/1.1",
    "Prometheus/2.51.0",
]


def _message(rng: random.Random, service: str) -> str:
    trace = f" trace_id={rng.getrandbits(96):024x} env=production zone=eu-west-1{'abc'[rng.randrange(3)]}"
    return _body(rng, service) + trace


def _body(rng: random.Random, service: str) -> str:
    ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    kind = rng.randrange(4)
    if kind == 0:
        return (
            f'{ip} - - "GET {rng.choice(PATHS)}?page={rng.randrange(50)}&limit=50 HTTP/1.1" '
            f'{rng.choice((200, 200, 200, 304, 404, 500))} {rng.randrange(100, 90_000)} "-" '
            f'"{rng.choice(AGENTS)}" rt={rng.random():.3f} upstream={ip}:8080'
        )
    if kind == 1:
        return (
            f"request_id={rng.getrandbits(128):032x} user_id={rng.randrange(10**6)} "
            f"method=POST path={rng.choice(PATHS)} status={rng.choice((201, 400, 409))} "
            f"duration_ms={rng.randrange(2, 900)} db_queries={rng.randrange(30)} "
            f'msg="Order placed for customer {rng.randrange(10**5)} with {rng.randrange(1, 9)} items, '
            f'total {rng.randrange(5, 900)}.{rng.randrange(100):02d} EUR"'
        )
    if kind == 2:
        return (
            f"Failed password for invalid user {rng.choice(USERS)} from {ip} port "
            f"{rng.randrange(1024, 65535)} ssh2; {rng.randrange(1, 9)} more authentication "
            f"failures; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip} session "
            f"{rng.getrandbits(64):016x} closed by {service} after {rng.randrange(1, 600)}s idle"
        )
    return (
        f"{service}[{rng.randrange(100, 40_000)}]: Connection to upstream {ip}:5432 timed out "
        f"after {rng.randrange(1, 30)}000 ms (attempt {rng.randrange(1, 5)}/5); retrying with "
        f"backoff {rng.randrange(1, 64)} s, pool size {rng.randrange(4, 64)}, "
        f"pending queries {rng.randrange(200)}, last error: ECONNRESET on socket fd={rng.randrange(3, 900)}"
    )


def with_late(records: list[Record], fraction: float, seed: int = 2) -> list[Record]:
    """The same arrivals, a fraction of them with event times up to 30 s earlier."""
    rng = random.Random(seed)
    out = list(records)
    for i in range(len(out)):
        if rng.random() < fraction:
            out[i] = dataclasses.replace(
                out[i], timestamp=out[i].timestamp - rng.randrange(30_000_000)
            )
    return out


def make_records(n: int, seed: int = 1, late_fraction: float = 0.0) -> list[Record]:
    """n records, one hour of event time in arrival order; a fraction up to 30 s late."""
    rng = random.Random(seed)
    step = HOUR_US // n
    services = rng.choices(SERVICES, WEIGHTS, k=n)
    out = []
    for i in range(n):
        service = services[i]
        arrival = T0 + i * step
        ts = arrival
        if late_fraction and rng.random() < late_fraction:
            ts = arrival - rng.randrange(30_000_000)
        r = rng.random()
        out.append(
            Record(
                timestamp=ts,
                received_at=arrival,
                host=rng.choice(HOSTS),
                service=service,
                procid=str(1000 + hash(service) % 3000),
                msgid=None,
                facility=rng.choice((1, 3, 4, 10, 16)),
                level=3 if r < 0.05 else 4 if r < 0.15 else 6 if r < 0.9 else 7,
                message=_message(rng, service),
                structured_data={"meta@32473": {"region": "eu-west-1"}} if r > 0.97 else None,
                fields=None,
                format="rfc5424" if r < 0.5 else "rfc3164",
            )
        )
    return out


def new_store() -> Store:
    return Store(ttl_us=2 * HOUR_US, max_records=10**8, max_memory=1 << 40)


def fill(records: list[Record], batch: int = 1000) -> tuple[Store, float]:
    store = new_store()
    gc.collect()
    t = time.perf_counter()
    for i in range(0, len(records), batch):
        store.add_many(records[i : i + batch])
    return store, time.perf_counter() - t


def latencies(fn: Callable[[int], object], rounds: int, per_round: int) -> tuple[float, float]:
    """Median over rounds of (p50, p99) in ms."""
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


def memory_per_record(n: int) -> tuple[float, float, float, float, float, float]:
    """Bytes/record traced and estimated, unsealed then sealed; raw message
    bytes/record; ms to seal one 2 MiB budget. The records are generated
    in chunks inside tracing and dropped after the add, so in chunks inside tracing and dropped after the add, so
    everything the store keeps is counted and nothing else is."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    store = new_store()
    raw = 0
    chunk = 50_000
    for c in range(0, n, chunk):
        recs = make_records(min(chunk, n - c), seed=100 + c)
        for i, r in enumerate(recs):
            r.timestamp = r.received_at = T0 + (c + i) * (HOUR_US // n)
        raw += sum(len(r.message.encode()) for r in recs)
        for i in range(0, len(recs), 1000):
            store.add_many(recs[i : i + 1000])
        del recs
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    estimate = store.memory_bytes()
    store.seal()
    gc.collect()
    sealed = tracemalloc.get_traced_memory()[0] - base
    sealed_estimate = store.memory_bytes()
    tracemalloc.stop()
    store = new_store()
    recs = make_records(min(n, 200_000), seed=5)
    for i in range(0, len(recs), 1000):
        store.add_many(recs[i : i + 1000])
    times = []
    for _ in range(5):
        t = time.perf_counter()
        store.seal(2 * 1024 * 1024)
        times.append((time.perf_counter() - t) * 1e3)
    return (
        used / n,
        estimate / n,
        sealed / n,
        sealed_estimate / n,
        raw / n,
        statistics.median(times),
    )


class SeedStore:
    """The seed design: one list; the timestamp list rebuilt and list.insert per record."""

    def __init__(self) -> None:
        self.recs: list[Record] = []

    def add_many(self, records: list[Record]) -> None:
        for rec in records:
            keys = [r.timestamp for r in self.recs]
            self.recs.insert(bisect.bisect_right(keys, rec.timestamp), rec)


class ThinStore:
    """The thin store this one replaced: a kept key list, bisect + list.insert per record."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []
        self.recs: list[Record] = []
        self.seq = 0

    def add_many(self, records: list[Record]) -> None:
        for rec in records:
            self.seq += 1
            key = (rec.timestamp, self.seq)
            i = bisect.bisect(self.keys, key)
            self.keys.insert(i, key)
            self.recs.insert(i, rec)


def timed_fill(make: Callable[[], object], records: list[Record], batch: int = 1000) -> float:
    store = make()
    t = time.perf_counter()
    for i in range(0, len(records), batch):
        store.add_many(records[i : i + batch])  # type: ignore[attr-defined]
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~10 s smoke run (50k records)")
    ap.add_argument("--records", type=int, default=None, help="stored records (default 1M)")
    ap.add_argument("--seed-records", type=int, default=None, help="records for the seed designs")
    args = ap.parse_args(argv)
    n = args.records or (50_000 if args.quick else 1_000_000)
    # The seed design is O(n^2): 100k records take it minutes (--seed-records 100000).
    seed_n = args.seed_records or (3_000 if args.quick else 20_000)
    runs = 3 if args.quick else 5
    rows: list[tuple[str, str, str]] = []

    def row(name: str, value: str, target: str) -> None:
        rows.append((name, value, target))
        print(f"  {name:<48} {value:>16}   {target}", flush=True)

    print(f"generating {n:,} records ...", flush=True)
    in_order = make_records(n)
    late = with_late(in_order, 0.10)
    # The inputs are the benchmark's, not the store's: keep the collector's
    # full passes from walking their millions of objects.
    gc.collect()
    gc.freeze()
    raw = sum(len(r.message.encode()) for r in in_order) / n
    print(f"  mean message {raw:.0f} bytes; {len(SERVICES)} services, {len(HOSTS)} hosts")
    print(f"store benchmark, {n:,} records, medians of {runs} runs")

    rates, late_rates, sweeps = [], [], []
    store = new_store()
    late_store = new_store()
    for _ in range(runs):
        store, secs = fill(in_order)
        rates.append(n / secs)
        late_store, secs = fill(late)
        late_rates.append(n / secs)
        t = time.perf_counter()
        gone = late_store.expire(T0 + 10 * HOUR_US)
        sweeps.append((time.perf_counter() - t) * 1e3)
        assert gone == n
    row("add, in order", f"{statistics.median(rates):,.0f}/s", ">= 1,000,000/s")
    row("add, 10% up to 30 s late", f"{statistics.median(late_rates):,.0f}/s", ">= 300,000/s")
    row("  (out-of-order records in that run)", f"{late_store.out_of_order_total:,}", "")
    row(f"TTL sweep of {n:,} expired records", f"{statistics.median(sweeps):.2f} ms", "< 10 ms")
    late_store = new_store()

    rng = random.Random(7)
    windows = [T0 + rng.randrange(HOUR_US - 60_000_000) for _ in range(10_000)]
    per_round = 30 if args.quick else 200

    def window_page(i: int) -> object:
        w = windows[i % len(windows)]
        return store.query(Query(start=w, end=w + 59_999_999, limit=100))

    p50, p99 = latencies(window_page, runs, per_round)
    row("page of 100 in a 1-minute window, p50 / p99", f"{p50:.2f} / {p99:.2f} ms", "<= 1 ms")

    def rare_page(i: int) -> object:
        w = windows[i % len(windows)]
        return store.query(Query(start=w, services=frozenset({"rare-svc"}), limit=100))

    p50, p99 = latencies(rare_page, runs, per_round)
    row("service= matching 1%, first page, p50 / p99", f"{p50:.2f} / {p99:.2f} ms", "<= 5 ms")

    def nothing(i: int) -> object:
        return store.query(Query(services=frozenset({"no-such-service"}), limit=100))

    p50, p99 = latencies(nothing, runs, per_round)
    row("filter matching nothing (whole store), p50 / p99", f"{p50:.2f} / {p99:.2f} ms", "<= 5 ms")

    def level_page(i: int) -> object:
        return store.query(Query(levels=frozenset({3}), hosts=frozenset({"db-3"}), limit=100))

    p50, p99 = latencies(level_page, runs, per_round)
    row("level=err&host=db-3 (0.1%), first page, p50 / p99", f"{p50:.2f} / {p99:.2f} ms", "(extra)")

    def q_nothing(i: int) -> object:
        return store.query(Query(q=f"no such text {i}", limit=100))

    p50, p99 = latencies(q_nothing, runs, 3 if args.quick else 5)
    row("q= matching nothing, all records, median", f"{p50:.1f} ms", "<= 100 ms")

    def q_rare(i: int) -> object:
        return store.query(Query(q="order placed for customer 4242 ", limit=100))

    p50, p99 = latencies(q_rare, runs, 3 if args.quick else 5)
    row("q= matching ~0.01%, all records, median", f"{p50:.1f} ms", "(extra)")

    p50, p99 = latencies(lambda i: store.stats(Query(), ("level",), None), runs, 20)
    row("stats by=level over everything, median", f"{p50:.2f} ms", "<= 10 ms")
    p50, p99 = latencies(lambda i: store.stats(Query(), ("level",), 60_000_000), runs, 5)
    row("stats by=level, step=1m, everything, median", f"{p50:.2f} ms", "(extra)")
    p50, p99 = latencies(
        lambda i: store.stats(Query(services=frozenset({"api"})), ("level",), None), runs, 5
    )
    row("stats by=level, service=api (14%), median", f"{p50:.1f} ms", "(extra)")

    fresh = store.memory_bytes() / n
    seals = []
    for _ in range(runs):
        t = time.perf_counter()
        store.seal(2 * 1024 * 1024)
        seals.append((time.perf_counter() - t) * 1e3)
    store.seal()
    sealed_est = store.memory_bytes() / n
    row("sealing 2 MiB of text (one sweep's budget)", f"{statistics.median(seals):.1f} ms", "")
    store = new_store()  # let the filled one go before measuring memory

    m = min(n, 200_000)
    traced, estimate, sealed, _, raw_mem, _ = memory_per_record(m)
    row("raw message bytes per record", f"{raw_mem:.0f} B", "")
    row(f"memory/record, fresh, {m:,} (tracemalloc)", f"{traced:.0f} B", "")
    row(f"memory/record, fresh, {m:,} (store's estimate)", f"{estimate:.0f} B", "")
    row(f"memory/record, sealed, {m:,} (tracemalloc)", f"{sealed:.0f} B", "")
    row(f"memory/record, fresh, {n:,} (store's estimate)", f"{fresh:.0f} B", "")
    row(f"memory/record, sealed, {n:,} (store's estimate)", f"{sealed_est:.0f} B", "")
    row("memory / raw message bytes, fresh (traced)", f"{traced / raw_mem:.2f}x", "<= 2x")
    row("memory / raw message bytes, sealed (traced)", f"{sealed / raw_mem:.2f}x", "<= 2x")
    row(f"memory / raw message bytes, sealed, {n:,}", f"{sealed_est / raw_mem:.2f}x", "<= 2x")

    subset = in_order[:seed_n]
    seed_t = statistics.median(
        timed_fill(SeedStore, subset) for _ in range(1 if seed_n >= 20_000 else 3)
    )
    thin_t = statistics.median(timed_fill(ThinStore, subset) for _ in range(runs))
    ours_t = statistics.median(timed_fill(new_store, subset) for _ in range(runs))
    row(f"seed design, {seed_n:,} adds", f"{seed_n / seed_t:,.0f}/s", "")
    row(f"thin store (bisect + list.insert), {seed_n:,} adds", f"{seed_n / thin_t:,.0f}/s", "")
    row(f"this store, {seed_n:,} adds", f"{seed_n / ours_t:,.0f}/s", "")
    row("speed-up over the seed design", f"{seed_t / ours_t:,.0f}x", "")
    row("speed-up over the thin store", f"{thin_t / ours_t:.1f}x", "")
    subset = late[: min(n, 100_000)]
    thin_t = statistics.median(timed_fill(ThinStore, subset) for _ in range(runs))
    ours_t = statistics.median(timed_fill(new_store, subset) for _ in range(runs))
    row(f"speed-up over the thin store, {len(subset):,}, 10% late", f"{thin_t / ours_t:.1f}x", "")


if __name__ == "__main__":
    main()
