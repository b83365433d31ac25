"""Listeners on real sockets: UDP, TCP (syslog and JSON lines) and unix
datagrams, under good and bad input; results read back through the HTTP API
or the listener's own counters."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from collector import ingest as ingest_mod
from collector.config import ListenerConfig, ParsingConfig
from collector.daemon import StartupError
from collector.listeners import Listener, start_listener
from collector.record import ParseOptions, Record
from collector.settings import Settings
from tests.support import (
    get_json,
    http_request,
    listener_addr,
    local_config,
    running_daemon,
    wait_for,
)


async def _logs(d: Any) -> list[dict[str, Any]]:
    return list((await get_json(d, "/logs?start=0&limit=10000"))["logs"])


async def _wait_logs(d: Any, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        logs = await _logs(d)
        return logs if len(logs) >= n else None

    return list(await wait_for(enough, timeout))


@contextlib.asynccontextmanager
async def _tcp(
    addr: tuple[str, int],
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(addr[0], addr[1])
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _send_tcp(addr: tuple[str, int], data: bytes) -> None:
    async with _tcp(addr) as (_, writer):
        writer.write(data)
        await writer.drain()


def _send_udp(addr: tuple[str, int], *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for dgram in datagrams:
            s.sendto(dgram, addr)


@contextlib.asynccontextmanager
async def _listener(
    cfg: ListenerConfig, max_bytes: int = 1024, sock: socket.socket | None = None
) -> AsyncIterator[tuple[Listener, list[Record]]]:
    records: list[Record] = []
    lst = await start_listener(cfg, records.extend, Settings(), max_bytes, sock=sock)
    try:
        yield lst, records
    finally:
        await lst.aclose(2.0)


def _tcp_cfg(**kw: Any) -> ListenerConfig:
    return ListenerConfig(name="t", transport="tcp", bind="127.0.0.1:0", **kw)


# -- multi-line messages on TCP ---------------------------------------------------


async def test_a_continuation_line_sent_later_within_the_wait_joins_its_message() -> None:
    async with _listener(_tcp_cfg()) as (lst, records), _tcp(lst.address) as (_, writer):
        writer.write(b"<11>app: boom\n")
        await writer.drain()
        await asyncio.sleep(0)  # a read of its own (not a synchronisation: the wait is)
        writer.write(b"  detail line\n<13>app: next\n")
        await writer.drain()
        await wait_for(lambda: len(records) >= 2)
        assert [r.message for r in records] == ["boom\n  detail line", "next"]


async def test_a_lone_lf_framed_line_is_stored_within_the_continuation_wait() -> None:
    async with _listener(_tcp_cfg()) as (lst, records), _tcp(lst.address) as (_, writer):
        loop = asyncio.get_running_loop()
        writer.write(b"<13>app: alone\n")
        await writer.drain()
        sent = loop.time()
        await wait_for(lambda: records, timeout=5.0, interval=0.005)
        waited = loop.time() - sent
        assert records[0].message == "alone"
        # Held at most the bound (and never extended here: nothing unread).
        assert waited < ingest_mod.CONTINUATION_WAIT + 0.2


async def test_a_line_followed_by_a_new_frame_is_stored_without_waiting() -> None:
    async with _listener(_tcp_cfg()) as (lst, records), _tcp(lst.address) as (_, writer):
        loop = asyncio.get_running_loop()
        writer.write(b"<13>app: first\n<13>app: second")
        await writer.drain()
        sent = loop.time()
        await wait_for(lambda: records, timeout=5.0, interval=0.002)
        assert loop.time() - sent < ingest_mod.CONTINUATION_WAIT
        assert records[0].message == "first"


# -- clock skew and per-listener time zones --------------------------------------


def _rfc3164_now_in(offset_hours: int, host: str) -> bytes:
    zone = datetime.timezone(datetime.timedelta(hours=offset_hours))
    local = datetime.datetime.now(zone)
    stamp = f"{local:%b} {local.day:2d} {local:%H:%M:%S}"
    return f"<13>{stamp} {host} app: local time".encode()


async def test_a_sender_in_local_time_is_counted_as_clock_skew_and_logged_once_per_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = local_config(
        ListenerConfig(name="utc", transport="udp", bind="127.0.0.1:0"),
        ListenerConfig(
            name="plus2", transport="udp", bind="127.0.0.1:0", default_timezone="Etc/GMT-2"
        ),
    )
    with caplog.at_level(logging.WARNING, logger="collector.listeners"):
        async with running_daemon(cfg) as d:
            line = _rfc3164_now_in(2, "berlin-1")
            _send_udp(listener_addr(d, "utc"), line, line)
            _send_udp(listener_addr(d, "plus2"), line)
            logs = await _wait_logs(d, 3)
            metrics = (await http_request(d.http_address, "GET", "/metrics")).body.decode()
    skewed = [r for r in logs if "original_timestamp" in r["fields"]]
    assert len(skewed) == 2  # the UTC listener's; the +02:00 listener read it right
    assert d.listeners["utc"].stats.clock_skew == 2
    assert d.listeners["plus2"].stats.clock_skew == 0
    assert 'collector_messages_clock_skew_total{listener="utc"} 2.0' in metrics
    assert 'collector_messages_clock_skew_total{listener="plus2"} 0.0' in metrics
    warnings = [r.getMessage() for r in caplog.records if "clock is" in r.getMessage()]
    assert len(warnings) == 1
    assert "host berlin-1's clock is 2h 0m ahead" in warnings[0]


# -- UDP ----------------------------------------------------------------------


async def test_udp_takes_one_message_per_datagram_and_strips_trailing_lf_cr_nul() -> None:
    async with running_daemon() as d:
        addr = listener_addr(d, "udp")
        _send_udp(
            addr, b"<13>1 - h1 app - - - first\n", b"<13>1 - h1 app - - - second\r\n\x00", b"\n"
        )
        logs = await _wait_logs(d, 2)
        assert sorted(r["message"] for r in logs) == ["first", "second"]
        assert d.listeners["udp"].stats.received == 2


async def test_an_oversized_datagram_is_cut_flagged_and_counted_once() -> None:
    cfg = local_config(parsing=ParsingConfig(max_message_bytes=100))
    async with running_daemon(cfg) as d:
        _send_udp(listener_addr(d, "udp"), b"<13>1 - h app - - - " + b"z" * 500)
        (rec,) = await _wait_logs(d, 1)
        assert rec["fields"] == {"truncated": True}
        assert len(rec["message"]) == 100 - len(b"<13>1 - h app - - - ")
        assert d.listeners["udp"].stats.truncated == 1


async def test_a_udp_message_without_a_hostname_gets_the_sender_ip() -> None:
    async with running_daemon() as d:
        _send_udp(listener_addr(d, "udp"), b"no header at all")
        (rec,) = await _wait_logs(d, 1)
        assert rec["host"] == "127.0.0.1"
        assert rec["format"] == "raw"
        assert d.listeners["udp"].stats.raw == 1


async def test_udp_asks_for_the_configured_receive_buffer_and_records_the_grant() -> None:
    cfg = ListenerConfig(name="u", transport="udp", bind="127.0.0.1:0", recv_buffer=256 * 1024)
    async with _listener(cfg) as (lst, _):
        assert lst.stats.recv_buffer >= 128 * 1024  # the kernel may round; never zero


async def test_a_burst_of_datagrams_is_stored_in_few_batches() -> None:
    batches: list[int] = []
    cfg = ListenerConfig(name="u", transport="udp", bind="127.0.0.1:0")
    lst = await start_listener(cfg, lambda recs: batches.append(len(recs)), Settings(), 1024)
    try:
        _send_udp(lst.address, *(b"<13>msg %d" % i for i in range(500)))  # type: ignore[arg-type]
        await wait_for(lambda: sum(batches) == 500)
        assert len(batches) < 500
    finally:
        await lst.aclose()


# -- TCP syslog -----------------------------------------------------------------


async def test_tcp_tells_octet_counting_from_lf_and_nul_per_frame_on_one_connection() -> None:
    async with running_daemon() as d:
        msgs = [
            b"<13>1 - h app - - - counted",
            b"<13>1 - h app - - - by lf",
            b"<13>1 - h app - - - by nul",
        ]
        stream = b"%d %s" % (len(msgs[0]), msgs[0]) + msgs[1] + b"\n" + msgs[2] + b"\x00"
        await _send_tcp(listener_addr(d, "tcp"), stream)
        logs = await _wait_logs(d, 3)
        assert sorted(r["message"] for r in logs) == ["by lf", "by nul", "counted"]


async def test_a_bad_length_prefix_loses_that_frame_only() -> None:
    async with running_daemon() as d:
        stream = (
            b"<13>1 - h app - - - before\n99999999999 <13>bad frame\n<13>1 - h app - - - after\n"
        )
        await _send_tcp(listener_addr(d, "tcp"), stream)
        logs = await _wait_logs(d, 2)
        assert sorted(r["message"] for r in logs) == ["after", "before"]
        assert d.listeners["tcp"].stats.dropped == {"bad_length": 1}


async def test_a_client_that_stops_mid_frame_loses_only_the_incomplete_counted_frame() -> None:
    async with running_daemon() as d:
        await _send_tcp(
            listener_addr(d, "tcp"), b"<13>1 - h app - - - whole\n300 <13>1 - h app - - - cut sh"
        )
        await _send_tcp(
            listener_addr(d, "tcp"), b"<13>1 - h app - - - line\n<13>1 - h app - - - unterminated"
        )
        logs = await _wait_logs(d, 3)
        stats = d.listeners["tcp"].stats
        await wait_for(lambda: stats.dropped.get("incomplete_frame") == 1)
        assert sorted(r["message"] for r in logs) == ["line", "unterminated", "whole"]


async def test_tcp_batches_leave_nothing_behind_without_a_rate_limit() -> None:
    # Who sent which records is kept for the rate limiter; without one it
    # was appended to per batch and never cleared (~1,400 tuples/s held for
    # good at 300k msg/s: RSS crept for as long as the daemon ran).
    async with running_daemon() as d:
        ingest = d.listeners["tcp"].ingest
        assert ingest.limiter is None
        addr = listener_addr(d, "tcp")
        for i in range(50):
            await _send_tcp(addr, b"<13>1 - h app - - - batch %d\n" % i)
        await _wait_logs(d, 50)
        assert ingest.peers == []


async def test_an_abrupt_reset_still_delivers_the_complete_frames() -> None:
    async with running_daemon() as d:
        host, port = listener_addr(d, "tcp")
        s = socket.create_connection((host, port))
        s.sendall(b"<13>1 - h app - - - sent before reset\n<13>1 - h app - - - half")
        # SO_LINGER 0: close() sends RST instead of FIN.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        logs = await _wait_logs(d, 1)
        assert "sent before reset" in [r["message"] for r in logs]
        await wait_for(lambda: d.listeners["tcp"].stats.connections_open == 0)


async def test_ten_megabytes_without_a_delimiter_become_one_truncated_record_and_others_are_served() -> (
    None
):
    async with running_daemon() as d:
        addr = listener_addr(d, "tcp")
        async with _tcp(addr) as (_, hog):
            chunk = b"A" * (1024 * 1024)
            for _ in range(10):
                hog.write(chunk)
                await hog.drain()
                # Someone else is served meanwhile.
            await _send_tcp(addr, b"<13>1 - h app - - - neighbour\n")
            hog.write(b"\n<13>1 - h app - - - after the flood\n")
            await hog.drain()
            logs = await _wait_logs(d, 3)
        by_msg = {r["message"][:20]: r for r in logs}
        assert set(by_msg) == {"A" * 20, "neighbour", "after the flood"}
        flood = by_msg["A" * 20]
        assert flood["fields"] == {"truncated": True}
        assert len(flood["message"]) == 65536
        stats = d.listeners["tcp"].stats
        assert stats.truncated == 1
        assert stats.bytes >= 10 * 1024 * 1024


async def test_random_bytes_never_stop_the_listener() -> None:
    async with running_daemon() as d:
        addr = listener_addr(d, "tcp")
        await _send_tcp(addr, os.urandom(1024 * 1024))
        await _send_tcp(addr, b"<13>1 - h app - - - still here\n")

        async def found() -> bool:
            return any(r["message"] == "still here" for r in await _logs(d))

        await wait_for(found)
        stats = d.listeners["tcp"].stats
        assert stats.bytes >= 1024 * 1024
        await wait_for(lambda: stats.connections_open == 0)


async def test_a_thousand_connections_opening_and_closing_are_all_served_and_accounted() -> None:
    async with running_daemon() as d:
        addr = listener_addr(d, "tcp")

        async def one(i: int) -> None:
            await _send_tcp(addr, b"<13>1 - h app - - - conn %d\n" % i)

        for start in range(0, 1000, 100):
            await asyncio.gather(*(one(i) for i in range(start, start + 100)))
        stats = d.listeners["tcp"].stats
        await wait_for(lambda: stats.received == 1000 and stats.connections_open == 0, timeout=10)
        assert stats.connections_total == 1000
        assert stats.connections_refused == 0
        assert len(await _logs(d)) == 1000


async def test_connections_over_the_limit_are_closed_and_counted_while_others_carry_on() -> None:
    cfg = _tcp_cfg(max_connections=2)
    async with _listener(cfg) as (lst, records):
        addr = lst.address
        assert isinstance(addr, tuple)
        async with _tcp(addr) as (_, w1), _tcp(addr) as (_, w2):
            await wait_for(lambda: lst.stats.connections_open == 2)
            async with _tcp(addr) as (r3, _):
                with contextlib.suppress(ConnectionError):
                    assert await asyncio.wait_for(r3.read(), 5) == b""  # closed by the server
            assert lst.stats.connections_refused == 1
            assert lst.stats.dropped == {"connection_limit": 1}
            w1.write(b"<13>one\n")
            w2.write(b"<13>two\n")
            await wait_for(lambda: len(records) == 2)
        await wait_for(lambda: lst.stats.connections_open == 0)
        async with _tcp(addr) as (_, w4):  # room again
            w4.write(b"<13>four\n")
            await wait_for(lambda: len(records) == 3)
        assert lst.stats.connections_refused == 1


async def test_an_idle_connection_is_closed_after_idle_timeout() -> None:
    async with _listener(_tcp_cfg(idle_timeout=0.2)) as (lst, records):
        addr = lst.address
        assert isinstance(addr, tuple)
        async with _tcp(addr) as (reader, writer):
            writer.write(b"<13>1 - h app - - - hello\n<13>1 - h app - - - partial")
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert lst.stats.idle_closed == 1
        assert [r.message for r in records] == ["hello", "partial"]


async def test_a_backlog_over_the_high_water_mark_pauses_reading_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_mod, "HIGH_WATER", 1000)
    monkeypatch.setattr(ingest_mod, "LOW_WATER", 100)
    monkeypatch.setattr(ingest_mod, "FLUSH_FRAMES", 50)
    n = 20_000
    async with _listener(_tcp_cfg()) as (lst, records):
        addr = lst.address
        assert isinstance(addr, tuple)
        payload = b"".join(b"<13>1 - h app - - - message number %d\n" % i for i in range(n))
        async with _tcp(addr) as (_, writer):
            writer.write(payload)
            await writer.drain()
            await wait_for(lambda: len(records) == n, timeout=10)
        assert lst.stats.paused > 0
        assert [r.message for r in records[:3]] == [f"message number {i}" for i in range(3)]
        assert records[-1].message == f"message number {n - 1}"


async def test_shutdown_delivers_what_was_read_and_closes_connections() -> None:
    records: list[Record] = []
    lst = await start_listener(_tcp_cfg(), records.extend, Settings(), 1024)
    addr = lst.address
    assert isinstance(addr, tuple)
    async with _tcp(addr) as (reader, writer):
        payload = b"<13>1 - h app - - - complete\n<13>1 - h app - - - no newline yet"
        writer.write(payload)
        await writer.drain()
        await wait_for(lambda: lst.stats.bytes == len(payload))
        await lst.aclose(2.0)
        assert await asyncio.wait_for(reader.read(), 5) == b""
    assert [r.message for r in records] == ["complete", "no newline yet"]
    # The unterminated line may be a frame cut by the shutdown: kept, flagged.
    assert [r.fields for r in records] == [None, {"truncated": True}]
    assert lst.stats.truncated == 1
    assert lst.stats.connections_open == 0


# -- JSON lines ------------------------------------------------------------------


async def test_json_lines_over_tcp_are_parsed_as_json_and_garbage_is_kept_raw() -> None:
    async with running_daemon() as d:
        await _send_tcp(
            listener_addr(d, "json"), b'{"message": "hi", "level": "error"}\r\nnot json\n'
        )
        logs = await _wait_logs(d, 2)
        by_format = {r["format"]: r for r in logs}
        assert by_format["json"]["message"] == "hi"
        assert by_format["raw"]["message"] == "not json"
        assert d.listeners["json"].stats.raw == 1


# -- unix -------------------------------------------------------------------------


def _unix_cfg(path: Path, **kw: Any) -> ListenerConfig:
    return ListenerConfig(name="local", transport="unix", bind=str(path), **kw)


async def test_unix_datagrams_are_stored_with_this_hosts_name_and_the_socket_file_is_removed_at_stop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.sock"
    async with running_daemon(local_config(_unix_cfg(path))) as d:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"plain local text\n", str(path))
        (rec,) = await _wait_logs(d, 1)
        assert rec["host"] == socket.gethostname()
        assert rec["message"] == "plain local text"
    assert not path.exists()


async def test_a_stale_unix_socket_file_is_replaced_and_the_mode_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()  # the file stays behind, as after a crash
    async with _listener(_unix_cfg(path, mode=0o600)) as (lst, records):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"<13>after the stale file", str(path))
        await wait_for(lambda: len(records) == 1)
        assert lst.address == str(path)


async def test_a_unix_path_someone_else_receives_on_is_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as live:
        live.bind(str(path))
        with pytest.raises(StartupError, match="listener local"):
            async with running_daemon(local_config(_unix_cfg(path))):
                pass
        assert path.exists()


async def test_a_unix_path_that_is_a_regular_file_is_an_error_not_deleted(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        await start_listener(_unix_cfg(path), lambda recs: None, Settings(), 1024)
    assert path.read_text() == "keep me"


# -- inherited sockets (systemd socket activation, reload) --------------------------


async def test_an_inherited_udp_socket_is_served() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    addr = sock.getsockname()
    async with _listener(
        ListenerConfig(name="u", transport="udp", bind="0.0.0.0:1"), sock=sock
    ) as (lst, records):
        assert lst.address == addr
        _send_udp(addr, b"<13>inherited udp")
        await wait_for(lambda: len(records) == 1)


async def test_an_inherited_tcp_socket_is_served() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    addr = sock.getsockname()
    async with _listener(
        ListenerConfig(name="t", transport="tcp", bind="0.0.0.0:1"), sock=sock
    ) as (lst, records):
        assert lst.address == addr
        await _send_tcp(addr, b"<13>inherited tcp\n")
        await wait_for(lambda: len(records) == 1)


async def test_an_inherited_unix_socket_is_served_and_its_file_left_to_its_owner(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inherited.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    async with _listener(_unix_cfg(tmp_path / "elsewhere"), sock=sock) as (lst, records):
        assert lst.address == str(path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"<13>inherited unix", str(path))
        await wait_for(lambda: len(records) == 1)
    assert path.exists()  # systemd owns it


# -- failures inside the daemon stay inside one frame or batch -------------------


async def test_a_parser_crash_keeps_that_frame_raw_and_its_neighbours_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = ingest_mod.parse_syslog

    def fragile(data: bytes, *args: Any) -> Record:
        if b"boom" in data:
            raise ValueError("parser bug")
        return real(data, *args)

    monkeypatch.setattr(ingest_mod, "parse_syslog", fragile)
    # The native batch path would read these lines before parse_syslog sees them.
    monkeypatch.setattr(ingest_mod, "parse_batch", lambda *args: None)
    async with _listener(_tcp_cfg()) as (lst, records):
        addr = lst.address
        assert isinstance(addr, tuple)
        await _send_tcp(
            addr,
            b"<13>1 - h app - - - before\n<13>1 - h app - - - boom\n<13>1 - h app - - - after\n",
        )
        await wait_for(lambda: len(records) == 3)
        assert [(r.message, r.format) for r in records] == [
            ("before", "rfc5424"),
            ("<13>1 - h app - - - boom", "raw"),
            ("after", "rfc5424"),
        ]
        assert lst.stats.raw == 1


async def test_a_native_parser_crash_leaves_that_batch_to_the_python_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any) -> list[Record | None]:
        raise MemoryError("native bug")

    monkeypatch.setattr(ingest_mod, "parse_batch", broken)
    async with _listener(_tcp_cfg()) as (lst, records):
        addr = lst.address
        assert isinstance(addr, tuple)
        await _send_tcp(addr, b"<13>1 - h app - - - one\n<13>Jan  2 03:04:05 h app: two\n")
        await wait_for(lambda: len(records) == 2)
        assert [(r.message, r.format) for r in records] == [("one", "rfc5424"), ("two", "rfc3164")]
        assert lst.stats.raw == 0


async def test_a_failing_sink_loses_that_batch_counted_and_the_listener_carries_on() -> None:
    calls: list[int] = []

    def sink(recs: list[Record]) -> None:
        calls.append(len(recs))
        if len(calls) == 1:
            raise RuntimeError("store bug")

    cfg = ListenerConfig(name="u", transport="udp", bind="127.0.0.1:0")
    lst = await start_listener(cfg, sink, Settings(), 1024)
    try:
        addr = lst.address
        assert isinstance(addr, tuple)
        _send_udp(addr, b"<13>first")
        await wait_for(lambda: lst.stats.dropped.get("sink_error") == 1)
        _send_udp(addr, b"<13>second")
        await wait_for(lambda: len(calls) == 2)
    finally:
        await lst.aclose()


async def test_drop_counters_reach_the_metrics_endpoint() -> None:
    async with running_daemon() as d:
        await _send_tcp(listener_addr(d, "tcp"), b"99999999999 <13>bad\n12 <13>incompl")
        stats = d.listeners["tcp"].stats
        await wait_for(lambda: stats.dropped == {"bad_length": 1, "incomplete_frame": 1})
        answer = await http_request(d.http_address, "GET", "/metrics")
        text = answer.body.decode()
        assert 'collector_messages_dropped_total{listener="tcp",reason="bad_length"} 1.0' in text
        assert (
            'collector_messages_dropped_total{listener="tcp",reason="incomplete_frame"} 1.0' in text
        )


async def test_json_lines_over_udp_are_one_object_per_datagram() -> None:
    cfg = local_config(
        ListenerConfig(name="ju", transport="udp", format="json", bind="127.0.0.1:0")
    )
    async with running_daemon(cfg) as d:
        _send_udp(listener_addr(d, "ju"), b'{"message": "over udp", "service": "api"}\n')
        (rec,) = await _wait_logs(d, 1)
        assert (rec["format"], rec["message"], rec["service"]) == ("json", "over udp", "api")


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_ipv6_loopback_listeners_take_messages_and_name_the_v6_sender() -> None:
    if not _has_ipv6():
        pytest.skip("no IPv6 loopback on this machine")
    cfg = local_config(
        ListenerConfig(name="u6", transport="udp", bind="[::1]:0"),
        ListenerConfig(name="t6", transport="tcp", bind="[::1]:0"),
    )
    async with running_daemon(cfg) as d:
        host, port = listener_addr(d, "u6")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.sendto(b"plain v6 datagram", (host, port))
        _, writer = await asyncio.open_connection(*listener_addr(d, "t6"))
        writer.write(b"plain v6 stream\n")
        writer.close()
        await writer.wait_closed()
        logs = await _wait_logs(d, 2)
        assert {r["host"] for r in logs} == {"::1"}


async def test_a_framer_crash_closes_only_that_connection_and_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collector import listeners
    from collector.framing import StreamFramer

    class Fragile(StreamFramer):
        __slots__ = ()

        def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
            if b"explode" in data:
                raise IndexError("framer bug")
            return super().feed(data)

    # (the pure framer, whichever the listener would use)
    monkeypatch.setattr(listeners, "syslog_framer", lambda n, drop: Fragile(n, drop=drop))
    async with _listener(_tcp_cfg()) as (lst, records):
        addr = lst.address
        assert isinstance(addr, tuple)
        async with _tcp(addr) as (_, good):
            good.write(b"<13>1 - h app - - - from the good one\n")
            await _send_tcp(addr, b"<13>explode\n")
            await wait_for(lambda: lst.stats.dropped.get("framing_error") == 1)
            good.write(b"<13>1 - h app - - - still served\n")
            await wait_for(lambda: len(records) == 2)
        assert [r.message for r in records] == ["from the good one", "still served"]


async def test_closing_a_udp_listener_still_stores_datagrams_waiting_in_the_kernel() -> None:
    records: list[Record] = []
    cfg = ListenerConfig(name="u", transport="udp", bind="127.0.0.1:0")
    lst = await start_listener(cfg, records.extend, Settings(), 1024)
    addr = lst.address
    assert isinstance(addr, tuple)
    # Loopback delivers into the receive buffer before sendto returns; no
    # await in between, so the loop has not read any of them.
    _send_udp(addr, *(b"<13>1 - h app - - - queued %d" % i for i in range(100)))
    lst.close()
    assert [r.message for r in records] == [f"queued {i}" for i in range(100)]


async def test_a_unix_datagram_over_64_kib_is_cut_to_max_message_bytes(tmp_path: Path) -> None:
    path = tmp_path / "big.sock"
    async with _listener(_unix_cfg(path), max_bytes=65536) as (lst, records):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.sendto(b"<13>" + b"b" * 100_000, str(path))
        await wait_for(lambda: len(records) == 1)
        (rec,) = records
        assert rec.fields == {"truncated": True}
        assert 65536 - len(b"<13>") <= len(rec.message) <= 65536
        assert rec.message.endswith("b" * 1000)
        assert lst.stats.truncated == 1


async def test_a_live_connection_frames_exactly_like_the_pure_framer_whatever_the_writes() -> None:
    import random

    from collector.framing import syslog_framer
    from collector.parse import parse_syslog

    rng = random.Random(4)  # fixed: a failure is reproducible
    async with _listener(_tcp_cfg(), max_bytes=200) as (lst, records):
        addr = lst.address
        assert isinstance(addr, tuple)
        for _ in range(20):
            parts = []
            for i in range(rng.randint(1, 40)):
                msg = b"<13>1 - h app - - - m%d " % i + rng.randbytes(rng.randint(0, 300))
                msg = msg.replace(b"\n", b"_").replace(b"\x00", b"_")
                how = rng.choice(["count", "lf", "crlf", "nul", "junk"])
                if how == "count":
                    parts.append(b"%d %s" % (len(msg), msg))
                elif how == "junk":
                    parts.append(rng.randbytes(rng.randint(1, 50)) + b"\n")
                else:
                    parts.append(msg + {"lf": b"\n", "crlf": b"\r\n", "nul": b"\x00"}[how])
            stream = b"".join(parts)
            framer = syslog_framer(200)
            expected = framer.feed(stream) + framer.eof()
            records.clear()
            async with _tcp(addr) as (_, writer):
                pos = 0
                while pos < len(stream):
                    step = rng.randint(1, 700)
                    writer.write(stream[pos : pos + step])
                    await writer.drain()
                    pos += step
            want = [parse_syslog(f, 0, None, ParseOptions(), cut).message for f, cut in expected]
            await wait_for(lambda want=want: len(records) >= len(want))
            assert [r.message for r in records] == want
            assert [(r.fields or {}).get("truncated", False) for r in records] == [
                cut for _, cut in expected
            ]
        await wait_for(lambda: lst.stats.connections_open == 0)


async def test_an_empty_datagram_is_not_a_record_but_is_counted() -> None:
    records: list[Record] = []
    cfg = ListenerConfig(name="u", transport="udp", bind="127.0.0.1:0")
    lst = await start_listener(cfg, records.extend, Settings(), 1024)
    try:
        addr = lst.address
        assert isinstance(addr, tuple)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"", addr)
            s.sendto(b"\n\x00", addr)
            s.sendto(b"<13>1 - h app - - - after the empty ones", addr)
        await wait_for(lambda: len(records) == 1)
        await wait_for(lambda: lst.stats.dropped.get("empty") == 2)
        assert records[0].message == "after the empty ones"
    finally:
        await lst.aclose(1.0)


def _rmem_max() -> int:
    with open("/proc/sys/net/core/rmem_max") as f:
        return int(f.read())


CAPPED = """
import asyncio, logging, sys
from collector.config import ListenerConfig
from collector.listeners import start_listener
from collector.settings import Settings
logging.basicConfig(level=logging.WARNING, format="%(message)s")
async def main():
    cfg = ListenerConfig(name="big", transport="udp", bind="127.0.0.1:0", recv_buffer=int(sys.argv[1]))
    lst = await start_listener(cfg, lambda recs: None, Settings(), 1024)
    print(lst.stats.recv_buffer)
    await lst.aclose()
asyncio.run(main())
"""


def test_a_receive_buffer_capped_by_rmem_max_is_said_with_the_sysctl_that_raises_it() -> None:
    if not os.path.exists("/proc/sys/net/core/rmem_max"):
        pytest.skip("no /proc/sys/net/core/rmem_max (not Linux)")
    asked = 2 * _rmem_max()
    cmd = [sys.executable, "-c", CAPPED, str(asked)]
    if os.geteuid() == 0:  # root may exceed rmem_max: run without CAP_NET_ADMIN
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root, and no setpriv to drop CAP_NET_ADMIN")
        cmd = [setpriv, "--bounding-set", "-net_admin", "--inh-caps", "-net_admin", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == _rmem_max()
    assert f"receive buffer {_rmem_max()} bytes, asked {asked}" in out.stderr
    assert f"net.core.rmem_max ({_rmem_max()})" in out.stderr
    assert f"sysctl -w net.core.rmem_max={asked}" in out.stderr
