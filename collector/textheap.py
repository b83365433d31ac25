"""Store stage, message text: an open shard's messages and substring search.

Pure: no asyncio, no logging, no clock. Text is only ever appended; message
`p` (arrival number) is `offs[p]:offs[p + 1]` of the heap. Every method that
changes what the heap holds returns the change in accounted bytes, so the
shard's memory account stays the one number the store bounds.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable
from functools import lru_cache
from itertools import accumulate
from typing import Any

import re2

from collector.columns import span_sum

# Message text lives in frozen chunks of at least this many bytes plus an
# open tail: one growing buffer would be copied at every reallocation.
FREEZE_BYTES = 64 * 1024

# What `encode` hands to `append`: the UTF-8 text, each message's byte
# length, and whether any message is not ASCII.
Encoded = tuple[bytes, Iterable[int], bool]

# Hits in one buffer after which Finder lower-cases the buffer and goes on
# with bytes.find: RE2 costs ~2 us a call, find a fraction of that, and a
# lower-cased copy pays for itself once a needle is common.
_DENSE = 16


@lru_cache(maxsize=256)
def _pattern(needle: bytes) -> Any:
    # Latin-1: every byte is one character, so an ASCII needle folds onto
    # exactly its ASCII case variants (in UTF-8 mode "k" would also match
    # the Kelvin sign), and a match is exactly as long as the needle.
    options = re2.Options()
    options.literal = True
    options.case_sensitive = False
    options.encoding = re2.Options.Encoding.LATIN1
    return re2.compile(needle, options)


class Finder:
    """`buf.lower().find(needle, pos, end)` for an ASCII needle (lower-cased),
    without lower-casing the buffer: RE2 folds ASCII case as it searches, at
    C speed and with the GIL released, so scans on two threads use two
    cores. A needle without letters is a plain `find`; a needle found
    often in one buffer switches to a lower-cased copy of that buffer.
    One Finder per thread: it remembers the buffer it searches.
    """

    __slots__ = ("_buf", "_hits", "_low", "_never", "_pat", "needle")

    def __init__(self, needle: bytes) -> None:
        self.needle = needle
        # An upper-case letter in the needle: no lower-cased text holds it.
        self._never = needle.lower() != needle
        self._pat = None if needle.upper() == needle else _pattern(needle)
        self._buf: bytes | bytearray | None = None
        self._low: bytes | None = None
        self._hits = 0

    def find(self, buf: bytes | bytearray, pos: int, end: int) -> int:
        if self._never:
            return -1
        if self._pat is None:
            return buf.find(self.needle, pos, end)
        if buf is not self._buf:
            self._buf, self._low, self._hits = buf, None, 0
        if self._low is not None:
            return self._low.find(self.needle, pos, end)
        self._hits += 1
        if self._hits > _DENSE:
            self._low = bytes(buf).lower()
            return self._low.find(self.needle, pos, end)
        m = self._pat.search(buf, pos, end)
        return -1 if m is None else int(m.start())


class TextHeap:
    """The messages of one open shard, UTF-8, back to back.

    Frozen chunks hold whole messages from `chunk_starts[j]` on, then the
    open tail from `tail_start` on. Frozen chunks never change, so a worker
    thread sealing the shard (block.py) may read them while appends go on.
    One copy only: `q` searches it case-insensitively (Finder), and the
    few non-ASCII messages (`uni`) are compared as `str.lower()`.
    """

    __slots__ = (
        "chunk_starts",
        "freeze_bytes",
        "offs",
        "tail",
        "tail_start",
        "texts",
        "uni",
    )

    def __init__(self, freeze_bytes: int = FREEZE_BYTES) -> None:
        self.freeze_bytes = freeze_bytes
        self.texts: list[bytes] = []
        self.chunk_starts = array("q")
        self.tail = bytearray()
        self.tail_start = 0
        self.offs = array("I", [0])
        self.uni: set[int] = set()  # p of messages that are not ASCII

    # -- writing -----------------------------------------------------------

    @staticmethod
    def encode(msgs: list[str]) -> Encoded:
        """What `append` stores, computed first: a message that is not text
        fails here, before the shard has changed anything."""
        joined = "".join(msgs)
        if not joined.isascii():
            encoded = [m.encode("utf-8", "surrogatepass") for m in msgs]
            return b"".join(encoded), map(len, encoded), True
        return joined.encode("ascii"), map(len, msgs), False

    def append(self, msgs: list[str], enc: Encoded) -> int:
        """Append the batch `enc = encode(msgs)`; returns the bytes it adds."""
        data, lens, non_ascii = enc
        p0 = len(self.offs) - 1
        extra = 0
        if non_ascii:
            for i, m in enumerate(msgs):
                if not m.isascii():
                    self.uni.add(p0 + i)
                    extra += _UNI_BYTES
        start = self.offs[-1]
        if self.tail or len(data) < self.freeze_bytes:
            self.tail += data
            if len(self.tail) >= self.freeze_bytes:
                self.freeze()
        else:  # a big batch is a chunk as it is, without a copy
            self.texts.append(data)
            self.chunk_starts.append(start)
            self.tail_start = start + len(data)
        if start + len(data) >= 1 << 32 and self.offs.typecode == "I":
            self.offs = array("q", self.offs)
        ends = accumulate(lens, initial=start)
        next(ends)
        self.offs.extend(ends)
        return len(data) + extra

    def truncate(self, p0: int) -> None:
        """Forget messages from `p0` on (undoing a batch that failed half-way)."""
        o0 = self.offs[p0]
        del self.offs[p0 + 1 :]
        if o0 >= self.tail_start:
            del self.tail[o0 - self.tail_start :]
        self.uni.difference_update([p for p in self.uni if p >= p0])

    def drop_prefix(self, m: int) -> int:
        """Forget messages [0, m) (all dead) and renumber the rest from 0;
        returns the accounted bytes this frees. Offsets stay absolute: the
        first live message starts at `offs[0]`, and the frozen chunks that
        end at or before it go. Containers change in place: the caller makes
        sure no seal worker is reading them."""
        if m <= 0:
            return 0
        offs = self.offs
        o0 = offs[m]
        freed = 0
        starts = self.chunk_starts
        # Chunks wholly before o0: those whose successor starts at or before it.
        ends = [*starts[1:], self.tail_start] if len(starts) else []
        drop = bisect_right(ends, o0)
        if drop:
            freed += ends[drop - 1] - starts[0]
            del self.texts[:drop], starts[:drop]
        if o0 > self.tail_start:  # the live text starts inside the tail
            cut = o0 - self.tail_start
            del self.tail[:cut]
            self.tail_start = o0
            freed += cut
        del offs[:m]
        if self.uni:
            old = self.uni
            freed += _UNI_BYTES * sum(1 for p in old if p < m)
            self.uni = {p - m for p in old if p >= m}
        return freed

    def freeze(self) -> None:
        """Close the open tail into a chunk."""
        if self.tail:
            self.texts.append(bytes(self.tail))
            self.chunk_starts.append(self.tail_start)
            self.tail_start += len(self.tail)
            self.tail = bytearray()

    # -- accounting --------------------------------------------------------

    def bytes_of(self, p: int) -> int:
        """The accounted bytes of message `p` (what forgetting it frees)."""
        offs = self.offs
        size = offs[p + 1] - offs[p]
        return size + _UNI_BYTES if p in self.uni else size

    def bytes_of_range(self, a: int, b: int) -> int:
        """The accounted bytes of messages [a, b)."""
        offs = self.offs
        size = offs[b] - offs[a]
        if self.uni:
            size += _UNI_BYTES * sum(1 for p in self.uni if a <= p < b)
        return size

    def bytes_of_many(self, phys: array[int]) -> int:
        """The accounted bytes of the messages `phys` (an array of 'I')."""
        size = span_sum(self.offs, phys)
        if self.uni:
            size += _UNI_BYTES * len(self.uni.intersection(phys))
        return size

    # -- reading -----------------------------------------------------------

    def message(self, p: int) -> str:
        """Message `p`."""
        o0, o1 = self.offs[p], self.offs[p + 1]
        if o0 >= self.tail_start:
            t = self.tail_start
            return self.tail[o0 - t : o1 - t].decode("utf-8", "surrogatepass")
        j = bisect_right(self.chunk_starts, o0) - 1
        base = self.chunk_starts[j]
        return self.texts[j][o0 - base : o1 - base].decode("utf-8", "surrogatepass")

    def lowered(self, p: int) -> str:
        """Message `p` lower-cased: what word-edge checks read."""
        return self.message(p).lower()

    def search(self, needle: bytes, text: str, pa: int, pb: int) -> set[int]:
        """Messages p in [pa, pb) whose lower-cased text contains `text`
        (lower-cased; `needle` is its UTF-8).

        ASCII messages are searched with a Finder over the chunks, at C
        speed; only hits cost Python work. Non-ASCII ones are compared as
        `text in message.lower()`.
        """
        offs = self.offs
        found: set[int] = set()
        if needle.isascii():
            finder = Finder(needle)
            lo, hi = offs[pa], offs[pb]
            size = len(needle)
            starts = self.chunk_starts
            j = max(0, bisect_right(starts, lo) - 1)
            # Chunks hold whole messages, so a match never spans two of them.
            spans: list[tuple[bytes | bytearray, int]]
            spans = [(self.texts[k], starts[k]) for k in range(j, len(starts))]
            spans.append((self.tail, self.tail_start))
            for buf, base in spans:
                if base >= hi:
                    break
                end = min(hi, base + len(buf)) - base
                pos = finder.find(buf, max(lo - base, 0), end)
                while pos >= 0:
                    at = base + pos
                    p = bisect_right(offs, at, pa, pb + 1) - 1
                    stop = offs[p + 1]
                    if at + size <= stop:
                        found.add(p)
                        pos = finder.find(buf, stop - base, end)
                    else:  # the match runs into the next message
                        pos = finder.find(buf, pos + 1, end)
        if self.uni:
            found.difference_update(self.uni)
            found.update(p for p in self.uni if pa <= p < pb and text in self.message(p).lower())
        return found


# A non-ASCII message's entry in `uni`.
_UNI_BYTES = 60
