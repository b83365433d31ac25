"""The running parts (`Daemon`: the one ingest sink and what it feeds) and the
background loops over them: sweeping and sealing the store, eviction warnings,
rate-limit summaries, systemd STATUS=/WATCHDOG=1 and the foreground status line.

Stage: after start-up, until shutdown. Each loop waits on `stop_event` (never
polls) and is spawned by daemon.start()/serve(); none binds or closes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from collector import heap, systemd
from collector.config import Config
from collector.inflight import Holder, Inflight, Source
from collector.listeners import Listener, StreamProtocol
from collector.metrics import ReloadStats
from collector.outputs import Output
from collector.persist import Persistence
from collector.ratelimit import SUMMARY_EVERY
from collector.record import Record
from collector.routes import App
from collector.settings import Settings
from collector.store import Store
from collector.streams import StreamItem, StreamListener, StreamSink
from collector.tail import LiveTails
from collector.times import format_timestamp
from collector.tls import TlsServer

# The daemon's own logger: these messages are the daemon's, wherever the code lives.
log = logging.getLogger("collector.daemon")

# How often STATUS= (records, rate) is sent to systemd.
STATUS_INTERVAL = 10.0


@dataclass
class Daemon:
    """The running parts, for tests, reload and shutdown."""

    settings: Settings
    store: Store
    listeners: dict[str, Listener] = field(default_factory=dict)
    http_server: asyncio.Server | None = None
    app: App | None = None
    http_tls: TlsServer = field(default_factory=lambda: TlsServer("http", None))
    tails: LiveTails = field(default_factory=LiveTails)
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Reload and systemd state:
    config_path: str | None = None
    inherited: systemd.Inherited = field(default_factory=systemd.Inherited)
    reloads: ReloadStats = field(default_factory=ReloadStats)
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    started_at: float = field(default_factory=time.time)
    persistence: Persistence | None = None
    outputs: list[Output] = field(default_factory=list)
    streams: dict[str, StreamListener] = field(default_factory=dict)
    node: int = 0
    # Store work: the q= scan's threads, and eviction warnings already given.
    scan_pool: ThreadPoolExecutor | None = None
    evicted_seen: int = 0
    eviction_warned_at: float | None = None
    # The bound on bytes held for clients across connections (inflight.py).
    inflight: Inflight = field(default_factory=Inflight)

    @property
    def config(self) -> Config:
        """The running config (what the live settings hold)."""
        return self.settings.config

    @property
    def http_address(self) -> tuple[str, int]:
        assert self.http_server is not None
        host, port = self.http_server.sockets[0].getsockname()[:2]
        return host, port

    def ingest(self, records: list[Record]) -> int:
        """The one sink, for listeners and POST /logs alike: store the batch,
        log it for persistence, hand it to live /tail streams; returns the
        batch's first seq (POST /logs makes ids of it)."""
        redactor = self.settings.redactor
        if redactor is not None:  # before anything is kept: store, log, tails
            redactor.apply(records)
        first = self.store.add_many(records)
        if self.persistence is not None:
            self.persistence.log(first, records)
        self.tails.publish(first, records)
        if self.outputs:
            seqs = range(first, first + len(records))
            for out in self.outputs:
                out.offer(seqs, records)
        return first

    def stream_sink(self, origin: str) -> StreamSink:
        """The sink of a stream listener reading `origin` (a `stream_key`):
        store what is not stored yet, log it and wait until the log has it
        (with persistence), then tails and every output but the stream it
        came from. The listener acknowledges the batch when this returns."""

        async def sink(items: list[StreamItem]) -> None:
            stored = self.store.add_items(items)
            if not stored:
                return
            if self.persistence is not None:
                self.persistence.log_items(stored)
                await self.persistence.durable()
            seqs = [seq for seq, _ in stored]
            records = [rec for _, rec in stored]
            self.tails.publish(seqs, records)
            for out in self.outputs:
                if out.key != origin:
                    out.offer(seqs, records)

        return sink

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def now_us() -> int:
    return time.time_ns() // 1000


# --- the bound on bytes held for clients ----------------------------------------------

INFLIGHT_EVERY = 0.05  # seconds between two measures of the bytes held for clients
INFLIGHT_LOG_EVERY = 60.0  # seconds between two warnings about that bound


def tcp_source(daemon: Daemon) -> Source:
    """The stream listeners as a source of the in-flight bound: partial
    frames held by their connections (frames read and not yet parsed are
    bounded per listener by ingest.HIGH_WATER). Shedding one closes it as
    a peer's close would end it: an unterminated line is stored (flagged
    truncated), an incomplete octet-counted frame counted as a drop."""

    def conns() -> list[StreamProtocol]:
        return [
            c
            for lst in list(daemon.listeners.values())
            for c in lst.ingest.connections
            if isinstance(c, StreamProtocol)
        ]

    def total() -> int:
        return sum(c.framer.buffered for c in conns())

    def largest() -> list[tuple[str, Holder]]:
        held = conns()
        if not held:
            return []
        conn = max(held, key=lambda c: c.framer.buffered)
        return [("tcp", (conn.framer.buffered, functools.partial(_shed_stream, conn)))]

    return Source("tcp", total, largest)


def _shed_stream(conn: StreamProtocol) -> None:
    conn.finish(partial_is_message=False)  # a line held is stored, flagged truncated
    if conn.transport is not None:
        conn.transport.abort()


async def inflight_guard(daemon: Daemon) -> None:
    """Measure the bytes held for clients every INFLIGHT_EVERY: wake answers
    held back once there is room; over the bound for inflight.SHED_AFTER,
    close the largest holder each round; warn at most every INFLIGHT_LOG_EVERY."""
    inflight = daemon.inflight
    warned_at = -INFLIGHT_LOG_EVERY
    seen_waits = seen_shed = 0
    while not daemon.stop_event.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), INFLIGHT_EVERY)
        now = time.monotonic()
        before = inflight.measured
        used = inflight.measure(now)
        inflight.shed(now)
        if before > inflight.limit // 2 and used < inflight.limit // 8:
            # A burst of clients is over: give the heap it freed back.
            await asyncio.to_thread(heap.give_back)
        stats = inflight.stats
        shed = sum(stats.shed.values())
        if (stats.waits, shed) != (seen_waits, seen_shed) and now - warned_at >= INFLIGHT_LOG_EVERY:
            warned_at = now
            log.warning(
                "memory: bytes held for clients reached their bound (%s, %s now): "
                "%d answers held back, %d request bodies refused, %d connections closed "
                "(largest first: %s) so far",
                _size_text(inflight.limit),
                f"{stats.bytes / 2**20:.0f}MiB",
                stats.waits,
                stats.refused,
                shed,
                ", ".join(f"{k} {n}" for k, n in sorted(stats.shed.items())) or "none",
            )
            seen_waits, seen_shed = stats.waits, shed


# Seconds between two heap trims after the store has dropped records.
TRIM_EVERY = 10.0


async def sweeper(daemon: Daemon) -> None:
    store = daemon.store
    dropped_seen = 0
    trimmed_at = time.monotonic()
    while not daemon.stop_event.is_set():
        # Read each round: a reload may change it.
        interval = daemon.settings.config.store.sweep_interval
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), interval)
        store.expire(now_us())
        await _seal(daemon)
        now = time.monotonic()
        _warn_eviction(daemon, now)
        dropped = store.evicted_total + store.expired_total
        if dropped != dropped_seen and now - trimmed_at >= TRIM_EVERY:
            # Records expired or evicted: their columns' and text's memory
            # is free in the heap; hand it back (see heap.py).
            dropped_seen, trimmed_at = dropped, now
            await asyncio.to_thread(heap.give_back)


async def _seal(daemon: Daemon) -> None:
    """Seal older shards in a worker thread: compression releases the GIL,
    and the rest yields it every few milliseconds, so the loop keeps serving."""
    installed = False
    for job in daemon.store.seal_jobs():
        if daemon.stop_event.is_set():
            return
        try:
            sealed = await asyncio.to_thread(job.run)
        except Exception:
            # A value the block format cannot hold: the shard stays open
            # (and counted as such); never a dead sweeper.
            log.exception("store: cannot seal the shard at %s; it stays open", job.start_text)
            daemon.store.seal_failed(job)
            continue
        if daemon.store.install(job, sealed):
            installed = True
    if installed:
        await asyncio.to_thread(heap.give_back)


EVICTION_WARNING_EVERY = 3600.0  # seconds between warnings while eviction goes on


def _warn_eviction(daemon: Daemon, now: float) -> None:
    """One WARNING when the store starts evicting for a bound, then hourly while it goes on."""
    store = daemon.store
    if store.evicted_total == daemon.evicted_seen:
        return
    daemon.evicted_seen = store.evicted_total
    if (
        daemon.eviction_warned_at is not None
        and now - daemon.eviction_warned_at < EVICTION_WARNING_EVERY
    ):
        return
    daemon.eviction_warned_at = now
    oldest, newest = store.oldest_timestamp(), store.newest_timestamp()
    held = "nothing" if oldest is None or newest is None else _span_text(newest - oldest)
    cfg = daemon.config.store
    bound = (
        f"store.max_records ({cfg.max_records})"
        if store.last_evicted_for == "max_records"
        else f"store.max_memory ({_size_text(cfg.max_memory)})"
    )
    log.warning(
        "store: %s reached, evicting the oldest records (%d so far); the store now holds %s of logs%s",
        bound,
        store.evicted_total,
        held,
        "" if oldest is None else f", from {format_timestamp(oldest)}",
    )


def _span_text(us: int) -> str:
    s = us // 1_000_000
    h, rest = divmod(s, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def _size_text(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"


async def rate_limit_reporter(daemon: Daemon) -> None:
    """Every SUMMARY_EVERY seconds, one warning record per rate-limit key that
    dropped records (contract: never silent), stored like any other."""
    host = socket.gethostname()
    while not daemon.stop_event.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), SUMMARY_EVERY)
        report_rate_limits(daemon, host)


def report_rate_limits(daemon: Daemon, host: str | None) -> int:
    """Store the pending rate-limit summaries now; how many records that made."""
    now = now_us()
    records = [
        rec
        for lst in list(daemon.listeners.values())
        if lst.ingest.limiter is not None
        for rec in lst.ingest.limiter.summaries(now, host)
    ]
    if records:
        daemon.ingest(records)
    return len(records)


def systemd_status(daemon: Daemon, rate: float | None = None) -> str:
    return systemd.status(len(daemon.store), len(daemon.listeners), rate)


def _received(daemon: Daemon) -> int:
    return sum(lst.stats.received for lst in daemon.listeners.values())


async def watchdog(daemon: Daemon, interval: float) -> None:
    """WATCHDOG=1 from a task on the event loop: if the loop is stuck, the
    pings stop and systemd restarts the daemon (WatchdogSec=)."""
    while not daemon.stop_event.is_set():
        systemd.notify("WATCHDOG=1")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), interval)


async def status_reporter(daemon: Daemon) -> None:
    """STATUS= lines (records held, messages per second), shown by systemctl status."""
    last_n, last_t = _received(daemon), time.monotonic()
    while not daemon.stop_event.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), STATUS_INTERVAL)
        n, t = _received(daemon), time.monotonic()
        # A rebound listener restarts its counter; never report a negative rate.
        rate = max(0, n - last_n) / max(t - last_t, 1e-9)
        last_n, last_t = n, t
        if not daemon.stop_event.is_set():
            systemd.notify(systemd_status(daemon, rate))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the foreground status line reports, sampled once per interval."""

    records: int
    received: int
    dropped: int
    at: float


def _snapshot(daemon: Daemon) -> Snapshot:
    lsts = daemon.listeners.values()
    dropped = sum(sum(lst.stats.dropped.values()) for lst in lsts)
    return Snapshot(len(daemon.store), _received(daemon), dropped, time.monotonic())


def status_line(prev: Snapshot, now: Snapshot) -> str | None:
    """The foreground status line, or None when nothing changed since `prev`."""
    if (now.records, now.received, now.dropped) == (prev.records, prev.received, prev.dropped):
        return None
    # A rebound listener restarts its counters; never report a negative rate.
    rate = max(0, now.received - prev.received) / max(now.at - prev.at, 1e-9)
    new_drops = max(0, now.dropped - prev.dropped)
    return (
        f"status: {now.records} record{'' if now.records == 1 else 's'} held, "
        f"{rate:.1f} msg/s received, "
        f"{now.dropped} dropped ({new_drops} new)"
    )


async def stderr_status(daemon: Daemon, interval: float = STATUS_INTERVAL) -> None:
    """In the foreground (not under systemd, whose STATUS= does this): one
    line on stderr every `interval` when something changed, as `rsyslogd -n`
    users expect to see that logs arrive."""
    prev = _snapshot(daemon)
    while not daemon.stop_event.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), interval)
        now = _snapshot(daemon)
        line = status_line(prev, now)
        if line is not None and not daemon.stop_event.is_set():
            log.info("%s", line)
        prev = now
