"""Store stage: the words of messages and the per-block word filter over them.

Pure: no asyncio, no clock, no logging. `words` splits text as the search
language sees words; `WordFilter` answers "may this block hold these words"
with no false negatives.
"""

from __future__ import annotations

import re
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import compress

# A word is a run of letters and digits (str.isalnum), compared lower-cased.
_WORD = re.compile(r"[^\W_]+")
# The same on ASCII bytes at C speed: letters lower-cased, every other ASCII
# byte that is not a letter or digit becomes a space; bytes >= 0x80 never
# reach it (non-ASCII messages go through _WORD).
_ASCII_WORDS = bytes(
    (b + 32 if 65 <= b <= 90 else b if (48 <= b <= 57 or 97 <= b <= 122 or b >= 128) else 32)
    for b in range(256)
)


def words(text: str) -> list[str]:
    """The words of `text` lower-cased, in order: what the word filter indexes.

    The text is lower-cased whole, then split: the words the search language
    sees at word edges (a few characters lower-case into more than a letter,
    as "İ" into "i" and a combining dot). Queries must take their required
    words from this function so that the filter answers for the same strings
    it was built from.
    """
    return _WORD.findall(text.lower())


def word_keys(ws: Iterable[str]) -> list[int]:
    """The 32-bit hashes the word filter stores, for words as `words()` gives them."""
    return [zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in ws]


# Messages tokenised per C call: one split() of a whole block would hold the
# GIL for ~10 ms, a stall for the event loop while a worker seals.
_WORDS_BATCH = 256


def message_words(messages: Sequence[str]) -> set[bytes]:
    """Distinct words (UTF-8, lower-cased) of many messages; ASCII ones at C speed."""
    flags = list(map(str.isascii, messages))
    plain = messages if all(flags) else list(compress(messages, flags))
    out: set[bytes] = set()
    for i in range(0, len(plain), _WORDS_BATCH):
        chunk = "\n".join(plain[i : i + _WORDS_BATCH]).encode("ascii")
        out.update(chunk.translate(_ASCII_WORDS).split())
    if len(plain) < len(messages):
        for m in compress(messages, map((1).__sub__, flags)):
            out.update(w.encode("utf-8", "surrogatepass") for w in words(m))
    return out


class WordFilter:
    """Which words a block's messages may hold: no false negatives, ~0.1% false positives.

    The job of VictoriaLogs' per-block Bloom filter, in a shape Python builds
    and probes at C speed: the set of `bits`-bit word hashes (the top bits of
    CRC-32), sorted, with the top `bits - 16` bits as a directory of offsets
    and the low 16 bits stored (~16 bits per distinct word, like a Bloom
    filter of 16 bits per item). `bits` is 10 more than log2(distinct words),
    so a word the block lacks passes with probability ~1/1024-1/2048.
    """

    __slots__ = ("bits", "directory", "lows")

    def __init__(self, bits: int, directory: array[int], lows: array[int]) -> None:
        self.bits = bits
        self.directory = directory
        self.lows = lows

    @classmethod
    def build(cls, keys: Iterable[int]) -> WordFilter:
        """A filter over 32-bit word hashes (`word_keys`)."""
        distinct = set(keys)
        bits = min(32, max(16, len(distinct).bit_length() + 10))
        shift = 32 - bits
        hashes = sorted(set(map(shift.__rrshift__, distinct)))
        lows = array("H", map((0xFFFF).__and__, hashes))
        directory = array(
            "I", [bisect_left(hashes, k << 16) for k in range(1 << (bits - 16))] + [len(hashes)]
        )
        return cls(bits, directory, lows)

    def may_contain(self, keys: Iterable[int]) -> bool:
        """False only when some hashed word is certainly absent."""
        shift = 32 - self.bits
        directory, lows = self.directory, self.lows
        for key in keys:
            h = key >> shift
            a, b = directory[h >> 16], directory[(h >> 16) + 1]
            low = h & 0xFFFF
            i = bisect_left(lows, low, a, b)
            if i == b or lows[i] != low:
                return False
        return True

    @property
    def nbytes(self) -> int:
        return 150 + 2 * len(self.lows) + 4 * len(self.directory)

    def state(self) -> tuple[int, bytes, bytes]:
        return self.bits, self.directory.tobytes(), self.lows.tobytes()

    @classmethod
    def from_state(cls, state: tuple[int, bytes, bytes]) -> WordFilter:
        bits, directory, lows = state
        d, lo = array("I"), array("H")
        d.frombytes(directory)
        lo.frombytes(lows)
        if not 16 <= bits <= 32 or len(d) != (1 << (bits - 16)) + 1:
            raise ValueError("word filter: bad shape")
        return cls(bits, d, lo)
