"""Store stage: recently decoded block frames, shared by every sealed shard.

Pure: no asyncio, no clock, no logging. Bounded in bytes, least recently
used dropped first, safe to share between threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from collector.block import Attrs, Block, Keys, Text


class BlockCache:
    """Recently decoded block frames, least recently used dropped first, bounded in bytes.

    Safe to share between threads (a parallel `q=` scan decodes in workers).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[int, str], tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        # How a scan maps over blocks: the daemon sets a thread pool's map so
        # that decompression (which releases the GIL) uses both cores.
        self.mapper: Callable[..., Iterable[Any]] = map

    def __len__(self) -> int:
        return len(self._items)

    def _get(
        self, block: Block, part: str, decode: Callable[[], Any], size: Callable[[Any], int]
    ) -> Any:
        key = (block.serial, part)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return hit[0]
            self.misses += 1
        value = decode()  # outside the lock: decompression runs in parallel
        nbytes = size(value)
        if nbytes > self.max_bytes:
            return value
        with self._lock:
            if key not in self._items:
                self._items[key] = (value, nbytes)
                self.nbytes += nbytes
                while self.nbytes > self.max_bytes:
                    _, (_, freed) = self._items.popitem(last=False)
                    self.nbytes -= freed
        return value

    def keys(self, block: Block) -> Keys:
        k: Keys = self._get(block, "k", block.decode_keys, attrgetter("nbytes"))
        return k

    def attrs(self, block: Block) -> Attrs:
        a: Attrs = self._get(block, "a", block.decode_attrs, attrgetter("nbytes"))
        return a

    def text(self, block: Block) -> Text:
        t: Text = self._get(block, "t", block.decode_text, attrgetter("nbytes"))
        return t

    def extras(self, block: Block) -> dict[int, tuple[Any, Any]]:
        e: dict[int, tuple[Any, Any]] = self._get(
            block, "e", block.decode_extras, lambda d: 200 + 300 * len(d)
        )
        return e

    def forget(self, block: Block) -> None:
        """Drop a block's frames (the block was evicted or expired)."""
        with self._lock:
            for part in "kate":
                hit = self._items.pop((block.serial, part), None)
                if hit is not None:
                    self.nbytes -= hit[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


# -- reading records ---------------------------------------------------------
