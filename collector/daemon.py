"""Daemon: wires listeners -> store -> HTTP and runs them until told to stop.

Nothing here parses or stores; it starts things in order, waits for the stop
event (set by SIGTERM/SIGINT), and shuts down in order, each step bounded.
uvloop is chosen here and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from collector.config import Config, parse_host_port, resolve_timezone
from collector.http import App, start_http
from collector.listeners import Listener, start_listener
from collector.metrics import make_registry
from collector.parse import ParseOptions
from collector.record import Record
from collector.store import Store

log = logging.getLogger("collector.daemon")

SHUTDOWN_STEP_TIMEOUT = 5.0


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

    @property
    def http_address(self) -> tuple[str, int]:
        assert self.http_server is not None
        host, port = self.http_server.sockets[0].getsockname()[:2]
        return host, port

    def sink(self, records: list[Record]) -> None:
        self.store.add_many(records)

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
        shard_span_us=int(config.store.shard_span * 1_000_000),
    )
    daemon = Daemon(config, store)
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
    """Ordered shutdown: listeners first (their data is stored), then HTTP."""
    daemon.stop_event.set()
    for lst in daemon.listeners.values():
        lst.close()
    # Let protocols deliver what their sockets already handed over.
    await asyncio.sleep(0)
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
