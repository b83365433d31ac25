"""Daemon: wires listeners -> store -> HTTP and runs them until told to stop.

Nothing here parses or stores; it starts things in order, waits for the stop
event (set by SIGTERM/SIGINT), and shuts down in order, each step bounded.
uvloop is chosen here and only here.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import signal
import termios
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from collector.config import Config, parse_host_port, resolve_timezone
from collector.http import App, start_http
from collector.listeners import Listener, TcpProtocol, start_listener
from collector.metrics import make_registry
from collector.parse import ParseOptions
from collector.persist import Persistence
from collector.record import Record
from collector.store import Store

log = logging.getLogger("collector.daemon")

SHUTDOWN_STEP_TIMEOUT = 5.0
DRAIN_TIMEOUT = 5.0  # bound on reading what the kernel already holds at shutdown
DATAGRAM_QUIET = 0.05  # a datagram socket silent this long is drained


class StartupError(Exception):
    """The daemon cannot start; the message is the one line to print."""


@dataclass
class Daemon:
    """The running parts, for tests and for shutdown."""

    config: Config
    store: Store
    listeners: dict[str, Listener] = field(default_factory=dict)
    http_server: asyncio.Server | None = None
    app: App | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    persistence: Persistence | None = None

    @property
    def http_address(self) -> tuple[str, int]:
        assert self.http_server is not None
        host, port = self.http_server.sockets[0].getsockname()[:2]
        return host, port

    def sink(self, records: list[Record]) -> None:
        first_seq = self.store.add_many(records)
        if self.persistence is not None:
            self.persistence.log(first_seq, records)

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _now_us() -> int:
    return time.time_ns() // 1000


async def _sweeper(daemon: Daemon) -> None:
    interval = daemon.config.store.sweep_interval
    while not daemon.stop_event.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), interval)
        daemon.store.expire(_now_us())


async def start(config: Config) -> Daemon:
    """Bind everything the config names; StartupError names what failed."""
    store = Store(
        ttl_us=int(config.store.ttl * 1_000_000),
        max_records=config.store.max_records,
        max_memory=config.store.max_memory,
    )
    daemon = Daemon(config, store)
    _open_persistence(daemon)
    opts = ParseOptions(
        tz=resolve_timezone(config.parsing.default_timezone),
        ttl_us=store.ttl_us,
    )
    try:
        for lc in config.listeners:
            try:
                daemon.listeners[lc.name] = await start_listener(
                    lc, daemon.sink, opts, config.parsing.max_message_bytes
                )
            except OSError as e:
                raise StartupError(
                    f"listener {lc.name}: cannot bind {lc.transport} {lc.bind}: {e.strerror or e}"
                ) from None
            log.info("listener %s: %s %s on %s", lc.name, lc.transport, lc.format, lc.bind)
        registry = make_registry(store, lambda: list(daemon.listeners.values()))
        daemon.app = App(
            store=store,
            registry=registry,
            listener_names=lambda: list(daemon.listeners),
            ttl_seconds=config.store.ttl,
        )
        host, port = parse_host_port(config.http.bind)
        try:
            daemon.http_server = await start_http(daemon.app, host, port)
        except OSError as e:
            raise StartupError(f"http: cannot bind {config.http.bind}: {e.strerror or e}") from None
        log.info("http: listening on %s:%d", *daemon.http_address)
    except BaseException:
        await stop(daemon)
        raise
    daemon.spawn(_sweeper(daemon))
    return daemon


async def stop(daemon: Daemon) -> None:
    """Ordered shutdown: listeners drained (their data is stored), HTTP, then
    the snapshot."""
    daemon.stop_event.set()
    await _drain_listeners(daemon)
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
    await _close_persistence(daemon)


# --- graceful drain ------------------------------------------------------------


def _unread_bytes(conn: TcpProtocol) -> int:
    """Bytes the kernel holds for this connection that we have not read yet."""
    sock = conn.transport.get_extra_info("socket") if conn.transport is not None else None
    if sock is None:
        return 0
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    except OSError:
        return 0
    return buf[0]


async def _drain_listeners(daemon: Daemon) -> None:
    """Stop accepting; read what the kernel had already received; then close.

    Each TCP connection is read up to the bytes it had received when the drain
    began (FIONREAD), or to EOF; datagram sockets until silent for
    DATAGRAM_QUIET. Bounded by DRAIN_TIMEOUT. A frame cut at the drain point
    was not fully delivered before the stop and is not stored."""
    tcp = [lst for lst in daemon.listeners.values() if lst.cfg.transport == "tcp"]
    datagram = [lst for lst in daemon.listeners.values() if lst.cfg.transport != "tcp"]
    for lst in tcp:
        lst.close()  # stop accepting; established connections keep reading
    targets = {
        conn: conn.bytes_in + _unread_bytes(conn) for lst in tcp for conn in lst.ingest.connections
    }
    deadline = time.monotonic() + DRAIN_TIMEOUT
    received = sum(lst.stats.received for lst in datagram)
    quiet_since = time.monotonic()
    # A bounded poll: the protocols read on their own; this only watches them
    # reach their targets (the listeners' own aclose() can replace it).
    while time.monotonic() < deadline:
        now = time.monotonic()
        now_received = sum(lst.stats.received for lst in datagram)
        if now_received != received:
            received, quiet_since = now_received, now
        tcp_done = all(
            conn.bytes_in >= target or conn.transport is None or conn.transport.is_closing()
            for conn, target in targets.items()
        )
        if tcp_done and (not datagram or now - quiet_since >= DATAGRAM_QUIET):
            break
        await asyncio.sleep(0.005)
    else:
        log.warning("drain: stopped after %.1fs with data still arriving", DRAIN_TIMEOUT)
    for lst in tcp:
        for conn in list(lst.ingest.connections):
            if conn.transport is not None:
                conn.transport.close()
    for lst in datagram:
        lst.close()


# --- persistence ------------------------------------------------------------------


def _open_persistence(daemon: Daemon) -> None:
    """With store.persist_dir: restore snapshot + log into the store (before any
    listener binds) and start the log flusher."""
    cfg = daemon.config.store
    if cfg.persist_dir is None:
        return
    persistence = Persistence(
        cfg.persist_dir, daemon.store, fsync=cfg.fsync, wal_max_bytes=cfg.wal_max_bytes
    )
    try:
        persistence.open(_now_us())
    except OSError as e:
        raise StartupError(
            f"store.persist_dir: cannot use {cfg.persist_dir}: {e.strerror or e}"
        ) from None
    daemon.persistence = persistence
    daemon.spawn(_wal_flusher(daemon, persistence))


async def _wal_flusher(daemon: Daemon, persistence: Persistence) -> None:
    interval = daemon.config.store.wal_flush_interval
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


async def serve(config: Config, on_started: Callable[[Daemon], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT, then shut down in order."""
    daemon = await start(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop_event.set)
    if on_started is not None:
        on_started(daemon)
    log.info("collector started: %d listeners, http on %s", len(daemon.listeners), config.http.bind)
    try:
        await daemon.stop_event.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await stop(daemon)
    log.info("stopped with %d records in store", len(daemon.store))


def run(config: Config) -> None:
    """Run the daemon on uvloop when it is installed, else plain asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
