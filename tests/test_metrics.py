"""Metrics: values read back with get_sample_value after real traffic, the
exposition checked by promtool, UDP drops read from /proc/net/udp."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collector import __version__
from collector.config import ListenerConfig, StoreConfig
from collector.metrics import DaemonCollector, ReloadStats, make_registry, read_udp_drops
from collector.netio import NATIVE as NETIO_NATIVE
from collector.parse import IMPLEMENTATION
from collector.record import Record
from collector.routes import HttpStats
from collector.store import Store
from tests.support import http_request, listener_addr, local_config, running_daemon, wait_for

HAVE_PROC_NET_UDP = os.path.exists("/proc/net/udp")


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_counters_match_known_udp_and_tcp_traffic() -> None:
    from collector.config import ParsingConfig

    config = local_config(parsing=ParsingConfig(max_message_bytes=100))
    async with running_daemon(config) as d:
        assert d.app is not None
        reg = d.app.registry
        udp = [
            b"<34>1 2026-01-01T10:00:00Z web-1 sshd 42 ID1 - one",
            b"<13>Jan  1 10:00:01 web-2 cron[7]: two",
            b"not syslog at all",
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for msg in udp:
                s.sendto(msg, listener_addr(d, "udp"))
        _, writer = await asyncio.open_connection(*listener_addr(d, "tcp"))
        writer.write(b"<13>Jan  1 10:00:01 web-2 cron[7]: three\n" + b"<13>" + b"x" * 300 + b"\n")
        await writer.drain()

        await wait_for(lambda: len(d.store) == 5)
        assert _value(reg, "collector_messages_received_total", listener="udp") == 3
        assert _value(reg, "collector_messages_received_total", listener="tcp") == 2
        assert _value(reg, "collector_messages_received_total", listener="json") == 0
        assert _value(reg, "collector_received_bytes_total", listener="udp") == sum(map(len, udp))
        assert _value(reg, "collector_messages_raw_total", listener="udp") == 1
        assert _value(reg, "collector_messages_parsed_total", listener="udp", format="raw") == 1
        assert _value(reg, "collector_messages_truncated_total", listener="tcp") == 1
        assert _value(reg, "collector_messages_truncated_total", listener="udp") == 0
        assert _value(reg, "collector_store_records") == 5
        assert _value(reg, "collector_connections_open", listener="tcp") == 1
        assert _value(reg, "collector_connections_refused_total", listener="tcp") == 0
        assert (
            _value(
                reg,
                "collector_listener_info",
                listener="tcp",
                transport="tcp",
                format="syslog",
                bind="127.0.0.1:0",
            )
            == 1
        )
        writer.close()
        await wait_for(lambda: _value(reg, "collector_connections_open", listener="tcp") == 0)


async def test_known_drop_reasons_are_exposed_as_zero_and_counted_drops_show() -> None:
    async with running_daemon() as d:
        assert d.app is not None
        reg = d.app.registry
        for reason in ("connection_limit", "incomplete_frame", "bad_length", "sink_error"):
            assert (
                _value(reg, "collector_messages_dropped_total", listener="tcp", reason=reason) == 0
            )
        d.listeners["tcp"].stats.drop("incomplete_frame", 2)
        d.listeners["udp"].stats.drop("some_new_reason")
        assert (
            _value(
                reg, "collector_messages_dropped_total", listener="tcp", reason="incomplete_frame"
            )
            == 2
        )
        assert (
            _value(
                reg, "collector_messages_dropped_total", listener="udp", reason="some_new_reason"
            )
            == 1
        )


async def test_metrics_endpoint_serves_the_registry_as_prometheus_text() -> None:
    async with running_daemon() as d:
        answer = await http_request(d.http_address, "GET", "/metrics")
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/plain")
        text = answer.body.decode()
        assert 'collector_messages_received_total{listener="udp"} 0.0' in text
        assert "collector_store_records 0.0" in text
        assert f'parser="{IMPLEMENTATION}",python="' in text
        assert 'collector_build_info{datagrams="' in text
        assert f'version="{__version__}"' in text


def _store() -> Store:
    return Store(ttl_us=60_000_000, max_records=10, max_memory=1 << 20)


def test_build_info_start_time_and_uptime() -> None:
    started = time.time() - 5
    reg = make_registry(_store(), list, started_at=started)
    samples = {s.name: s for m in reg.collect() for s in m.samples}
    assert samples["collector_build_info"].labels["version"] == __version__
    assert samples["collector_build_info"].labels["parser"] in ("native", "pure")
    assert samples["collector_build_info"].labels["parser"] == IMPLEMENTATION
    assert samples["collector_build_info"].value == 1
    assert _value(reg, "collector_start_time_seconds") == started
    uptime = _value(reg, "collector_uptime_seconds")
    assert uptime is not None
    assert 5 <= uptime < 60


def _rec(ts: int) -> Record:
    return Record(ts, ts, "h", "s", None, None, 1, 6, "m" * 200, None, None, "raw")


def test_store_gauges_and_counters_follow_adds_late_inserts_expiry_and_eviction() -> None:
    minute = 60_000_000
    store = Store(ttl_us=90 * 1_000_000, max_records=10, max_memory=1 << 20, shard_span_us=minute)
    t0 = 1_767_225_600_000_000
    store.add_many([_rec(t0 + i * 1000) for i in range(5)])
    store.add_many([_rec(t0 + minute + i) for i in range(5)])
    store.add_many([_rec(t0 + 2500)])  # late: older than the newest of its shard
    store.add_many([_rec(t0 + 2 * minute)])  # 12 > max_records: 2 evicted
    store.expire(t0 + 90 * 1_000_000 + minute)  # the first shard is past the TTL
    reg = make_registry(store, list)
    assert _value(reg, "collector_store_records") == len(store) == 6
    assert _value(reg, "collector_store_evicted_records_total") == 2
    assert _value(reg, "collector_store_expired_records_total") == 4
    assert _value(reg, "collector_store_out_of_order_inserts_total") == 1
    assert _value(reg, "collector_store_shards") == store.shard_count == 2
    assert _value(reg, "collector_store_bytes") == store.memory_bytes() > 6 * 200
    assert _value(reg, "collector_store_ttl_seconds") == 90
    assert _value(reg, "collector_store_max_records") == 10
    assert _value(reg, "collector_store_max_bytes") == 1 << 20


def _filled_http_stats() -> HttpStats:
    stats = HttpStats(active_tails=3)
    # 5 /logs requests: 2 <= 1ms, 1 <= 10ms, 0 <= 100ms, 1 <= 1s, 1 above
    for seconds in (0.0002, 0.0009, 0.007, 0.6, 1.6):
        stats.count("/logs", 200, seconds)
    stats.count("/logs", 400, 0.0001)
    stats.count("/logs", 400, 0.0001)
    stats.count("/metrics", 200, 0.002)
    return stats


def test_http_requests_duration_histogram_and_tails() -> None:
    stats = _filled_http_stats()
    reg = make_registry(_store(), list, http_stats=lambda: stats)
    assert _value(reg, "collector_http_requests_total", route="/logs", status="200") == 5
    assert _value(reg, "collector_http_requests_total", route="/logs", status="400") == 2
    assert _value(reg, "collector_http_requests_total", route="/metrics", status="200") == 1
    bucket = "collector_http_request_duration_seconds_bucket"
    assert _value(reg, bucket, route="/logs", le="0.001") == 4
    assert _value(reg, bucket, route="/logs", le="0.01") == 5
    assert _value(reg, bucket, route="/logs", le="0.1") == 5
    assert _value(reg, bucket, route="/logs", le="1.0") == 6
    assert _value(reg, bucket, route="/logs", le="+Inf") == 7
    assert _value(reg, "collector_http_request_duration_seconds_count", route="/logs") == 7
    assert _value(
        reg, "collector_http_request_duration_seconds_sum", route="/logs"
    ) == pytest.approx(2.2083)
    assert _value(reg, "collector_http_active_tails") == 3


def test_without_http_stats_there_are_no_http_samples() -> None:
    reg = make_registry(_store(), list)
    assert _value(reg, "collector_http_active_tails") is None


def test_reload_counters() -> None:
    reloads = ReloadStats(
        total=3, failures=1, last_successful=False, last_success_time=1700000000.0
    )
    reg = make_registry(_store(), list, reloads=reloads)
    assert _value(reg, "collector_config_reloads_total") == 3
    assert _value(reg, "collector_config_reload_failures_total") == 1
    assert _value(reg, "collector_config_last_reload_successful") == 0
    assert _value(reg, "collector_config_last_reload_success_timestamp_seconds") == 1700000000.0


_PROC_UDP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  133: 00000000:0202 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17
  134: 0100007F:15BA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 0
  garbage line
"""
_PROC_UDP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
   12: 00000000000000000000000000000000:0202 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4444 2 0000000000000000 3
"""


def test_proc_net_udp_is_read_by_inode_and_port(tmp_path: Path) -> None:
    (tmp_path / "udp").write_text(_PROC_UDP)
    (tmp_path / "udp6").write_text(_PROC_UDP6)
    by_inode, by_port = read_udp_drops(
        [str(tmp_path / "udp"), str(tmp_path / "udp6"), str(tmp_path / "absent")]
    )
    assert by_inode == {4242: 17, 4343: 0, 4444: 3}
    assert by_port == {514: 20, 5562: 0}


@dataclass
class _UdpListener:
    """A listener-shaped object over a real socket nobody reads."""

    cfg: ListenerConfig
    socket: socket.socket
    address: Any = None
    stats: Any = None

    def __post_init__(self) -> None:
        from collector.ingest import ListenerStats

        self.stats = ListenerStats()
        self.address = self.socket.getsockname()

    @property
    def sockets(self) -> list[socket.socket]:
        return [self.socket]

    def ring_full(self) -> int | None:
        return None


def test_udp_receive_buffer_drops_of_our_socket_come_from_proc_net_udp() -> None:
    if not HAVE_PROC_NET_UDP:
        pytest.skip("no /proc/net/udp on this system")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # the kernel's minimum
        rx.bind(("127.0.0.1", 0))
        lst = _UdpListener(ListenerConfig(name="udp", transport="udp", bind="127.0.0.1:0"), rx)
        reg = CollectorRegistry()
        reg.register(DaemonCollector(_store(), lambda: [lst]))  # type: ignore[list-item]
        assert _value(reg, "collector_udp_receive_buffer_drops_total", listener="udp") == 0
        for _ in range(200):
            tx.sendto(b"x" * 1000, rx.getsockname())
        by_inode, _ = read_udp_drops()
        kernel = by_inode[os.fstat(rx.fileno()).st_ino]
        assert kernel > 0  # the buffer holds a couple of datagrams at most
        assert _value(reg, "collector_udp_receive_buffer_drops_total", listener="udp") == kernel


async def test_udp_drops_of_a_daemon_listener_are_exposed_from_zero() -> None:
    if not HAVE_PROC_NET_UDP:
        pytest.skip("no /proc/net/udp on this system")
    async with running_daemon() as d:
        assert d.app is not None
        assert (
            _value(d.app.registry, "collector_udp_receive_buffer_drops_total", listener="udp") == 0
        )


async def test_a_datagram_listeners_full_ring_count_is_exposed_with_the_native_receiver() -> None:
    async with running_daemon() as d:
        assert d.app is not None
        full = _value(d.app.registry, "collector_datagram_ring_full_total", listener="udp")
        if NETIO_NATIVE:
            assert full == 0
        else:  # the pure receiver has no ring: no sample rather than a false 0
            assert full is None


async def test_exposition_passes_promtool_check_metrics() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    async with running_daemon() as d:
        assert d.app is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"<34>1 - - - - - - hello", listener_addr(d, "udp"))
        await wait_for(lambda: len(d.store) == 1)
        d.listeners["tcp"].stats.drop("incomplete_frame")
        stats = _filled_http_stats()
        reg = make_registry(
            d.store,
            lambda: list(d.listeners.values()),
            http_stats=lambda: stats,
            reloads=d.reloads,
        )
        text = generate_latest(reg)
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(text), 30)
    # promtool prints one line per lint problem and exits 1 on any.
    assert proc.returncode == 0, (out + err).decode()
    assert out.strip() == b"", out.decode()


async def test_persistence_counters_appear_only_with_a_persist_dir(tmp_path: Path) -> None:
    async with running_daemon() as d:
        assert _value(d.app.registry, "collector_persist_wal_records_total") is None  # type: ignore[union-attr]
    store = replace(StoreConfig(), persist_dir=str(tmp_path), wal_flush_interval=0.01)
    async with running_daemon(local_config(store=store)) as d:
        assert d.app is not None
        reg = d.app.registry
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(3):
                s.sendto(b"<34>1 - - - - - - persisted %d" % i, listener_addr(d, "udp"))
        await wait_for(lambda: _value(reg, "collector_persist_wal_records_total") == 3)
        wal_bytes = _value(reg, "collector_persist_wal_bytes")
        assert wal_bytes is not None
        assert wal_bytes > 0
        assert _value(reg, "collector_persist_wal_write_errors_total") == 0
