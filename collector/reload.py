"""Reload stage (SIGHUP): diff the running config against a new one and apply it.

Records and unchanged listeners' connections survive; what cannot be applied
keeps running as it was, logged and counted. Settings are written once, with
`Settings.apply`. It works on the `Running` parts and never imports the daemon.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import time
from typing import Protocol

from collector import systemd
from collector.config import Config, ConfigError, HttpConfig, ListenerConfig, load_config
from collector.configvalues import parse_host_port
from collector.http import start_http
from collector.inflight import Inflight
from collector.ingest import Sink
from collector.listeners import Listener, start_listener
from collector.metrics import ReloadStats
from collector.ratelimit import RateLimiter
from collector.record import Record
from collector.redact import key_for
from collector.routes import App
from collector.settings import Settings
from collector.sockets import bind_error, dual_stack_tcp_socket
from collector.store import Store
from collector.tls import TlsServer

# The daemon's logger: to an operator a reload is the daemon's doing.
log = logging.getLogger("collector.daemon")

# How long a rebind waits for the old socket on the same address to be released.
REBIND_TIMEOUT = 2.0


class Running(Protocol):
    """The running parts a reload reads and changes (the daemon is the one)."""

    settings: Settings
    store: Store
    listeners: dict[str, Listener]
    inherited: systemd.Inherited
    app: App | None
    http_server: asyncio.Server | None
    http_tls: TlsServer
    stop_event: asyncio.Event
    reload_lock: asyncio.Lock
    reloads: ReloadStats
    config_path: str | None
    inflight: Inflight

    @property
    def http_address(self) -> tuple[str, int]: ...

    def ingest(self, records: list[Record]) -> int: ...


def _now_us() -> int:
    return time.time_ns() // 1000


async def bind_listener(parts: Running, lc: ListenerConfig, max_bytes: int) -> Listener:
    """Start one listener (on its inherited socket when it has one) and
    register it; OSError when it cannot bind."""
    sock = parts.inherited.for_listener(lc)
    sink: Sink = parts.ingest
    limiter = None if lc.rate_limit is None else RateLimiter(lc.rate_limit, lc.name, time.monotonic)
    try:
        tls = None if lc.tls is None else TlsServer(f"listener {lc.name}", lc.tls)
        lst = await start_listener(
            lc, sink, parts.settings, max_bytes, sock=sock, tls=tls, limiter=limiter
        )
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    lst.ingest.bound = parts.inflight  # partial frames count against it
    parts.listeners[lc.name] = lst
    return lst


async def start_http_server(app: App, bind: str, tls: TlsServer) -> asyncio.Server:
    """Bind the HTTP port named by `bind` (HTTPS while `tls` has a
    certificate); OSError when it cannot be bound."""
    host, port = parse_host_port(bind)
    # "[::]" means every address, IPv4 too, as it does for the listeners.
    sock = dual_stack_tcp_socket(port) if host == "::" else None
    return await start_http(app, host, port, sock, tls)


async def reload_from_file(parts: Running) -> bool:
    """SIGHUP: re-read `--config` and apply it (see `reload`); True when
    the new config was applied fully."""
    if parts.config_path is None:
        log.warning("reload: the daemon was started without --config; nothing to re-read")
        return False
    systemd.notify(
        "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
    )
    try:
        try:
            new = load_config(parts.config_path)
        except ConfigError as e:
            parts.reloads.total += 1
            parts.reloads.failures += 1
            parts.reloads.last_successful = False
            for problem in e.problems:
                log.error("reload: %s", problem)
            log.error("reload: %s is invalid; the running config stays", parts.config_path)
            return False
        return await reload(parts, new)
    finally:
        systemd.notify("READY=1", systemd.status(len(parts.store), len(parts.listeners)))


async def on_sighup(parts: Running) -> None:
    """The SIGHUP task: a bug in reload must not take the daemon down."""
    try:
        await reload_from_file(parts)
    except Exception:
        log.exception("reload failed; the daemon keeps running")
        parts.reloads.failures += 1
        parts.reloads.last_successful = False


async def reload(parts: Running, new: Config) -> bool:
    """Apply a validated config to the running daemon, without losing
    stored records or the connections of listeners whose config is unchanged.

    Removed listeners close; changed ones (transport, bind, format, limits)
    are rebound, binding the new address before closing the old where they
    do not overlap; added ones start. A listener that cannot bind keeps its
    old incarnation (if any). Store bounds, TTL and the timezone apply at
    once; http.bind rebinds the HTTP port. Returns True when everything
    applied; otherwise the problems are logged and counted."""
    async with parts.reload_lock:
        if parts.stop_event.is_set():
            return False
        parts.reloads.total += 1
        old = parts.settings.config
        # The new timezone, TTL and http.* keys first, in one write: listeners
        # bound below, and those kept, parse with them; HTTP reads them from
        # its next request on. Listeners and the HTTP port follow as they bind.
        http_kept = dataclasses.replace(new.http, bind=old.http.bind)
        # Outputs, stream listeners and the node id are read at start only:
        # they keep running as they are (a restart applies changes to them).
        fleet_old = (old.outputs, [lc for lc in old.listeners if lc.is_stream], old.store.node_id)
        fleet_new = (new.outputs, [lc for lc in new.listeners if lc.is_stream], new.store.node_id)
        if fleet_old != fleet_new:
            log.warning("reload: outputs, stream listeners and node_id change on restart only")
        new = dataclasses.replace(
            new,
            outputs=old.outputs,
            store=dataclasses.replace(new.store, node_id=old.store.node_id),
            listeners=tuple(lc for lc in new.listeners if not lc.is_stream),
        )
        key = _redact_key(parts, new)
        parts.settings.apply(
            dataclasses.replace(new, listeners=old.listeners, http=http_kept), redact_key=key
        )
        problems = _reload_certificates(parts, new)
        problems += await _reload_listeners(parts, new)
        http_problems = await _reload_http(parts, old.http, new.http)
        _reload_store(parts, old, new)
        # The running listeners are the truth: a listener that failed to
        # rebind keeps its old config, so the next reload compares against
        # it; likewise an HTTP port that could not move keeps its old bind.
        running = tuple(
            parts.listeners[lc.name].cfg for lc in new.listeners if lc.name in parts.listeners
        ) + tuple(lc for lc in old.listeners if lc.is_stream)
        http = http_kept if http_problems else new.http
        parts.settings.apply(dataclasses.replace(new, listeners=running, http=http))
        problems += http_problems
        for p in problems:
            log.error("reload: %s", p)
        ok = not problems
        parts.reloads.last_successful = ok
        if ok:
            parts.reloads.last_success_time = time.time()
        else:
            parts.reloads.failures += 1
        log.info(
            "reload %s: %d listeners (%s)",
            "applied" if ok else "applied in part",
            len(parts.listeners),
            ", ".join(parts.listeners),
        )
        return ok


def _redact_key(parts: Running, new: Config) -> bytes | None:
    """The hash key read again (None: keep the running one)."""
    try:
        parsing = new.parsing
        if not any(rule.action == "hash" for rule in parsing.redact):
            return None  # nothing hashes: keep whatever key is running
        return key_for(parsing.redact, parsing.redact_key_file, new.store.persist_dir)[0]
    except OSError as e:
        log.error("reload: cannot use the redaction key: %s; the running key stays", e)
        return None


def _reload_certificates(parts: Running, new: Config) -> list[str]:
    """Read every TLS certificate and key again (rotation without a restart):
    the HTTP port's, and those of listeners kept as they are (a changed
    listener is rebound with its new files). A file that does not load keeps
    the old certificate, logged by TlsServer.configure."""
    problems = []
    if not parts.http_tls.configure(new.http.tls):
        problems.append("http.tls: certificate not reloaded; the old one stays")
    for lc in new.listeners:
        lst = parts.listeners.get(lc.name)
        kept = lst is not None and lst.tls is not None and lst.cfg == lc
        if kept and not lst.tls.configure(lc.tls):  # type: ignore[union-attr]
            problems.append(f"listener {lc.name}: certificate not reloaded; the old one stays")
    return problems


# --- listeners ---------------------------------------------------------------------


async def _bind_retrying(parts: Running, lc: ListenerConfig, max_bytes: int) -> Listener:
    """Bind where a just-closed socket was: event loops release a closed
    socket on a later loop iteration, so EADDRINUSE is retried briefly."""
    deadline = time.monotonic() + REBIND_TIMEOUT
    while True:
        try:
            return await bind_listener(parts, lc, max_bytes)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def _rebind(parts: Running, old: Listener, lc: ListenerConfig, max_bytes: int) -> None:
    name = lc.name
    moving = not parts.inherited.usable(lc) and (old.cfg.transport, old.cfg.bind) != (
        lc.transport,
        lc.bind,
    )
    if moving:
        try:
            await bind_listener(parts, lc, max_bytes)
        except OSError as e:
            # 0.0.0.0:X -> 127.0.0.1:X overlaps the old socket: let go first.
            if e.errno != errno.EADDRINUSE or not _overlaps(old.address, lc):
                raise
        else:
            old.close()
            parts.inherited.release(name)
            log.info("reload: listener %s moved to %s %s", name, lc.transport, lc.bind)
            return
    old_max = old.ingest.max_bytes
    old.close()
    if not parts.inherited.usable(lc):
        parts.inherited.release(name)  # it may hold the very address lc binds
    try:
        await _bind_retrying(parts, lc, max_bytes)
    except OSError:
        try:
            await _bind_retrying(parts, old.cfg, old_max)
        except OSError as e:
            log.error("reload: listener %s is down: cannot bind its old address again: %s", name, e)
            parts.listeners.pop(name, None)
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


async def _reload_listeners(parts: Running, new: Config) -> list[str]:
    problems: list[str] = []
    max_bytes = new.parsing.max_message_bytes
    wanted = {lc.name for lc in new.listeners}
    # Removed first, so an added listener may take over a removed one's address.
    for name in [n for n in parts.listeners if n not in wanted]:
        parts.listeners.pop(name).close()
        parts.inherited.release(name)
        log.info("reload: listener %s removed", name)
    for lc in new.listeners:
        old = parts.listeners.get(lc.name)
        if old is not None and old.cfg == lc and old.ingest.max_bytes == max_bytes:
            continue  # kept as is: it reads the new settings by reference
        try:
            if old is None:
                await bind_listener(parts, lc, max_bytes)
                log.info(
                    "reload: listener %s added: %s %s %s", lc.name, lc.transport, lc.format, lc.bind
                )
            else:
                await _rebind(parts, old, lc, max_bytes)
        except OSError as e:
            what = "keeps its old config" if lc.name in parts.listeners else "is not running"
            problems.append(
                f"listener {lc.name}: cannot bind {lc.transport} {lc.bind}: {bind_error(e)}; it {what}"
            )
    # Keep the config's order (it is the order /health lists).
    order = [lc.name for lc in new.listeners if lc.name in parts.listeners]
    parts.listeners = {n: parts.listeners[n] for n in order}
    return problems


# --- http ----------------------------------------------------------------------------


async def _reload_http(parts: Running, old: HttpConfig, new: HttpConfig) -> list[str]:
    """http.bind: bind the new port, then close the old one (its open
    connections finish on their own). The other http.* keys are read per
    request from the settings, so they apply from the next request on."""
    if old.bind == new.bind or parts.app is None or parts.http_server is None:
        return []
    app, old_server = parts.app, parts.http_server
    try:
        server = await start_http_server(app, new.bind, parts.http_tls)
    except OSError as e:
        http_lc = ListenerConfig(name="http", transport="tcp", bind=new.bind)
        if e.errno != errno.EADDRINUSE or not _overlaps(parts.http_address, http_lc):
            return [f"http: cannot bind {new.bind}: {bind_error(e)}; still on {old.bind}"]
        # Overlapping address: let go of the old port first, then take it back if need be.
        old_server.close()
        try:
            server = await start_http_server(app, new.bind, parts.http_tls)
        except OSError as e2:
            try:
                parts.http_server = await start_http_server(app, old.bind, parts.http_tls)
            except OSError as e3:
                log.error("reload: http is down: cannot bind %s again: %s", old.bind, e3)
                parts.http_server = None
            return [f"http: cannot bind {new.bind}: {bind_error(e2)}; still on {old.bind}"]
    else:
        old_server.close()
    parts.http_server = server
    log.info("reload: http moved to %s:%d", *parts.http_address)
    return []


# --- store -------------------------------------------------------------------------


def _reload_store(parts: Running, old: Config, new: Config) -> None:
    s = new.store
    # The store is pure and holds its bounds itself: they are handed over here.
    parts.store.configure(
        ttl_us=int(s.ttl * 1_000_000), max_records=s.max_records, max_memory=s.max_memory
    )
    # A shorter TTL applies now, not at the next sweep.
    parts.store.expire(_now_us())
    later = [
        k for k in ("persist_dir", "fsync", "shard_span") if getattr(old.store, k) != getattr(s, k)
    ]
    if later:
        log.warning(
            "reload: store.%s changed; takes effect after a restart", ", store.".join(later)
        )
