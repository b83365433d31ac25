"""Late records into one large open shard: what a batch costs the loop.

    .venv/bin/python bench/late.py [--records 1700000] [--late 0.05] [--read-every 20]

Records arrive at --rate records per second of event time, in --batch-record
batches, a fraction --late of them up to 30 s late (as with many senders
whose clocks or buffers lag); every --read-every batches something reads the
key index (a query, an eviction step), which merges the late records that
wait beside it. Prints the add() median and p99 over the last 500 batches,
the merging reads, and the loop time the two cost together per 500 batches.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from collector.record import Record
from collector.shard import Shard

BASE = 1_767_225_600_000_000


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_700_000)
    ap.add_argument("--late", type=float, default=0.05, help="fraction up to 30 s late")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=55_000, help="records per second of event time")
    ap.add_argument("--read-every", type=int, default=20, help="batches between reads; 0: none")
    args = ap.parse_args(argv)
    rnd = random.Random(1)
    shard = Shard(0)
    seq = 0
    t = BASE
    adds: list[float] = []
    reads: list[float] = []
    for b in range(args.records // args.batch):
        keys = []
        for i in range(args.batch):
            seq += 1
            ts = t + i * 1_000_000 // args.rate
            if rnd.random() < args.late:
                ts -= rnd.randint(0, 30_000_000)
            keys.append((ts, seq))
        keys.sort()
        recs = [
            Record(ts, ts, "h", "s", None, None, 1, 6, f"message {s}", None, None, "raw")
            for ts, s in keys
        ]
        t += args.batch * 1_000_000 // args.rate
        t0 = time.perf_counter()
        shard.add(recs, [k[0] for k in keys], [k[1] for k in keys])
        adds.append(time.perf_counter() - t0)
        if args.read_every and b % args.read_every == args.read_every - 1:
            t0 = time.perf_counter()
            shard.ts  # noqa: B018 (a read: merges what waits)
            reads.append(time.perf_counter() - t0)
    last = adds[-500:]
    window = reads[-(500 // args.read_every) :] if args.read_every else []
    print(f"records {len(shard):,}, {args.late:.0%} late, batches of {args.batch}")
    print(
        f"add: median {statistics.median(last) * 1e3:.2f} ms, "
        f"p99 {sorted(last)[int(len(last) * 0.99)] * 1e3:.2f} ms"
    )
    if window:
        print(
            f"merging read: median {statistics.median(window) * 1e3:.2f} ms, max {max(window) * 1e3:.2f} ms"
        )
    print(f"loop time per 500 batches: {(sum(last) + sum(window)) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
