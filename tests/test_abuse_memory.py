"""The memory bound under many hostile connections at once, against the daemon
as a real process: resident memory read from /proc stays under
`store.max_memory` + 128 MiB, and /health keeps answering from a connection
of its own while hundreds of clients hold partial frames, request bodies,
unread pages and /tail replays."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults_support import DaemonProcess

pytestmark = pytest.mark.slow
MiB = 1024 * 1024
MAX_MEMORY = 64 * MiB
BOUND = MAX_MEMORY + 128 * MiB  # the promise: resident memory under max_memory + 128 MiB
STALL = 1.0  # seconds: a /health slower than this means the loop was blocked
CLIENTS = 400  # per kind of hostile client


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path, {"max_memory": "64MiB"}, http={"max_connections": 2048})
    d.start()
    try:
        yield d
    finally:
        d.kill()


def post_large_records(d: DaemonProcess, n: int, size: int) -> None:
    for start in range(0, n, 50):
        body = b"\n".join(
            json.dumps({"message": f"{i:05d} " + "y" * size}).encode()
            for i in range(start, min(n, start + 50))
        )
        with socket.create_connection(("127.0.0.1", d.http_port), timeout=60) as s:
            s.sendall(
                b"POST /logs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                b"Content-Type: application/x-ndjson\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]


def slow_client(port: int, first_bytes: bytes) -> socket.socket:
    """A connection that sends `first_bytes` and then never reads."""
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.connect(("127.0.0.1", port))
    c.sendall(first_bytes)
    return c


def watch(d: DaemonProcess, seconds: float) -> tuple[int, float]:
    """The highest RSS and the slowest /health over `seconds`."""
    rss, worst = d.rss_bytes(), 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worst = max(worst, d.health_latency())
        rss = max(rss, d.rss_bytes())
    return rss, worst


def inflight_metric(d: DaemonProcess, name: str) -> float:
    total = 0.0
    for line in d.get_text("/metrics").splitlines():
        if line.startswith(f"collector_inflight_{name}"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_hundreds_of_slow_readers_of_large_pages_and_tails_stay_under_the_memory_bound(
    daemon: DaemonProcess,
) -> None:
    # 400 records of 60 kB: a page of them is 24 MB of JSON, a replay too.
    post_large_records(daemon, 400, 60_000)
    clients = []
    try:
        for _ in range(CLIENTS):
            clients.append(
                slow_client(daemon.http_port, b"GET /logs?limit=10000 HTTP/1.1\r\nHost: t\r\n\r\n")
            )
            clients.append(
                slow_client(daemon.http_port, b"GET /tail?start=0 HTTP/1.1\r\nHost: t\r\n\r\n")
            )
        rss, worst = watch(daemon, 6.0)
        assert inflight_metric(daemon, "waits_total") > 0  # the bound held answers back
    finally:
        for c in clients:
            c.close()
    print(f"slow readers: max RSS {rss / MiB:.0f} MiB, worst /health {worst * 1000:.0f} ms")
    assert rss < BOUND, f"RSS {rss / MiB:.0f} MiB over max_memory + 128 MiB"
    assert worst < STALL, f"/health took {worst:.2f}s"


def test_hundreds_of_partial_frames_and_bodies_stay_under_the_memory_bound(
    tmp_path: Path,
) -> None:
    # Frames of up to 1 MiB: 300 connections each holding most of one would
    # be 300 MiB of partial frames.
    d = DaemonProcess(tmp_path, {"max_memory": "64MiB"}, parsing={"max_message_bytes": "1MiB"})
    d.start()
    clients = []
    try:
        for i in range(300):
            # A TCP frame of nearly max_message_bytes whose end never comes ...
            frame = b"<14>1 - h app - - - " + bytes([65 + i % 26]) * 1_000_000
            clients.append(slow_client(d.tcp_port, b"%d %s" % (len(frame) + 10, frame)))
            # ... and a 16 MB request body of which 200 kB arrive.
            clients.append(
                slow_client(
                    d.http_port,
                    b"POST /logs HTTP/1.1\r\nHost: t\r\nContent-Length: 16000000\r\n\r\n"
                    + bytes([65 + i % 26]) * 200_000,
                )
            )
        rss, worst = watch(d, 4.0)
        shed = inflight_metric(d, "shed_connections_total")
    finally:
        for c in clients:
            c.close()
        counted = d.counted("tcp")
        d.kill()
    print(f"partial frames and bodies: max RSS {rss / MiB:.0f} MiB, /health {worst * 1000:.0f} ms")
    assert shed > 0  # the largest partial frames were closed ...
    assert counted > 0  # ... and what they held counted (an incomplete frame is a drop)
    assert rss < BOUND, f"RSS {rss / MiB:.0f} MiB over max_memory + 128 MiB"
    assert worst < STALL, f"/health took {worst:.2f}s"
