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
import dataclasses
import gc
import random
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import re2
from messages import json_lines, rfc3164_messages, rfc5424_messages  # bench/messages.py

from collector.search import compile_regex, parse

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
            re2_s = statistics.median(_time(lambda s=search, t=text: s(t)) for _ in range(5))
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


STORE_QUERIES = [
    # (label, the search language, the same filter as parameters or None)
    ("service 1% (rare-svc)", "service:rare-svc", {"services": frozenset({"rare-svc"})}),
    (
        "contract example",
        '-service:cron level>=err "timed out"',
        None,
    ),
    (
        "phrase + host",
        '"failed password" host:web-01',
        {"hosts": frozenset({"web-01"}), "q": "failed password"},
    ),
    ("word, 25% of records", "ECONNRESET", {"q": "econnreset"}),
    ("rare phrase (one record)", None, None),  # filled in from the data
    ("prefix word", "retry*", None),
    ("regex, common", "/timed? out/", None),
    ("fields.user_id:42", "fields.user_id:42", None),
    ("host:web-0* level>=err", "host:web-0* level>=err", None),
]


def _with_fields(recs: list[Any], seed: int = 3) -> list[Any]:
    """A third of the records as JSON lines carry: user_id, http.status, req."""
    rng = random.Random(seed)
    out = []
    for i, r in enumerate(recs):
        if i % 3 == 0:
            fields = {
                "user_id": rng.randrange(5000),
                "http": {"status": rng.choice((200, 200, 404, 500))},
                "req": f"{rng.getrandbits(32):08x}",
            }
            r = dataclasses.replace(r, fields=fields, format="json")
        out.append(r)
    return out


def _lat(fn: Callable[[], object], n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e3, times[min(n - 1, int(n * 0.99))] * 1e3


def bench_store(n: int, quick: bool) -> None:
    from store import make_records, new_store  # bench/store.py

    from collector.query import Query

    t0 = time.perf_counter()
    recs = _with_fields(make_records(n))
    store = new_store()
    for i in range(0, n, 1000):
        store.add_many(recs[i : i + 1000])
    store.seal()
    rare = recs[n // 2].message.split(" ")[:4]
    del recs  # a million Record objects would make every full GC pause seconds
    gc.collect()
    gc.freeze()  # as the daemon does (see daemon.GC_*): what is stored is not garbage
    print(f"\n== store of {n} records (built in {time.perf_counter() - t0:.0f} s) ==")
    runs = 5 if quick else 30
    print(f"first page (limit 100, newest first), ms: the first call, then p50 / p99 of {runs}")
    print(f"{'query':<28} {'first':>7} {'language':>17} {'parameters':>17}  matches")
    for label, text, params in STORE_QUERIES:
        if text is None:
            text = '"' + " ".join(rare) + '"'
        q_lang = Query(search=parse(text), order="desc", limit=100)
        t0 = time.perf_counter()
        store.query(q_lang)
        first = (time.perf_counter() - t0) * 1e3
        if text.startswith("fields."):
            # Its per-shard value indexes fill in a budget per request: time the
            # pages once they have (a page a user pages through warms them).
            for _ in range(n // 20_000 + 1):
                store.query(q_lang)
        lang = _lat(lambda q=q_lang: store.query(q), runs)
        shown_params = "-"
        if params is not None:
            q_par = Query(order="desc", limit=100, **params)
            par = _lat(lambda q=q_par: store.query(q), runs)
            shown_params = f"{par[0]:7.2f} / {par[1]:7.2f}"
        total = store.stats(Query(search=parse(text)))["total"]
        print(
            f"{label:<28} {first:7.1f} {lang[0]:7.2f} / {lang[1]:7.2f} {shown_params:>17}  {total}"
        )

    print("\n/fields and /stats (ms; cold = first call, warm = median of the next ones)")
    t0 = time.perf_counter()
    read = store.warm(10**9)
    print(
        f"(the sweeper's share first: counting field names of {read} records took "
        f"{(time.perf_counter() - t0) * 1e3:.0f} ms, spread over expire() calls in the daemon)"
    )
    for label, call in (
        ("/fields", lambda: store.fields(Query())),
        ("/fields host:web-01", lambda: store.fields(Query(search=parse("host:web-01")))),
        ("/stats by=fields.user_id", lambda: store.stats(Query(), by=("fields.user_id",))),
        ("/stats by=fields.req (1000+others)", lambda: store.stats(Query(), by=("fields.req",))),
        (
            "/stats by=level step=1m",
            lambda: store.stats(Query(), by=("level",), step_us=60_000_000),
        ),
        (
            "/stats by=fields.http.status level>=err",
            lambda: store.stats(Query(search=parse("level>=err")), by=("fields.http.status",)),
        ),
    ):
        t0 = time.perf_counter()
        call()
        cold = (time.perf_counter() - t0) * 1e3
        warm = _lat(call, 3 if quick else 7)[0]
        print(f"{label:<42} cold {cold:8.1f}   warm {warm:8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--part", choices=["regex", "store", "all"], default="all")
    ap.add_argument("--records", type=int, default=1_000_000)
    args = ap.parse_args()
    if args.part in ("regex", "all"):
        bench_regex(args.quick)
    if args.part in ("store", "all"):
        bench_store(100_000 if args.quick else args.records, args.quick)


if __name__ == "__main__":
    main()
