"""Daemon stage: run(config) wires listeners -> sink -> store -> HTTP, signals, shutdown.

Nothing here parses or stores. It builds the one live Settings and the running
parts (`running.Daemon`, whose `ingest` is the one sink listeners and POST /logs
share) and spawns their background loops (running.py); SIGTERM/SIGINT set the
stop event, then each shutdown step is bounded; SIGHUP hands over to `reload`.
uvloop is chosen here and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from collector import heap, systemd
from collector.config import Config
from collector.configvalues import wal_bound
from collector.http import inflight_source
from collector.metrics import make_registry
from collector.netio import DETAIL as NETIO_DETAIL
from collector.outputs import Output
from collector.parse import IMPLEMENTATION_DETAIL
from collector.persist import DirectoryInUse, Persistence
from collector.query import RENDER_DETAIL
from collector.record import NODE_MAX
from collector.redact import key_for
from collector.reload import bind_listener, on_sighup, start_http_server
from collector.routes import App
from collector.running import (
    Daemon,
    inflight_guard,
    now_us,
    rate_limit_reporter,
    report_rate_limits,
    status_reporter,
    stderr_status,
    sweeper,
    systemd_status,
    tcp_source,
    watchdog,
)
from collector.settings import Settings
from collector.sockets import bind_error
from collector.store import Store
from collector.streams import (
    make_stream_listener,
    stream_key,
)
from collector.tls import TlsServer

log = logging.getLogger("collector.daemon")

SHUTDOWN_STEP_TIMEOUT = 5.0


# Records and parse intermediates live for one listener batch (up to
# listeners.FLUSH_FRAMES frames) and are then freed by refcounting. With
# CPython's gen0 threshold of 700 a batch in flight is scanned several times
# and promoted to the old generations, whose growth then triggers full
# collections over everything alive. Above a batch's size they die young.
GC_GEN0_THRESHOLD = 50_000


class StartupError(Exception):
    """The daemon cannot start; the message is the one line to print."""


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
            inflight=daemon.inflight,
        )
        daemon.app = App(
            store=store,
            registry=registry,
            listener_names=lambda: [*daemon.listeners, *daemon.streams],
            settings=daemon.settings,
            ingest=daemon.ingest,
            tails=daemon.tails,
            inflight=daemon.inflight,
        )
        daemon.inflight.sources += [inflight_source(daemon.app), tcp_source(daemon)]
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
    daemon.spawn(sweeper(daemon))
    daemon.spawn(rate_limit_reporter(daemon))
    daemon.spawn(inflight_guard(daemon))
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
        cfg.persist_dir,
        daemon.store,
        fsync=cfg.fsync,
        wal_max_bytes=wal_bound(cfg.wal_max_bytes, cfg.max_memory),
    )
    try:
        persistence.open(now_us())
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
        "collector started: %d listeners, http on %s:%d, parser %s, datagrams %s, pages %s",
        len(daemon.listeners),
        *daemon.http_address,
        IMPLEMENTATION_DETAIL,
        NETIO_DETAIL,
        RENDER_DETAIL,
    )
    # Every listener and the HTTP port are bound: only now is the service ready.
    if systemd.notify("READY=1", systemd_status(daemon)):
        daemon.spawn(status_reporter(daemon))
    else:
        daemon.spawn(stderr_status(daemon))
    interval = systemd.watchdog_interval()
    if interval is not None:
        daemon.spawn(watchdog(daemon, interval))
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
    heap.tune()  # before any thread starts (see heap.py)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config, config_path=config_path))
    else:
        uvloop.run(serve(config, config_path=config_path))
