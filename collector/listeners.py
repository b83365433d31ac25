"""Listener stage: sockets -> framing -> parse -> sink, for UDP, TCP and unix.

Once per loop iteration queued frames are parsed and handed to `sink` as one
batch (no per-message await). Errors are caught here, at the edge: counted,
logged rate-limited, peer bytes sanitised; a bad frame never costs its neighbours.
Listeners know only the sink and the live Settings: never the store or HTTP.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
import sys
import termios
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from collector.config import ListenerConfig, parse_host_port
from collector.framing import (
    STRIP,
    Frame,
    StreamFramer,
    line_framer,
    syslog_framer,
)
from collector.jsonlines import parse_json_line
from collector.parse import parse_syslog
from collector.record import ParseOptions, Record, raw_record
from collector.settings import Settings

log = logging.getLogger("collector.listeners")

Sink = Callable[[list[Record]], object]
Parser = Callable[[bytes, int, "str | None", ParseOptions, bool], Record]

# Drop reasons (the `reason` label of collector_messages_dropped_total):
# A TCP connection over max_connections, closed unread (counts connections):
CONNECTION_LIMIT = "connection_limit"
SINK_ERROR = "sink_error"  # the store raised on a batch (a bug): the batch is lost
EMPTY = "empty"  # a datagram with nothing but LF, CR or NUL in it
FRAMING_ERROR = "framing_error"  # the framer raised (a bug): that connection is closed
# ... and from collector.framing: "bad_length", "incomplete_frame".

# Backpressure ("behind"): bytes framed but not yet parsed and stored. Over
# HIGH_WATER a TCP connection that adds to it is paused (pause_reading) until
# the backlog is under LOW_WATER again; the kernel's socket buffer and TCP flow
# control then hold the sender back, nothing is dropped.
HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024
# Frames parsed per loop iteration at most, so HTTP and other listeners get the
# loop between chunks of a large backlog: ~10 ms at the ~10 us a realistic
# message costs (parse + store). 4096 stalled the loop 100+ ms under load at no
# CPU saving (bench/ingest.py --pause-one tuned,flush1024).
FLUSH_FRAMES = 1024
# Datagrams read per readiness callback at most: the batch for one flush.
# Reading stops there, so a flood waits in the kernel's receive buffer.
READ_BATCH = 256
# Linux: SO_RCVBUFFORCE lets root go past net.core.rmem_max (not in `socket`).
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
LOG_EVERY = 10.0  # seconds between two warnings of one kind from one listener


@dataclass(slots=True)
class ListenerStats:
    """Plain-int counters, folded into Prometheus at scrape time.

    received: records handed to the sink; bytes: bytes read from the socket;
    truncated: frames cut to max_message_bytes; raw: records that parsed as
    nothing (`format: raw`); dropped: lost frames by reason (`connection_limit`
    counts connections); connections_*: TCP only; idle_closed: connections
    closed by idle_timeout; paused: times a connection was paused for
    backpressure; recv_buffer: receive buffer the kernel granted (udp/unix)."""

    received: int = 0
    bytes: int = 0
    truncated: int = 0
    raw: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    connections_open: int = 0
    connections_refused: int = 0
    connections_total: int = 0
    idle_closed: int = 0
    paused: int = 0
    recv_buffer: int = 0

    def drop(self, reason: str, n: int = 1) -> None:
        """Count `n` lost frames (or connections) for `reason`."""
        self.dropped[reason] = self.dropped.get(reason, 0) + n


def _now_us() -> int:
    return time.time_ns() // 1000


def _sanitise(data: bytes, limit: int = 80) -> str:
    """Peer bytes made safe for a log line: printable, short."""
    text = data[:limit].decode("ascii", "backslashreplace")
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return text + ("..." if len(data) > limit else "")


class _Ingest:
    """One listener's pipeline behind its protocols: queued frames are parsed
    and sunk once per loop iteration, in chunks, with backpressure."""

    def __init__(
        self,
        cfg: ListenerConfig,
        sink: Sink,
        settings: Settings,
        max_bytes: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        # Read once per batch, by reference: a reload's new timezone and TTL
        # apply from the next batch on, with nothing to patch here.
        self.settings = settings
        # Fixed for this incarnation (framers and the UDP buffer are sized
        # by it): a reload that changes it rebinds the listener.
        self.max_bytes = max_bytes
        self.loop = loop
        self.stats = ListenerStats()
        self.parse: Parser = parse_json_line if cfg.format == "json" else parse_syslog
        self.local_sender = socket.gethostname() if cfg.transport == "unix" else None
        self.closing = False
        self.connections: set[StreamProtocol] = set()
        self.all_closed: asyncio.Event | None = None  # set by aclose, fired by the last close
        # Shutdown drain: connections still reading what the kernel held when
        # it began, and the event the last of them fires.
        self.draining: set[StreamProtocol] = set()
        self.drained: asyncio.Event | None = None
        self._batches: deque[tuple[list[Frame], str | None, int]] = deque()
        self._dgrams: list[tuple[bytes, Any]] = []
        self._senders: dict[str, str] = {}
        self._backlog = 0  # bytes in _batches
        self._paused: set[StreamProtocol] = set()
        self._scheduled = False
        self._last_warning: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, kind: str, msg: str, *args: object, exc_info: bool = False) -> None:
        """A warning at most every LOG_EVERY seconds per kind; says how many were skipped."""
        now = time.monotonic()
        if now - self._last_warning.get(kind, -LOG_EVERY) < LOG_EVERY:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last_warning[kind] = now
        skipped = self._suppressed.pop(kind, 0)
        suffix = f" ({skipped} similar suppressed)" if skipped else ""
        log.warning("listener %s: " + msg + suffix, self.cfg.name, *args, exc_info=exc_info)

    def sender(self, ip: str) -> str:
        """One str per peer address, not per datagram or connection: the
        records of one sender share it (bounded: a spoofing flood resets it)."""
        senders = self._senders
        if len(senders) >= 4096:
            senders.clear()
        # A dual-stack "[::]" socket sees IPv4 peers as ::ffff:a.b.c.d; the
        # contract's host is the sender's IP address, so give the IPv4 form.
        host = ip[7:] if ip.startswith("::ffff:") and "." in ip else ip
        return senders.setdefault(ip, host)

    # -- queueing (called from protocol callbacks) -------------------------

    def submit(self, frames: list[Frame], sender: str | None, nbytes: int) -> bool:
        """Queue a read's frames; True when the backlog is over HIGH_WATER."""
        self._batches.append((frames, sender, nbytes))
        self._backlog += nbytes
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)
        return self._backlog > HIGH_WATER

    def pause(self, proto: StreamProtocol) -> None:
        if proto not in self._paused and proto.transport is not None:
            proto.transport.pause_reading()
            self._paused.add(proto)
            self.stats.paused += 1

    def forget(self, proto: StreamProtocol) -> None:
        self._paused.discard(proto)
        self.connections.discard(proto)
        self.done_draining(proto)
        if not self.connections and self.all_closed is not None:
            self.all_closed.set()

    def done_draining(self, proto: StreamProtocol) -> None:
        self.draining.discard(proto)
        if not self.draining and self.drained is not None:
            self.drained.set()

    def read_datagrams(self, sock: socket.socket, bufsize: int) -> None:
        """Readiness callback: read what the kernel holds (up to READ_BATCH)
        and parse it as one batch on this loop iteration."""
        recvfrom = sock.recvfrom
        append = self._dgrams.append
        for _ in range(READ_BATCH):
            try:
                append(recvfrom(bufsize))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # e.g. an ICMP error reported on the socket
                self.warn("recv", "receive error: %s", e)
                break
        if self._dgrams and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)

    # -- the batch: parse and sink ------------------------------------------

    def flush(self, budget: int = FLUSH_FRAMES) -> None:
        """Parse up to `budget` queued frames and hand them to the sink at once."""
        self._scheduled = False
        now = _now_us()
        recs: list[Record] = []
        if self._dgrams:
            self._parse_dgrams(now, recs)
        batches = self._batches
        if batches:
            self._parse_batches(now, recs, budget)
            if batches and not self._scheduled:
                self._scheduled = True
                self.loop.call_soon(self.flush)
            if self._paused and self._backlog <= LOW_WATER:
                self._resume_all()
        if recs:
            self.stats.received += len(recs)
            try:
                self.sink(recs)
            except Exception:
                log.exception("listener %s: sink failed, %d records lost", self.cfg.name, len(recs))
                self.stats.drop(SINK_ERROR, len(recs))

    def flush_all(self) -> None:
        """Everything queued, now (shutdown)."""
        while self._batches or self._dgrams:
            self.flush(budget=1 << 30)

    def _parse_batches(self, now: int, recs: list[Record], budget: int) -> None:
        parse = self.parse
        opts = self.settings.parse_options
        batches = self._batches
        append = recs.append
        raw = truncated = 0
        while batches and budget > 0:
            frames, sender, nbytes = batches.popleft()
            self._backlog -= nbytes
            budget -= len(frames)
            for data, cut in frames:
                try:
                    rec = parse(data, now, sender, opts, cut)
                except Exception:
                    rec = self._parser_failed(data, now, sender, cut)
                if rec.format == "raw":
                    raw += 1
                truncated += cut
                append(rec)
        self.stats.raw += raw
        self.stats.truncated += truncated

    def _parse_dgrams(self, now: int, recs: list[Record]) -> None:
        dgrams = self._dgrams
        self._dgrams = []
        parse = self.parse
        opts = self.settings.parse_options
        cap = self.max_bytes
        local = self.local_sender
        senders = self._senders
        append = recs.append
        nbytes = raw = truncated = empty = 0
        for data, addr in dgrams:
            nbytes += len(data)
            data = data.rstrip(STRIP)
            if not data:
                empty += 1  # nothing to store, but not silently: counted
                continue
            cut = len(data) > cap
            if cut:
                # Contract: the whole frame is cut before parsing, flagged, counted.
                data = data[:cap].rstrip(STRIP)
                truncated += 1
            if local is None:
                ip = addr[0]
                sender = senders.get(ip) or self.sender(ip)
            else:
                sender = local
            try:
                rec = parse(data, now, sender, opts, cut)
            except Exception:
                rec = self._parser_failed(data, now, sender, cut)
            if rec.format == "raw":
                raw += 1
            append(rec)
        stats = self.stats
        stats.bytes += nbytes
        stats.raw += raw
        stats.truncated += truncated
        if empty:
            stats.drop(EMPTY, empty)

    def _parser_failed(self, data: bytes, now: int, sender: str | None, cut: bool) -> Record:
        """A parser bug must not lose the message: keep it raw, say so."""
        self.warn(
            "parser",
            "parser failed on %r from %s; kept as raw",
            _sanitise(data),
            sender,
            exc_info=True,
        )
        rec = raw_record(data.decode("utf-8", "replace"), now, sender)
        if cut:
            rec.fields = {"truncated": True}
        return rec

    def _resume_all(self) -> None:
        paused = self._paused
        self._paused = set()
        for proto in paused:
            if proto.transport is not None and not self.closing:
                proto.transport.resume_reading()


class StreamProtocol(asyncio.Protocol):
    """One TCP connection: a framer of its own, frames queued on the ingest."""

    def __init__(self, ingest: _Ingest) -> None:
        self.ingest = ingest
        stats = ingest.stats
        if ingest.cfg.format == "json":
            self.framer: StreamFramer = line_framer(ingest.max_bytes, stats.drop)
        else:
            self.framer = syslog_framer(ingest.max_bytes, stats.drop)
        self.sender: str | None = None
        self.transport: asyncio.Transport | None = None
        self._finished = False
        self._counted = False
        self._idle = ingest.cfg.idle_timeout
        self._last = 0.0
        self._idle_handle: asyncio.TimerHandle | None = None
        self.bytes_in = 0
        self._drain_to: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ingest = self.ingest
        stats = ingest.stats
        if ingest.closing or stats.connections_open >= ingest.cfg.max_connections:
            stats.connections_refused += 1
            stats.drop(CONNECTION_LIMIT)
            self._finished = True
            cast(asyncio.Transport, transport).abort()
            if not ingest.closing:
                ingest.warn("limit", "max_connections (%d) reached", ingest.cfg.max_connections)
            return
        # uvloop's transports are not asyncio.Transport subclasses; cast, don't assert.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.sender = ingest.sender(peer[0]) if isinstance(peer, tuple) else ingest.local_sender
        stats.connections_open += 1
        stats.connections_total += 1
        self._counted = True
        ingest.connections.add(self)
        if self._idle is not None:
            self._last = ingest.loop.time()
            self._idle_handle = ingest.loop.call_later(self._idle, self._idle_check)

    def data_received(self, data: bytes) -> None:
        ingest = self.ingest
        ingest.stats.bytes += len(data)
        self.bytes_in += len(data)
        if self._drain_to is not None and self.bytes_in >= self._drain_to:
            ingest.done_draining(self)
        if self._idle is not None:
            self._last = ingest.loop.time()
        try:
            frames = self.framer.feed(data)
        except Exception:  # a framer bug: this stream's framing is lost, not the daemon
            ingest.stats.drop(FRAMING_ERROR)
            ingest.warn(
                "framing",
                "framing failed near %r; connection closed",
                _sanitise(data),
                exc_info=True,
            )
            self._finished = True
            if self.transport is not None:
                self.transport.abort()
            return
        if frames and ingest.submit(frames, self.sender, len(data)):
            ingest.pause(self)

    def eof_received(self) -> bool | None:
        self.finish()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        # An abrupt reset is an end of stream too: deliver what is complete.
        self.finish()
        if self._counted:
            self._counted = False
            self.ingest.stats.connections_open -= 1
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self.ingest.forget(self)
        self.transport = None

    def start_drain(self) -> bool:
        """Shutdown: read on until what the kernel holds for this connection
        now has been read. True when there is nothing left to wait for."""
        unread = _unread_bytes(self.transport)
        if unread <= 0 or self._finished:
            return True
        self._drain_to = self.bytes_in + unread
        return False

    def finish(self, partial_is_message: bool = True) -> None:
        """End of this stream: the framer's last line (if any) is queued.

        When we end the stream ourselves at shutdown, an unterminated last
        line may be a frame cut at the drain point rather than one the peer
        finished: it is stored flagged `truncated`, so nothing is lost and
        nobody mistakes it for the whole message."""
        if self._finished:
            return
        self._finished = True
        frames = self.framer.eof()
        if not frames:
            return
        if not partial_is_message:
            frames = [(data, True) for data, _ in frames]
        self.ingest.submit(frames, self.sender, 0)

    def _idle_check(self) -> None:
        self._idle_handle = None
        if self.transport is None or self._idle is None:
            return
        remaining = self._last + self._idle - self.ingest.loop.time()
        if remaining > 0:
            self._idle_handle = self.ingest.loop.call_later(remaining, self._idle_check)
            return
        self.ingest.stats.idle_closed += 1
        self.finish()
        self.transport.close()


def _unread_bytes(transport: asyncio.Transport | None) -> int:
    """Bytes the kernel holds for this connection that we have not read."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return 0
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    except (OSError, ValueError):
        return 0
    return buf[0]


class Listener:
    """A bound listener: its config, counters, address, and how to close it."""

    def __init__(self, cfg: ListenerConfig, ingest: _Ingest) -> None:
        self.cfg = cfg
        self.ingest = ingest
        self.address: tuple[str, int] | str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sock: socket.socket | None = None  # udp/unix: read by add_reader
        self._bufsize = 65536
        self._unix_path: str | None = None
        self._unix_ino: int | None = None
        self._closed = False

    @property
    def stats(self) -> ListenerStats:
        return self.ingest.stats

    @property
    def sockets(self) -> list[socket.socket]:
        """The bound sockets (for matching kernel counters such as UDP drops)."""
        if self._sock is not None:
            return [self._sock]
        if self._server is not None:
            return list(self._server.sockets)  # type: ignore[attr-defined]
        return []

    def close(self) -> None:
        """Stop at once: stop accepting, store what is complete, close connections."""
        if self._closed:
            return
        self._closed = True
        ingest = self.ingest
        ingest.closing = True
        if self._server is not None:
            self._server.close()
        for proto in list(ingest.connections):
            proto.finish(partial_is_message=False)
            if proto.transport is not None:
                proto.transport.close()
        if self._sock is not None:
            self._close_datagram_socket()
        ingest.flush_all()
        self._remove_unix_path()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Ordered shutdown, bounded by `timeout`: stop accepting, read what
        the kernel already received on each connection, deliver every
        complete frame, close connections and wait for them."""
        await self._drain_streams(timeout)
        self.close()
        ingest = self.ingest
        if ingest.connections:  # connection_lost runs on a later iteration
            ingest.all_closed = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ingest.all_closed.wait(), timeout)
        for proto in list(ingest.connections):
            if proto.transport is not None:
                proto.transport.abort()
        ingest.flush_all()

    async def _drain_streams(self, timeout: float) -> None:
        """Stop accepting, then keep reading each connection up to the bytes
        its kernel buffer held at this moment (FIONREAD): those were
        delivered before the stop. A frame cut at that point was not."""
        if self._server is None or self._closed:
            return
        ingest = self.ingest
        ingest.closing = True  # connections racing the close are refused
        self._server.close()
        ingest.draining = {p for p in ingest.connections if not p.start_drain()}
        if not ingest.draining:
            return
        ingest.drained = asyncio.Event()
        try:
            await asyncio.wait_for(ingest.drained.wait(), timeout)
        except asyncio.TimeoutError:
            ingest.warn("drain", "drain stopped after %.1fs with data unread", timeout)

    def _close_datagram_socket(self) -> None:
        sock = self._sock
        assert sock is not None
        self._sock = None
        ingest = self.ingest
        ingest.loop.remove_reader(sock.fileno())
        # Datagrams already in the kernel's buffer are complete messages:
        # read them (bounded) before closing.
        for _ in range(64):
            before = len(ingest._dgrams)
            ingest.read_datagrams(sock, self._bufsize)
            if len(ingest._dgrams) == before:
                break
        sock.close()

    def _remove_unix_path(self) -> None:
        path = self._unix_path
        if path is None:
            return
        self._unix_path = None
        # Only our own socket file: a new daemon may already have bound the path.
        with contextlib.suppress(OSError):
            if os.lstat(path).st_ino == self._unix_ino:
                os.unlink(path)


def _set_recv_buffer(sock: socket.socket, want: int) -> int:
    """Ask for a `want`-byte receive buffer; return what the kernel granted."""
    if sys.platform.startswith("linux"):
        try:  # root (CAP_NET_ADMIN) may exceed net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, want)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, want)
    else:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, want)
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # Linux reports twice the usable size (socket(7): the doubling is bookkeeping).
    return got // 2 if sys.platform.startswith("linux") else got


def dual_stack_tcp_socket(port: int) -> socket.socket:
    """A TCP socket bound to [::]:port that takes IPv4 too (Linux's dual
    stack); asyncio's create_server sets IPV6_V6ONLY, so "[::]" alone would
    refuse IPv4 clients."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):  # a v6-only kernel keeps its default
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    except OSError:
        sock.close()
        raise
    return sock


async def _udp_socket(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    family, _, proto, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    try:
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


def _unix_socket(path: str, mode: int) -> socket.socket:
    """A datagram socket at `path`; a stale socket file there is replaced, a
    live one (someone receives on it) or a non-socket file is an error."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody bound to it: a leftover of a dead process
        else:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
    except OSError:
        sock.close()
        raise
    return sock


async def start_listener(
    cfg: ListenerConfig,
    sink: Sink,
    settings: Settings,
    max_message_bytes: int,
    sock: socket.socket | None = None,
) -> Listener:
    """Bind and start one listener; OSError when the address cannot be bound.

    With `sock` (an inherited, already bound socket: systemd socket
    activation, or a reload keeping it) the listener serves on it instead."""
    loop = asyncio.get_running_loop()
    ingest = _Ingest(cfg, sink, settings, max_message_bytes, loop)
    listener = Listener(cfg, ingest)
    if cfg.transport == "tcp":
        backlog = max(128, min(cfg.max_connections, 4096))
        if sock is not None:
            server = await loop.create_server(
                lambda: StreamProtocol(ingest), sock=sock, backlog=backlog
            )
        else:
            host, port = parse_host_port(cfg.bind)
            if host == "::":
                # asyncio sets IPV6_V6ONLY; "[::]" means every address, IPv4
                # too, as it does for the UDP listener (Linux's dual stack).
                server = await loop.create_server(
                    lambda: StreamProtocol(ingest),
                    sock=dual_stack_tcp_socket(port),
                    backlog=backlog,
                )
            else:
                server = await loop.create_server(
                    lambda: StreamProtocol(ingest), host, port, reuse_address=True, backlog=backlog
                )
        listener._server = server
        listener.address = server.sockets[0].getsockname()[:2]
        return listener
    if cfg.transport not in ("udp", "unix"):
        raise OSError(f"transport {cfg.transport} is not supported")
    if sock is None:
        if cfg.transport == "udp":
            host, port = parse_host_port(cfg.bind)
            sock = await _udp_socket(host, port)
        else:
            sock = _unix_socket(cfg.bind, cfg.mode)
            listener._unix_path = cfg.bind
            listener._unix_ino = os.lstat(cfg.bind).st_ino
    granted = _set_recv_buffer(sock, cfg.recv_buffer)
    ingest.stats.recv_buffer = granted
    # Quiet when granted: startup says nothing before every port is bound.
    level = logging.WARNING if granted < cfg.recv_buffer else logging.DEBUG
    log.log(
        level, "listener %s: receive buffer %d bytes (asked %d)", cfg.name, granted, cfg.recv_buffer
    )
    # One recvfrom per datagram: a longer datagram is cut by the kernel and,
    # being over max_message_bytes, flagged when parsed.
    listener._bufsize = max(65536, max_message_bytes + 1)
    name = sock.getsockname()
    try:
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), ingest.read_datagrams, sock, listener._bufsize)
    except BaseException:
        listener._remove_unix_path()
        sock.close()
        raise
    listener._sock = sock
    listener.address = name[:2] if isinstance(name, tuple) else name
    return listener
