"""Hostile clients against the daemon as a real process: memory read from
/proc, stalls measured as /health latency on a second connection. Each test
reproduces a way one client could stall the loop or grow the process."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults_support import DaemonProcess, poll

pytestmark = pytest.mark.slow
MiB = 1024 * 1024
STALL = 1.0  # seconds: a /health slower than this means the loop was blocked


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path)
    d.start()
    try:
        yield d
    finally:
        d.kill()


def post_ndjson(d: DaemonProcess, objs: list[dict[str, object]]) -> None:
    body = b"\n".join(json.dumps(o).encode() for o in objs)
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


def test_pipelined_requests_from_a_client_that_does_not_read_neither_stall_nor_grow_it(
    daemon: DaemonProcess,
) -> None:
    post_ndjson(daemon, [{"message": f"record {i} " + "x" * 200, "host": "h"} for i in range(5000)])
    rss0 = daemon.rss_bytes()
    latencies = [daemon.health_latency()]
    hostile = socket.create_connection(("127.0.0.1", daemon.http_port))
    hostile.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        # 200 pipelined pages of ~1.3 MB each, never read: ~260 MB of answers.
        hostile.sendall(b"GET /logs?limit=10000 HTTP/1.1\r\nHost: t\r\n\r\n" * 200)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            latencies.append(daemon.health_latency())
        rss = daemon.rss_bytes()
    finally:
        hostile.close()
    assert max(latencies) < STALL, f"/health took {max(latencies):.2f}s"
    assert rss - rss0 < 40 * MiB, f"RSS grew {(rss - rss0) / MiB:.0f} MiB"


def test_abandoned_request_bodies_are_freed_when_their_clients_leave(
    daemon: DaemonProcess,
) -> None:
    rss0 = daemon.rss_bytes()
    head = b"POST /logs HTTP/1.1\r\nHost: t\r\nContent-Length: 16000000\r\n\r\n"
    piece = b"x" * MiB
    for _ in range(3):
        conns = [socket.create_connection(("127.0.0.1", daemon.http_port)) for _ in range(10)]
        for c in conns:
            c.sendall(head)
            for _ in range(8):
                c.sendall(piece)
        # Everything sent has been read (the daemon keeps up), then they vanish.
        poll(lambda: daemon.health_latency() < STALL, 30, "daemon answering")
        for c in conns:
            c.close()
    poll(
        lambda: daemon.rss_bytes() - rss0 < 60 * MiB,
        20,
        "memory back after 240 MiB of abandoned bodies",
    )


def test_an_unauthenticated_body_is_refused_at_its_head_with_no_continue(
    tmp_path: Path,
) -> None:
    d = DaemonProcess(tmp_path, http={"auth_token": "s3cret", "max_body": 1000})
    d.start()
    try:
        with socket.create_connection(("127.0.0.1", d.http_port), timeout=10) as s:
            s.sendall(
                b"POST /logs HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                b"Content-Length: 16000000\r\n\r\n"
            )
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        # 401 before 413: the client can fix its token, not its body size.
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:100]
        assert b"100 Continue" not in answer
        assert b"Connection: close" in answer
    finally:
        d.kill()
