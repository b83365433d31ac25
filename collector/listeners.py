"""Listener stage: sockets -> framing -> parse -> sink, for UDP, TCP and unix.

Once per loop iteration queued frames are parsed and handed to `sink` as one
batch (no per-message await). Errors are caught here, at the edge: counted,
logged rate-limited, peer bytes sanitised; a bad frame never costs its neighbours.
Listeners know only the sink and the live Settings: never the store or HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Callable
from typing import cast

from collector.config import ListenerConfig
from collector.configvalues import parse_host_port
from collector.framing import Framer, line_framer, syslog_framer
from collector.ingest import (
    CONNECTION_LIMIT,
    CONTINUATION_WAIT,
    FRAMING_ERROR,
    PARTIAL_FRAME,
    Ingest,
    ListenerStats,
    Sink,
    sanitise,
)
from collector.netio import RING_PER_RECV_BUFFER, NativeReceiver, Receiver, receiver
from collector.ratelimit import RateLimiter
from collector.settings import Settings
from collector.sockets import (
    dual_stack_tcp_socket,
    recv_buffer_capped,
    set_recv_buffer,
    udp_socket,
    unix_socket,
    unread_bytes,
)
from collector.tls import TlsServer

log = logging.getLogger("collector.listeners")


class StreamProtocol(asyncio.Protocol):
    """One TCP connection: a framer of its own, frames queued on the ingest."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        stats = ingest.stats
        if ingest.cfg.format == "json":
            self.framer: Framer = line_framer(ingest.max_bytes, stats.drop)
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
        self._pending_at = 0.0
        self._wait_handle: asyncio.TimerHandle | None = None

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
                sanitise(data),
                exc_info=True,
            )
            self._finished = True
            if self.transport is not None:
                self.transport.abort()
            return
        if frames and ingest.submit(frames, self.sender, len(data)):
            ingest.pause(self)
        if self.framer.buffered > PARTIAL_FRAME:
            ingest.hold_back(self, len(data))
        if self.framer.pending:
            self._pending_at = ingest.loop.time()
            if self._wait_handle is None:
                self._wait_handle = ingest.loop.call_later(CONTINUATION_WAIT, self._end_wait)

    def _end_wait(self) -> None:
        """The continuation wait is over: store the held message."""
        self._wait_handle = None
        if not self.framer.pending or self.transport is None:
            return
        loop = self.ingest.loop
        waited = loop.time() - self._pending_at
        if waited < CONTINUATION_WAIT or (
            waited < 2 * CONTINUATION_WAIT and unread_bytes(self.transport) > 0
        ):
            delay = max(CONTINUATION_WAIT - waited, CONTINUATION_WAIT / 4)
            self._wait_handle = loop.call_later(delay, self._end_wait)
            return
        frames = self.framer.flush()
        if frames:
            self.ingest.submit(frames, self.sender, 0)

    def eof_received(self) -> bool | None:
        self.finish()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        # An abrupt reset is an end of stream too: deliver what is complete.
        self.finish()
        if self._counted:
            self._counted = False
            self.ingest.stats.connections_open -= 1
        for handle in (self._idle_handle, self._wait_handle):
            if handle is not None:
                handle.cancel()
        self._idle_handle = self._wait_handle = None
        self.ingest.forget(self)
        self.transport = None

    def start_drain(self) -> bool:
        """Shutdown: read on until what the kernel holds for this connection
        now has been read. True when there is nothing left to wait for."""
        unread = unread_bytes(self.transport)
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
        frames = self.framer.flush()  # a message ended by LF is whole
        rest = self.framer.eof()
        if not partial_is_message:
            rest = [(data, True) for data, _ in rest]
        frames += rest
        if frames:
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


class Listener:
    """A bound listener: its config, counters, address, and how to close it."""

    def __init__(self, cfg: ListenerConfig, ingest: Ingest) -> None:
        self.cfg = cfg
        self.ingest = ingest
        self.address: tuple[str, int] | str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sock: socket.socket | None = None  # udp/unix: read by add_reader
        self._receiver: Receiver | None = None  # udp/unix: reads _sock in batches
        self._reader_fd = -1  # what add_reader waits on: the receiver's eventfd or _sock
        self._unix_path: str | None = None
        self._unix_ino: int | None = None
        self._closed = False
        self.tls: TlsServer | None = None  # tcp with `tls`: its context and counters

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
        if self.tls is not None:
            self.tls.close()
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

    def ring_full(self) -> int | None:
        """Times this datagram listener's reading thread found its ring full
        (native receiver only; None otherwise)."""
        rx = self._receiver
        return rx.ring_full if isinstance(rx, NativeReceiver) else None

    def _close_datagram_socket(self) -> None:
        sock = self._sock
        assert sock is not None
        self._sock = None
        ingest = self.ingest
        ingest.loop.remove_reader(self._reader_fd)
        # Datagrams already read into the ring, and those still in the
        # kernel's buffer, are complete messages: read them (bounded) before
        # closing. The reading thread ends first: it must not outlive the fd.
        receiver = self._receiver
        self._receiver = None
        if receiver is not None:
            receiver.stop()
            # Bounded: 256 reads of up to READ_BATCH cover a full ring and
            # kernel buffer at the default recv_buffer (~130,000 datagrams).
            for _ in range(256):
                if not ingest.read_datagrams(receiver):
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


async def start_listener(
    cfg: ListenerConfig,
    sink: Sink,
    settings: Settings,
    max_message_bytes: int,
    sock: socket.socket | None = None,
    tls: TlsServer | None = None,
    limiter: RateLimiter | None = None,
) -> Listener:
    """Bind and start one listener; OSError when the address cannot be bound.

    With `sock` (an inherited, already bound socket: systemd socket
    activation, or a reload keeping it) the listener serves on it instead."""
    loop = asyncio.get_running_loop()
    ingest = Ingest(cfg, sink, settings, max_message_bytes, loop)
    ingest.limiter = limiter
    listener = Listener(cfg, ingest)
    if cfg.transport == "tcp":
        backlog = max(128, min(cfg.max_connections, 4096))
        factory: Callable[[], asyncio.BaseProtocol] = functools.partial(StreamProtocol, ingest)
        listener.tls, factory = tls, tls.wrap(factory) if tls is not None else factory
        host, port = parse_host_port(cfg.bind) if sock is None else ("", 0)
        # asyncio sets IPV6_V6ONLY; "[::]" means every address, IPv4 too, as
        # it does for the UDP listener (Linux's dual stack).
        sock = dual_stack_tcp_socket(port) if host == "::" else sock
        if sock is not None:
            server = await loop.create_server(factory, sock=sock, backlog=backlog)
        else:
            server = await loop.create_server(
                factory, host, port, reuse_address=True, backlog=backlog
            )
        listener._server = server
        listener.address = server.sockets[0].getsockname()[:2]
        return listener
    if cfg.transport not in ("udp", "unix"):
        raise OSError(f"transport {cfg.transport} is not supported")
    if sock is None:
        if cfg.transport == "udp":
            host, port = parse_host_port(cfg.bind)
            sock = await udp_socket(host, port)
        else:
            sock = unix_socket(cfg.bind, cfg.mode)
            listener._unix_path = cfg.bind
            listener._unix_ino = os.lstat(cfg.bind).st_ino
    granted = set_recv_buffer(sock, cfg.recv_buffer)
    ingest.stats.recv_buffer = granted
    # Quiet when granted: startup says nothing before every port is bound.
    if granted < cfg.recv_buffer:
        log.warning("%s", recv_buffer_capped(cfg.name, cfg.recv_buffer, granted))
    else:
        log.debug("listener %s: receive buffer %d bytes", cfg.name, granted)
    # One buffer per datagram: a longer datagram is cut by the kernel and,
    # being over max_message_bytes, flagged when read.
    bufsize = max(65536, max_message_bytes + 1)
    name = sock.getsockname()
    try:
        sock.setblocking(False)
        rx = listener._receiver = receiver(sock, bufsize)
        # The native receiver reads in a thread of its own into a ring of
        # RING_PER_RECV_BUFFER x recv_buffer; the loop waits on its eventfd.
        try:
            listener._reader_fd = rx.start(RING_PER_RECV_BUFFER * cfg.recv_buffer)
        except OSError as e:  # no thread to be had: read in the loop's thread
            log.warning("listener %s: reading thread not started (%s)", cfg.name, e)
            listener._reader_fd = sock.fileno()
        loop.add_reader(listener._reader_fd, ingest.read_datagrams, rx)
    except BaseException:
        listener._remove_unix_path()
        if listener._receiver is not None:
            listener._receiver.stop()  # its thread must not outlive the fd
        sock.close()
        raise
    listener._sock = sock
    listener.address = name[:2] if isinstance(name, tuple) else name
    return listener
