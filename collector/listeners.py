"""Listener stage: sockets -> framing -> parse -> sink.

Each listener is an asyncio protocol that turns bytes into records and hands
them to `sink` in batches; it never sees the store. Errors are caught here, at
the edge: counted, and a bad frame never costs its neighbours.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from collector.config import ListenerConfig, parse_host_port
from collector.framing import LineFramer
from collector.parse import ParseOptions, parse_syslog, raw_record
from collector.record import Record

log = logging.getLogger("collector.listeners")

Sink = Callable[[list[Record]], None]


@dataclass(slots=True)
class ListenerStats:
    """Plain-int counters, folded into Prometheus at scrape time."""

    received: int = 0
    bytes: int = 0
    truncated: int = 0
    raw: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    connections_open: int = 0
    connections_refused: int = 0

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


def _now_us() -> int:
    return time.time_ns() // 1000


class _Ingest:
    """Shared by every protocol of one listener: frames -> records -> sink."""

    def __init__(self, cfg: ListenerConfig, sink: Sink, opts: ParseOptions, max_bytes: int) -> None:
        self.cfg = cfg
        self.sink = sink
        self.opts = opts
        self.max_bytes = max_bytes
        self.stats = ListenerStats()
        self.connections: set[TcpProtocol] = set()  # open TCP connections, for the shutdown drain

    def frames(self, frames: list[tuple[bytes, bool]], sender: str | None) -> None:
        if not frames:
            return
        now = _now_us()
        stats = self.stats
        recs = []
        for data, truncated in frames:
            stats.bytes += len(data)
            try:
                rec = parse_syslog(data, now, sender, self.opts, truncated)
            except Exception:  # a parser bug must not lose the message
                log.exception("parser failed on a frame from %s; kept as raw", sender)
                rec = raw_record(data.decode("utf-8", "replace"), now, sender)
            if rec.format == "raw":
                stats.raw += 1
            if truncated:
                stats.truncated += 1
            recs.append(rec)
        stats.received += len(recs)
        self.sink(recs)


class UdpProtocol(asyncio.DatagramProtocol):
    """One message per datagram (RFC 5426 §3.1)."""

    def __init__(self, ingest: _Ingest) -> None:
        self.ingest = ingest

    def datagram_received(self, data: bytes, addr: tuple[str, int] | str | None) -> None:
        data = data.rstrip(b"\n\r\x00")
        if not data:
            return
        cap = self.ingest.max_bytes
        truncated = len(data) > cap
        if truncated:
            data = data[:cap]
        sender = addr[0] if isinstance(addr, tuple) else None
        self.ingest.frames([(data, truncated)], sender)

    def error_received(self, exc: Exception) -> None:
        log.warning("listener %s: receive error: %s", self.ingest.cfg.name, exc)


class TcpProtocol(asyncio.Protocol):
    """One TCP connection: a framer per connection, records to the sink."""

    def __init__(self, ingest: _Ingest) -> None:
        self.ingest = ingest
        self.framer = LineFramer(ingest.max_bytes)
        self.sender: str | None = None
        self.transport: asyncio.Transport | None = None
        self.bytes_in = 0  # bytes read so far; the shutdown drain reads up to a target

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; cast, don't assert.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.sender = peer[0] if isinstance(peer, tuple) else None
        self.ingest.stats.connections_open += 1
        self.ingest.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.ingest.frames(self.framer.feed(data), self.sender)

    def eof_received(self) -> bool | None:
        self.ingest.frames(self.framer.eof(), self.sender)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.ingest.stats.connections_open -= 1
        self.ingest.connections.discard(self)


class Listener:
    """A bound listener: its config, counters and server to close."""

    def __init__(self, cfg: ListenerConfig, ingest: _Ingest, closer: Callable[[], None]) -> None:
        self.cfg = cfg
        self.ingest = ingest
        self._closer = closer
        self.address: tuple[str, int] | str | None = None

    @property
    def stats(self) -> ListenerStats:
        return self.ingest.stats

    def close(self) -> None:
        self._closer()


async def start_listener(
    cfg: ListenerConfig,
    sink: Sink,
    opts: ParseOptions,
    max_message_bytes: int,
    sock: socket.socket | None = None,
) -> Listener:
    """Bind and start one listener; OSError when the address cannot be bound.

    With `sock` (an inherited, already bound socket: systemd socket
    activation, or a reload keeping it) the listener serves on it instead."""
    loop = asyncio.get_running_loop()
    ingest = _Ingest(cfg, sink, opts, max_message_bytes)
    if cfg.transport == "udp":
        host, port = parse_host_port(cfg.bind)
        if sock is not None:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UdpProtocol(ingest), sock=sock
            )
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UdpProtocol(ingest), local_addr=(host, port)
            )
        listener = Listener(cfg, ingest, transport.close)
        listener.address = transport.get_extra_info("sockname")[:2]
        return listener
    if cfg.transport == "tcp":
        host, port = parse_host_port(cfg.bind)
        if sock is not None:
            server = await loop.create_server(lambda: TcpProtocol(ingest), sock=sock)
        else:
            server = await loop.create_server(
                lambda: TcpProtocol(ingest), host, port, reuse_address=True
            )
        listener = Listener(cfg, ingest, server.close)
        listener.address = server.sockets[0].getsockname()[:2]
        return listener
    raise OSError(f"transport {cfg.transport} is not implemented yet")
