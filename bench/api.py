"""Benchmark the HTTP API: page latency and rate, and ingest with /tail clients.

The daemon runs in a child process (this script with --serve), seeded in
process with `Store.add_many` (posting 1M records would measure POST, not
the page); the client is this process, an asyncio + httptools client on
uvloop, so server and client each get their own GIL. Run from the repo root:

    .venv/bin/python bench/api.py            # 1M records, ~5 minutes
    .venv/bin/python bench/api.py --quick    # ~30 s smoke run

The page rate that matters is measured by `wrk` (a C load generator, Debian's
`wrk` package), so the client is not the bottleneck: 50 connections, 2
threads, 100-record pages, daemon CPU per page from /proc/<pid>/stat.

    .venv/bin/python bench/api.py --wrk-only                     # wrk rows only
    .venv/bin/python bench/api.py --wrk-only --vs-tree /tmp/base # beside another checkout

`--vs-pure` adds a daemon of this tree with COLLECTOR_PURE=1 (the pure-Python
fallback, as without a compiler). `--vs-tree DIR` adds a daemon of another
checkout's `collector` package (e.g. `git archive main | tar -x -C /tmp/base`,
with its C modules built). All are seeded alike and the runs interleave
(this tree, the others, this tree, ...) so that the machine's drifting load
hits them alike; it prints each one's medians and the median of the
per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import httptools

# --- the server side (child process) -------------------------------------------------


def serve(seed: int) -> None:
    """Start a daemon (one TCP syslog listener), seed `seed` records, print
    the ports as one JSON line, and run until stdin closes."""
    from collector.config import Config, HttpConfig, ListenerConfig, StoreConfig
    from collector.daemon import start, stop, tune_gc
    from collector.record import Record

    async def main() -> None:
        config = dataclasses.replace(
            Config(),
            listeners=(ListenerConfig(name="tcp", transport="tcp", bind="127.0.0.1:0"),),
            http=HttpConfig(bind="127.0.0.1:0"),
            store=StoreConfig(max_records=seed + 10_000_000, max_memory=1 << 40),
        )
        d = await start(config)
        now = time.time_ns() // 1000
        span = 50 * 60 * 1_000_000  # spread over the last 50 minutes, inside the 1 h TTL
        services = [f"svc-{i}" for i in range(20)]
        hosts = [f"web-{i}" for i in range(50)]
        batch: list[Record] = []
        t0 = time.perf_counter()
        for i in range(seed):
            ts = now - span + (span * i) // max(seed, 1)
            batch.append(
                Record(
                    ts,
                    ts,
                    hosts[i % 50],
                    services[i % 20],
                    str(1000 + i % 5000),
                    None,
                    i % 24,
                    i % 8,
                    f"request {i} served in {i % 997} ms",
                    None,
                    None,
                    "rfc5424",
                )
            )
            if len(batch) == 10_000:
                d.store.add_many(batch)
                batch = []
        if batch:
            d.store.add_many(batch)
        seeded = time.perf_counter() - t0
        while d.store.seal():  # what the sweeper would seal by and by, at once
            pass
        tune_gc()  # as `collector run` does once started
        stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), stop_event.set)
        loop.add_signal_handler(signal.SIGTERM, stop_event.set)
        info = {
            "http": d.http_address[1],
            "tcp": d.listeners["tcp"].address[1],
            "seeded": seed,
            "seed_seconds": round(seeded, 1),
            "store": type(d.store).__module__,
            "now_us": now,
        }
        print(json.dumps(info), flush=True)
        await stop_event.wait()
        await stop(d)

    import uvloop

    uvloop.run(main())


class Daemon:
    """A child-process daemon; `with Daemon(seed) as d: d.http, d.tcp`.

    `tree`: run another checkout's `collector` package (put first on the path)."""

    def __init__(self, seed: int, tree: str | None = None, pure: bool = False) -> None:
        env = dict(os.environ)
        if tree is not None:
            env["PYTHONPATH"] = os.path.abspath(tree)
        if pure:
            env["COLLECTOR_PURE"] = "1"  # the C modules refuse to load: the fallback
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("bench daemon failed to start")
        self.info: dict[str, Any] = json.loads(line)
        self.http = ("127.0.0.1", int(self.info["http"]))
        self.tcp = ("127.0.0.1", int(self.info["tcp"]))

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the client side -------------------------------------------------------------------


class _Answers:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done = 0
        self.body = bytearray()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done += 1


async def _client(addr: tuple[str, int], target: str, until: float, lat: list[float]) -> None:
    reader, writer = await asyncio.open_connection(*addr)
    request = f"GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    answers = _Answers()
    try:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            writer.write(request)
            want = answers.done + 1
            while answers.done < want:
                chunk = await reader.read(262144)
                if not chunk:
                    raise RuntimeError("server closed the connection")
                answers.parser.feed_data(chunk)
            lat.append(time.perf_counter() - t0)
            if answers.parser.get_status_code() != 200:
                raise RuntimeError(f"{target}: HTTP {answers.parser.get_status_code()}")
            answers.body.clear()
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def pages(d: Daemon, target: str, clients: int, seconds: float) -> dict[str, float]:
    """`clients` keep-alive connections asking for `target` back to back.

    `cpu_us` is the daemon's own CPU time per request: on a shared, noisy
    machine it says more about the server than latency does."""
    addr = d.http
    lat: list[float] = []
    # Warm up (first-touch costs, caches) before measuring.
    await asyncio.gather(*(_client(addr, target, time.perf_counter() + 0.3, []) for _ in range(4)))
    cpu0 = cpu_seconds(d.proc.pid)
    t0 = time.perf_counter()
    until = t0 + seconds
    await asyncio.gather(*(_client(addr, target, until, lat) for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(d.proc.pid) - cpu0
    lat.sort()
    return {
        "cpu_us": cpu / max(len(lat), 1) * 1e6,
        "n": len(lat),
        "rps": len(lat) / elapsed,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
    }


class _Lines:
    """Counts NDJSON records in a chunked /tail answer (blank keep-alives aside)."""

    def __init__(self, got: list[int]) -> None:
        self.got = got
        self.parser = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes) -> None:
        self.got[0] += body.count(b"\n")  # keep-alive blank lines come only after 15 s idle


async def _tail(
    addr: tuple[str, int], got: list[int], ready: asyncio.Event, stop: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(b"GET /tail HTTP/1.1\r\nHost: bench\r\n\r\n")
    lines = _Lines(got)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines.parser.feed_data(head)
        ready.set()
        while not stop.is_set():
            chunk = await reader.read(262144)
            if not chunk:
                return
            lines.parser.feed_data(chunk)
    finally:
        writer.close()


def _health_records(addr: tuple[str, int]) -> int:
    with socket.create_connection(addr) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(json.loads(data.partition(b"\r\n\r\n")[2])["records"])


SENDER = """
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = b"<134>1 2026-01-30T12:00:00.000Z web-1 api 42 - - request %d served in 3 ms\\n"
data = b"".join(line % i for i in range(n))
s = socket.create_connection((host, port))
print("go", flush=True)
s.sendall(data)
s.close()
"""


async def ingest(d: Daemon, tails: int, n: int) -> dict[str, float]:
    """Messages/s from one TCP sender, timed from its connect to the last
    stored record (so the sender's start-up is not counted), with `tails` /tail
    clients attached and reading; and the daemon's CPU per message, tails'
    fan-out included."""
    stop = asyncio.Event()
    counters = [[0] for _ in range(tails)]
    readies = [asyncio.Event() for _ in range(tails)]
    tasks = [
        asyncio.create_task(_tail(d.http, c, r, stop))
        for c, r in zip(counters, readies, strict=True)
    ]
    for r in readies:
        await asyncio.wait_for(r.wait(), 10)
    base = await asyncio.to_thread(_health_records, d.http)
    cpu0 = cpu_seconds(d.proc.pid)
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SENDER, d.tcp[0], str(d.tcp[1]), str(n),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert sender.stdout is not None
    await sender.stdout.readline()  # connected, data built: the clock starts
    t1 = time.perf_counter()
    while await asyncio.to_thread(_health_records, d.http) < base + n:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t1
    await sender.wait()
    # The tails' share of the work ends when the slowest has every record.
    deadline = time.perf_counter() + 30
    while tails and min(c[0] for c in counters) < n and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    cpu = cpu_seconds(d.proc.pid) - cpu0
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "rate": n / elapsed,
        "cpu_us": cpu / n * 1e6,
        "tail_min": min((c[0] for c in counters), default=n),
    }


# --- wrk: the page rate with a C client ------------------------------------------------

# Each request asks for the 100 records from a random instant of the seeded
# span on: pages from every shard and block, not one page served over and over.
WRK_WINDOWS = """
local first, span = %.6f, %.6f
local n = 0
setup = function(thread) n = n + 1; thread:set("seed", n) end
init = function(args) math.randomseed(seed * 7919 + os.time()) end
request = function()
  local start = first + math.random() * span
  return wrk.format("GET", string.format("/logs?limit=100&start=%%.6f", start))
end
"""
_LATENCY = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(
    d: Daemon, target: str, connections: int, threads: int, seconds: float
) -> dict[str, float]:
    """One `wrk --latency` run against the daemon: pages/s, p50/p99 (ms), and
    the daemon's CPU per page (/proc/<pid>/stat over the run). `target` is a
    path, or a Lua script's text (written to a temporary file)."""
    url = f"http://{d.http[0]}:{d.http[1]}"
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if target.startswith("/"):
            url += target
        else:
            script.write(target)
            script.flush()
            args += ["-s", script.name]
        cpu0 = cpu_seconds(d.proc.pid)
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
        cpu = cpu_seconds(d.proc.pid) - cpu0
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if done is None:
        raise RuntimeError(f"wrk printed no request count:\n{out}")
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw error answers:\n{out}")
    # Socket errors (a timeout is an answer slower than wrk's 2 s) are counted.
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n = int(done[1])
    elapsed = float(done[2]) * (0.001 if done[3] == "ms" else 1.0)
    lat = {p: float(v) * _UNIT_MS[u] for p, v, u in _LATENCY.findall(out)}
    return {
        "rps": n / elapsed,
        "p50_ms": lat["50"],
        "p99_ms": lat["99"],
        "cpu_us": cpu / max(n, 1) * 1e6,
        "errors": sum(map(int, errors.groups())) if errors else 0,
    }


def wrk_targets(d: Daemon) -> list[tuple[str, str]]:
    """(label, path or Lua script) for the wrk rows."""
    span = 50 * 60  # seconds, as serve() seeds them
    first = int(d.info["now_us"]) / 1e6 - span
    return [
        ("newest 100-record page", "/logs?limit=100&order=desc"),
        ("100 records from a random start", WRK_WINDOWS % (first, span - 60)),
        # The floor: a tiny answer, the same connections and loop.
        ("health (the floor)", "/health"),
    ]


def bench_wrk(args: argparse.Namespace, seed: int) -> None:
    seconds = 2.0 if args.quick else args.wrk_seconds
    runs = 1 if args.quick else args.runs
    conns, threads = args.connections, args.threads
    print(
        f"\nwrk: {conns} connections, {threads} threads, {seconds:g} s per run, "
        f"{seed:,} records, median of {runs} interleaved runs; "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    trees: list[tuple[str, str | None, bool]] = [("this tree", None, False)]
    if args.vs_pure:
        trees.append(("pure", None, True))
    if args.vs_tree:
        trees.append((os.path.basename(os.path.abspath(args.vs_tree)), args.vs_tree, False))
    daemons = [Daemon(seed, tree, pure) for _, tree, pure in trees]
    try:
        results: dict[tuple[int, int], list[dict[str, float]]] = {}
        targets = wrk_targets(daemons[0])
        for d in daemons:  # warm up: first-touch costs, caches, block decoding
            for _, target in targets:
                run_wrk(d, target, conns, threads, 1)
        for _ in range(runs):
            for t, (_, target) in enumerate(targets):
                for k, d in enumerate(daemons):
                    results.setdefault((t, k), []).append(
                        run_wrk(d, target, conns, threads, seconds)
                    )
    finally:
        for d in daemons:
            d.__exit__()
    print(
        f"{'pages':34} {'daemon':>12} {'pages/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'CPU us/page':>11} {'rate ratio':>10} {'CPU ratio':>9} {'errors':>6}"
    )
    for t, (label, _) in enumerate(targets):
        for k, (name, _, _) in enumerate(trees):
            res = results[(t, k)]
            med = {key: statistics.median(r[key] for r in res) for key in res[0]}
            ratios = ["", ""]
            if k:  # this tree / that tree, per round (same moment, same load)
                base = results[(t, 0)]
                ratios = [
                    f"{statistics.median(a[key] / b[key] for a, b in zip(base, res, strict=True)):.2f}"
                    for key in ("rps", "cpu_us")
                ]
            print(
                f"{label:34.34} {name:>12.12} {med['rps']:>8.0f} {med['p50_ms']:>7.2f}"
                f" {med['p99_ms']:>7.2f} {med['cpu_us']:>11.0f} {ratios[0]:>10} {ratios[1]:>9}"
                f" {sum(r['errors'] for r in res):>6.0f}"
            )
    if len(trees) > 1:
        print("(ratios: this tree / that daemon, median of the per-round ratios)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end; errors: wrk's socket errors and")
    print("timeouts (an answer slower than 2 s), summed over the runs")


async def bench(args: argparse.Namespace) -> None:
    seed = 100_000 if args.quick else args.records
    if shutil.which("wrk") is not None:
        bench_wrk(args, seed)
    else:
        print("wrk is not installed (apt-get install wrk): no wrk rows")
    if args.wrk_only:
        return
    seconds = 2.0 if args.quick else args.seconds
    runs = 1 if args.quick else 3
    print(f"HTTP benchmark: {seed:,} stored records, {seconds:.0f} s per run, median of {runs}")
    with Daemon(seed) as d:
        print(f"(daemon seeded in {d.info['seed_seconds']} s; store: {d.info['store']})\n")
        print(
            f"{'request':48} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
            f" {'server CPU us/req':>18}"
        )
        targets = [
            ("/logs?limit=100&order=desc", "newest 100-record page"),
            ("/logs?limit=100", "oldest 100-record page"),
            ("/health", "health"),
        ]
        for target, label in targets:
            for clients in (1, 50):
                res = [await pages(d, target, clients, seconds) for _ in range(runs)]
                med = {k: statistics.median(r[k] for r in res) for k in res[0]}
                print(
                    f"{label + ' ' + target:48.48} {clients:>7} {med['rps']:>8.0f}"
                    f" {med['p50_ms']:>8.2f} {med['p99_ms']:>8.2f} {med['cpu_us']:>18.0f}"
                )
    n = 20_000 if args.quick else args.messages
    print(f"\nIngest over TCP syslog ({n:,} messages per run) with /tail clients attached")
    print(
        f"{'tails':>5} {'msgs/s':>9} {'vs 0 tails':>10} {'daemon CPU us/msg':>18}"
        f" {'vs 0 tails':>10} {'slowest tail got':>17}"
    )
    results: dict[int, list[dict[str, float]]] = {0: [], 10: [], 50: []}
    for _ in range(runs):  # interleaved, so drifting machine load hits all alike
        for tails in results:
            with Daemon(0) as d:
                results[tails].append(await ingest(d, tails, n))
    base_rate = statistics.median(r["rate"] for r in results[0])
    base_cpu = statistics.median(r["cpu_us"] for r in results[0])
    for tails, res in results.items():
        rate = statistics.median(r["rate"] for r in res)
        cpu = statistics.median(r["cpu_us"] for r in res)
        got = min(r["tail_min"] for r in res)
        print(
            f"{tails:>5} {rate:>9.0f} {rate / base_rate:>10.2f} {cpu:>18.1f}"
            f" {cpu / base_cpu:>10.2f} {got:>17,}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~30 s smoke run")
    parser.add_argument("--records", type=int, default=1_000_000, help="records to seed")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per page run")
    parser.add_argument("--messages", type=int, default=100_000, help="messages per ingest run")
    parser.add_argument("--wrk-only", action="store_true", help="only the wrk page rows")
    parser.add_argument("--wrk-seconds", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3, help="interleaved wrk runs (median)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--vs-tree", metavar="DIR", help="also run DIR's collector, interleaved")
    parser.add_argument(
        "--vs-pure", action="store_true", help="also run this tree with COLLECTOR_PURE=1"
    )
    parser.add_argument("--serve", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    import uvloop

    uvloop.run(bench(args))


if __name__ == "__main__":
    main()
