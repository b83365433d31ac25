"""Tail stage: live fan-out of stored batches to `/tail` streams.

The daemon owns the LiveTails; its sink publishes each batch once, and one flush
per loop turn renders each record at most once (no per-message await). A Tail
writes to the small `Stream` protocol, so no HTTP is imported here; a client
that stops reading is cut off at a fixed backlog, never buffered forever.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from collector.inflight import Inflight
from collector.query import Query, matches, record_line, records_json
from collector.record import Record, make_id
from collector.store import Page

log = logging.getLogger("collector.http")

TAIL_KEEPALIVE = 15.0  # seconds between blank lines on an idle /tail (contract)
TAIL_MAX_BACKLOG = 8 * 1024 * 1024  # bytes a /tail client may fall behind before it is dropped
TAIL_REPLAY_PAGE = 1000  # stored records per replay step of /tail?start=, at most
TAIL_REPLAY_MIN = 4  # ... and at least (the first step reads this many)
TAIL_REPLAY_CHUNK = 256 * 1024  # replay bytes written before waiting for the client to drain
# While the daemon is over its bound on bytes held for clients (inflight.py),
# a client this far behind is dropped at once rather than at TAIL_MAX_BACKLOG.
TAIL_SHED_BACKLOG = 256 * 1024


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
        self._pending: list[tuple[Sequence[int], list[Record]]] = []
        self._flush_scheduled = False

    def __len__(self) -> int:
        return len(self._tails)

    def add(self, tail: Tail) -> None:
        self._tails.add(tail)

    def discard(self, tail: Tail) -> None:
        self._tails.discard(tail)

    def publish(self, first_seq: int | Sequence[int], records: list[Record]) -> None:
        """Hand a stored batch to the live tails: O(1) now, one flush per
        event-loop turn later, so a burst of small batches costs each tail
        one write. The batch took seqs first_seq, first_seq + 1, ... (or the
        seqs given, for records read from a stream)."""
        if not self._tails or not records:
            return
        if isinstance(first_seq, int):
            first_seq = range(first_seq, first_seq + len(records))
        self._pending.append((first_seq, records))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batches, self._pending = self._pending, []
        items = [
            (make_id(rec.timestamp, seq), rec)
            for seqs, recs in batches
            for seq, rec in zip(seqs, recs, strict=True)
        ]
        # Tails with the same filter share one chunk, rendered in one call
        # (in C when built): N tails cost N writes, not N renderings.
        chunks: dict[Query, bytes] = {}
        for tail in list(self._tails):
            if tail.replaying:
                tail.buffer_live([it for it in items if matches(it[1], tail.query)])
                continue
            chunk = chunks.get(tail.query)
            if chunk is None:
                wanted = (
                    items if tail.everything else [it for it in items if matches(it[1], tail.query)]
                )
                chunk = chunks[tail.query] = ndjson(wanted)
            if chunk:
                tail.send(chunk)


def ndjson(items: list[tuple[str, Record]]) -> bytes:
    """NDJSON lines (each with its LF) of `items`, b"" for none."""
    return records_json(items, b"\n") + b"\n" if items else b""


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


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
        inflight: Inflight | None = None,
    ) -> None:
        self.proto = proto
        self.inflight = inflight
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
        self.live_bytes = 0
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
            if self._too_far_behind(self.backlog_bytes, len(data)):
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
        """Hold live records back while the replay runs, bounded like the
        backlog (by an estimate of their bytes: a message's length and a
        record's fixed part)."""
        self.live.extend(items)
        self.live_ids.update(rid for rid, _ in items)
        added = sum(len(rec.message) + 256 for _, rec in items)
        self.live_bytes += added
        if self._too_far_behind(self.live_bytes, added) and self.proto.transport is not None:
            self.counters.tails_dropped += 1
            self.proto.transport.abort()

    async def _turn(self) -> None:
        """Between two replay chunks: wait for the client to drain, and give
        the loop a turn in any case (a client that keeps up, or one gone
        whose writes fail, would otherwise replay the whole store in one
        turn); a connection going away ends the replay."""
        await self.proto.drained()
        await asyncio.sleep(0)
        transport = self.proto.transport
        if transport is None or transport.is_closing():
            self.close()

    async def _room(self) -> None:
        """While the bytes held for all clients are over their bound, the
        replay waits before reading more (the guard wakes it)."""
        inflight = self.inflight
        while inflight is not None and inflight.over() and not self.closed:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            inflight.wait(self, functools.partial(_settle, done))
            await done

    @property
    def held(self) -> int:
        """Bytes held for this client beyond the socket's write buffer: the
        backlog, live records held back, and a replay's page in progress."""
        n = self.backlog_bytes + self.live_bytes
        return n + 4 * TAIL_REPLAY_CHUNK if self.replaying else n

    def _too_far_behind(self, behind: int, added: int) -> bool:
        """Past TAIL_MAX_BACKLOG, or past TAIL_SHED_BACKLOG while the bytes
        held for all clients are over their bound."""
        inflight = self.inflight
        if inflight is None:
            return behind > TAIL_MAX_BACKLOG
        inflight.charge(added)
        return behind > TAIL_MAX_BACKLOG or (behind > TAIL_SHED_BACKLOG and inflight.over())

    async def _replay(self) -> None:
        """Stored records from `start` on, page by page, waiting for the client
        to drain between pages; then the live records that came meanwhile
        (skipped in the replay by id, so none is sent twice)."""
        q = self.query
        limit = TAIL_REPLAY_MIN
        while not self.closed:
            await self._room()
            if self.closed:
                return
            page = self.replay_page(replace(q, limit=limit))
            items, next_cursor = page.items, page.next_cursor
            del page
            parts: list[bytes] = []
            size = total = 0
            for rid, rec in items:
                if rid in self.live_ids:
                    continue
                line = record_line(rec, rid)
                parts.append(line)
                size += len(line)
                if size >= TAIL_REPLAY_CHUNK:
                    # Bounded in flight: a chunk, then wait for the client.
                    self.send(b"".join(parts))
                    total += size
                    parts, size = [], 0
                    await self._turn()
                    if self.closed:
                        return
            total += size
            if parts:
                self.send(b"".join(parts))
            del items, parts
            if next_cursor is None:
                break
            # Pages sized so one holds about a chunk: few queries for small
            # records, little memory held per client for large ones.
            if total < TAIL_REPLAY_CHUNK // 2:
                limit = min(limit * 2, TAIL_REPLAY_PAGE)
            elif total > TAIL_REPLAY_CHUNK * 2:
                limit = max(limit // 2, TAIL_REPLAY_MIN)
            q = replace(q, cursor=next_cursor)
            await self._turn()
        self.replaying = False
        if self.live and not self.closed:
            self.send(ndjson(self.live))
        self.live, self.live_ids, self.live_bytes = [], set(), 0

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
        if self.inflight is not None:
            self.inflight.forget(self)
        self.counters.active_tails -= 1
        self.backlog, self.backlog_bytes = [], 0
        self.live, self.live_ids, self.live_bytes = [], set(), 0
