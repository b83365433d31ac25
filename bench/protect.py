"""Protection benchmark: the CPU that rate limiting and redaction add to ingest.

In-process, on the path a listener batch takes: parse (pure path) -> rate
limit -> redact -> store.add_many, 1024 records a batch, over realistic mixed
RFC 5424 / RFC 3164 messages (bench/messages.py; most carry IPv4 addresses), and the
same with addresses and e-mails replaced by names ("clean": the scan alone).
Variants run interleaved, several rounds; the median CPU us/msg of each and
its ratio to the baseline (parse + store, no socket work: so the ratios are
upper bounds of what a real daemon sees, whose per-message cost is higher).

    .venv/bin/python bench/protect.py [--rounds 7] [--n 50000]
"""

from __future__ import annotations

import argparse
import gc
import re
import statistics
import time
from collections.abc import Callable

from messages import mixed

from collector.config import RateLimitConfig, RedactRule
from collector.daemon import tune_gc
from collector.parse import parse_syslog
from collector.ratelimit import RateLimiter
from collector.record import ParseOptions, Record
from collector.redact import Redactor
from collector.store import Store

BATCH = 1024
_ADDRESS = re.compile(
    rb"\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}::?[0-9a-f]{1,4}"
)
_EMAIL = re.compile(rb"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
BUILTINS = ("ipv4", "ipv6", "email", "card", "secret")

Stage = Callable[[list[Record]], list[Record]]


def _variants() -> dict[str, Callable[[], Stage | None]]:
    def limiter(key: str) -> Callable[[], Stage]:
        def make() -> Stage:
            lim = RateLimiter(RateLimitConfig(rate=1e8, burst=10**8, key=key), "b", time.monotonic)
            return lambda recs: lim.admit(recs, [(0, "10.0.0.1")], lambda _r, _n: None)

        return make

    def redactor(*names: str) -> Callable[[], Stage]:
        def make() -> Stage:
            red = Redactor(tuple(RedactRule(n) for n in names), b"k" * 32, {})

            def stage(recs: list[Record]) -> list[Record]:
                red.apply(recs)
                return recs

            return stage

        return make

    out: dict[str, Callable[[], Stage | None]] = {"baseline": lambda: None}
    out["rate_limit key=host"] = limiter("host")
    out["rate_limit key=host,service"] = limiter("host,service")
    for name in BUILTINS:
        out[f"redact {name}"] = redactor(name)
    out["redact all five"] = redactor(*BUILTINS)
    out["redact custom RE2 user=(\\w+)"] = lambda: _custom()
    return out


def _custom() -> Stage:
    red = Redactor((RedactRule(r"user=(\w+)"),), b"k" * 32, {})

    def stage(recs: list[Record]) -> list[Record]:
        red.apply(recs)
        return recs

    return stage


def run_once(frames: list[bytes], stage: Stage | None) -> float:
    """CPU seconds per message for parse (+ stage) + store."""
    store = Store(
        ttl_us=3600 * 10**6, max_records=10**7, max_memory=2**31, shard_span_us=60 * 10**6
    )
    opts = ParseOptions()
    gc.collect()
    t0 = time.process_time()
    for i in range(0, len(frames), BATCH):
        now = time.time_ns() // 1000
        recs = [parse_syslog(f, now, "10.0.0.1", opts, False) for f in frames[i : i + BATCH]]
        if stage is not None:
            recs = stage(recs)
        store.add_many(recs)
    return (time.process_time() - t0) / len(frames)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=50_000)
    args = ap.parse_args()
    frames = mixed(args.n, seed=1)
    # The same messages with nothing to redact: addresses become names, so
    # what is left is the scan, not the replacing.
    clean = [_ADDRESS.sub(b"db.example", _EMAIL.sub(b"someone", f)) for f in frames]
    tune_gc()  # as the daemon does: a batch's garbage dies young
    variants = _variants()
    results: dict[str, list[float]] = {name: [] for name in variants}
    results["clean: baseline"] = []
    results["clean: redact all five"] = []
    run_once(frames[:5000], None)  # warm up
    for _ in range(args.rounds):
        for name, make in variants.items():  # interleaved: drift hits all alike
            results[name].append(run_once(frames, make()))
        results["clean: baseline"].append(run_once(clean, None))
        results["clean: redact all five"].append(run_once(clean, variants["redact all five"]()))
    print(f"{args.n} mixed messages x {args.rounds} rounds, medians (CPU us/msg):")
    for name, runs in results.items():
        base = statistics.median(results["clean: baseline" if "clean" in name else "baseline"])
        med = statistics.median(runs)
        print(f"  {name:32s} {med * 1e6:7.2f} us/msg  {100 * (med / base - 1):+6.1f}%")


if __name__ == "__main__":
    main()
