"""/tail end to end: live fan-out of matching records, replay from `start`,
keep-alive lines, vanishing and slow readers, HTTP/1.0 streams, the idle
timeout (real daemon, real sockets on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httptools
import pytest

from collector import tail
from collector.running import Daemon
from tests.support import (
    Conn,
    get,
    get_json,
    jl,
    post,
    running_daemon,
    small_config,
    wait_for,
)


class TailReader:
    """A /tail client: reads the chunked NDJSON stream line by line."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.lines: list[bytes] = []
        self.buf = b""
        self.status = 0
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.buf += body
        *done, self.buf = self.buf.split(b"\n")
        self.lines += done

    @classmethod
    async def open(cls, d: Daemon, target: str = "/tail") -> TailReader:
        t = cls(await Conn.open(d))
        await t.conn.send(get(target))
        head = await asyncio.wait_for(t.conn.reader.readuntil(b"\r\n\r\n"), 5)
        t.parser.feed_data(head)
        return t

    async def wait_lines(self, n: int, timeout: float = 5.0) -> list[bytes]:
        async def fill() -> None:
            while len(self.lines) < n:
                chunk = await self.conn.reader.read(65536)
                assert chunk, "stream ended"
                self.parser.feed_data(chunk)

        await asyncio.wait_for(fill(), timeout)
        return self.lines

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line]


async def test_tail_streams_new_matching_records() -> None:
    async with running_daemon() as d:
        t = await TailReader.open(d, "/tail?service=api")
        try:
            assert t.status == 200
            assert d.app is not None
            await wait_for(lambda: d.app is not None and d.app.stats.active_tails == 1)
            await post(d, [jl(0), jl(1, service="other"), jl(2)])
            await t.wait_lines(2)
            assert [r["message"] for r in t.records()] == ["event 0", "event 2"]
            assert all(r["id"] for r in t.records())
            got = (await get_json(d, f"/logs/{t.records()[0]['id']}"))["log"]
            assert got["message"] == "event 0"
        finally:
            await t.conn.close()


async def test_tail_with_start_replays_stored_then_live_without_duplicates() -> None:
    async with running_daemon() as d:
        await post(d, [jl(i) for i in range(5)])
        t = await TailReader.open(d, "/tail?start=0")
        try:
            await post(d, [jl(5), jl(6)])
            await t.wait_lines(7)
            assert sorted(r["message"] for r in t.records()) == [f"event {i}" for i in range(7)]
        finally:
            await t.conn.close()


async def test_a_syslog_message_reaches_a_tail() -> None:
    async with running_daemon() as d:
        t = await TailReader.open(d)
        try:
            await wait_for(lambda: d.app is not None and d.app.stats.active_tails == 1)
            host, port = d.listeners["udp"].address
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"<34>1 2026-01-01T10:00:00Z web-1 sshd 42 ID1 - via udp", (host, port))
            await t.wait_lines(1)
            assert t.records()[0]["message"] == "via udp"
        finally:
            await t.conn.close()


async def test_an_idle_tail_gets_blank_keepalive_lines() -> None:
    async with running_daemon() as d:
        assert d.app is not None
        d.app.tail_keepalive = 0.05
        t = await TailReader.open(d)
        try:
            await t.wait_lines(2)
            assert t.lines[:2] == [b"", b""]
        finally:
            await t.conn.close()


async def test_a_client_vanishing_mid_tail_is_forgotten_and_ingest_goes_on() -> None:
    async with running_daemon() as d:
        assert d.app is not None
        app = d.app
        tails = [await TailReader.open(d) for _ in range(3)]
        await wait_for(lambda: app.stats.active_tails == 3)
        tails[0].conn.writer.transport.abort()  # RST, no goodbye
        await tails[1].conn.close()
        await wait_for(lambda: app.stats.active_tails == 1)
        assert (await post(d, [jl(0)])).status == 201
        await tails[2].wait_lines(1)
        assert tails[2].records()[0]["message"] == "event 0"
        await tails[2].conn.close()
        await wait_for(lambda: app.stats.active_tails == 0 and not app.tails)


async def test_a_tail_that_does_not_read_is_dropped_not_buffered_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tail, "TAIL_MAX_BACKLOG", 64 * 1024)
    async with running_daemon() as d:
        assert d.app is not None
        app = d.app
        _reader, writer = await asyncio.open_connection(*d.http_address, limit=1024)
        writer.transport.pause_reading()  # a client that never reads
        try:
            writer.write(get("/tail"))
            await wait_for(lambda: app.stats.active_tails == 1)
            for conn in app.connections:
                if conn.tail is not None and conn.transport is not None:
                    conn.transport.set_write_buffer_limits(high=4096)
            batch = [jl(i, message="x" * 2000) for i in range(500)]
            for _ in range(40):
                await post(d, batch)
                if app.stats.tails_dropped:
                    break
            await wait_for(lambda: app.stats.tails_dropped == 1 and app.stats.active_tails == 0)
            assert (await get_json(d, "/health"))["status"] == "ok"
        finally:
            writer.close()


async def test_a_request_pipelined_after_tail_is_not_answered() -> None:
    async with running_daemon() as d:
        c = await Conn.open(d)
        try:
            await c.send(get("/tail") + get("/health"))
            assert d.app is not None
            app = d.app
            await wait_for(lambda: app.stats.active_tails == 1)
            await post(d, [jl(0)])
            data = b""
            while b"event 0" not in data:
                data += await asyncio.wait_for(c.reader.read(65536), 5)
            assert data.count(b"HTTP/1.1 ") == 1
        finally:
            await c.close()


async def test_a_tail_outlives_the_idle_timeout() -> None:
    async with running_daemon(small_config(idle_timeout=0.2)) as d:
        assert d.app is not None
        d.app.tail_keepalive = 0.1
        t = await TailReader.open(d, "/tail?service=nothing-matches")
        try:
            await t.wait_lines(6)  # 0.6 s of keep-alives, three idle timeouts long
            assert set(t.lines) == {b""}
            assert d.app.stats.active_tails == 1
        finally:
            await t.conn.close()


async def test_an_http_1_0_tail_is_unframed_and_ends_by_close() -> None:
    async with running_daemon() as d:
        assert d.app is not None
        app = d.app
        c = await Conn.open(d)
        try:
            await c.send(b"GET /tail HTTP/1.0\r\n\r\n")
            head = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 5)
            assert b"Transfer-Encoding" not in head
            assert b"Connection: close" in head
            await wait_for(lambda: app.stats.active_tails == 1)
            await post(d, [jl(7)])
            line = await asyncio.wait_for(c.reader.readline(), 5)
            assert json.loads(line)["message"] == "event 7"
        finally:
            await c.close()
