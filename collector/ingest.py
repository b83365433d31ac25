"""Ingest stage: one listener's frames -> parse (native batch or pure) -> sink.

Frames queued by the protocols are parsed once per loop iteration, in chunks
(FLUSH_FRAMES), rate-limited and handed to `sink` as one batch: no
per-message await or metric call. Backpressure pauses connections while the
backlog is over HIGH_WATER. Knows the sink and the live Settings, never the
store or HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Protocol, cast

from collector.config import ListenerConfig
from collector.configvalues import resolve_timezone
from collector.framing import Frame
from collector.inflight import Inflight
from collector.jsonlines import parse_json_line
from collector.netio import DatagramBatch, Receiver
from collector.parse import parse_batch, parse_syslog
from collector.parse import parse_frames as parse_datagram_run  # the datagram path's own name
from collector.ratelimit import RateLimiter
from collector.record import ParseOptions, Record, raw_record
from collector.settings import Settings
from collector.times import UTC, format_duration, parse_timestamp

_CUT = itemgetter(1)  # a frame's truncated flag
log = logging.getLogger("collector.listeners")  # what operators grep for


class Connection(Protocol):
    """What the pipeline needs of a stream connection (listeners.StreamProtocol)."""

    transport: asyncio.Transport | None

    def start_drain(self) -> bool: ...
    def finish(self, partial_is_message: bool = True) -> None: ...


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
# A TCP connection holding a partial frame longer than this is counted against
# the daemon's bound on bytes held for clients at each read (hold_back).
PARTIAL_FRAME = 16 * 1024
# Frames parsed per loop iteration at most, so HTTP and other listeners get the
# loop between chunks of a large backlog: ~10 ms at the ~10 us a realistic
# message costs (parse + store). 4096 stalled the loop 100+ ms under load at no
# CPU saving (bench/ingest.py --pause-one tuned,flush1024).
FLUSH_FRAMES = 1024
# Datagrams read per readiness callback at most: the batch for one flush.
# Reading stops there, so a flood waits in the kernel's receive buffer and
# the loop gets back to HTTP and the other listeners in between.
READ_BATCH = 1024
LOG_EVERY = 10.0  # seconds between two warnings of one kind from one listener
SKEW_LOG_EVERY = 3600.0  # a sender host's clock skew is logged once an hour
# How long a syslog message ended by LF waits for a continuation line (a line
# not starting like a frame, e.g. a traceback's) before it is stored. The
# next line's first byte ends the wait at once; only the last line of a burst
# waits the whole bound. Extended (up to twice) while the kernel holds
# unread bytes for the connection: the continuation may be among them.
CONTINUATION_WAIT = 0.1


@dataclass(slots=True)
class ListenerStats:
    """Plain-int counters, folded into Prometheus at scrape time.

    received: records handed to the sink; bytes: bytes read from the socket;
    truncated: frames cut to max_message_bytes; raw: records that parsed as
    nothing (`format: raw`); clock_skew: records re-stamped with the receipt
    time (theirs in fields.original_timestamp); dropped: lost frames by
    reason (`connection_limit` counts connections); connections_*: TCP only;
    idle_closed: connections closed by idle_timeout; paused: times a
    connection was paused for backpressure; recv_buffer: receive buffer the
    kernel granted (udp/unix)."""

    received: int = 0
    bytes: int = 0
    truncated: int = 0
    raw: int = 0
    clock_skew: int = 0
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


def sanitise(data: bytes, limit: int = 80) -> str:
    """Peer bytes made safe for a log line: printable, short."""
    text = data[:limit].decode("ascii", "backslashreplace")
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return text + ("..." if len(data) > limit else "")


class Ingest:
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
        # listeners[].default_timezone over parsing.default_timezone (a change rebinds).
        self.tz = resolve_timezone(cfg.default_timezone) if cfg.default_timezone else None
        self._opts: tuple[ParseOptions, ParseOptions] | None = None  # (settings', ours)
        self._skew_logged: dict[str | None, float] = {}  # host -> when last logged
        # Syslog over a stream: a whole read's frames go to the native code at
        # once (it answers None for each frame left to `parse`).
        self.parse_frames = None if cfg.format == "json" else parse_batch
        self.local_sender = socket.gethostname() if cfg.transport == "unix" else None
        self.closing = False
        self.connections: set[Connection] = set()
        self.all_closed: asyncio.Event | None = None  # set by aclose, fired by the last close
        # Shutdown drain: connections still reading what the kernel held when
        # it began, and the event the last of them fires.
        self.draining: set[Connection] = set()
        self.drained: asyncio.Event | None = None
        self._batches: deque[tuple[list[Frame], str | None, int]] = deque()
        self._dgrams: list[DatagramBatch] = []  # read, not yet parsed
        self._senders: dict[str, str] = {}
        self._backlog = 0  # bytes in _batches
        self._paused: set[Connection] = set()
        self._scheduled = False
        self._last_warning: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        # The daemon's bound on bytes held for clients (inflight.py): a
        # connection holding a long partial frame pauses while it is over.
        self.bound: Inflight | None = None
        self.limiter: RateLimiter | None = None  # see RateLimiter.admit for `peers`
        self.peers: list[tuple[int, str | None]] = []

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

    def options(self) -> ParseOptions:
        """The live parse options, with this listener's own timezone if set."""
        base = self.settings.parse_options
        if self.tz is None:
            return base
        if self._opts is None or self._opts[0] is not base:
            self._opts = (base, dataclasses.replace(base, tz=self.tz))
        return self._opts[1]

    def clock_skew(self, recs: list[Record]) -> None:
        """Count re-stamped records; name each sender host's clock once an hour."""
        self.stats.clock_skew += len(recs)
        mono = time.monotonic()
        logged = self._skew_logged
        for rec in recs:
            if mono - logged.get(rec.host, -SKEW_LOG_EVERY) < SKEW_LOG_EVERY:
                continue
            if len(logged) >= 4096:
                logged.clear()
            logged[rec.host] = mono
            theirs = parse_timestamp(str((rec.fields or {})["original_timestamp"]), UTC)
            off = ((theirs or rec.received_at) - rec.received_at) / 1e6
            log.warning(
                "listener %s: host %s's clock is %s %s, or it sends local time from "
                "another zone than %s (set this listener's default_timezone); its records "
                "get the receipt time, theirs kept in fields.original_timestamp",
                self.cfg.name, rec.host, format_duration(abs(off)),
                "ahead" if off > 0 else "behind",
                self.cfg.default_timezone or self.settings.config.parsing.default_timezone,
            )  # fmt: skip

    # -- queueing (called from protocol callbacks) -------------------------

    def submit(self, frames: list[Frame], sender: str | None, nbytes: int) -> bool:
        """Queue a read's frames; True when the backlog is over HIGH_WATER."""
        self._batches.append((frames, sender, nbytes))
        self._backlog += nbytes
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)
        return self._backlog > HIGH_WATER

    def pause(self, proto: Connection) -> None:
        if proto not in self._paused and proto.transport is not None:
            proto.transport.pause_reading()
            self._paused.add(proto)
            self.stats.paused += 1

    def hold_back(self, proto: Connection, nbytes: int) -> None:
        """A read left a partial frame of `nbytes` past PARTIAL_FRAME: count
        it against the bound and, while that is over, pause the connection
        until the bound's guard finds room (it sheds the largest holders if
        there is none for long)."""
        bound = self.bound
        if bound is None:
            return
        bound.charge(nbytes)
        if bound.over() and proto.transport is not None and proto not in self._paused:
            proto.transport.pause_reading()
            self._paused.add(proto)
            bound.wait(proto, self._resume_all)

    def forget(self, proto: Connection) -> None:
        if self.bound is not None:
            self.bound.forget(proto)
        self._paused.discard(proto)
        self.connections.discard(proto)
        self.done_draining(proto)
        if not self.connections and self.all_closed is not None:
            self.all_closed.set()

    def done_draining(self, proto: Connection) -> None:
        self.draining.discard(proto)
        if not self.draining and self.drained is not None:
            self.drained.set()

    def read_datagrams(self, receiver: Receiver) -> int:
        """Readiness callback: read what the kernel holds, up to READ_BATCH
        datagrams (recvmmsg in C when built), and parse it as one batch on
        this loop iteration. Returns how many datagrams were read."""
        batch = receiver.recv(READ_BATCH, self.max_bytes)
        if batch.errno:  # e.g. an ICMP error reported on the socket
            self.warn("recv", "receive error: %s", os.strerror(batch.errno))
        got = len(batch.frames) + batch.empty
        if got:
            self._dgrams.append(batch)
            if not self._scheduled:
                self._scheduled = True
                self.loop.call_soon(self.flush)
        return got

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
            if self.limiter is not None:
                recs = self.limiter.admit(recs, self.peers, self.stats.drop)
                self.peers = []
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
        native = self.parse_frames
        opts = self.options()
        batches = self._batches
        raw = truncated = 0
        skewed: list[Record] = []
        # Who sent which records, for the rate limiter only: without one,
        # nothing clears the list (it grew by a tuple per batch, for good).
        peers = self.peers if self.limiter is not None else None
        while batches and budget > 0:
            frames, sender, nbytes = batches.popleft()
            if peers is not None:
                peers.append((len(recs), sender))
            self._backlog -= nbytes
            budget -= len(frames)
            parsed = None
            if native is not None:
                try:
                    batch = native(frames, now, sender, opts)
                except Exception:  # a native bug: Python reads the whole batch
                    batch = None
                    self.warn(
                        "native", "native parser failed; batch parsed in Python", exc_info=True
                    )
                if batch is not None:
                    parsed, declined, cut = batch
                    if not declined:  # all read natively: no loop over them here
                        recs += cast("list[Record]", parsed)
                        truncated += cut
                        continue
            raw += self._parse_declined(parsed, frames, sender, now, recs, skewed)
            truncated += sum(map(_CUT, frames))
        self.stats.raw += raw
        self.stats.truncated += truncated
        if skewed:
            self.clock_skew(skewed)

    def _parse_dgrams(self, now: int, recs: list[Record]) -> None:
        """The datagram batches read since the last flush: each run of one
        sender's frames goes to the native parser in one call."""
        batches = self._dgrams
        self._dgrams = []
        local = self.local_sender
        stats = self.stats
        peers = self.peers if self.limiter is not None else None
        for batch in batches:
            stats.bytes += batch.nbytes
            stats.truncated += batch.truncated
            if batch.empty:  # nothing to store, but not silently: counted
                stats.drop(EMPTY, batch.empty)
            frames = batch.frames
            if not frames:
                continue
            if local is not None:  # unix: every frame is this machine's
                if peers is not None:
                    peers.append((len(recs), local))
                self._parse_run(frames, local, now, recs)
                continue
            runs = batch.runs
            ends = [start for start, _ in runs[1:]] + [len(frames)]
            senders = self._senders
            for (start, ip), end in zip(runs, ends, strict=True):
                sender = (senders.get(ip) or self.sender(ip)) if ip is not None else None
                if peers is not None:
                    peers.append((len(recs), sender))
                run = frames if start == 0 and end == len(frames) else frames[start:end]
                self._parse_run(run, sender, now, recs)

    def _parse_run(
        self, frames: list[Frame], sender: str | None, now: int, recs: list[Record]
    ) -> None:
        """One sender's datagram frames -> records appended to `recs`: the
        native batch parser first, Python for what it declines."""
        parsed = None
        if self.parse_frames is not None:  # syslog (json: None)
            try:
                parsed = parse_datagram_run(frames, now, sender, self.options())
            except Exception:  # a native bug: Python reads the whole batch
                self.warn("native", "native parser failed; batch parsed in Python", exc_info=True)
        skewed: list[Record] = []
        self.stats.raw += self._parse_declined(parsed, frames, sender, now, recs, skewed)
        if skewed:
            self.clock_skew(skewed)

    def _parse_declined(
        self,
        parsed: list[Record | None] | None,
        frames: list[Frame],
        sender: str | None,
        now: int,
        recs: list[Record],
        skewed: list[Record],
    ) -> int:
        """Every frame's record appended to `recs` in order: the native
        parser's (`parsed`), Python's where it declined (None) or did not
        run (`parsed` None). Records restamped for a skewed clock go to
        `skewed` too. Returns how many of those Python parsed are raw (what
        the per-frame loops of both paths counted before)."""
        parse = self.parse
        opts = self.options()
        append = recs.append
        done: list[Record | None] = [None] * len(frames) if parsed is None else parsed
        raw = 0
        for rec, (data, cut) in zip(done, frames, strict=True):
            if rec is None:
                try:
                    rec = parse(data, now, sender, opts, cut)
                except Exception:
                    rec = self._parser_failed(data, now, sender, cut)
                if rec.format == "raw":
                    raw += 1
                # Only the Python path restamps (native declines skewed times).
                if rec.timestamp == now and rec.fields and "original_timestamp" in rec.fields:
                    skewed.append(rec)
            append(rec)
        return raw

    def _parser_failed(self, data: bytes, now: int, sender: str | None, cut: bool) -> Record:
        """A parser bug must not lose the message: keep it raw, say so."""
        self.warn(
            "parser",
            "parser failed on %r from %s; kept as raw",
            sanitise(data),
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
