"""Daemon stage: run(config) wires listeners -> sink -> store -> HTTP, signals, shutdown.

Nothing here parses or stores. It builds the one live Settings and the one sink
(`Daemon.ingest`) that listeners and POST /logs share; SIGTERM/SIGINT set the
stop event, then each shutdown step is bounded; SIGHUP hands over to `reload`.
uvloop is chosen here and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import random
import signal
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from collector import systemd
from collector.config import Config
from collector.listeners import Listener
from collector.metrics import ReloadStats, make_registry
from collector.outputs import Output
from collector.parse import IMPLEMENTATION_DETAIL
from collector.persist import DirectoryInUse, Persistence
from collector.ratelimit import SUMMARY_EVERY
from collector.record import NODE_MAX, Record
from collector.redact import key_for
from collector.reload import bind_listener, on_sighup, start_http_server
from collector.routes import App
from collector.settings import Settings
from collector.sockets import bind_error
from collector.store import Store
from collector.streams import (
    StreamItem,
    StreamListener,
    StreamSink,
    make_stream_listener,
    stream_key,
)
from collector.tail import LiveTails
from collector.times import format_timestamp
from collector.tls import TlsServer

log = logging.getLogger("collector.daemon")

SHUTDOWN_STEP_TIMEOUT = 5.0
# How often STATUS= (records, rate) is sent to systemd.
STATUS_INTERVAL = 10.0


# Records and parse intermediates live for one listener batch (up to
# listeners.FLUSH_FRAMES frames) and are then freed by refcounting. With
# CPython's gen0 threshold of 700 a batch in flight is scanned several times
# and promoted to the old generations, whose growth then triggers full
# collections over everything alive. Above a batch's size they die young.
GC_GEN0_THRESHOLD = 50_000


class StartupError(Exception):
    """The daemon cannot start; the message is the one line to print."""


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


def _now_us() -> int:
    return time.time_ns() // 1000


async def _sweeper(daemon: Daemon) -> None:
    while not daemon.stop_event.is_set():
        # Read each round: a reload may change it.
        interval = daemon.settings.config.store.sweep_interval
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), interval)
        daemon.store.expire(_now_us())
        await _seal(daemon)
        _warn_eviction(daemon, time.monotonic())


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
        await asyncio.to_thread(_give_back_free_memory)


def _give_back_free_memory() -> None:
    """Hand the heap pages a seal freed (an open shard's columns and text)
    back to the kernel, so that RSS follows what the store holds. glibc
    only; elsewhere nothing to do."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


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


async def _rate_limit_reporter(daemon: Daemon) -> None:
    """Every SUMMARY_EVERY seconds, one warning record per rate-limit key that
    dropped records (contract: never silent), stored like any other."""
    host = socket.gethostname()
    while not daemon.stop_event.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), SUMMARY_EVERY)
        report_rate_limits(daemon, host)


def report_rate_limits(daemon: Daemon, host: str | None) -> int:
    """Store the pending rate-limit summaries now; how many records that made."""
    now = _now_us()
    records = [
        rec
        for lst in list(daemon.listeners.values())
        if lst.ingest.limiter is not None
        for rec in lst.ingest.limiter.summaries(now, host)
    ]
    if records:
        daemon.ingest(records)
    return len(records)


def tune_gc() -> None:
    """Once, after start-up: move what start-up made (modules, config, the
    bound sockets' objects) out of the GC's sight for good, and let a whole
    listener batch die young. Cycles made later are still collected."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


async def start(
    config: Config,
    *,
    inherited: list[tuple[str, socket.socket]] | None = None,
    config_path: str | None = None,
    stop_event: asyncio.Event | None = None,
) -> Daemon:
    """Bind everything the config names; StartupError names what failed.

    `inherited` are sockets passed by systemd socket activation (see
    `systemd.listen_fds`); `config_path` is the file SIGHUP re-reads;
    `stop_event` is the event signal handlers set (it may already be set)."""
    node = node_id(config)
    store = Store(
        ttl_us=int(config.store.ttl * 1_000_000),
        max_records=config.store.max_records,
        max_memory=config.store.max_memory,
        shard_span_us=int(config.store.shard_span * 1_000_000),
        node=node,
        seal_inline=False,  # the sweeper seals in a worker thread
    )
    parsing = config.parsing
    try:
        key, key_source = key_for(parsing.redact, parsing.redact_key_file, config.store.persist_dir)
    except OSError as e:
        where = "parsing.redact_key_file" if parsing.redact_key_file else "store.persist_dir"
        raise StartupError(f"{where}: cannot use the redaction key: {e.strerror or e}") from None
    daemon = Daemon(Settings(config, redact_key=key), store, config_path=config_path, node=node)
    if any(rule.action == "hash" for rule in config.parsing.redact):
        log.info("redaction: hashing with the key from %s", key_source)
    try:
        daemon.http_tls = TlsServer("http", config.http.tls)
    except (ssl.SSLError, OSError) as e:
        raise StartupError(f"http.tls: cannot load the certificate: {e}") from None
    # q= scans decompress blocks on both cores (zstd releases the GIL).
    daemon.scan_pool = ThreadPoolExecutor(2, thread_name_prefix="collector-scan")
    store.cache.mapper = daemon.scan_pool.map
    if stop_event is not None:
        daemon.stop_event = stop_event
    daemon.reloads.last_success_time = daemon.started_at
    daemon.inherited.adopt(config.listeners, inherited or [])
    _open_persistence(daemon)
    try:
        _start_outputs(daemon)
        for lc in config.listeners:
            if lc.is_stream:
                continue
            try:
                await bind_listener(daemon, lc, config.parsing.max_message_bytes)
            except OSError as e:
                raise StartupError(
                    f"listener {lc.name}: cannot bind {lc.transport} {lc.bind}: {bind_error(e)}"
                ) from None
        registry = make_registry(
            store,
            lambda: list(daemon.listeners.values()),
            http_stats=lambda: daemon.app.stats if daemon.app is not None else None,
            reloads=daemon.reloads,
            started_at=daemon.started_at,
            persistence=lambda: daemon.persistence.stats if daemon.persistence else None,
            http_tls=lambda: daemon.http_tls.stats if daemon.http_tls.cfg else None,
            redactions=lambda: daemon.settings.redaction_counts,
            outputs=lambda: daemon.outputs,
            streams=lambda: daemon.streams.values(),
        )
        daemon.app = App(
            store=store,
            registry=registry,
            listener_names=lambda: [*daemon.listeners, *daemon.streams],
            settings=daemon.settings,
            ingest=daemon.ingest,
            tails=daemon.tails,
        )
        try:
            daemon.http_server = await start_http_server(
                daemon.app, config.http.bind, daemon.http_tls
            )
        except OSError as e:
            raise StartupError(f"http: cannot bind {config.http.bind}: {bind_error(e)}") from None
        # Said only once all is bound: a port in use leaves just its one-line
        # reason on stderr (contract: exit 2 with a one-line reason).
        for lc in config.listeners:
            if not lc.is_stream:
                log.info("listener %s: %s %s on %s", lc.name, lc.transport, lc.format, lc.bind)
        log.info("http: listening on %s:%d", *daemon.http_address)
        _start_streams(daemon)
    except BaseException:
        await stop(daemon)
        raise
    daemon.spawn(_sweeper(daemon))
    daemon.spawn(_rate_limit_reporter(daemon))
    return daemon


async def stop(daemon: Daemon) -> None:
    """Ordered shutdown: listeners drained (their data is stored), HTTP, then
    the snapshot."""
    daemon.stop_event.set()
    # A reload in progress finishes first, so it cannot start listeners after
    # these are closed (the lock is never released: reload is over).
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(daemon.reload_lock.acquire(), SHUTDOWN_STEP_TIMEOUT)
    # Listeners stop accepting, store every complete frame already read and
    # close their connections, each bounded.
    if daemon.listeners or daemon.streams:
        await asyncio.gather(
            *(lst.aclose(SHUTDOWN_STEP_TIMEOUT) for lst in daemon.listeners.values()),
            *(sl.close(SHUTDOWN_STEP_TIMEOUT) for sl in daemon.streams.values()),
        )
    report_rate_limits(daemon, socket.gethostname())  # the last window's drops, not lost
    daemon.http_tls.close()
    if daemon.http_server is not None:
        daemon.http_server.close()
        if daemon.app is not None:
            for conn in list(daemon.app.connections):
                if conn.transport is not None:
                    conn.transport.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.http_server.wait_closed(), SHUTDOWN_STEP_TIMEOUT)
    if daemon.tasks:
        await asyncio.wait(daemon.tasks, timeout=SHUTDOWN_STEP_TIMEOUT)
    daemon.inherited.close()
    # Everything stored is handed over by now: deliver what can be delivered
    # in the time given; a spool keeps the rest for the next start.
    if daemon.outputs:
        await asyncio.gather(*(out.close(SHUTDOWN_STEP_TIMEOUT) for out in daemon.outputs))
    await _close_persistence(daemon)
    if daemon.scan_pool is not None:
        daemon.store.cache.mapper = map
        daemon.scan_pool.shutdown(wait=False)


# --- fleet: node id, outputs, stream listeners --------------------------------------


NODE_FILE = "node-id"


def node_id(config: Config) -> int:
    """The node part of this daemon's ids: `node_id` when configured; else the
    one kept in persist_dir (made once, so ids stay this node's across
    restarts); else a random one per start (a restart without persistence
    starts its counter again, so it must not reuse its old node)."""
    if config.store.node_id is not None:
        return config.store.node_id
    fresh = random.SystemRandom().randint(1, NODE_MAX)
    persist_dir = config.store.persist_dir
    if persist_dir is None:
        return fresh
    path = os.path.join(persist_dir, NODE_FILE)
    try:
        with open(path, encoding="ascii") as f:
            value = int(f.read().strip())
        if 0 <= value <= NODE_MAX:
            return value
    except (OSError, ValueError):
        pass
    try:
        os.makedirs(persist_dir, exist_ok=True)
        tmp = path + ".tmp"
        # 0600 like every other state file (the directory's files are private).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="ascii") as f:
            f.write(f"{fresh}\n")
        os.replace(tmp, path)
    except OSError as e:
        raise StartupError(
            f"store.persist_dir: cannot use {persist_dir}: {e.strerror or e}"
        ) from None
    return fresh


def _start_outputs(daemon: Daemon) -> None:
    for oc in daemon.config.outputs:
        out = Output(oc)
        out.key = stream_key(oc.type, oc.url, oc.stream) if oc.type != "syslog" else None
        try:
            out.start()
        except OSError as e:
            raise StartupError(
                f"output {oc.name}: cannot use spool_dir {oc.spool_dir}: {e.strerror or e}"
            ) from None
        daemon.outputs.append(out)
        log.info("output %s: %s %s", oc.name, oc.type, oc.url)


def _start_streams(daemon: Daemon) -> None:
    state_dir = daemon.config.store.persist_dir
    for lc in daemon.config.listeners:
        if not lc.is_stream:
            continue
        key = stream_key(lc.transport, lc.url or "", lc.stream)
        sl = make_stream_listener(
            lc, daemon.stream_sink(key), node=daemon.node, state_dir=state_dir
        )
        sl.start()
        daemon.streams[lc.name] = sl
        what = "whole stream" if lc.group is None else f"group {lc.group}"
        log.info(
            "listener %s: %s %s stream %s (%s)", lc.name, lc.transport, lc.url, lc.stream, what
        )


# --- persistence ------------------------------------------------------------------


def _open_persistence(daemon: Daemon) -> None:
    """With store.persist_dir: restore snapshot + log into the store (before any
    listener binds) and start the log flusher."""
    cfg = daemon.settings.config.store
    if cfg.persist_dir is None:
        return
    persistence = Persistence(
        cfg.persist_dir, daemon.store, fsync=cfg.fsync, wal_max_bytes=cfg.wal_max_bytes
    )
    try:
        persistence.open(_now_us())
    except DirectoryInUse as e:
        raise StartupError(f"store.persist_dir: {e}") from None
    except OSError as e:
        raise StartupError(
            f"store.persist_dir: cannot use {cfg.persist_dir}: {e.strerror or e}"
        ) from None
    daemon.persistence = persistence
    daemon.spawn(_wal_flusher(daemon, persistence))


async def _wal_flusher(daemon: Daemon, persistence: Persistence) -> None:
    interval = daemon.settings.config.store.wal_flush_interval
    while not daemon.stop_event.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), interval)
        try:
            await persistence.flush()
        except Exception:  # never lose the daemon over the log
            log.exception("write-ahead log flush failed")


async def _close_persistence(daemon: Daemon) -> None:
    """After the drain: write the log buffer, the snapshot, truncate the log."""
    if daemon.persistence is None:
        return
    try:
        await daemon.persistence.close()
    except Exception:
        log.exception("persistence: shutdown snapshot failed; the write-ahead log is kept")
    daemon.persistence = None


# --- systemd: readiness, status, watchdog ----------------------------------------


def _status(daemon: Daemon, rate: float | None = None) -> str:
    return systemd.status(len(daemon.store), len(daemon.listeners), rate)


def _received(daemon: Daemon) -> int:
    return sum(lst.stats.received for lst in daemon.listeners.values())


async def _watchdog(daemon: Daemon, interval: float) -> None:
    """WATCHDOG=1 from a task on the event loop: if the loop is stuck, the
    pings stop and systemd restarts the daemon (WatchdogSec=)."""
    while not daemon.stop_event.is_set():
        systemd.notify("WATCHDOG=1")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), interval)


async def _status_reporter(daemon: Daemon) -> None:
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
            systemd.notify(_status(daemon, rate))


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


async def _stderr_status(daemon: Daemon, interval: float = STATUS_INTERVAL) -> None:
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


async def serve(
    config: Config,
    on_started: Callable[[Daemon], None] | None = None,
    config_path: str | None = None,
) -> None:
    """Run until SIGTERM/SIGINT, then shut down in order; SIGHUP reloads
    `config_path`. Adopts systemd's sockets and talks sd_notify when run by it."""
    inherited = systemd.listen_fds()
    loop = asyncio.get_running_loop()
    # Handlers first: a SIGTERM that arrives while ports are being bound
    # stops the daemon in order once start() returns, instead of killing it.
    stop_event = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    try:
        daemon = await start(
            config, inherited=inherited, config_path=config_path, stop_event=stop_event
        )
    except BaseException:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        raise
    loop.add_signal_handler(signal.SIGHUP, lambda: daemon.spawn(on_sighup(daemon)))
    # After the handlers: a SIGTERM during the start-up collection stops cleanly.
    tune_gc()
    if on_started is not None:
        on_started(daemon)
    log.info(
        "collector started: %d listeners, http on %s:%d, parser %s",
        len(daemon.listeners),
        *daemon.http_address,
        IMPLEMENTATION_DETAIL,
    )
    # Every listener and the HTTP port are bound: only now is the service ready.
    if systemd.notify("READY=1", _status(daemon)):
        daemon.spawn(_status_reporter(daemon))
    else:
        daemon.spawn(_stderr_status(daemon))
    interval = systemd.watchdog_interval()
    if interval is not None:
        daemon.spawn(_watchdog(daemon, interval))
    try:
        await daemon.stop_event.wait()
        log.info("stopping")
        systemd.notify("STOPPING=1", "STATUS=stopping: closing listeners, draining")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await stop(daemon)
    log.info("stopped with %d records in store", len(daemon.store))


def run(config: Config, config_path: str | None = None) -> None:
    """Run the daemon on uvloop when it is installed, else plain asyncio."""
    if config_path is not None:
        config_path = os.path.abspath(config_path)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config, config_path=config_path))
    else:
        uvloop.run(serve(config, config_path=config_path))
