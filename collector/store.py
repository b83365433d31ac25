"""Store stage: records kept in memory, ordered by event time.

Pure: no asyncio, no clock (callers pass `now`). Thin version: one sorted
list; the sharded, compact store replaces it behind the same methods.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from collector.query import Query, QueryError, matches
from collector.record import FACILITIES, LEVELS, Record, format_timestamp


@dataclass(slots=True)
class Page:
    """One page of a query: (id, record) pairs and where the next page starts."""

    items: list[tuple[str, Record]]
    next_cursor: str | None


def make_id(ts: int, seq: int) -> str:
    return f"{ts:x}-{seq:x}"


class Store:
    """In-memory records; `add_many` from listeners, queries from HTTP."""

    def __init__(self, *, ttl_us: int, max_records: int, max_memory: int) -> None:
        self.ttl_us = ttl_us
        self.max_records = max_records
        self.max_memory = max_memory
        self._keys: list[tuple[int, int]] = []
        self._recs: list[Record] = []
        self._seq = 0
        self.expired_total = 0
        self.evicted_total = 0

    def configure(self, *, ttl_us: int, max_records: int, max_memory: int) -> None:
        """New bounds (config reload); applied from the next add or expire."""
        self.ttl_us = ttl_us
        self.max_records = max_records
        self.max_memory = max_memory

    def __len__(self) -> int:
        return len(self._recs)

    def add_many(self, records: list[Record]) -> int:
        """Store a batch, evicting the oldest beyond the bounds.

        The batch takes consecutive sequence numbers; returns the first one
        (the write-ahead log records them so that ids survive a restart)."""
        first = self._seq + 1
        for rec in records:
            self._seq += 1
            self._insert(self._seq, rec)
        self._evict()
        return first

    def restore(self, items: Iterable[tuple[int, Record]]) -> None:
        """Put back (seq, record) pairs from a snapshot or log, ids unchanged."""
        for seq, rec in items:
            self._insert(seq, rec)
            self._seq = max(self._seq, seq)
        self._evict()

    def snapshot_items(self) -> Iterator[tuple[int, Record]]:
        """Every (seq, record) in time order, for a snapshot."""
        for (_, seq), rec in zip(self._keys, self._recs, strict=True):
            yield seq, rec

    def get(self, rec_id: str) -> Record | None:
        """The record with this id, or None (also for a malformed id)."""
        try:
            ts_hex, seq_hex = rec_id.split("-")
            key = (int(ts_hex, 16), int(seq_hex, 16))
        except ValueError:
            return None
        i = bisect.bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            return self._recs[i]
        return None

    def _insert(self, seq: int, rec: Record) -> None:
        key = (rec.timestamp, seq)
        i = bisect.bisect(self._keys, key)
        self._keys.insert(i, key)
        self._recs.insert(i, rec)

    def _evict(self) -> None:
        over = len(self._recs) - self.max_records
        if over > 0:
            del self._keys[:over], self._recs[:over]
            self.evicted_total += over

    def expire(self, now: int) -> int:
        """Drop records older than `now - ttl`; returns how many."""
        i = bisect.bisect_left(self._keys, (now - self.ttl_us, 0))
        del self._keys[:i], self._recs[:i]
        self.expired_total += i
        return i

    # --- thin; replaced by the sharded store: a linear scan, correct, slow ---

    def query(self, q: Query) -> Page:
        """Records matching `q`, one page in `q.order`; the cursor is the id
        of the last record returned, so paging is stable while records arrive."""
        after: tuple[int, int] | None = None
        if q.cursor is not None:
            try:
                ts_hex, seq_hex = q.cursor.split("-")
                after = (int(ts_hex, 16), int(seq_hex, 16))
            except ValueError:
                raise QueryError(f"cursor: not a cursor from this server: {q.cursor!r}") from None
        desc = q.order == "desc"
        idx = range(len(self._keys) - 1, -1, -1) if desc else range(len(self._keys))
        items: list[tuple[str, Record]] = []
        for i in idx:
            key = self._keys[i]
            if after is not None and (key >= after if desc else key <= after):
                continue
            if matches(self._recs[i], q):
                if len(items) == q.limit:
                    return Page(items, items[-1][0])
                items.append((make_id(*key), self._recs[i]))
        return Page(items, None)

    def stats(self, q: Query, by: tuple[str, ...], step_us: int | None) -> dict[str, Any]:
        """Counts of records matching `q`: total, per value of each `by` field
        (`"-"` for none), and per `step_us` bucket aligned to the epoch, from
        the first matching record's bucket to the last's, empty ones included."""
        total = 0
        counts: dict[str, dict[str, int]] = {name: {} for name in by}
        buckets: dict[int, int] = {}
        for rec in self._recs:
            if not matches(rec, q):
                continue
            total += 1
            for name in by:
                value: Any = getattr(rec, name)
                if name == "level":
                    value = LEVELS[value]
                elif name == "facility" and value is not None:
                    value = FACILITIES[value]
                key = "-" if value is None else value
                counts[name][key] = counts[name].get(key, 0) + 1
            if step_us:
                b = rec.timestamp - rec.timestamp % step_us
                buckets[b] = buckets.get(b, 0) + 1
        histogram = []
        if buckets and step_us:
            first, last = min(buckets), max(buckets)
            histogram = [
                {"start": format_timestamp(b), "count": buckets.get(b, 0)}
                for b in range(first, last + step_us, step_us)
            ]
        return {"total": total, "by": counts, "histogram": histogram}
