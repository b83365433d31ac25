"""Daemon: wires listeners -> store -> HTTP and runs them until told to stop.

Nothing here parses or stores; it starts things in order, waits for the stop
event (set by SIGTERM/SIGINT), and shuts down in order, each step bounded.
SIGHUP re-reads the config (`reload`); under systemd it tells the manager
READY/RELOADING/STOPPING and pings the watchdog from the event loop.
uvloop is chosen here and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from collector import systemd
from collector.config import (
    Config,
    ConfigError,
    HttpConfig,
    ListenerConfig,
    load_config,
    parse_host_port,
    resolve_timezone,
)
from collector.http import App, start_http
from collector.listeners import Listener, dual_stack_tcp_socket, start_listener
from collector.metrics import ReloadStats, make_registry
from collector.parse import ParseOptions
from collector.persist import Persistence
from collector.record import Record, format_timestamp
from collector.store import Store

log = logging.getLogger("collector.daemon")

SHUTDOWN_STEP_TIMEOUT = 5.0
# How long a rebind waits for the old socket on the same address to be released.
REBIND_TIMEOUT = 2.0
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
    """The running parts, for tests and for shutdown."""

    config: Config
    store: Store
    listeners: dict[str, Listener] = field(default_factory=dict)
    http_server: asyncio.Server | None = None
    app: App | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Reload and systemd state:
    config_path: str | None = None
    opts: ParseOptions = field(default_factory=ParseOptions)
    listener_max_bytes: dict[str, int] = field(default_factory=dict)
    # listener name -> (LISTEN_FDNAMES name, inherited socket); kept open so
    # that a rebind on reload can serve from the same systemd socket again.
    inherited: dict[str, tuple[str, socket.socket]] = field(default_factory=dict)
    reloads: ReloadStats = field(default_factory=ReloadStats)
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    started_at: float = field(default_factory=time.time)
    persistence: Persistence | None = None
    # Store work: the q= scan's threads, and eviction warnings already given.
    scan_pool: ThreadPoolExecutor | None = None
    evicted_seen: int = 0
    eviction_warned_at: float | None = None

    @property
    def http_address(self) -> tuple[str, int]:
        assert self.http_server is not None
        host, port = self.http_server.sockets[0].getsockname()[:2]
        return host, port

    def sink(self, records: list[Record]) -> None:
        """The listeners' seam: store a batch and hand it to live /tail streams."""
        self.ingest(records)

    def ingest(self, records: list[Record]) -> int:
        """`sink` that returns the batch's first seq (POST /logs makes ids of it)."""
        first = self.store.add_many(records)
        if self.persistence is not None:
            self.persistence.log(first, records)
        if self.app is not None:
            self.app.publish(first, records)
        return first

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _now_us() -> int:
    return time.time_ns() // 1000


async def _sweeper(daemon: Daemon) -> None:
    while not daemon.stop_event.is_set():
        # Read each round: a reload may change it.
        interval = daemon.config.store.sweep_interval
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), interval)
        daemon.store.expire(_now_us())
        await _seal(daemon)
        _warn_eviction(daemon, time.monotonic())


async def _seal(daemon: Daemon) -> None:
    """Seal older shards in a worker thread: compression releases the GIL,
    and the rest yields it every few milliseconds, so the loop keeps serving."""
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
        daemon.store.install(job, sealed)


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


def tune_gc() -> None:
    """Once, after start-up: move what start-up made (modules, config, the
    bound sockets' objects) out of the GC's sight for good, and let a whole
    listener batch die young. Cycles made later are still collected."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _parse_options(config: Config) -> ParseOptions:
    return ParseOptions(
        tz=resolve_timezone(config.parsing.default_timezone),
        ttl_us=int(config.store.ttl * 1_000_000),
    )


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
    store = Store(
        ttl_us=int(config.store.ttl * 1_000_000),
        max_records=config.store.max_records,
        max_memory=config.store.max_memory,
        shard_span_us=int(config.store.shard_span * 1_000_000),
        seal_inline=False,  # the sweeper seals in a worker thread
    )
    daemon = Daemon(config, store, config_path=config_path)
    # q= scans decompress blocks on both cores (zstd releases the GIL).
    daemon.scan_pool = ThreadPoolExecutor(2, thread_name_prefix="collector-scan")
    store.cache.mapper = daemon.scan_pool.map
    if stop_event is not None:
        daemon.stop_event = stop_event
    opts = daemon.opts = _parse_options(config)
    daemon.reloads.last_success_time = daemon.started_at
    _adopt_inherited(daemon, inherited or [])
    _open_persistence(daemon)
    try:
        for lc in config.listeners:
            try:
                daemon.listeners[lc.name] = await start_listener(
                    lc,
                    daemon.sink,
                    opts,
                    config.parsing.max_message_bytes,
                    sock=_inherited_for(daemon, lc),
                )
                daemon.listener_max_bytes[lc.name] = config.parsing.max_message_bytes
            except OSError as e:
                raise StartupError(
                    f"listener {lc.name}: cannot bind {lc.transport} {lc.bind}: {e.strerror or e}"
                ) from None
        registry = make_registry(
            store,
            lambda: list(daemon.listeners.values()),
            http_stats=lambda: daemon.app.stats if daemon.app is not None else None,
            reloads=daemon.reloads,
            started_at=daemon.started_at,
            persistence=lambda: daemon.persistence.stats if daemon.persistence else None,
        )
        daemon.app = App(
            store=store,
            registry=registry,
            listener_names=lambda: list(daemon.listeners),
            ttl_seconds=config.store.ttl,
            http=config.http,
            parse_options=opts,
            ingest=daemon.ingest,
        )
        try:
            daemon.http_server = await _start_http_server(daemon, config.http.bind)
        except OSError as e:
            raise StartupError(f"http: cannot bind {config.http.bind}: {e.strerror or e}") from None
        # Said only once all is bound: a port in use leaves just its one-line
        # reason on stderr (contract: exit 2 with a one-line reason).
        for lc in config.listeners:
            log.info("listener %s: %s %s on %s", lc.name, lc.transport, lc.format, lc.bind)
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
    # A reload in progress finishes first, so it cannot start listeners after
    # these are closed (the lock is never released: reload is over).
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(daemon.reload_lock.acquire(), SHUTDOWN_STEP_TIMEOUT)
    # Listeners stop accepting, store every complete frame already read and
    # close their connections, each bounded.
    if daemon.listeners:
        await asyncio.gather(
            *(lst.aclose(SHUTDOWN_STEP_TIMEOUT) for lst in daemon.listeners.values())
        )
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
    for _, sock in daemon.inherited.values():
        sock.close()
    await _close_persistence(daemon)
    if daemon.scan_pool is not None:
        daemon.store.cache.mapper = map
        daemon.scan_pool.shutdown(wait=False)


# --- socket activation ---------------------------------------------------------


def _adopt_inherited(daemon: Daemon, inherited: list[tuple[str, socket.socket]]) -> None:
    """Match systemd's sockets to listeners; close (and say so) what no
    listener wants, so a port does not stay open with nobody reading it."""
    if not inherited:
        return
    names = dict((id(sock), name) for name, sock in inherited)
    assigned, unmatched = systemd.match_sockets(daemon.config.listeners, inherited)
    for lname, sock in assigned.items():
        daemon.inherited[lname] = (names[id(sock)], sock)
        log.info("listener %s: using inherited socket %s", lname, systemd.describe(sock))
    for fdname, sock in unmatched:
        log.warning(
            "inherited socket %s (%s) matches no listener by name or address; closed",
            fdname,
            systemd.describe(sock),
        )
        sock.close()


def _inherited_usable(daemon: Daemon, lc: ListenerConfig) -> bool:
    """Whether this listener serves from its inherited socket: one matched
    by name follows its name; one matched by address only while the
    listener's transport and bind still say that address."""
    entry = daemon.inherited.get(lc.name)
    if entry is None:
        return False
    fdname, sock = entry
    return systemd.bound_at(sock, lc) or (fdname == lc.name and systemd.fits(sock, lc.transport))


def _inherited_for(daemon: Daemon, lc: ListenerConfig) -> socket.socket | None:
    """A duplicate of the inherited socket this listener may serve from.

    The listener closes its duplicate when it stops; the original stays with
    the daemon, so a rebind on reload can serve from it again."""
    if not _inherited_usable(daemon, lc):
        return None
    return daemon.inherited[lc.name][1].dup()


def _release_inherited(daemon: Daemon, name: str) -> None:
    """Close an inherited socket its listener no longer serves from."""
    entry = daemon.inherited.pop(name, None)
    if entry is not None:
        log.info("listener %s: inherited socket %s closed", name, systemd.describe(entry[1]))
        entry[1].close()


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


# --- reload (SIGHUP) -------------------------------------------------------------


async def reload_from_file(daemon: Daemon) -> bool:
    """SIGHUP: re-read `--config` and apply it (see `reload`); True when
    the new config was applied fully."""
    if daemon.config_path is None:
        log.warning("reload: the daemon was started without --config; nothing to re-read")
        return False
    systemd.notify(
        "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
    )
    try:
        try:
            new = load_config(daemon.config_path)
        except ConfigError as e:
            daemon.reloads.total += 1
            daemon.reloads.failures += 1
            daemon.reloads.last_successful = False
            for problem in e.problems:
                log.error("reload: %s", problem)
            log.error("reload: %s is invalid; the running config stays", daemon.config_path)
            return False
        return await reload(daemon, new)
    finally:
        systemd.notify("READY=1", _status(daemon))


async def reload(daemon: Daemon, new: Config) -> bool:
    """Apply a validated config to the running daemon, without losing
    stored records or the connections of listeners whose config is unchanged.

    Removed listeners close; changed ones (transport, bind, format, limits)
    are rebound, binding the new address before closing the old where they
    do not overlap; added ones start. A listener that cannot bind keeps its
    old incarnation (if any). Store bounds, TTL and the timezone apply at
    once; http.bind rebinds the HTTP port. Returns True when everything
    applied; otherwise the problems are logged and counted."""
    async with daemon.reload_lock:
        if daemon.stop_event.is_set():
            return False
        daemon.reloads.total += 1
        old = daemon.config
        opts = _parse_options(new)
        problems = await _reload_listeners(daemon, new, opts)
        problems += await _reload_http(daemon, old.http, new.http)
        _reload_store(daemon, new)
        daemon.opts = opts
        if daemon.app is not None:  # POST /logs reads timezone and TTL from here
            daemon.app.parse_options = opts
        # The running listeners are the truth: a listener that failed to
        # rebind keeps its old config, so the next reload compares against it.
        running = tuple(
            daemon.listeners[lc.name].cfg for lc in new.listeners if lc.name in daemon.listeners
        )
        http = new.http if not any(p.startswith("http:") for p in problems) else old.http
        daemon.config = dataclasses.replace(new, listeners=running, http=http)
        for p in problems:
            log.error("reload: %s", p)
        ok = not problems
        daemon.reloads.last_successful = ok
        if ok:
            daemon.reloads.last_success_time = time.time()
        else:
            daemon.reloads.failures += 1
        log.info(
            "reload %s: %d listeners (%s)",
            "applied" if ok else "applied in part",
            len(daemon.listeners),
            ", ".join(daemon.listeners),
        )
        return ok


def _set_parse_options(lst: Listener, opts: ParseOptions) -> None:
    """New timezone/TTL for the frames a kept listener parses from now on."""
    lst.ingest.opts = opts


async def _bind_listener(
    daemon: Daemon, lc: ListenerConfig, opts: ParseOptions, max_bytes: int
) -> Listener:
    sock = _inherited_for(daemon, lc)
    try:
        lst = await start_listener(lc, daemon.sink, opts, max_bytes, sock=sock)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    daemon.listeners[lc.name] = lst
    daemon.listener_max_bytes[lc.name] = max_bytes
    return lst


async def _bind_retrying(
    daemon: Daemon, lc: ListenerConfig, opts: ParseOptions, max_bytes: int
) -> Listener:
    """Bind where a just-closed socket was: event loops release a closed
    socket on a later loop iteration, so EADDRINUSE is retried briefly."""
    deadline = time.monotonic() + REBIND_TIMEOUT
    while True:
        try:
            return await _bind_listener(daemon, lc, opts, max_bytes)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def _rebind(
    daemon: Daemon, old: Listener, lc: ListenerConfig, opts: ParseOptions, max_bytes: int
) -> None:
    name = lc.name
    moving = not _inherited_usable(daemon, lc) and (old.cfg.transport, old.cfg.bind) != (
        lc.transport,
        lc.bind,
    )
    if moving:
        try:
            await _bind_listener(daemon, lc, opts, max_bytes)
        except OSError as e:
            # 0.0.0.0:X -> 127.0.0.1:X overlaps the old socket: let go first.
            if e.errno != errno.EADDRINUSE or not _overlaps(old.address, lc):
                raise
        else:
            old.close()
            _release_inherited(daemon, name)
            log.info("reload: listener %s moved to %s %s", name, lc.transport, lc.bind)
            return
    old_max = daemon.listener_max_bytes.get(name, max_bytes)
    old.close()
    if not _inherited_usable(daemon, lc):
        _release_inherited(daemon, name)  # it may hold the very address lc binds
    try:
        await _bind_retrying(daemon, lc, opts, max_bytes)
    except OSError:
        try:
            await _bind_retrying(daemon, old.cfg, opts, old_max)
        except OSError as e:
            log.error("reload: listener %s is down: cannot bind its old address again: %s", name, e)
            daemon.listeners.pop(name, None)
        raise
    log.info("reload: listener %s rebound: %s %s %s", name, lc.transport, lc.format, lc.bind)


def _overlaps(bound: object, lc: ListenerConfig) -> bool:
    """Whether binding `lc` collides with a socket bound at `bound`
    (same port, and the same host or a wildcard on either side)."""
    if lc.transport == "unix" or not isinstance(bound, tuple):
        return False
    try:
        host, port = parse_host_port(lc.bind)
    except ValueError:
        return False
    wild = ("", "0.0.0.0", "::")
    return port == bound[1] and (host == bound[0] or host in wild or bound[0] in wild)


async def _reload_listeners(daemon: Daemon, new: Config, opts: ParseOptions) -> list[str]:
    problems: list[str] = []
    max_bytes = new.parsing.max_message_bytes
    wanted = {lc.name for lc in new.listeners}
    # Removed first, so an added listener may take over a removed one's address.
    for name in [n for n in daemon.listeners if n not in wanted]:
        daemon.listeners.pop(name).close()
        daemon.listener_max_bytes.pop(name, None)
        _release_inherited(daemon, name)
        log.info("reload: listener %s removed", name)
    for lc in new.listeners:
        old = daemon.listeners.get(lc.name)
        if (
            old is not None
            and old.cfg == lc
            and daemon.listener_max_bytes.get(lc.name) == max_bytes
        ):
            _set_parse_options(old, opts)
            continue
        try:
            if old is None:
                await _bind_listener(daemon, lc, opts, max_bytes)
                log.info(
                    "reload: listener %s added: %s %s %s", lc.name, lc.transport, lc.format, lc.bind
                )
            else:
                await _rebind(daemon, old, lc, opts, max_bytes)
        except OSError as e:
            what = "keeps its old config" if lc.name in daemon.listeners else "is not running"
            problems.append(
                f"listener {lc.name}: cannot bind {lc.transport} {lc.bind}: {e.strerror or e}; it {what}"
            )
            if lc.name in daemon.listeners:
                _set_parse_options(daemon.listeners[lc.name], opts)
    # Keep the config's order (it is the order /health lists).
    order = [lc.name for lc in new.listeners if lc.name in daemon.listeners]
    daemon.listeners = {n: daemon.listeners[n] for n in order}
    return problems


async def _start_http_server(daemon: Daemon, bind: str) -> asyncio.Server:
    assert daemon.app is not None
    host, port = parse_host_port(bind)
    # "[::]" means every address, IPv4 too, as it does for the listeners.
    sock = dual_stack_tcp_socket(port) if host == "::" else None
    return await start_http(daemon.app, host, port, sock)


async def _reload_http(daemon: Daemon, old: HttpConfig, new: HttpConfig) -> list[str]:
    """http.bind: bind the new port, then close the old one (its open
    connections finish on their own). The other http.* keys are read per
    request, so they apply from the next request on."""
    if daemon.app is not None:
        daemon.app.http = new
    if old.bind == new.bind or daemon.app is None or daemon.http_server is None:
        return []
    old_server = daemon.http_server
    try:
        server = await _start_http_server(daemon, new.bind)
    except OSError as e:
        http_lc = ListenerConfig(name="http", transport="tcp", bind=new.bind)
        if e.errno != errno.EADDRINUSE or not _overlaps(daemon.http_address, http_lc):
            return [f"http: cannot bind {new.bind}: {e.strerror or e}; still on {old.bind}"]
        # Overlapping address: let go of the old port first, then take it back if need be.
        old_server.close()
        try:
            server = await _start_http_server(daemon, new.bind)
        except OSError as e2:
            try:
                daemon.http_server = await _start_http_server(daemon, old.bind)
            except OSError as e3:
                log.error("reload: http is down: cannot bind %s again: %s", old.bind, e3)
                daemon.http_server = None
            return [f"http: cannot bind {new.bind}: {e2.strerror or e2}; still on {old.bind}"]
    else:
        old_server.close()
    daemon.http_server = server
    log.info("reload: http moved to %s:%d", *daemon.http_address)
    return []


def _reload_store(daemon: Daemon, new: Config) -> None:
    s = new.store
    daemon.store.configure(
        ttl_us=int(s.ttl * 1_000_000), max_records=s.max_records, max_memory=s.max_memory
    )
    if daemon.app is not None:
        daemon.app.ttl_seconds = s.ttl
    # A shorter TTL applies now, not at the next sweep.
    daemon.store.expire(_now_us())
    old = daemon.config.store
    later = [k for k in ("persist_dir", "fsync", "shard_span") if getattr(old, k) != getattr(s, k)]
    if later:
        log.warning(
            "reload: store.%s changed; takes effect after a restart", ", store.".join(later)
        )


# --- systemd: readiness, status, watchdog ----------------------------------------


def _status(daemon: Daemon, rate: float | None = None) -> str:
    per_s = f", {rate:.1f} msg/s" if rate is not None else ""
    return f"STATUS={len(daemon.store)} records{per_s}, {len(daemon.listeners)} listeners"


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


async def _on_sighup(daemon: Daemon) -> None:
    try:
        await reload_from_file(daemon)
    except Exception:  # a bug in reload must not take the daemon down
        log.exception("reload failed; the daemon keeps running")
        daemon.reloads.failures += 1
        daemon.reloads.last_successful = False


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
    loop.add_signal_handler(signal.SIGHUP, lambda: daemon.spawn(_on_sighup(daemon)))
    # After the handlers: a SIGTERM during the start-up collection stops cleanly.
    tune_gc()
    if on_started is not None:
        on_started(daemon)
    log.info(
        "collector started: %d listeners, http on %s:%d",
        len(daemon.listeners),
        *daemon.http_address,
    )
    # Every listener and the HTTP port are bound: only now is the service ready.
    if systemd.notify("READY=1", _status(daemon)):
        daemon.spawn(_status_reporter(daemon))
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
