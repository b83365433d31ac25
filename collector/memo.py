"""Store stage, the memo: counts and indexes computed from whole shards,
kept in one bounded least-recently-used table per store.

Pure: no asyncio, no logging, no clock; bounded by MEMO_MAX_ENTRIES.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

# What one Memo (a store's) may hold: the entries of its values summed (a
# value index counts its distinct values, a count table its keys); ~100-200
# bytes an entry, so ~20-40 MB at most, whatever the number of shards.
MEMO_MAX_ENTRIES = 200_000


class Memo:
    """Counts and indexes computed from whole shards, kept for reuse: one
    least-recently-used table per store, bounded by the entries its values
    hold (MEMO_MAX_ENTRIES), so its memory does not grow with the number of
    shards or of fields asked about. Entries of changed or dropped shards
    are never asked for again and age out."""

    def __init__(self, max_entries: int = MEMO_MAX_ENTRIES) -> None:
        self.table: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.entries = 0
        self.max_entries = max_entries

    def peek(self, key: tuple[Any, ...]) -> Any:
        found = self.table.get(key)
        if found is not None:
            self.table.move_to_end(key)
        return found

    def get(self, key: tuple[Any, ...], compute: Callable[..., Any], *args: Any) -> Any:
        found = self.peek(key)
        if found is not None:
            return found
        found = compute(*args)
        self.put(key, found)
        return found

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        size = len(value) + 1
        if size > self.max_entries or key in self.table:
            return
        self.table[key] = value
        self.entries += size
        while self.entries > self.max_entries:
            _, old = self.table.popitem(last=False)
            self.entries -= len(old) + 1
