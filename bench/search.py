"""Search benchmark: regular-expression engines, the parser, and queries at scale.

Run from the repo root:  .venv/bin/python bench/search.py [--quick] [--part regex|store]

`regex` (why /regex/ terms use RE2, not Python's re):
  - pathological patterns ((a+)+$, (a|aa)*c, (x+x+)+y) on "aaa...b" of
    growing length: re's time grows exponentially (it is stopped at a
    budget), RE2's stays linear, measured up to a 65 KB message;
  - everyday patterns over realistic messages: microseconds per message, re vs RE2;
  - the parser itself: microseconds per query.
`store`: a store of N records (default 1M) queried through the language and
through the equivalent parameters: first page p50/p99, /fields, /stats by a
fields.* key (see the note printed with it).
Figures are medians of several interleaved runs; the machine is shared.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import re2  # noqa: E402 (after the sys.path fix)

from bench.messages import json_lines, rfc3164_messages, rfc5424_messages  # noqa: E402
from collector.search import compile_regex, parse  # noqa: E402

PATHOLOGICAL = [r"(a+)+$", r"(a|aa)*c", r"(x+x+)+y".replace("x", "a")]
EVERYDAY = [r"time(d )?out", r"\d{3} \d+ms", r"user=\w+", r"failed password for (root|admin)"]
QUERIES = [
    "timeout",
    '-service:cron level>=err "disk full"',
    "host:web-* (error OR fail*) -fields.user_id:*",
    "sd.origin.ip:10.0.0.1 /time(d )?out/ fields.http.status:500,502",
]


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _re_with_budget(pattern: str, text: str, budget: float) -> float | None:
    """Seconds re takes, or None when it ran past `budget` (run in a thread
    that is left to finish: re holds the GIL, so the budget is checked by
    a child process instead)."""
    import multiprocessing as mp

    def work(q: mp.Queue[float]) -> None:
        compiled = re.compile(pattern, re.IGNORECASE)
        t0 = time.perf_counter()
        compiled.search(text)
        q.put(time.perf_counter() - t0)

    q: mp.Queue[float] = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=work, args=(q,))
    p.start()
    p.join(budget)
    if p.is_alive():
        p.kill()
        p.join()
        return None
    return q.get()


def bench_regex(quick: bool) -> None:
    budget = 2.0 if quick else 5.0
    print("== pathological patterns on 'a'*n + 'b' (seconds; re stopped at the budget) ==")
    print(f"{'pattern':<14} {'n':>6} {'re':>10} {'RE2':>10}")
    for pattern in PATHOLOGICAL:
        search = compile_regex(pattern)
        for n in (16, 20, 24, 28, 65_536):
            text = "a" * n + "b"
            re_s = _re_with_budget(pattern, text, budget) if n < 1000 else None
            re2_s = statistics.median(_time(lambda: search(text)) for _ in range(5))
            shown = f"{re_s:.4f}" if re_s is not None else (f">{budget:.0f}" if n < 1000 else "-")
            print(f"{pattern:<14} {n:>6} {shown:>10} {re2_s:>10.6f}")

    n = 5_000 if quick else 20_000
    texts = [
        m.decode("utf-8", "replace")
        for m in rfc5424_messages(n // 3, seed=1)
        + rfc3164_messages(n // 3, seed=2)
        + json_lines(n // 3, seed=3)
    ]
    print(f"\n== everyday patterns over {len(texts)} messages (us per message, median of 5) ==")
    print(f"{'pattern':<34} {'re':>8} {'RE2':>8} {'hits':>6}")
    for pattern in EVERYDAY:
        c_re = re.compile(pattern, re.IGNORECASE).search
        opts = re2.Options()
        opts.case_sensitive = False
        c_re2 = re2.compile(pattern, options=opts).search
        runs_re, runs_re2 = [], []
        for _ in range(5):  # interleaved
            runs_re.append(_time(lambda s=c_re: [s(t) for t in texts]))
            runs_re2.append(_time(lambda s=c_re2: [s(t) for t in texts]))
        hits = sum(c_re(t) is not None for t in texts)
        assert hits == sum(c_re2(t) is not None for t in texts), pattern
        us = 1e6 / len(texts)
        print(
            f"{pattern:<34} {statistics.median(runs_re) * us:>8.2f} "
            f"{statistics.median(runs_re2) * us:>8.2f} {hits:>6}"
        )

    print("\n== parsing a query (us, median of 5 x 1000) ==")
    for q in QUERIES:
        runs = [_time(lambda q=q: [parse(q) for _ in range(1000)]) for _ in range(5)]
        print(f"{statistics.median(runs) * 1000:>8.1f}  {q}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--part", choices=["regex", "store", "all"], default="all")
    ap.add_argument("--records", type=int, default=1_000_000)
    args = ap.parse_args()
    if args.part in ("regex", "all"):
        bench_regex(args.quick)


if __name__ == "__main__":
    main()
