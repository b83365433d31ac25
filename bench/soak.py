"""Soak: the daemon as a real process for minutes under steady TCP load,
steady queries and /tail clients; samples RSS, loss and query latency.

Run: .venv/bin/python bench/soak.py [--minutes 10] [--rate N] [--ttl 2m] [--quick]
     [--trace-stalls FILE]  (where the loop stalled: bench/stalltrace)
     [--trace-memory FILE]  (RSS, C heap, Python objects: bench/stalltrace/memtrace.py)
The default rate is 50% of a max TCP rate measured first (5 s blast into a
scratch daemon with the same store settings, persistence included). TTL is small so the store's window fills early and RSS
flatness afterwards is visible. Persistence (snapshot + write-ahead log,
fsync batch) is on unless --no-persist. Loss is messages the sender's kernel
accepted minus messages the daemon counted received; over TCP it must be 0.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import DaemonProcess, poll

from collector.configvalues import parse_duration, parse_size

SERVICES = ("sshd", "nginx", "cron", "app", "db")


def _lines(start: int, n: int) -> bytes:
    return b"".join(
        b"<%d>1 - soak-%d %s %d - - soak message %d user=u%d took=%dms\n"
        % (
            8 + (i % 8),
            i % 13,
            SERVICES[i % 5].encode(),
            1000 + i % 50,
            i,
            i % 97,
            i % 1000,
        )
        for i in range(start, start + n)
    )


def _stamp(us: int) -> bytes:
    t = time.gmtime(us // 1_000_000)
    return b"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (*t[:6], us % 1_000_000)


def _mixed_lines(start: int, n: int) -> bytes:
    """Like _lines, as many senders send: each message carries its own event
    time (the sender's clock), one in 20 up to 30 s late, one in 5 with
    structured data."""
    now = time.time_ns() // 1000
    stamps = [
        _stamp(now - (i * 7919) % 30_000_000) if i % 20 == 7 else b""
        for i in range(start, start + n)
    ]
    base = _stamp(now)
    return b"".join(
        b"<%d>1 %s soak-%d %s %d - %s soak message %d user=u%d took=%dms\n"
        % (
            8 + (i % 8),
            stamps[i - start] or base,
            i % 13,
            SERVICES[i % 5].encode(),
            1000 + i % 50,
            b'[req@32473 id="%d" path="/api/v1/items"]' % i if i % 5 == 3 else b"-",
            i,
            i % 97,
            i % 1000,
        )
        for i in range(start, start + n)
    )


def sender_main(
    port: int, rate: float, stop: Any, sent: Any, connections: int, mixed: bool = False
) -> None:
    """Child process: `connections` TCP streams, paced to `rate` msg/s total
    (0 = as fast as possible); `sent` counts messages the kernel accepted.
    `mixed`: _mixed_lines (event times, late ones, structured data)."""
    lines = _mixed_lines if mixed else _lines
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    batch = 100
    i = 0
    t0 = time.monotonic()
    try:
        while not stop.is_set():
            if rate > 0:
                ahead = i / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(min(ahead, 0.05))
                    continue
            socks[(i // batch) % connections].sendall(lines(i, batch))
            i += batch
            sent.value = i
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()


class Sender:
    """The paced sender in its own process (the GIL stays out of the figures)."""

    def __init__(self, port: int, rate: float, connections: int = 2, mixed: bool = False) -> None:
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.sent = ctx.Value("q", 0, lock=False)
        self.proc = ctx.Process(
            target=sender_main,
            args=(port, rate, self.stop_event, self.sent, connections, mixed),
        )
        self.proc.start()

    def stop(self) -> int:
        self.stop_event.set()
        self.proc.join(120)  # a daemon far behind holds its last sendall back
        return int(self.sent.value)


def received(d: DaemonProcess) -> int:
    total = 0.0
    for line in d.get_text("/metrics").splitlines():
        if line.startswith("collector_messages_received_total{") and 'listener="tcp"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def metric(d: DaemonProcess, name: str) -> float:
    """One unlabelled sample from /metrics (0 when absent)."""
    for line in d.get_text("/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def load_average() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Querier:
    """Steady queries (about `per_second`), latency recorded per request."""

    d: DaemonProcess
    per_second: float = 5.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        targets = ["/logs?limit=100", "/health", "/logs?limit=1000", "/metrics"]
        n = 0
        while not self.stop.wait(1 / self.per_second):
            target = targets[n % len(targets)]
            n += 1
            t0 = time.perf_counter()
            try:
                self.d.get_text(target)
            except OSError:
                self.errors += 1
                continue
            self.latencies.append((time.perf_counter() - t0) * 1000)

    def take(self) -> list[float]:
        out, self.latencies = self.latencies, []
        return out


@dataclass
class Tail:
    """One GET /tail client counting the lines it is streamed."""

    port: int
    lines: int = 0
    status: str = "starting"
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"GET /tail HTTP/1.1\r\nHost: soak\r\n\r\n")
                head = s.recv(65536)
                if not head.startswith(b"HTTP/1.1 200"):
                    self.status = "unavailable (" + head[:12].decode(errors="replace") + ")"
                    return
                self.status = "streaming"
                self.lines += head.count(b"\n") - head.split(b"\r\n\r\n")[0].count(b"\n")
                while not self.stop.is_set():
                    try:
                        chunk = s.recv(1 << 20)
                    except TimeoutError:
                        continue
                    if not chunk:
                        self.status = "closed by server"
                        return
                    self.lines += chunk.count(b"\n")
        except OSError as e:
            self.status = f"error: {e}"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def measure_max_rate(
    workdir: Path, seconds: float, store: dict[str, Any], mixed: bool = False
) -> float:
    """Messages/s a scratch daemon with the soaked daemon's `store:` section
    (persistence included) takes from one blasting sender."""
    scratch = workdir / "max"
    scratch.mkdir()
    store = dict(store)
    if "persist_dir" in store:
        store["persist_dir"] = str(scratch / "state")
    d = DaemonProcess(scratch, store)
    d.start()
    try:
        sender = Sender(d.tcp_port, 0, mixed=mixed)
        poll(lambda: received(d) > 1000, 30, "first messages")
        r0, t0 = received(d), time.monotonic()
        time.sleep(seconds)
        r1, t1 = received(d), time.monotonic()
        sender.stop()
    finally:
        d.stop()
    return (r1 - r0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=0.0, help="msg/s (default: 50%% of max)")
    ap.add_argument("--ttl", default="2m", help="store.ttl of the soaked daemon")
    ap.add_argument(
        "--max-memory",
        default="256MiB",
        help="store.max_memory of the soaked daemon; RSS must stay under it + 128 MiB",
    )
    ap.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--tails", type=int, default=2)
    ap.add_argument("--no-persist", action="store_true")
    ap.add_argument(
        "--wal-max",
        default=None,
        help="store.wal_max_bytes (default: the daemon's, 2 x max_memory)",
    )
    ap.add_argument("--quick", action="store_true", help="30 s, ttl 10s, samples every 5 s")
    ap.add_argument(
        "--mixed",
        action="store_true",
        help="messages with their own event times (1 in 20 up to 30 s late) and "
        "structured data (1 in 5), as many senders send",
    )
    ap.add_argument(
        "--trace-stalls",
        metavar="FILE",
        help="sample the soaked daemon's loop stack in stalls over 30 ms into FILE "
        "(bench/stalltrace; rewritten every 5 s)",
    )
    ap.add_argument(
        "--trace-memory",
        metavar="FILE",
        help="write the soaked daemon's RSS, C heap and Python object count every 20 s "
        "into FILE (bench/stalltrace/memtrace.py)",
    )
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.ttl, args.interval = 0.5, "10s", 5.0
    ttl = parse_duration(args.ttl)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        run(args, ttl, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def stall_tracing(path: str | None, memory: str | None = None) -> Iterator[None]:
    """The environment that loads bench/stalltrace into a daemon started
    inside (only that one: the sender and scratch daemons run without):
    the stall sampler into `path`, the memory sampler into `memory`."""
    if path is None and memory is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "STALLTRACE", "MEMTRACE")}
    here = str(Path(__file__).resolve().parent / "stalltrace")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, saved["PYTHONPATH"]) if p)
    for key, value in (("STALLTRACE", path), ("MEMTRACE", memory)):
        if value is not None:
            os.environ[key] = str(Path(value).resolve())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(args: argparse.Namespace, ttl: float, workdir: Path) -> None:
    store: dict[str, Any] = {"ttl": args.ttl, "max_memory": args.max_memory}
    if args.wal_max is not None:
        store["wal_max_bytes"] = args.wal_max
    if not args.no_persist:
        store["persist_dir"] = str(workdir / "state")
    rate = args.rate
    if rate <= 0:
        top = measure_max_rate(workdir, 3.0 if args.quick else 5.0, store, args.mixed)
        rate = top / 2
        print(
            f"max TCP rate measured (same store settings, no queries or tails): "
            f"{top:,.0f} msg/s; soaking at 50%: {rate:,.0f} msg/s"
        )
    d = DaemonProcess(workdir, store)
    with stall_tracing(args.trace_stalls, args.trace_memory):
        d.start()
    try:
        soak(args, ttl, workdir, d, rate)
    except BaseException:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()  # never leave the daemon running behind a failed soak
        raise


def soak(
    args: argparse.Namespace, ttl: float, workdir: Path, d: DaemonProcess, rate: float
) -> None:
    assert d.proc is not None
    pid = d.proc.pid
    sender = Sender(d.tcp_port, rate, mixed=args.mixed)
    querier = Querier(d)
    tails = [Tail(d.http_port) for _ in range(args.tails)]
    threads = [threading.Thread(target=querier.run, daemon=True)]
    threads += [threading.Thread(target=t.run, daemon=True) for t in tails]
    for t in threads:
        t.start()
    rows: list[dict[str, float]] = []
    t_start = time.monotonic()
    end = t_start + args.minutes * 60
    last_sent, last_t = 0, t_start
    bound = parse_size(args.max_memory) / 2**20 + 128
    print(
        f"soaking {args.minutes:g} min at {rate:,.0f} msg/s, ttl {args.ttl}, "
        f"max_memory {args.max_memory} (RSS bound {bound:.0f} MiB), "
        f"persist {'off' if args.no_persist else 'on'}; a row every {args.interval:g}s"
    )
    header = (
        f"{'t s':>6} {'sent/s':>9} {'behind':>8} {'records':>9} {'store MiB':>9} {'RSS MiB':>8} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'queries':>7} {'tailed':>9} {'wal MiB':>7} "
        f"{'load':>5}"
    )
    print(header)
    try:
        while end - time.monotonic() > 1.0:  # (no extra, empty row at the very end)
            time.sleep(min(args.interval, max(0.0, end - time.monotonic())))
            got = received(d)  # before reading `sent`, so `behind` is never negative
            now = time.monotonic()
            sent = int(sender.sent.value)
            lat = querier.take()
            row = {
                "t": now - t_start,
                "rate": (sent - last_sent) / (now - last_t),
                "behind": sent - got,
                "records": d.records(),
                "store": metric(d, "collector_store_bytes") / 2**20,
                "rss": rss_mib(pid),
                "load": load_average(),
                "p50": pct(lat, 50),
                "p95": pct(lat, 95),
                "p99": pct(lat, 99),
                "queries": len(lat),
                "tailed": sum(t.lines for t in tails),
                "wal": sum(p.stat().st_size for p in (workdir / "state").glob("wal-*.log")) / 2**20
                if not args.no_persist
                else 0.0,
            }
            last_sent, last_t = sent, now
            rows.append(row)
            print(
                f"{row['t']:>6.0f} {row['rate']:>9,.0f} {row['behind']:>8,.0f} {row['records']:>9,.0f} "
                f"{row['store']:>9.1f} {row['rss']:>8.1f} {row['p50']:>7.1f} {row['p95']:>7.1f} "
                f"{row['p99']:>7.1f} {row['queries']:>7.0f} {row['tailed']:>9,.0f} "
                f"{row['wal']:>7.1f} {row['load']:>5.1f}",
                flush=True,
            )
    finally:
        # The tails' state while soaked (stopping the daemon closes them).
        tail_states = [t.status for t in tails]
        sent = sender.stop()
        querier.stop.set()
        for t in tails:
            t.stop.set()
    with contextlib.suppress(AssertionError):
        poll(lambda: received(d) >= sent, 60, "daemon caught up")
    got = received(d)
    t0 = time.monotonic()
    code = d.stop()
    stop_s = time.monotonic() - t0
    summarise(args, ttl, rows, sent, got, code, stop_s, tail_states, querier, d, bound)


def summarise(
    args: argparse.Namespace,
    ttl: float,
    rows: list[dict[str, float]],
    sent: int,
    got: int,
    code: int,
    stop_s: float,
    tail_states: list[str],
    querier: Querier,
    d: DaemonProcess,
    bound: float,
) -> None:
    filled = [r for r in rows if r["t"] >= ttl + args.interval]
    print()
    print("summary")
    print(f"  messages sent (kernel accepted) {sent:>12,}")
    print(f"  messages received by daemon     {got:>12,}")
    print(f"  loss over TCP                   {sent - got:>12,}  (must be 0)")
    if filled:
        rss = [r["rss"] for r in filled]
        print(
            f"  RSS after the TTL window filled  min {min(rss):.1f} / max {max(rss):.1f} MiB"
            f" (growth {100 * (rss[-1] - rss[0]) / rss[0]:+.1f}% first->last, {len(rss)} samples)"
        )
        half = len(filled) // 2 or 1
        p99a = statistics.median([r["p99"] for r in filled[:half]])
        p99b = statistics.median([r["p99"] for r in filled[half:]] or [p99a])
        print(f"  query p99 median, first/second half after fill: {p99a:.1f} / {p99b:.1f} ms")
        over = [r for r in filled if r["rss"] >= bound]
        slow = [r for r in filled if not r["p99"] < 50]
        print(
            f"  RSS under max_memory + 128 MiB ({bound:.0f} MiB) in every interval: "
            f"{'yes' if not over else f'no, {len(over)} of {len(filled)}'}"
        )
        print(
            f"  query p99 under 50 ms in every interval after the fill: "
            f"{'yes' if not slow else f'no, {len(slow)} of {len(filled)}'}"
        )
        loads = [r["load"] for r in rows]
        print(f"  load average (1 min) during the run: {min(loads):.1f} - {max(loads):.1f}")
    else:
        print("  (run shorter than the TTL window: RSS flatness not judged)")
    print(
        f"  query errors {querier.errors}; tails at the end of the soak: {', '.join(tail_states)}"
    )
    print(f"  shutdown: exit {code} in {stop_s:.1f}s (drain + snapshot)")
    lines = d.log().splitlines()
    snap = [line for line in lines if " snapshot: " in line and "early" not in line]
    if snap:
        print(f"  last snapshot: {snap[-1].split('snapshot: ', 1)[1]} ({len(snap)} snapshots)")
    early = [line for line in lines if "(child process)" in line]
    if early:
        secs = [float(line.split(" records in ", 1)[1].split("s", 1)[0]) for line in early]
        print(
            f"  early snapshots (forked child): {len(early)}, median {statistics.median(secs):.2f}s,"
            f" max {max(secs):.2f}s"
        )
    bound = [line for line in lines if "at its bound" in line]
    if bound:
        print(f"  the log reached its bound {len(bound)} times (records then kept in memory only)")


if __name__ == "__main__":
    main()
