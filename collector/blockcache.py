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

from collector.block import Block, Group, Keys

_NBYTES = attrgetter("nbytes")


class BlockCache:
    """Recently decoded block frames, least recently used dropped first, bounded in bytes.

    Safe to share between threads (a parallel `q=` scan decodes in workers).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[int, str, int], tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        # How a scan maps over blocks: the daemon sets a thread pool's map so
        # that decompression and matching (which release the GIL) use both cores.
        self.mapper: Callable[..., Iterable[Any]] = map

    def __len__(self) -> int:
        return len(self._items)

    def _get(
        self,
        key: tuple[int, str, int],
        decode: Callable[[], Any],
        size: Callable[[Any], int],
        keep: bool = True,
    ) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return hit[0]
            self.misses += 1
        value = decode()  # outside the lock: decompression runs in parallel
        if not keep:
            return value
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
        k: Keys = self._get((block.serial, "k", 0), block.decode_keys, _NBYTES)
        return k

    def group(self, block: Block, j: int, keep: bool = True) -> Group:
        """Group `j` of the block decoded; `keep=False` (a scan) does not
        push what pages use out of the cache, it only reuses what is there."""
        g: Group = self._get((block.serial, "g", j), lambda: block.decode_group(j), _NBYTES, keep)
        return g

    def forget(self, block: Block) -> None:
        """Drop a block's frames (the block was evicted or expired)."""
        serial = block.serial
        with self._lock:
            keys = [(serial, "k", 0)]
            for j in range(block.ngroups):
                keys.append((serial, "g", j))
            for key in keys:
                hit = self._items.pop(key, None)
                if hit is not None:
                    self.nbytes -= hit[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0
