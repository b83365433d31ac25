"""Benchmark: parser throughput per format on one core (messages per second).

Runs parse_syslog over RFC 5424 and RFC 3164 messages and parse_json_line
over JSON lines from bench/messages.py, and prints the median of 5 runs.
Time is this process's CPU time, so other processes on a shared machine skew
it less than wall time would (they still share caches and cores).

In each run a baseline is measured right before the parser on the same
messages: decode + `str.split(" ", 6)` + one Record, the least any Python
parser must do per message. The `x floor` column (median of per-run ratios)
says what fraction of that floor's speed the parser reaches; it moves less
with machine load than msg/s does.

    .venv/bin/python bench/parse.py            # ~1 minute
    .venv/bin/python bench/parse.py --quick    # ~10 s smoke run
    .venv/bin/python bench/parse.py --profile rfc5424   # cProfile, top 15
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections.abc import Callable

from messages import json_lines, mixed, rfc3164_messages, rfc5424_messages

from collector.jsonlines import parse_json_line
from collector.parse import parse_syslog
from collector.record import ParseOptions, Record

Parser = Callable[[bytes, int, "str | None", ParseOptions, bool], Record]

# name -> (generator, parser, target msg/s from issue 3)
FORMATS: dict[str, tuple[Callable[..., list[bytes]], Parser, int | None]] = {
    "rfc5424": (rfc5424_messages, parse_syslog, 200_000),
    "rfc3164": (rfc3164_messages, parse_syslog, 200_000),
    "json": (json_lines, parse_json_line, 150_000),
    "mixed": (mixed, parse_syslog, None),
}


def _run(parser: Parser, msgs: list[bytes], now: int, opts: ParseOptions) -> float:
    t0 = time.process_time()
    for m in msgs:
        parser(m, now, "192.0.2.1", opts, False)
    return len(msgs) / (time.process_time() - t0)


def _floor(msgs: list[bytes], now: int) -> float:
    t0 = time.process_time()
    for m in msgs:
        p = m.decode("utf-8", "replace").split(" ", 6)
        Record(now, now, p[0], p[1], None, None, 1, 5, p[-1], None, None, "raw")
    return len(msgs) / (time.process_time() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run, ~10 s")
    ap.add_argument("-n", type=int, default=None, help="messages per run")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--profile", choices=sorted(FORMATS), help="cProfile one format instead")
    args = ap.parse_args(argv)
    n = args.n or (20_000 if args.quick else 100_000)
    runs = args.runs or (3 if args.quick else 5)
    start = time.time()
    now = int(start * 1_000_000) + 60_000_000  # every message is from the last minute
    opts = ParseOptions()

    if args.profile:
        gen, parser, _ = FORMATS[args.profile]
        msgs = gen(n, seed=1, start=start)
        prof = cProfile.Profile()
        prof.enable()
        _run(parser, msgs, now, opts)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return 0

    print(f"parse throughput, one core (CPU time): {n:,} messages x {runs} runs")
    print(
        f"{'format':<8} {'median msg/s':>13} {'best':>9} {'us/msg':>7} {'x floor':>8} {'target':>7}"
    )
    missed = []
    for name, (gen, parser, target) in FORMATS.items():
        msgs = gen(n, seed=1, start=start)
        _run(parser, msgs[:5000], now, opts)  # warm the caches, as a running daemon has them
        rates, ratios = [], []
        for _ in range(runs):
            floor = _floor(msgs, now)
            rate = _run(parser, msgs, now, opts)
            rates.append(rate)
            ratios.append(rate / floor)
        med = statistics.median(rates)
        verdict = ""
        if target is not None:
            verdict = "ok" if med >= target else "below target"
            if med < target:
                missed.append(name)
        tgt = "-" if target is None else f"{target // 1000}k"
        print(
            f"{name:<8} {med:>13,.0f} {max(rates):>9,.0f} {1e6 / med:>7.2f} "
            f"{statistics.median(ratios):>8.2f} {tgt:>7}  {verdict}"
        )
    if missed:
        print(
            f"below target on this run: {', '.join(missed)} (see --profile; the machine may be busy)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
