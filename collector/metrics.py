"""Metrics stage: plain-int counters folded into prometheus-client at scrape time.

The hot path never calls prometheus-client: listeners, the store and HTTP keep
plain ints that `DaemonCollector.collect()` reads per scrape. The registry is
passed in (tests use `get_sample_value`); a source not there yet yields no samples.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from collector import __version__
from collector.inflight import Inflight
from collector.listeners import Listener
from collector.netio import NATIVE as NETIO_NATIVE
from collector.parse import IMPLEMENTATION
from collector.persist import PersistenceStats
from collector.query import RENDERER
from collector.ratelimit import RateLimiter
from collector.routes import HttpStats
from collector.store import Store
from collector.tls import TlsStats

if TYPE_CHECKING:
    from collector.outputs import Output
    from collector.streams import StreamListener

# Reasons a listener may count, exposed as 0 before they first happen so that
# rate() and alerts see the series from the start.
KNOWN_DROP_REASONS: dict[str, tuple[str, ...]] = {
    # The store never refuses a record (it evicts the oldest, counted as
    # collector_store_evicted_records_total), so there is no store_full.
    "udp": ("empty", "sink_error"),
    "unix": ("empty", "sink_error"),
    "tcp": ("connection_limit", "incomplete_frame", "bad_length", "framing_error", "sink_error"),
}

PROC_NET_UDP = ("/proc/net/udp", "/proc/net/udp6")


@dataclass(slots=True)
class ReloadStats:
    """Config reloads (SIGHUP), kept by the daemon."""

    total: int = 0
    failures: int = 0
    last_successful: bool = True
    last_success_time: float = 0.0  # Unix seconds; the start counts as a load


def read_udp_drops(paths: Sequence[str] = PROC_NET_UDP) -> tuple[dict[int, int], dict[int, int]]:
    """Receive-buffer drops per UDP socket from /proc/net/udp{,6}: maps
    inode -> drops and local port -> drops (summed over sockets on it).

    Unreadable files (no procfs, another OS) give empty maps."""
    by_inode: dict[int, int] = {}
    by_port: dict[int, int] = {}
    for path in paths:
        try:
            with open(path, encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
            parts = line.split()
            if len(parts) < 13:
                continue
            try:
                port = int(parts[1].rsplit(":", 1)[1], 16)
                inode, drops = int(parts[9]), int(parts[12])
            except (ValueError, IndexError):
                continue
            by_inode[inode] = by_inode.get(inode, 0) + drops
            by_port[port] = by_port.get(port, 0) + drops
    return by_inode, by_port


def _socket_inodes(lst: Listener) -> list[int]:
    """Inodes of a listener's sockets; empty when they are closed, and then
    the local port is matched instead."""
    inodes = []
    for s in lst.sockets:
        try:
            inodes.append(os.fstat(s.fileno()).st_ino)
        except (OSError, ValueError):
            continue
    return inodes


def _limiter(lst: Listener) -> RateLimiter | None:
    """A listener's rate limiter (stand-in listeners in tests have none)."""
    return getattr(getattr(lst, "ingest", None), "limiter", None)


class DaemonCollector(Collector):
    """Reads the daemon's counters at scrape time; see docs/operations.md for
    the list of metric names."""

    def __init__(
        self,
        store: Store,
        listeners: Callable[[], Iterable[Listener]],
        *,
        http_stats: Callable[[], HttpStats | None] = lambda: None,
        reloads: ReloadStats | None = None,
        started_at: float | None = None,
        proc_net_udp: Sequence[str] = PROC_NET_UDP,
        persistence: Callable[[], PersistenceStats | None] = lambda: None,
        http_tls: Callable[[], TlsStats | None] = lambda: None,
        redactions: Callable[[], dict[str, int]] = dict,
        outputs: Callable[[], Iterable[Output]] = tuple,
        streams: Callable[[], Iterable[StreamListener]] = tuple,
        inflight: Inflight | None = None,
    ) -> None:
        self.inflight = inflight
        self.http_tls = http_tls
        self.redactions = redactions
        self.persistence = persistence
        self.outputs = outputs
        self.streams = streams
        self.store = store
        self.listeners = listeners
        self.http_stats = http_stats
        self.reloads = reloads
        self.started_at = time.time() if started_at is None else started_at
        self.proc_net_udp = proc_net_udp

    def collect(self) -> Iterator[Metric]:
        yield from self._process()
        yield from self._listeners()
        yield from self._store()
        yield from self._http()
        yield from self._reloads()
        yield from self._persistence()
        yield from self._protection()
        yield from self._fleet()
        yield from self._inflight()

    def _inflight(self) -> Iterator[Metric]:
        """The bound on bytes held for clients across connections (inflight.py)."""
        inflight = self.inflight
        if inflight is None:
            return
        st = inflight.stats
        yield GaugeMetricFamily(
            "collector_inflight_bytes",
            "Bytes held for clients (partial frames, bodies, unsent answers, tail backlogs)",
            value=st.bytes,
        )
        yield GaugeMetricFamily(
            "collector_inflight_limit_bytes", "The bound on those bytes", value=inflight.limit
        )
        yield CounterMetricFamily(
            "collector_inflight_waits",
            "HTTP answers held back while the bytes held for clients were over their bound",
            value=st.waits,
        )
        yield CounterMetricFamily(
            "collector_inflight_refused",
            "Request bodies refused (503) for the bound on bytes held for clients",
            value=st.refused,
        )
        shed = CounterMetricFamily(
            "collector_inflight_shed_connections",
            "Connections closed, largest holder first, after a second over the bound",
            labels=["kind"],
        )
        for kind in ("http", "tail", "tcp"):
            shed.add_metric([kind], st.shed.get(kind, 0))
        yield shed

    def _protection(self) -> Iterator[Metric]:
        """TLS handshakes, rate limiting and redaction (docs/security.md)."""
        done = CounterMetricFamily(
            "collector_tls_handshakes", "TLS handshakes completed", labels=["listener"]
        )
        failed = CounterMetricFamily(
            "collector_tls_handshake_failures",
            "TLS handshakes that failed (protocol, timeout, closed, limit)",
            labels=["listener", "reason"],
        )
        pending = GaugeMetricFamily(
            "collector_tls_handshakes_pending", "TLS handshakes in progress", labels=["listener"]
        )
        keys = GaugeMetricFamily(
            "collector_rate_limit_keys",
            "Rate-limit buckets held (at most 10000)",
            labels=["listener"],
        )
        servers: list[tuple[str, TlsStats]] = []
        for lst in self.listeners():
            tls, limiter = getattr(lst, "tls", None), _limiter(lst)
            if tls is not None:
                servers.append((lst.cfg.name, tls.stats))
            if limiter is not None:
                keys.add_metric([lst.cfg.name], len(limiter.table))
        http = self.http_tls()
        if http is not None:
            servers.append(("http", http))
        for name, st in servers:
            done.add_metric([name], st.handshakes)
            pending.add_metric([name], st.pending)
            for reason in ("protocol", "timeout", "closed", "limit"):
                failed.add_metric([name, reason], st.failures.get(reason, 0))
        redactions = CounterMetricFamily(
            "collector_redactions", "Values replaced by each redaction rule", labels=["rule"]
        )
        for rule, n in sorted(self.redactions().items()):
            redactions.add_metric([rule], n)
        yield from (done, failed, pending, keys, redactions)

    def _fleet(self) -> Iterator[Metric]:
        records = CounterMetricFamily(
            "collector_output_records",
            "Records by output and result: sent (acknowledged), failed (a delivery that "
            "failed and is retried), dropped (past spool_max, or left in memory at exit)",
            labels=["output", "result"],
        )
        queue = GaugeMetricFamily(
            "collector_output_queue_records",
            "Records waiting for an output (in memory or in its spool)",
            labels=["output"],
        )
        queue_bytes = GaugeMetricFamily(
            "collector_output_queue_bytes",
            "Bytes the waiting records take in the output's queue or spool",
            labels=["output"],
        )
        up = GaugeMetricFamily(
            "collector_output_up",
            "1 when the output's last connection or delivery worked",
            labels=["output"],
        )
        for out in self.outputs():
            records.add_metric([out.name, "sent"], out.stats.sent)
            records.add_metric([out.name, "failed"], out.stats.failed)
            records.add_metric([out.name, "dropped"], out.dropped)
            queue.add_metric([out.name], out.queue_records)
            queue_bytes.add_metric([out.name], out.queue.nbytes)
            up.add_metric([out.name], 1 if out.stats.up else 0)
        lag = GaugeMetricFamily(
            "collector_stream_lag_records",
            "Entries the stream holds that this listener has not read yet, as the broker tells",
            labels=["listener"],
        )
        stream_up = GaugeMetricFamily(
            "collector_stream_up",
            "1 when the stream listener is connected to its broker",
            labels=["listener"],
        )
        for sl in self.streams():
            if sl.lag is not None:
                lag.add_metric([sl.name], sl.lag)
            stream_up.add_metric([sl.name], 1 if sl.up else 0)
        yield from (records, queue, queue_bytes, up, lag, stream_up)

    def _process(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "collector_build_info",
            "Always 1; the labels name the running version and the parser, datagram"
            " reader and page renderer (each native or pure)",
            labels=["version", "python", "parser", "datagrams", "pages"],
        )
        info.add_metric(
            [
                __version__,
                platform.python_version(),
                IMPLEMENTATION,
                "native" if NETIO_NATIVE else "pure",
                RENDERER,
            ],
            1,
        )
        yield info
        yield GaugeMetricFamily(
            "collector_start_time_seconds",
            "When the daemon started, in Unix seconds",
            value=self.started_at,
        )
        yield GaugeMetricFamily(
            "collector_uptime_seconds",
            "Seconds since the daemon started",
            value=max(0.0, time.time() - self.started_at),
        )

    def _listeners(self) -> Iterator[Metric]:
        lab = ["listener"]
        info = GaugeMetricFamily(
            "collector_listener_info",
            "Always 1 per running listener; labels say its transport, format and bind",
            labels=["listener", "transport", "format", "bind"],
        )
        received = CounterMetricFamily(
            "collector_messages_received",
            "Messages received (frames parsed into records)",
            labels=lab,
        )
        nbytes = CounterMetricFamily(
            "collector_received_bytes", "Bytes of message frames received", labels=lab
        )
        parsed = CounterMetricFamily(
            "collector_messages_parsed",
            "Messages by the format they parsed as (rfc5424, rfc3164, json, raw)",
            labels=["listener", "format"],
        )
        raw = CounterMetricFamily(
            "collector_messages_raw",
            "Messages that parsed as nothing and were kept raw",
            labels=lab,
        )
        truncated = CounterMetricFamily(
            "collector_messages_truncated",
            "Messages longer than parsing.max_message_bytes, cut and flagged",
            labels=lab,
        )
        skew = CounterMetricFamily(
            "collector_messages_clock_skew",
            "Messages whose event time was too old or too far ahead: stored with "
            "the receipt time, theirs kept in fields.original_timestamp",
            labels=lab,
        )
        dropped = CounterMetricFamily(
            "collector_messages_dropped",
            "Messages lost, by listener and reason",
            labels=["listener", "reason"],
        )
        conns = GaugeMetricFamily(
            "collector_connections_open", "TCP connections open now", labels=lab
        )
        refused = CounterMetricFamily(
            "collector_connections_refused",
            "TCP connections closed at once because max_connections was reached",
            labels=lab,
        )
        accepted = CounterMetricFamily(
            "collector_connections_accepted", "TCP connections accepted", labels=lab
        )
        idle_closed = CounterMetricFamily(
            "collector_connections_idle_closed",
            "TCP connections closed after listeners[].idle_timeout of silence",
            labels=lab,
        )
        paused = CounterMetricFamily(
            "collector_connections_paused",
            "Times a TCP connection was paused because parsing and storing fell behind",
            labels=lab,
        )
        recv_buffer = GaugeMetricFamily(
            "collector_socket_receive_buffer_bytes",
            "Receive buffer the kernel granted a datagram socket",
            labels=lab,
        )
        udp_drops = CounterMetricFamily(
            "collector_udp_receive_buffer_drops",
            "Datagrams the kernel dropped because the socket receive buffer was full (/proc/net/udp)",
            labels=lab,
        )
        ring_full = CounterMetricFamily(
            "collector_datagram_ring_full",
            "Times a datagram listener's reading thread found its ring full, so the"
            " kernel's receive buffer took the backlog (native receiver only)",
            labels=lab,
        )
        for sl in self.streams():
            cfg, st = sl.cfg, sl.stats
            name = [cfg.name]
            info.add_metric([cfg.name, cfg.transport, "json", cfg.url or ""], 1)
            received.add_metric(name, st.received)
            nbytes.add_metric(name, st.bytes)
            parsed.add_metric([cfg.name, "json"], st.received)
            reasons = {"bad_record": 0, **st.dropped}
            for reason, n in sorted(reasons.items()):
                dropped.add_metric([cfg.name, reason], n)
        drops_by_inode: dict[int, int] | None = None
        drops_by_port: dict[int, int] = {}
        for lst in self.listeners():
            cfg, st = lst.cfg, lst.stats
            name = [cfg.name]
            info.add_metric([cfg.name, cfg.transport, cfg.format, cfg.bind], 1)
            received.add_metric(name, st.received)
            nbytes.add_metric(name, st.bytes)
            # Listeners count raw records only (one test per record on the hot
            # path); the rest parsed as the listener's format.
            parsed.add_metric([cfg.name, "raw"], st.raw)
            parsed.add_metric([cfg.name, cfg.format], st.received - st.raw)
            raw.add_metric(name, st.raw)
            truncated.add_metric(name, st.truncated)
            skew.add_metric(name, st.clock_skew)
            reasons = dict.fromkeys(KNOWN_DROP_REASONS.get(cfg.transport, ()), 0)
            if _limiter(lst) is not None:
                reasons["rate_limited"] = 0
            reasons.update(st.dropped)
            for reason, n in sorted(reasons.items()):
                dropped.add_metric([cfg.name, reason], n)
            if cfg.transport == "tcp":
                conns.add_metric(name, st.connections_open)
                refused.add_metric(name, st.connections_refused)
                accepted.add_metric(name, st.connections_total)
                idle_closed.add_metric(name, st.idle_closed)
                paused.add_metric(name, st.paused)
            elif st.recv_buffer:
                recv_buffer.add_metric(name, st.recv_buffer)
            if cfg.transport != "tcp":
                full = lst.ring_full()
                if full is not None:
                    ring_full.add_metric(name, full)
            if cfg.transport == "udp":
                if drops_by_inode is None:
                    drops_by_inode, drops_by_port = read_udp_drops(self.proc_net_udp)
                if not drops_by_inode and not drops_by_port:
                    continue  # no procfs here: no sample rather than a false 0
                inodes = _socket_inodes(lst)
                if inodes:
                    udp_drops.add_metric(name, sum(drops_by_inode.get(i, 0) for i in inodes))
                elif isinstance(lst.address, tuple):
                    udp_drops.add_metric(name, drops_by_port.get(int(lst.address[1]), 0))
        yield from (
            info,
            received,
            nbytes,
            parsed,
            raw,
            truncated,
            skew,
            dropped,
            conns,
            refused,
            accepted,
            idle_closed,
            paused,
            recv_buffer,
            udp_drops,
            ring_full,
        )

    def _store(self) -> Iterator[Metric]:
        store = self.store
        yield GaugeMetricFamily("collector_store_records", "Records in the store", value=len(store))
        yield GaugeMetricFamily(
            "collector_store_bytes",
            "Estimated memory held by stored records",
            value=store.memory_bytes(),
        )
        yield GaugeMetricFamily(
            "collector_store_shards", "Time shards in the store", value=store.shard_count
        )
        yield CounterMetricFamily(
            "collector_store_expired_records",
            "Records dropped because they outlived store.ttl",
            value=store.expired_total,
        )
        yield CounterMetricFamily(
            "collector_store_evicted_records",
            "Oldest records dropped to stay within store.max_records / store.max_memory",
            value=store.evicted_total,
        )
        yield CounterMetricFamily(
            "collector_store_out_of_order_inserts",
            "Records that arrived older than the newest record of their shard",
            value=store.out_of_order_total,
        )
        yield GaugeMetricFamily(
            "collector_store_ttl_seconds", "Configured store.ttl", value=store.ttl_us / 1e6
        )
        yield GaugeMetricFamily(
            "collector_store_max_records", "Configured store.max_records", value=store.max_records
        )
        yield GaugeMetricFamily(
            "collector_store_max_bytes", "Configured store.max_memory", value=store.max_memory
        )

    def _http(self) -> Iterator[Metric]:
        stats: HttpStats | None = self.http_stats()
        if stats is None:
            return
        fam = CounterMetricFamily(
            "collector_http_requests",
            "HTTP requests answered, by route and status",
            labels=["route", "status"],
        )
        for (route, status), n in sorted(stats.requests.items()):
            fam.add_metric([route, str(status)], n)
        yield fam
        hist = HistogramMetricFamily(
            "collector_http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            labels=["route"],
        )
        for route, d in sorted(stats.duration.items()):
            buckets = [("+Inf" if b == float("inf") else repr(b), n) for b, n in d.cumulative()]
            hist.add_metric([route], buckets, sum_value=d.sum)
        yield hist
        yield GaugeMetricFamily(
            "collector_http_active_tails", "GET /tail streams open now", value=stats.active_tails
        )
        yield CounterMetricFamily(
            "collector_http_tails_dropped",
            "GET /tail clients cut off for falling too far behind",
            value=stats.tails_dropped,
        )
        yield CounterMetricFamily(
            "collector_http_connections_refused",
            "HTTP connections refused over http.max_connections",
            value=stats.connections_refused,
        )
        yield CounterMetricFamily(
            "collector_http_request_timeouts",
            "HTTP requests not complete within http.idle_timeout (408)",
            value=stats.timeouts,
        )

    def _persistence(self) -> Iterator[Metric]:
        stats = self.persistence()
        if stats is None:
            return
        for key, kind, doc in _PERSISTENCE_METRICS:
            name = f"collector_persist_{key}"
            value = getattr(stats, key)
            if kind == "counter":
                yield CounterMetricFamily(name, doc, value=value)
            else:
                yield GaugeMetricFamily(name, doc, value=value)

    def _reloads(self) -> Iterator[Metric]:
        r = self.reloads
        if r is None:
            return
        yield CounterMetricFamily(
            "collector_config_reloads", "Config reloads attempted (SIGHUP)", value=r.total
        )
        yield CounterMetricFamily(
            "collector_config_reload_failures",
            "Config reloads that failed, wholly or for some listener; the old config kept running",
            value=r.failures,
        )
        yield GaugeMetricFamily(
            "collector_config_last_reload_successful",
            "1 when the last reload (or the start) applied fully, else 0",
            value=1 if r.last_successful else 0,
        )
        yield GaugeMetricFamily(
            "collector_config_last_reload_success_timestamp_seconds",
            "When the config was last applied fully, in Unix seconds",
            value=r.last_success_time,
        )


def make_registry(
    store: Store,
    listeners: Callable[[], Iterable[Listener]],
    **sources: Any,
) -> CollectorRegistry:
    """A fresh registry holding the daemon's collector; `sources` are the
    optional keyword arguments of DaemonCollector (http_stats, reloads, ...)."""
    registry = CollectorRegistry()
    registry.register(DaemonCollector(store, listeners, **sources))
    return registry


# Persistence counters: (metric suffix, kind, help); values read from PersistenceStats.
_PERSISTENCE_METRICS = (
    ("wal_bytes", "gauge", "Size of the write-ahead log on disk"),
    ("wal_records", "counter", "Records appended to the write-ahead log"),
    (
        "wal_write_errors",
        "counter",
        "Failed write-ahead log writes and fsyncs (disk full, I/O error)",
    ),
    (
        "wal_dropped_records",
        "counter",
        "Records kept in memory only: the log failed or was at its bound",
    ),
    ("wal_fsyncs", "counter", "fsync calls on the write-ahead log"),
    ("wal_torn_bytes", "counter", "Bytes of a torn log tail ignored at start-up"),
    (
        "wal_segments_pruned",
        "counter",
        "Log segments deleted between snapshots: the store held none of their records",
    ),
    ("snapshots", "counter", "Snapshots written"),
    ("snapshot_errors", "counter", "Snapshots that failed"),
    ("snapshot_seconds", "gauge", "Duration of the last snapshot"),
    ("snapshot_records", "gauge", "Records in the last snapshot"),
    ("restored_records", "gauge", "Records restored at start-up"),
    ("corrupt_files", "counter", "Damaged state files moved aside"),
    ("block_files", "gauge", "Block files on disk (one per sealed shard)"),
    ("block_write_errors", "counter", "Failed block file writes (disk full, I/O error)"),
    (
        "lost_records",
        "counter",
        "Records a snapshot named that could not be read back at start-up (damaged block file)",
    ),
)
