"""Benchmark: parser throughput per format on one core (messages per second).

Runs parse_syslog over RFC 5424 and RFC 3164 mixes and parse_json_line over
JSON lines from bench/messages.py, 5 runs each, and prints the median. A
`bytes.decode` loop over the same messages is measured in the same run as a
floor, so figures from a noisy machine can be compared as ratios.

    .venv/bin/python bench/parse.py            # ~1 minute
    .venv/bin/python bench/parse.py --quick    # ~10 s smoke run
    .venv/bin/python bench/parse.py --profile rfc3164   # cProfile top 15
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.messages import json_lines, mixed, rfc3164_messages, rfc5424_messages
from collector.jsonlines import parse_json_line
from collector.parse import ParseOptions, parse_syslog
from collector.record import Record

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


def _floor(msgs: list[bytes]) -> float:
    t0 = time.process_time()
    for m in msgs:
        m.decode("utf-8", "replace")
    return len(msgs) / (time.process_time() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run, ~10 s")
    ap.add_argument("-n", type=int, default=None, help="messages per run")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--profile", choices=sorted(FORMATS), help="cProfile one format instead")
    args = ap.parse_args(argv)
    n = args.n or (20_000 if args.quick else 100_000)
    runs = args.runs or (3 if args.quick else 5)
    start = time.time()
    now = int(start * 1_000_000) + 60_000_000  # all messages are within the last minute
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

    print(f"parse throughput, one core: {n} messages x {runs} runs, median (min-max)")
    print(
        f"{'format':<9} {'msg/s':>10} {'range':>21} {'us/msg':>7} {'target':>8}  {'vs decode':>9}"
    )
    for name, (gen, parser, target) in FORMATS.items():
        msgs = gen(n, seed=1, start=start)
        _run(parser, msgs[:2000], now, opts)  # warm caches as a running daemon has them
        rates, floors = [], []
        for _ in range(runs):
            floors.append(_floor(msgs))
            rates.append(_run(parser, msgs, now, opts))
        med = statistics.median(rates)
        floor = statistics.median(floors)
        verdict = "" if target is None else ("ok" if med >= target else "MISSED")
        tgt = "-" if target is None else f"{target // 1000}k"
        print(
            f"{name:<9} {med:>10,.0f} {min(rates):>10,.0f}-{max(rates):<10,.0f} {1e6 / med:>7.2f} "
            f"{tgt:>8}  {med / floor:>8.3f}x {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
