"""Store stage, message text: one shard's messages, sealing and substring search.

Pure: no asyncio, no logging, no clock. Text is only ever appended; message
`p` (arrival number) is `offs[p]:offs[p + 1]` of the heap. Every method that
changes what the heap holds returns the change in accounted bytes, so the
shard's memory account stays the one number the store bounds.
"""

from __future__ import annotations

import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from itertools import accumulate

# Sealing folds a shard's message text into its lower-cased copy plus a
# case mask (0x20 where an ASCII letter was upper case), zlib-compressed in
# chunks of this many bytes: ~10 bytes per 250-byte message instead of 250.
SEAL_CHUNK = 16 * 1024
# Message text lives in frozen chunks of at least this many bytes plus an
# open tail: one growing buffer would be copied at every reallocation.
FREEZE_BYTES = 64 * 1024
_CASE_MASK = bytes(0x20 if 65 <= b <= 90 else 0 for b in range(256))

# What `encode` hands to `append`: the UTF-8 text, its ASCII-lower-cased
# copy, each message's byte length, and whether any message is not ASCII.
Encoded = tuple[bytes, bytes, Iterable[int], bool]


def _uni_bytes(low: str) -> int:
    # A str.lower() kept for a non-ASCII message: the object plus its dict slot.
    return 80 + 4 * len(low)


class TextHeap:
    """The messages of one shard, UTF-8, back to back.

    Frozen chunks hold whole messages from `chunk_starts[j]` on: the text
    (None once sealed) and its ASCII-lower-cased copy (same offsets, for
    `q`). Then the open tail from `tail_start` on.
    """

    __slots__ = (
        "chunk_starts",
        "freeze_bytes",
        "low_tail",
        "lows",
        "mask_cache",
        "mask_starts",
        "masks",
        "n_sealed",
        "offs",
        "plain_p",
        "tail",
        "tail_start",
        "texts",
        "uni",
    )

    def __init__(self, freeze_bytes: int = FREEZE_BYTES) -> None:
        self.freeze_bytes = freeze_bytes
        self.texts: list[bytes | None] = []
        self.lows: list[bytes] = []
        self.chunk_starts = array("q")
        self.tail = bytearray()
        self.low_tail = bytearray()
        self.tail_start = 0
        self.n_sealed = 0  # chunks [0, n_sealed) are sealed
        self.plain_p = 0  # the first physical record whose text is not sealed
        self.mask_starts = array("q")  # masks cover the sealed chunks in pieces
        self.masks: list[bytes] = []
        self.mask_cache: dict[int, bytes] = {}
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

    def seal(self, budget: int, piece: int = SEAL_CHUNK) -> tuple[int, int]:
        """Replace message text by case masks, chunk by chunk, until `budget`
        bytes; returns (bytes sealed, change in accounted bytes).

        The lower-cased copy stays (for `q`), so the text is kept once plus
        the compressed mask (in pieces of `piece` bytes, so that reading a
        record decompresses a little). Text appended later stays plain
        until the next seal.
        """
        self.freeze()
        done = 0
        delta = 0
        while self.n_sealed < len(self.texts) and done < budget:
            j = self.n_sealed
            data = self.texts[j]
            assert data is not None
            base = self.chunk_starts[j]
            for k in range(0, len(data), piece):
                mask = zlib.compress(data[k : k + piece].translate(_CASE_MASK), 1)
                self.mask_starts.append(base + k)
                self.masks.append(mask)
                delta += len(mask) + 50
            self.texts[j] = None
            delta -= len(data)
            done += len(data)
            self.n_sealed = j + 1
            self.plain_p = bisect_left(self.offs, base + len(data), self.plain_p)
        return done, delta

    # -- accounting --------------------------------------------------------

    def unsealed_bytes(self) -> int:
        """Bytes of text that a seal would still fold."""
        return len(self.tail) + sum(len(t) for t in self.texts[self.n_sealed :] if t is not None)

    def bytes_of(self, p: int) -> int:
        """The accounted bytes of message `p` (what forgetting it frees)."""
        offs = self.offs
        size = (offs[p + 1] - offs[p]) * (2 if p >= self.plain_p else 1)
        u = self.uni.get(p)
        return size if u is None else size + _uni_bytes(u)

    def bytes_of_range(self, a: int, b: int) -> int:
        """The accounted bytes of messages [a, b)."""
        offs = self.offs
        size = offs[b] - offs[a]
        if b > self.plain_p:
            size += offs[b] - offs[max(a, self.plain_p)]
        if self.uni:
            size += sum(_uni_bytes(u) for p, u in self.uni.items() if a <= p < b)
        return size

    def bytes_of_many(self, phys: Iterable[int]) -> int:
        """The accounted bytes of the messages `phys` (a list, read twice)."""
        offs = self.offs
        phys = list(phys)
        size = sum(map(offs.__getitem__, map((1).__add__, phys))) - sum(map(offs.__getitem__, phys))
        plain_p = self.plain_p
        size += sum(offs[p + 1] - offs[p] for p in phys if p >= plain_p)
        if self.uni:
            uni = self.uni
            size += sum(_uni_bytes(uni[p]) for p in phys if p in uni)
        return size

    # -- reading -----------------------------------------------------------

    def message(self, p: int) -> str:
        """Message `p` from the plain text, or from the lower-cased copy and the case mask."""
        o0, o1 = self.offs[p], self.offs[p + 1]
        if o0 >= self.tail_start:
            t = self.tail_start
            return self.tail[o0 - t : o1 - t].decode("utf-8", "surrogatepass")
        j = bisect_right(self.chunk_starts, o0) - 1
        base = self.chunk_starts[j]
        text = self.texts[j]
        if text is not None:
            return text[o0 - base : o1 - base].decode("utf-8", "surrogatepass")
        low = self.lows[j][o0 - base : o1 - base]
        mask = self._mask(o0, o1)
        data = (int.from_bytes(low, "little") ^ int.from_bytes(mask, "little")).to_bytes(
            o1 - o0, "little"
        )
        return data.decode("utf-8", "surrogatepass")

    def _mask(self, o0: int, o1: int) -> bytes:
        starts = self.mask_starts
        j = bisect_right(starts, o0) - 1
        parts = []
        pos = o0
        while pos < o1:
            data = self.mask_cache.get(j)
            if data is None:
                if len(self.mask_cache) >= 4:
                    self.mask_cache.clear()
                data = self.mask_cache[j] = zlib.decompress(self.masks[j])
            start = starts[j]
            stop = min(o1, start + len(data))
            parts.append(data[pos - start : stop - start])
            pos = stop
            j += 1
        return b"".join(parts)

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
