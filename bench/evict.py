"""Eviction for max_memory from one large open shard: the worst single add_many
(ingest + _enforce) and the store's account against tracemalloc.

    .venv/bin/python bench/evict.py [--records 800000] [--late 0.0]

All records fall in one open shard (a one-hour shard span); max_memory is set
so that the shard holds about --records live records, then as many again
arrive, so every eviction pass frees from that open shard.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.store import HOUR_US, make_records
from collector.store import Store


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=800_000)
    ap.add_argument("--late", type=float, default=0.0, help="fraction of records up to 30 s late")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument(
        "--tracemalloc", action="store_true", help="compare the account with tracemalloc"
    )
    args = ap.parse_args(argv)
    n = args.records
    recs = make_records(2 * n, late_fraction=args.late)
    # Size max_memory from a fill without bounds: the bytes of n records.
    probe = Store(
        ttl_us=4 * HOUR_US, max_records=10**9, max_memory=1 << 40, shard_span_us=4 * HOUR_US
    )
    for i in range(0, n, args.batch):
        probe.add_many(recs[i : i + args.batch])
    max_memory = probe.memory_bytes() + probe.cache.max_bytes
    del probe
    gc.collect()
    store = Store(
        ttl_us=4 * HOUR_US, max_records=10**9, max_memory=max_memory, shard_span_us=4 * HOUR_US
    )
    if args.tracemalloc:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
    times = []
    evicting = []
    for i in range(0, 2 * n, args.batch):
        before = store.evicted_total
        t = time.perf_counter()
        store.add_many(recs[i : i + args.batch])
        dt = time.perf_counter() - t
        times.append(dt)
        if store.evicted_total > before:
            evicting.append(dt)
    held = tracemalloc.get_traced_memory()[0] - base if args.tracemalloc else 0
    print(f"records per fill {n}, late {args.late}, max_memory {max_memory / 2**20:.1f} MiB")
    import collector

    print(collector.__file__)
    print(f"stored {len(store)}, shards {store.shard_count}, evicted {store.evicted_total}")
    print(f"add_many calls {len(times)}, evicting {len(evicting)}")
    print(f"median add_many {statistics.median(times) * 1e3:.2f} ms")
    if evicting:
        print(
            f"evicting add_many: median {statistics.median(evicting) * 1e3:.2f} ms, worst {max(evicting) * 1e3:.1f} ms"
        )
    print(f"store memory_bytes {store.memory_bytes() / 2**20:.1f} MiB")
    if args.tracemalloc:
        print(f"tracemalloc held by the store {held / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
