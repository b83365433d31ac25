"""Store stage: records kept in memory, ordered by event time.

Pure: no asyncio, no clock (callers pass `now`). Thin version: one sorted
list; the sharded, compact store replaces it behind the same methods.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from collector.query import Query
from collector.record import Record


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

    def __len__(self) -> int:
        return len(self._recs)

    def add_many(self, records: list[Record]) -> None:
        """Store a batch of records, evicting the oldest beyond the bounds."""
        for rec in records:
            self._seq += 1
            key = (rec.timestamp, self._seq)
            i = bisect.bisect(self._keys, key)
            self._keys.insert(i, key)
            self._recs.insert(i, rec)
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

    def query(self, q: Query) -> Page:
        """Records matching `q` in time order, one page."""
        lo = 0 if q.start is None else bisect.bisect_left(self._keys, (q.start, 0))
        hi = len(self._keys) if q.end is None else bisect.bisect_right(self._keys, (q.end, 1 << 62))
        items = [(make_id(*self._keys[i]), self._recs[i]) for i in range(lo, min(hi, lo + q.limit))]
        return Page(items, None)
