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
from itertools import accumulate

# Message text lives in frozen chunks of at least this many bytes plus an
# open tail: one growing buffer would be copied at every reallocation.
FREEZE_BYTES = 64 * 1024

# What `encode` hands to `append`: the UTF-8 text, its ASCII-lower-cased
# copy, each message's byte length, and whether any message is not ASCII.
Encoded = tuple[bytes, bytes, Iterable[int], bool]


def _uni_bytes(low: str) -> int:
    # A str.lower() kept for a non-ASCII message: the object plus its dict slot.
    return 80 + 4 * len(low)


class TextHeap:
    """The messages of one open shard, UTF-8, back to back.

    Frozen chunks hold whole messages from `chunk_starts[j]` on: the text
    and its ASCII-lower-cased copy (same offsets, for `q`). Then the open
    tail from `tail_start` on. Frozen chunks never change, so a worker
    thread sealing the shard (block.py) may read them while appends go on.
    """

    __slots__ = (
        "chunk_starts",
        "freeze_bytes",
        "low_tail",
        "lows",
        "offs",
        "tail",
        "tail_start",
        "texts",
        "uni",
    )

    def __init__(self, freeze_bytes: int = FREEZE_BYTES) -> None:
        self.freeze_bytes = freeze_bytes
        self.texts: list[bytes] = []
        self.lows: list[bytes] = []
        self.chunk_starts = array("q")
        self.tail = bytearray()
        self.low_tail = bytearray()
        self.tail_start = 0
        self.offs = array("I", [0])
        self.uni: dict[int, str] = {}  # p -> message.lower() for non-ASCII messages

    # -- writing -----------------------------------------------------------

    @staticmethod
    def encode(msgs: list[str]) -> Encoded:
        """What `append` stores, computed first: a message that is not text
        fails here, before the shard has changed anything."""
        joined = "".join(msgs)
        non_ascii = not joined.isascii()
        if non_ascii:
            encoded = [m.encode("utf-8", "surrogatepass") for m in msgs]
            data = b"".join(encoded)
            return data, data.lower(), map(len, encoded), True
        # str.lower is faster on ASCII
        return joined.encode("ascii"), joined.lower().encode("ascii"), map(len, msgs), False

    def append(self, msgs: list[str], enc: Encoded) -> int:
        """Append the batch `enc = encode(msgs)`; returns the bytes it adds."""
        data, low_data, lens, non_ascii = enc
        p0 = len(self.offs) - 1
        extra = 0
        if non_ascii:
            # bytes.lower() folds ASCII only: non-ASCII messages keep their
            # full str.lower() for `q`, and the ASCII copy is not used for them.
            for i, m in enumerate(msgs):
                if not m.isascii():
                    low = self.uni[p0 + i] = m.lower()
                    extra += _uni_bytes(low)
        start = self.offs[-1]
        if self.tail or len(data) < self.freeze_bytes:
            self.tail += data
            self.low_tail += low_data
            if len(self.tail) >= self.freeze_bytes:
                self.freeze()
        else:  # a big batch is a chunk as it is, without a copy
            self.texts.append(data)
            self.lows.append(low_data)
            self.chunk_starts.append(start)
            self.tail_start = start + len(data)
        if start + len(data) >= 1 << 32 and self.offs.typecode == "I":
            self.offs = array("q", self.offs)
        ends = accumulate(lens, initial=start)
        next(ends)
        self.offs.extend(ends)
        # The message is counted twice: its text and its lower-cased copy.
        return 2 * len(data) + extra

    def truncate(self, p0: int) -> None:
        """Forget messages from `p0` on (undoing a batch that failed half-way)."""
        o0 = self.offs[p0]
        del self.offs[p0 + 1 :]
        if o0 >= self.tail_start:
            del self.tail[o0 - self.tail_start :], self.low_tail[o0 - self.tail_start :]
        for p in [p for p in self.uni if p >= p0]:
            del self.uni[p]

    def freeze(self) -> None:
        """Close the open tail into a chunk."""
        if self.tail:
            self.texts.append(bytes(self.tail))
            self.lows.append(bytes(self.low_tail))
            self.chunk_starts.append(self.tail_start)
            self.tail_start += len(self.tail)
            self.tail = bytearray()
            self.low_tail = bytearray()

    # -- accounting --------------------------------------------------------

    def bytes_of(self, p: int) -> int:
        """The accounted bytes of message `p` (what forgetting it frees)."""
        offs = self.offs
        size = (offs[p + 1] - offs[p]) * 2  # the text and its lower-cased copy
        u = self.uni.get(p)
        return size if u is None else size + _uni_bytes(u)

    def bytes_of_range(self, a: int, b: int) -> int:
        """The accounted bytes of messages [a, b)."""
        offs = self.offs
        size = 2 * (offs[b] - offs[a])
        if self.uni:
            size += sum(_uni_bytes(u) for p, u in self.uni.items() if a <= p < b)
        return size

    def bytes_of_many(self, phys: Iterable[int]) -> int:
        """The accounted bytes of the messages `phys` (a list, read twice)."""
        offs = self.offs
        phys = list(phys)
        size = 2 * (
            sum(map(offs.__getitem__, map((1).__add__, phys))) - sum(map(offs.__getitem__, phys))
        )
        if self.uni:
            uni = self.uni
            size += sum(_uni_bytes(uni[p]) for p in phys if p in uni)
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
        """Message `p` lower-cased, from the lower-cased copy: what word-edge
        checks read."""
        low = self.uni.get(p)
        if low is not None:
            return low
        o0, o1 = self.offs[p], self.offs[p + 1]
        if o0 >= self.tail_start:
            t = self.tail_start
            return self.low_tail[o0 - t : o1 - t].decode("utf-8", "surrogatepass")
        j = bisect_right(self.chunk_starts, o0) - 1
        base = self.chunk_starts[j]
        return self.lows[j][o0 - base : o1 - base].decode("utf-8", "surrogatepass")

    def search(self, needle: bytes, text: str, pa: int, pb: int) -> set[int]:
        """Messages p in [pa, pb) that contain `text` (`needle` is its UTF-8).

        The search runs over the lower-cased text with bytes.find, at C
        speed; only hits cost Python work.
        """
        offs = self.offs
        found: set[int] = set()
        if needle.isascii():
            lo, hi = offs[pa], offs[pb]
            size = len(needle)
            starts = self.chunk_starts
            j = max(0, bisect_right(starts, lo) - 1)
            # Chunks hold whole messages, so a match never spans two of them.
            spans: list[tuple[bytes | bytearray, int]]
            spans = [(self.lows[k], starts[k]) for k in range(j, len(starts))]
            spans.append((self.low_tail, self.tail_start))
            for low, base in spans:
                if base >= hi:
                    break
                end = min(hi, base + len(low)) - base
                pos = low.find(needle, max(lo - base, 0), end)
                while pos >= 0:
                    at = base + pos
                    p = bisect_right(offs, at, pa, pb + 1) - 1
                    stop = offs[p + 1]
                    if at + size <= stop:
                        found.add(p)
                        pos = low.find(needle, stop - base, end)
                    else:  # the match runs into the next message
                        pos = low.find(needle, pos + 1, end)
        if self.uni:
            found.difference_update(self.uni)
            found.update(p for p, m in self.uni.items() if pa <= p < pb and text in m)
        return found
