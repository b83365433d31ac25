"""Tail stage: live fan-out of stored batches to `/tail` streams.

The daemon owns the LiveTails; its sink publishes each batch once, and one flush
per loop turn renders each record at most once (no per-message await). A Tail
writes to the small `Stream` protocol, so no HTTP is imported here; a client
that stops reading is cut off at a fixed backlog, never buffered forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from collector.query import Query, matches, record_line
from collector.record import Record, make_id
from collector.store import Page

log = logging.getLogger("collector.http")

TAIL_KEEPALIVE = 15.0  # seconds between blank lines on an idle /tail (contract)
TAIL_MAX_BACKLOG = 8 * 1024 * 1024  # bytes a /tail client may fall behind before it is dropped
TAIL_REPLAY_PAGE = 1000  # stored records per replay step of /tail?start=


class Stream(Protocol):
    """The connection a Tail writes to (HTTP's protocol object is one)."""

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def write_paused(self) -> bool: ...

    @property
    def peer(self) -> str | None: ...

    async def drained(self) -> None:
        """Return once the connection can take more bytes."""


class TailCounters(Protocol):
    """Where a Tail counts itself (HTTP's stats, read by /metrics)."""

    active_tails: int
    tails_dropped: int


class LiveTails:
    """The open `/tail` streams, and the batches waiting for the next flush."""

    def __init__(self) -> None:
        self._tails: set[Tail] = set()
        self._pending: list[tuple[int, list[Record]]] = []
        self._flush_scheduled = False

    def __len__(self) -> int:
        return len(self._tails)

    def add(self, tail: Tail) -> None:
        self._tails.add(tail)

    def discard(self, tail: Tail) -> None:
        self._tails.discard(tail)

    def publish(self, first_seq: int, records: list[Record]) -> None:
        """Hand a stored batch to the live tails: O(1) now, one flush per
        event-loop turn later, so a burst of small batches costs each tail
        one write. The batch took seqs first_seq, first_seq + 1, ..."""
        if not self._tails or not records:
            return
        self._pending.append((first_seq, records))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batches, self._pending = self._pending, []
        items = [
            (make_id(rec.timestamp, first + i), rec)
            for first, recs in batches
            for i, rec in enumerate(recs)
        ]
        # Each record is rendered at most once, and tails with the same
        # filter share one chunk: N tails cost N writes, not N renderings.
        lines: list[bytes | None] = [None] * len(items)
        chunks: dict[Query, bytes] = {}
        for tail in list(self._tails):
            if tail.replaying:
                tail.buffer_live([it for it in items if matches(it[1], tail.query)])
                continue
            chunk = chunks.get(tail.query)
            if chunk is None:
                parts = []
                for i, (rid, rec) in enumerate(items):
                    if tail.everything or matches(rec, tail.query):
                        line = lines[i]
                        if line is None:
                            line = lines[i] = record_line(rec, rid)
                        parts.append(line)
                chunk = chunks[tail.query] = b"".join(parts)
            if chunk:
                tail.send(chunk)


class Tail:
    """One live `/tail` stream on a connection that it has taken over.

    Writes never block ingest: while the socket is backed up, chunks wait in
    a backlog; a client more than TAIL_MAX_BACKLOG behind is disconnected
    (counted in `tails_dropped`) rather than letting memory grow."""

    def __init__(
        self,
        proto: Stream,
        query: Query,
        chunked: bool,
        *,
        tails: LiveTails,
        counters: TailCounters,
        replay: Callable[[Query], Page],
        keepalive: float = TAIL_KEEPALIVE,
    ) -> None:
        self.proto = proto
        self.tails = tails
        self.counters = counters
        self.replay_page = replay
        self.keepalive = keepalive
        self.query = replace(query, limit=TAIL_REPLAY_PAGE, order="asc", cursor=None)
        self.chunked = chunked
        self.everything = replace(self.query, limit=0) == Query(limit=0, order="asc")
        self.replaying = query.start is not None
        self.live: list[tuple[str, Record]] = []  # arrivals held back during replay
        self.live_ids: set[str] = set()
        self.backlog: list[bytes] = []
        self.backlog_bytes = 0
        self.last_write = time.monotonic()
        self.closed = False
        loop = asyncio.get_running_loop()
        tails.add(self)
        counters.active_tails += 1
        self.timer = loop.call_later(keepalive, self._keepalive)
        self.task: asyncio.Task[None] | None = None
        if self.replaying:
            self.task = loop.create_task(self._replay())

    def _frame(self, data: bytes) -> list[bytes]:
        if not self.chunked:
            return [data]
        return [b"%x\r\n" % len(data), data, b"\r\n"]

    def send(self, data: bytes) -> None:
        """Write one chunk of NDJSON lines, or queue it while backed up."""
        transport = self.proto.transport
        if self.closed or transport is None:
            return
        if self.proto.write_paused:
            self.backlog.append(data)
            self.backlog_bytes += len(data)
            if self.backlog_bytes > TAIL_MAX_BACKLOG:
                self.counters.tails_dropped += 1
                log.warning("tail client %s fell too far behind; disconnected", self.proto.peer)
                transport.abort()
            return
        transport.writelines(self._frame(data))
        self.last_write = time.monotonic()

    def resume(self) -> None:
        """The socket drained: write what waited, in one chunk."""
        if self.backlog and not self.closed:
            data = b"".join(self.backlog)
            self.backlog, self.backlog_bytes = [], 0
            self.send(data)

    def buffer_live(self, items: list[tuple[str, Record]]) -> None:
        self.live.extend(items)
        self.live_ids.update(rid for rid, _ in items)
        if len(self.live) > TAIL_MAX_BACKLOG // 256 and self.proto.transport is not None:
            self.counters.tails_dropped += 1
            self.proto.transport.abort()

    async def _replay(self) -> None:
        """Stored records from `start` on, page by page, waiting for the client
        to drain between pages; then the live records that came meanwhile
        (skipped in the replay by id, so none is sent twice)."""
        q = self.query
        while not self.closed:
            page = self.replay_page(q)
            lines = [record_line(rec, rid) for rid, rec in page.items if rid not in self.live_ids]
            if lines:
                self.send(b"".join(lines))
            if page.next_cursor is None:
                break
            q = replace(q, cursor=page.next_cursor)
            await self.proto.drained()
        self.replaying = False
        if self.live and not self.closed:
            self.send(b"".join(record_line(rec, rid) for rid, rec in self.live))
        self.live, self.live_ids = [], set()

    def _keepalive(self) -> None:
        # Contract: an empty line every 15 s keeps an idle stream alive
        # through proxies; only when nothing else was written meanwhile.
        if self.closed:
            return
        interval = self.keepalive
        idle = time.monotonic() - self.last_write
        if idle >= interval * 0.99 and not self.proto.write_paused:
            self.send(b"\n")
            idle = 0.0
        self.timer = asyncio.get_running_loop().call_later(interval - idle, self._keepalive)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.timer.cancel()
        if self.task is not None:
            self.task.cancel()
        self.tails.discard(self)
        self.counters.active_tails -= 1
        self.backlog = []
