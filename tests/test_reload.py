"""Reload (SIGHUP): listeners added, removed and rebound, store bounds and
TTL changed, records and unchanged listeners' connections kept; a bad config
is logged, counted and ignored. Real sockets, answers read through HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import socket
import zoneinfo
from dataclasses import replace
from pathlib import Path

import pytest

from collector.config import ListenerConfig
from collector.reload import reload, reload_from_file
from collector.running import Daemon
from tests.support import (
    get_json,
    http_request,
    listener_addr,
    local_config,
    running_daemon,
    wait_for,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send_udp(d: Daemon, name: str, msg: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(msg, listener_addr(d, name))


def _minutes_ago(minutes: int) -> str:
    t = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _messages(d: Daemon) -> list[str]:
    logs = (await get_json(d, "/logs?start=0&limit=1000"))["logs"]
    return [str(r["message"]) for r in logs]


async def _refused(addr: tuple[str, int]) -> bool:
    try:
        _, w = await asyncio.open_connection(*addr)
    except ConnectionRefusedError:
        return True
    w.close()
    await w.wait_closed()
    return False


def _reloads(d: Daemon) -> tuple[int, int]:
    return d.reloads.total, d.reloads.failures


async def test_reload_adds_a_listener_and_shortens_the_ttl_keeping_records_and_tcp_connections() -> (
    None
):
    async with running_daemon() as d:
        tcp_before = d.listeners["tcp"]
        _, writer = await asyncio.open_connection(*listener_addr(d, "tcp"))
        writer.write(b"<13>1 - h app - - - before reload\n")
        await writer.drain()
        _send_udp(d, "udp", f"<13>1 {_minutes_ago(10)} h app - - - ten minutes old".encode())
        await wait_for(lambda: len(d.store) == 2)

        added = ListenerConfig(name="tcp2", transport="tcp", bind="127.0.0.1:0")
        new = replace(
            d.config,
            listeners=(*d.config.listeners, added),
            store=replace(d.config.store, ttl=300.0),
        )
        assert await reload(d, new) is True

        assert list(d.listeners) == ["udp", "tcp", "json", "tcp2"]
        assert d.listeners["tcp"] is tcp_before
        # The record ten minutes old is past the new 5 minute TTL: gone now.
        assert await _messages(d) == ["before reload"]
        health = await get_json(d, "/health")
        assert health["ttl_seconds"] == 300
        assert health["listeners"] == ["udp", "tcp", "json", "tcp2"]

        # The TCP connection opened before the reload still delivers.
        writer.write(b"<13>1 - h app - - - same connection after reload\n")
        await writer.drain()
        _, w2 = await asyncio.open_connection(*listener_addr(d, "tcp2"))
        w2.write(b"<13>1 - h app - - - on the added listener\n")
        await w2.drain()
        await wait_for(lambda: len(d.store) == 3)
        assert sorted(await _messages(d)) == [
            "before reload",
            "on the added listener",
            "same connection after reload",
        ]
        writer.close()
        w2.close()

        # New frames are judged by the new TTL: ten minutes old is now clock skew.
        _send_udp(d, "udp", f"<13>1 {_minutes_ago(10)} h app - - - skewed".encode())
        await wait_for(lambda: len(d.store) == 4)
        logs = (await get_json(d, "/logs?start=0&limit=1000"))["logs"]
        skewed = [r for r in logs if r["message"] == "skewed"]
        assert "original_timestamp" in skewed[0]["fields"]
        assert _reloads(d) == (1, 0)
        assert d.app is not None
        assert d.app.registry.get_sample_value("collector_config_reloads_total") == 1
        assert d.app.registry.get_sample_value("collector_config_last_reload_successful") == 1


async def test_a_smaller_max_records_evicts_the_oldest_from_the_next_batch() -> None:
    async with running_daemon() as d:
        new = replace(d.config, store=replace(d.config.store, max_records=3))
        assert await reload(d, new) is True
        for i in range(5):
            _send_udp(d, "udp", f"<13>1 - h app - - - m{i}".encode())
        await wait_for(lambda: d.store.evicted_total == 2)
        assert len(d.store) == 3


async def test_removed_listeners_close_and_a_changed_bind_moves_the_listener() -> None:
    async with running_daemon() as d:
        old_tcp, old_json = listener_addr(d, "tcp"), listener_addr(d, "json")
        port = _free_port()
        tcp = replace(d.config.listeners[1], bind=f"127.0.0.1:{port}")
        new = replace(d.config, listeners=(d.config.listeners[0], tcp))
        assert await reload(d, new) is True

        assert list(d.listeners) == ["udp", "tcp"]
        assert await _refused(old_json)
        assert await _refused(old_tcp)
        assert listener_addr(d, "tcp") == ("127.0.0.1", port)
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"<13>1 - h app - - - on the moved listener\n")
        await w.drain()
        await wait_for(lambda: len(d.store) == 1)
        w.close()
        assert await _messages(d) == ["on the moved listener"]


async def test_a_changed_format_on_the_same_port_rebinds_that_port() -> None:
    port = _free_port()
    listeners = (ListenerConfig(name="tcp", transport="tcp", bind=f"127.0.0.1:{port}"),)
    async with running_daemon(local_config(*listeners)) as d:
        before = d.listeners["tcp"]
        new = replace(d.config, listeners=(replace(listeners[0], format="json"),))
        assert await reload(d, new) is True
        assert d.listeners["tcp"] is not before
        assert d.listeners["tcp"].cfg.format == "json"
        assert listener_addr(d, "tcp") == ("127.0.0.1", port)
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b'{"message": "after the rebind"}\n')
        await w.drain()
        await wait_for(lambda: len(d.store) == 1)
        w.close()


async def test_a_listener_that_cannot_bind_keeps_its_old_socket_and_the_rest_applies() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with running_daemon() as d:
            before = d.listeners["tcp"]
            old_addr = listener_addr(d, "tcp")
            moved = replace(d.config.listeners[1], bind=f"127.0.0.1:{port}")
            extra = ListenerConfig(name="extra", transport="udp", bind="127.0.0.1:0")
            new = replace(
                d.config, listeners=(d.config.listeners[0], moved, d.config.listeners[2], extra)
            )
            assert await reload(d, new) is False

            assert d.listeners["tcp"] is before
            assert "extra" in d.listeners
            assert _reloads(d) == (1, 1)
            assert d.reloads.last_successful is False
            # What runs is what the daemon believes runs, so the next reload retries the move.
            assert [lc.bind for lc in d.config.listeners if lc.name == "tcp"] == ["127.0.0.1:0"]
            _, w = await asyncio.open_connection(*old_addr)
            w.write(b"<13>1 - h app - - - old socket still serves\n")
            await w.drain()
            await wait_for(lambda: len(d.store) == 1)
            w.close()


async def test_a_bad_config_file_is_logged_counted_and_the_running_config_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text("store: {ttl: 1h}\n")
    async with running_daemon() as d:
        d.config_path = str(path)
        listeners = dict(d.listeners)
        path.write_text(
            "store: {ttl: soon}\nlisteners:\n  - {name: x, transport: carrier-pigeon}\n"
        )
        with caplog.at_level(logging.ERROR, logger="collector.daemon"):
            assert await reload_from_file(d) is False
        logged = caplog.text
        assert 'store.ttl: expected a duration like 90s, 15m, 1h; got "soon"' in logged
        assert "listeners[0].transport" in logged
        assert "the running config stays" in logged
        assert d.listeners == listeners
        assert d.store.ttl_us == 3600 * 1_000_000
        assert _reloads(d) == (1, 1)
        assert d.app is not None
        assert d.app.registry.get_sample_value("collector_config_reload_failures_total") == 1
        _send_udp(d, "udp", b"<13>1 - h app - - - still running")
        await wait_for(lambda: len(d.store) == 1)

        # A fixed file applies on the next reload. It names http.bind: the
        # default (9514) may be taken by a daemon running beside the tests.
        path.write_text(
            "store: {ttl: 2h}\nhttp: {bind: '127.0.0.1:0'}\n"
            "listeners:\n  - {name: udp, transport: udp, bind: '127.0.0.1:0'}\n"
        )
        assert await reload_from_file(d) is True
        assert list(d.listeners) == ["udp"]
        assert d.store.ttl_us == 7200 * 1_000_000
        assert _reloads(d) == (2, 1)
        assert d.reloads.last_successful is True


async def test_an_unreadable_config_file_is_a_failed_reload(tmp_path: Path) -> None:
    async with running_daemon() as d:
        d.config_path = str(tmp_path / "missing.yaml")
        assert await reload_from_file(d) is False
        assert _reloads(d) == (1, 1)
        assert list(d.listeners) == ["udp", "tcp", "json"]


async def test_without_a_config_file_a_reload_says_there_is_nothing_to_re_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_daemon() as d:
        with caplog.at_level(logging.WARNING, logger="collector.daemon"):
            assert await reload_from_file(d) is False
        assert "nothing to re-read" in caplog.text
        assert _reloads(d) == (0, 0)


async def test_a_changed_http_bind_moves_the_http_port() -> None:
    async with running_daemon() as d:
        old = d.http_address
        port = _free_port()
        new = replace(d.config, http=replace(d.config.http, bind=f"127.0.0.1:{port}"))
        assert await reload(d, new) is True
        assert d.http_address == ("127.0.0.1", port)
        answer = await http_request(("127.0.0.1", port), "GET", "/health")
        assert answer.status == 200
        assert await _refused(old)


async def test_max_message_bytes_change_rebinds_listeners_with_the_new_limit() -> None:
    async with running_daemon() as d:
        new = replace(d.config, parsing=replace(d.config.parsing, max_message_bytes=64))
        assert await reload(d, new) is True
        _send_udp(d, "udp", b"<13>1 - h app - - - " + b"y" * 200)
        await wait_for(lambda: len(d.store) == 1)
        logs = (await get_json(d, "/logs?start=0"))["logs"]
        assert logs[0]["fields"] == {"truncated": True}
        assert d.listeners["udp"].stats.truncated == 1


async def test_a_reload_racing_shutdown_starts_nothing_after_listeners_closed() -> None:
    from collector.daemon import start, stop

    d = await start(local_config())
    added = ListenerConfig(name="late", transport="tcp", bind=f"127.0.0.1:{_free_port()}")
    new = replace(d.config, listeners=(*d.config.listeners, added))
    racing = asyncio.ensure_future(reload(d, new))
    await stop(d)
    assert await racing is False
    assert "late" not in d.listeners
    assert await _refused(("127.0.0.1", int(added.bind.rsplit(":", 1)[1])))


async def test_a_listener_on_an_inherited_socket_is_rebound_on_the_same_socket() -> None:
    from collector.daemon import start, stop

    inherited = socket.socket()
    inherited.bind(("127.0.0.1", 0))
    inherited.listen()
    addr = inherited.getsockname()
    # Matched by name (FileDescriptorName=syslog-tcp): the configured bind is not used.
    lc = ListenerConfig(name="syslog-tcp", transport="tcp", bind="127.0.0.1:9")
    d = await start(local_config(lc), inherited=[("syslog-tcp", inherited)])
    try:
        assert listener_addr(d, "syslog-tcp") == addr
        new = replace(d.config, listeners=(replace(lc, format="json"),))
        assert await reload(d, new) is True
        assert d.listeners["syslog-tcp"].cfg.format == "json"
        assert listener_addr(d, "syslog-tcp") == addr
        _, w = await asyncio.open_connection(*addr)
        w.write(b'{"message": "same systemd socket"}\n')
        await w.drain()
        await wait_for(lambda: len(d.store) == 1)
        w.close()

        # Removed from the config: the inherited socket is closed too.
        assert await reload(d, replace(d.config, listeners=())) is True
        assert inherited.fileno() == -1
        assert await _refused(addr)
    finally:
        await stop(d)
        inherited.close()


async def test_a_new_auth_token_and_body_limit_apply_from_the_next_request() -> None:
    async with running_daemon() as d:
        assert (await http_request(d.http_address, "GET", "/logs")).status == 200
        new = replace(d.config, http=replace(d.config.http, auth_token="s3cret", max_body=1024))
        assert await reload(d, new) is True
        assert (await http_request(d.http_address, "GET", "/logs")).status == 401
        authed = {"Authorization": "Bearer s3cret"}
        assert (await http_request(d.http_address, "GET", "/logs", headers=authed)).status == 200
        big = await http_request(d.http_address, "POST", "/logs", b"x" * 2000, headers=authed)
        assert big.status == 413


async def test_a_new_default_timezone_applies_to_posted_records_too() -> None:
    async with running_daemon() as d:
        new = replace(
            d.config, parsing=replace(d.config.parsing, default_timezone="America/New_York")
        )
        assert await reload(d, new) is True
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        local = now.astimezone(zoneinfo.ZoneInfo("America/New_York")).replace(tzinfo=None)
        body = json.dumps({"message": "m", "timestamp": local.isoformat()}).encode()
        posted = await http_request(
            d.http_address, "POST", "/logs", body, {"Content-Type": "application/json"}
        )
        assert posted.status == 201
        rec = (await get_json(d, f"/logs/{posted.json()['ids'][0]}"))["log"]
        assert rec["timestamp"] == now.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        assert rec["fields"] == {}
