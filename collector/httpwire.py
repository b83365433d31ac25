"""HTTP stage, the wire format: status lines and heads, dates, gzip, and
pulling a streamed answer a bounded slice at a time. No I/O here; the
connection (http.py) writes what these build.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any, cast

from collector import __version__

SERVER = f"collector/{__version__}"
STREAM_TURN = 0.02  # seconds a streaming answer may produce per loop turn

REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


_date_cache: list[Any] = [0, ""]


def http_date() -> str:
    # One formatdate per second, not per response.
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True)
    return cast(str, _date_cache[1])


def accepts_gzip(value: str) -> bool:
    """Accept-Encoding names gzip (or *) with a non-zero q (RFC 9110 §12.5.3)."""
    for item in value.lower().split(","):
        name, _, params = item.partition(";")
        if name.strip() in ("gzip", "x-gzip", "*"):
            q = params.strip()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


_starts: dict[int, str] = {}  # status -> its status line and Server field, this second
_starts_at: list[int] = [0]


def head(status: int, headers: list[tuple[str, str]]) -> bytes:
    now = int(time.time())
    if now != _starts_at[0]:
        _starts.clear()
        _starts_at[0] = now
    start = _starts.get(status)
    if start is None:
        start = _starts[status] = (
            f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nServer: {SERVER}\r\n"
            f"Date: {http_date()}\r\n"
        )
    return (start + "".join([f"{k}: {v}\r\n" for k, v in headers]) + "\r\n").encode("latin-1")


def tail_headers(chunked: bool, keep_alive: bool) -> list[tuple[str, str]]:
    """The head of a /tail answer (HEAD gets the same one)."""
    return [
        ("Content-Type", "application/x-ndjson"),
        ("Cache-Control", "no-cache"),
        # An HTTP/1.0 client gets the stream unframed, ended by close.
        ("Transfer-Encoding", "chunked") if chunked else ("Connection", "close"),
    ]


def pull(stream: Iterator[bytes], limit: int) -> tuple[bytes, bool]:
    """Up to about `limit` bytes of `stream` (or STREAM_TURN seconds of
    producing them), and whether it ended."""
    parts: list[bytes] = []
    size = 0
    until = time.perf_counter() + STREAM_TURN
    for part in stream:
        parts.append(part)
        size += len(part)
        if size >= limit or time.perf_counter() > until:
            return b"".join(parts), False
    return b"".join(parts), True


def gzipped(stream: Iterator[bytes]) -> Iterator[bytes]:
    z = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    for part in stream:
        out = z.compress(part)
        if out:
            yield out
    yield z.flush()
