"""Benchmark: parser throughput per format on one core (messages per second).

Runs parse_syslog over RFC 5424 and RFC 3164 messages and parse_json_line
over JSON lines from bench/messages.py, and prints the median of 5 runs.
Rows marked `pure` run parse_syslog_pure (Python alone); `batch` rows hand
256 frames at a time to the native parse_frames, as the TCP listener does
(rows for the native path are left out when it is not loaded). Every run
measures each row once, so rows are interleaved and compare fairly.
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

from collector.daemon import tune_gc
from collector.jsonlines import parse_json_line
from collector.parse import NATIVE, parse_frames, parse_syslog, parse_syslog_pure
from collector.record import ParseOptions, Record

Parser = Callable[[bytes, int, "str | None", ParseOptions, bool], Record]
BATCH = 256


def _batch(data: bytes, now: int, sender: str | None, opts: ParseOptions, cut: bool) -> Record:
    raise NotImplementedError  # a marker: _run hands BATCH frames at once to parse_frames


# name -> (generator, parser, target msg/s from issue 3)
FORMATS: dict[str, tuple[Callable[..., list[bytes]], Parser, int | None]] = {
    "rfc5424": (rfc5424_messages, parse_syslog, 200_000),
    "rfc5424 batch": (rfc5424_messages, _batch, None),
    "rfc5424 pure": (rfc5424_messages, parse_syslog_pure, None),
    "rfc3164": (rfc3164_messages, parse_syslog, 200_000),
    "rfc3164 batch": (rfc3164_messages, _batch, None),
    "rfc3164 pure": (rfc3164_messages, parse_syslog_pure, None),
    "json": (json_lines, parse_json_line, 150_000),
    "mixed": (mixed, parse_syslog, None),
    "mixed batch": (mixed, _batch, None),
    "mixed pure": (mixed, parse_syslog_pure, None),
}
if not NATIVE:
    for _name in ("rfc5424 batch", "rfc5424 pure", "rfc3164 batch", "rfc3164 pure"):
        del FORMATS[_name]
    for _name in ("mixed batch", "mixed pure"):
        del FORMATS[_name]


def _run(parser: Parser, msgs: list[bytes], now: int, opts: ParseOptions) -> float:
    if parser is _batch:
        return _run_batch(msgs, now, opts)
    t0 = time.process_time()
    recs = []  # a listener batch's records live until the sink takes them
    for m in msgs:
        recs.append(parser(m, now, "192.0.2.1", opts, False))
        if len(recs) == BATCH:
            recs = []
    return len(msgs) / (time.process_time() - t0)


def _run_batch(msgs: list[bytes], now: int, opts: ParseOptions) -> float:
    chunks = [[(m, False) for m in msgs[i : i + BATCH]] for i in range(0, len(msgs), BATCH)]
    t0 = time.process_time()
    for frames in chunks:
        parsed = parse_frames(frames, now, "192.0.2.1", opts) or [None] * len(frames)
        recs = []
        for rec, (m, cut) in zip(parsed, frames, strict=True):
            recs.append(parse_syslog(m, now, "192.0.2.1", opts, cut) if rec is None else rec)
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
    tune_gc()  # as `collector run` does: a batch of records dies young, unscanned
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
        f"{'format':<13} {'median msg/s':>13} {'best':>9} {'us/msg':>7} {'x floor':>8} {'target':>7}"
    )
    missed = []
    inputs = {name: gen(n, seed=1, start=start) for name, (gen, _, _) in FORMATS.items()}
    rates: dict[str, list[float]] = {name: [] for name in FORMATS}
    ratios: dict[str, list[float]] = {name: [] for name in FORMATS}
    for name, (_, parser, _) in FORMATS.items():
        _run(
            parser, inputs[name][:5000], now, opts
        )  # warm the caches, as a running daemon has them
    for _ in range(runs):  # interleaved: every row once per run
        for name, (_, parser, _) in FORMATS.items():
            floor = _floor(inputs[name], now)
            rate = _run(parser, inputs[name], now, opts)
            rates[name].append(rate)
            ratios[name].append(rate / floor)
    for name, (_, _, target) in FORMATS.items():
        med = statistics.median(rates[name])
        verdict = ""
        if target is not None:
            verdict = "ok" if med >= target else "below target"
            if med < target:
                missed.append(name)
        tgt = "-" if target is None else f"{target // 1000}k"
        print(
            f"{name:<13} {med:>13,.0f} {max(rates[name]):>9,.0f} {1e6 / med:>7.2f} "
            f"{statistics.median(ratios[name]):>8.2f} {tgt:>7}  {verdict}"
        )
    if missed:
        print(
            f"below target on this run: {', '.join(missed)} (see --profile; the machine may be busy)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
