"""Store stage: one sealed block of records, encoded column by column and compressed.

Pure: no asyncio, no clock, no logging. A block is built once from columns
sorted by (timestamp, seq) and never changes. It keeps small summaries in the
clear (time range, per-column value sets and counts, a word filter) so most
queries decide from them alone, and everything else zstd-compressed in four
frames that decode separately and lazily: keys, attributes, text, extras.
"""

from __future__ import annotations

import marshal
import re
import threading
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, count, islice, repeat
from operator import attrgetter, itemgetter, le, sub
from typing import Any

import zstandard

from collector.record import Record

# zstd level 1: on ~250-byte log lines it compresses to within 3% of level 3
# at twice the speed, and decompresses at ~1.7 GB/s per core; lz4 is 2.5x
# faster to decompress but keeps 1.8x the bytes (bench/block.py, docs/store.md).
ZSTD_LEVEL = 1
# Records per block the store seals by default: ~1 MiB of text, decoded in
# well under a millisecond, large enough that zstd sees the repetition.
BLOCK_RECORDS = 4096
_MARSHAL_VERSION = 4  # stable since Python 3.4; newer Pythons read it
FORMAT_VERSION = 1
_NO_FACILITY = 255
_FACILITY_OUT: tuple[int | None, ...] = (*range(255), None)
_LOW_COLUMNS = ("host", "service", "procid", "msgid", "format")
_serials = count(1)

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


def _message_words(messages: Sequence[str]) -> set[bytes]:
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


@dataclass(slots=True)
class Columns:
    """A batch of records as columns, sorted by (timestamp, seq): what a block is built from."""

    ts: Sequence[int]
    seqs: Sequence[int]
    received_at: Sequence[int]
    host: Sequence[str | None]
    service: Sequence[str | None]
    procid: Sequence[str | None]
    msgid: Sequence[str | None]
    facility: Sequence[int | None]
    level: Sequence[int]
    format: Sequence[str]
    message: Sequence[str]
    structured_data: Sequence[Any]
    fields: Sequence[Any]

    def __len__(self) -> int:
        return len(self.ts)


def columns_from_records(items: Sequence[tuple[int, Record]]) -> Columns:
    """Columns of (seq, record) pairs, which must be sorted by (timestamp, seq)."""
    recs = list(map(itemgetter(1), items))

    def col(name: str) -> list[Any]:
        return list(map(attrgetter(name), recs))

    return Columns(
        ts=col("timestamp"),
        seqs=list(map(itemgetter(0), items)),
        received_at=col("received_at"),
        host=col("host"),
        service=col("service"),
        procid=col("procid"),
        msgid=col("msgid"),
        facility=col("facility"),
        level=col("level"),
        format=col("format"),
        message=col("message"),
        structured_data=col("structured_data"),
        fields=col("fields"),
    )


def _compress(data: bytes) -> bytes:
    # A compressor per call: they are not safe to share between threads, and
    # making one costs microseconds against milliseconds of work. The copy is
    # needed: zstandard's result keeps the allocation of its worst case (as
    # big as the input), so without it a "compressed" frame holds as much
    # memory as the text it compressed.
    z = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    return memoryview(z).tobytes()


def _decompress(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data)


def _deltas(xs: Sequence[int]) -> array[int]:
    """xs[0], then each value minus the one before: small numbers that compress to ~1 byte."""
    out = array("q", xs[:1])
    out.extend(map(sub, islice(xs, 1, None), xs))
    return out


def _undelta(data: bytes) -> array[int]:
    d = array("q")
    d.frombytes(data)
    return array("q", accumulate(d))


def _dictionary(values: Sequence[str | None]) -> tuple[tuple[str | None, ...], bytes, int]:
    """(distinct values in first-seen order, codes as bytes, bytes per code)."""
    index: dict[str | None, int] = dict.fromkeys(values, 0)
    distinct = tuple(index)
    for i, v in enumerate(distinct):
        index[v] = i
    codes = list(map(index.__getitem__, values))
    if len(distinct) <= 256:
        return distinct, bytes(codes), 1
    return distinct, array("I", codes).tobytes(), 4


def _codes(data: bytes, width: int) -> Sequence[int]:
    if width == 1:
        return data
    a = array("I")
    a.frombytes(data)
    return a


@dataclass(slots=True)
class Keys:
    """A block's decoded (timestamp, seq) keys."""

    ts: array[int]
    seqs: array[int]

    @property
    def nbytes(self) -> int:
        return 200 + 16 * len(self.ts)


@dataclass(slots=True)
class Attrs:
    """A block's decoded attribute columns: codes into the block's dictionaries."""

    received_at: array[int]
    codes: tuple[Sequence[int], ...]  # host, service, procid, msgid, format
    level: bytes
    facility: bytes

    @property
    def nbytes(self) -> int:
        return 400 + 8 * len(self.received_at) + sum(len(c) for c in self.codes) * 2


@dataclass(slots=True)
class Text:
    """A block's decoded messages: UTF-8 back to back, `offs[i]` where message i starts."""

    offs: array[int]
    data: bytes

    @property
    def nbytes(self) -> int:
        return 200 + len(self.data) + 8 * len(self.offs)

    def message(self, i: int) -> str:
        return self.data[self.offs[i] : self.offs[i + 1]].decode("utf-8", "surrogatepass")


class Block:
    """An immutable, sealed run of records in (timestamp, seq) order.

    In the clear: `n`, the first and last keys, per low-cardinality column the
    distinct values (its dictionary), live counts per value for host,
    service, level and facility, the word filter, and which messages are not
    ASCII. Compressed: the rest, in frames decoded on demand (see BlockCache).
    """

    __slots__ = (
        "attrs_z",
        "dicts",
        "extras_z",
        "facility_counts",
        "first",
        "host_counts",
        "keys_z",
        "last",
        "level_counts",
        "n",
        "non_ascii",
        "serial",
        "service_counts",
        "text_bytes",
        "text_z",
        "widths",
        "word_filter",
    )

    def __init__(
        self,
        *,
        n: int,
        first: tuple[int, int],
        last: tuple[int, int],
        dicts: tuple[tuple[str | None, ...], ...],
        widths: tuple[int, ...],
        host_counts: tuple[int, ...],
        service_counts: tuple[int, ...],
        level_counts: dict[int, int],
        facility_counts: dict[int, int],
        word_filter: WordFilter,
        non_ascii: array[int],
        text_bytes: int,
        keys_z: bytes,
        attrs_z: bytes,
        text_z: bytes,
        extras_z: bytes | None,
    ) -> None:
        self.serial = next(_serials)
        self.n = n
        self.first = first
        self.last = last
        self.dicts = dicts
        self.widths = widths
        self.host_counts = host_counts
        self.service_counts = service_counts
        self.level_counts = level_counts
        self.facility_counts = facility_counts
        self.word_filter = word_filter
        self.non_ascii = non_ascii
        self.text_bytes = text_bytes
        self.keys_z = keys_z
        self.attrs_z = attrs_z
        self.text_z = text_z
        self.extras_z = extras_z

    def __len__(self) -> int:
        return self.n

    @property
    def min_ts(self) -> int:
        return self.first[0]

    @property
    def max_ts(self) -> int:
        return self.last[0]

    @property
    def nbytes(self) -> int:
        """What the block holds in memory (compressed frames, summaries, filter)."""
        size = 600 + len(self.keys_z) + len(self.attrs_z) + len(self.text_z)
        size += 0 if self.extras_z is None else len(self.extras_z)
        size += self.word_filter.nbytes + 4 * len(self.non_ascii)
        for values in self.dicts:
            size += 64 + sum(60 + len(v) for v in values if v is not None)
        size += 36 * (len(self.host_counts) + len(self.service_counts))
        size += 100 * (len(self.level_counts) + len(self.facility_counts))
        return size

    # -- decoding (prefer BlockCache, which keeps recent results) ----------

    def decode_keys(self) -> Keys:
        data = _decompress(self.keys_z)
        half = 8 * self.n
        return Keys(_undelta(data[:half]), _undelta(data[half:]))

    def decode_attrs(self) -> Attrs:
        parts: tuple[bytes, ...] = marshal.loads(_decompress(self.attrs_z))
        received, level, facility, *codes = parts
        return Attrs(
            _undelta(received),
            tuple(_codes(c, w) for c, w in zip(codes, self.widths, strict=True)),
            level,
            facility,
        )

    def decode_text(self) -> Text:
        data = _decompress(self.text_z)
        lens = array("I")
        lens.frombytes(data[: 4 * self.n])
        return Text(array("q", accumulate(lens, initial=0)), data[4 * self.n :])

    def decode_extras(self) -> dict[int, tuple[Any, Any]]:
        if self.extras_z is None:
            return {}
        idx_bytes, values = marshal.loads(_decompress(self.extras_z))
        idx = array("I")
        idx.frombytes(idx_bytes)
        return dict(zip(idx, values, strict=True))

    # -- summaries ---------------------------------------------------------

    def may_contain_words(self, ws: Iterable[str]) -> bool:
        """False when some of the words (lower-cased, as `words()` gives them) is in no message.

        For a query's required words: whole words and the words of phrases.
        Hash them once with `word_keys` and call `may_contain_keys` when
        probing many blocks.
        """
        return self.word_filter.may_contain(word_keys(ws))

    def may_contain_keys(self, keys: Iterable[int]) -> bool:
        """`may_contain_words` for words already hashed by `word_keys`."""
        return self.word_filter.may_contain(keys)

    def codes(self, column: str, values: Iterable[str | None]) -> set[int]:
        """Codes of those `values` that the block's `column` holds (host, service, procid, msgid, format)."""
        index = {v: i for i, v in enumerate(self.dicts[_LOW_COLUMNS.index(column)])}
        return {index[v] for v in values if v in index}

    def counts(self, column: str) -> dict[str | int | None, int]:
        """Records per value: host and service by value, level and facility by code (None: no facility)."""
        if column == "level":
            return {c: k for c, k in self.level_counts.items()}
        if column == "facility":
            return {(None if c == _NO_FACILITY else c): k for c, k in self.facility_counts.items()}
        tally = self.host_counts if column == "host" else self.service_counts
        values = self.dicts[_LOW_COLUMNS.index(column)]
        return {values[i]: k for i, k in enumerate(tally) if k}

    # -- persistence -------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The block as bytes, written once: `from_bytes` reads it back."""
        return marshal.dumps(
            (
                FORMAT_VERSION,
                self.n,
                self.first,
                self.last,
                self.dicts,
                self.widths,
                self.host_counts,
                self.service_counts,
                tuple(self.level_counts.items()),
                tuple(self.facility_counts.items()),
                self.word_filter.state(),
                self.non_ascii.tobytes(),
                self.text_bytes,
                self.keys_z,
                self.attrs_z,
                self.text_z,
                self.extras_z,
            ),
            _MARSHAL_VERSION,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Block:
        """A block from `to_bytes`; ValueError when the bytes are not one."""
        try:
            t = marshal.loads(data)
            if type(t) is not tuple or len(t) != 17 or t[0] != FORMAT_VERSION:
                raise ValueError("not a block of this format version")
            non_ascii = array("I")
            non_ascii.frombytes(t[11])
            return cls(
                n=t[1],
                first=t[2],
                last=t[3],
                dicts=t[4],
                widths=t[5],
                host_counts=t[6],
                service_counts=t[7],
                level_counts=dict(t[8]),
                facility_counts=dict(t[9]),
                word_filter=WordFilter.from_state(t[10]),
                non_ascii=non_ascii,
                text_bytes=t[12],
                keys_z=t[13],
                attrs_z=t[14],
                text_z=t[15],
                extras_z=t[16],
            )
        except (EOFError, TypeError, IndexError, ValueError) as e:
            raise ValueError(f"not a block: {e}") from e


def encode_block(cols: Columns) -> Block:
    """Seal columns (sorted by (timestamp, seq)) into a block.

    Heavy work (compression) releases the GIL, so the store runs this in a
    worker thread. ValueError for unsorted keys or a level/facility outside
    0-254.
    """
    n = len(cols.ts)
    if not n:
        raise ValueError("a block holds at least one record")
    ts, seqs = cols.ts, cols.seqs
    pairs = list(zip(ts, seqs, strict=True))
    if not all(map(le, pairs, islice(pairs, 1, None))):
        raise ValueError("columns must be sorted by (timestamp, seq)")
    levels = bytes(cols.level)
    if _NO_FACILITY in cols.facility:
        raise ValueError("facility 255 is reserved for none")
    facilities = bytes([_NO_FACILITY if f is None else f for f in cols.facility])

    dicts: list[tuple[str | None, ...]] = []
    code_bytes: list[bytes] = []
    widths: list[int] = []
    for values in (cols.host, cols.service, cols.procid, cols.msgid, cols.format):
        d, c, w = _dictionary(values)
        dicts.append(d)
        code_bytes.append(c)
        widths.append(w)

    def tally(data: bytes, width: int, size: int) -> tuple[int, ...]:
        counts = [0] * size
        if width == 1:
            for code in set(data):
                counts[code] = data.count(code)
        else:
            for code, k in Counter(_codes(data, width)).items():
                counts[code] = k
        return tuple(counts)

    msgs = cols.message
    encoded = [m.encode("utf-8", "surrogatepass") for m in msgs]
    text = b"".join(encoded)
    lens = array("I", map(len, encoded))
    non_ascii = array("I", compress(range(n), map((1).__sub__, map(str.isascii, msgs))))
    word_filter = WordFilter.build(map(zlib.crc32, _message_words(msgs)))

    extras_z = None
    sds, fds = cols.structured_data, cols.fields
    if sds.count(None) != n or fds.count(None) != n:
        idx = [i for i in range(n) if sds[i] is not None or fds[i] is not None]
        extras_z = _compress(
            marshal.dumps(
                (array("I", idx).tobytes(), [(sds[i], fds[i]) for i in idx]), _MARSHAL_VERSION
            )
        )
    return Block(
        n=n,
        first=(ts[0], seqs[0]),
        last=(ts[-1], seqs[-1]),
        dicts=tuple(dicts),
        widths=tuple(widths),
        host_counts=tally(code_bytes[0], widths[0], len(dicts[0])),
        service_counts=tally(code_bytes[1], widths[1], len(dicts[1])),
        level_counts=dict(Counter(levels)),
        facility_counts=dict(Counter(facilities)),
        word_filter=word_filter,
        non_ascii=non_ascii,
        text_bytes=len(text),
        keys_z=_compress(_deltas(ts).tobytes() + _deltas(seqs).tobytes()),
        attrs_z=_compress(
            marshal.dumps(
                (_deltas(cols.received_at).tobytes(), levels, facilities, *code_bytes),
                _MARSHAL_VERSION,
            )
        ),
        text_z=_compress(lens.tobytes() + text),
        extras_z=extras_z,
    )


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


def records(
    block: Block, idx: Sequence[int], cache: BlockCache, ts: Sequence[int] | None = None
) -> list[Record]:
    """The records at indices `idx` of the block, column by column (C-speed maps).

    `ts`, their timestamps when the caller has them (a sealed shard keeps
    its keys in the clear), saves decoding the keys frame.
    """
    attrs = cache.attrs(block)
    text = cache.text(block)
    hosts, services, procids, msgids, formats = block.dicts
    host_c, service_c, procid_c, msgid_c, format_c = attrs.codes

    def column(col: Any) -> Iterator[Any]:
        return map(col.__getitem__, idx)

    sds: Iterable[Any]
    fields: Iterable[Any]
    if block.extras_z is not None:
        extras = cache.extras(block)
        pairs = [extras.get(i, (None, None)) for i in idx]
        sds, fields = map(itemgetter(0), pairs), map(itemgetter(1), pairs)
    else:
        sds = fields = repeat(None)
    return list(
        map(
            Record,
            column(cache.keys(block).ts) if ts is None else ts,
            column(attrs.received_at),
            map(hosts.__getitem__, column(host_c)),
            map(services.__getitem__, column(service_c)),
            map(procids.__getitem__, column(procid_c)),
            map(msgids.__getitem__, column(msgid_c)),
            map(_FACILITY_OUT.__getitem__, column(attrs.facility)),
            column(attrs.level),
            map(text.message, idx),
            sds,
            fields,
            map(formats.__getitem__, column(format_c)),
        )
    )


# -- matching ----------------------------------------------------------------


def find_substring(
    block: Block, text: Text, needle: str, a: int = 0, b: int | None = None
) -> list[int]:
    """Indices in [a, b) whose message, lower-cased, contains `needle` (already lower-cased).

    The same answer as `needle in message.lower()` for each message: ASCII
    messages are searched in the block's text lower-cased as bytes (one C
    `find` pass; only hits cost Python work), the few non-ASCII ones as str.
    """
    b = block.n if b is None else b
    if a >= b:
        return []
    if not needle:
        return list(range(a, b))
    offs = text.offs
    found: list[int] = []
    non_ascii = block.non_ascii
    if needle.isascii():
        pat = needle.encode("ascii")
        size = len(pat)
        lo, hi = offs[a], offs[b]
        low = text.data[lo:hi].lower() if (lo or hi != len(text.data)) else text.data.lower()
        pos = low.find(pat)
        end = hi - lo
        while pos >= 0:
            at = lo + pos
            i = bisect_right(offs, at, a, b + 1) - 1
            stop = offs[i + 1]
            if at + size <= stop:
                found.append(i)
                if stop - lo >= end:
                    break
                pos = low.find(pat, stop - lo)
            else:  # the match runs into the next message
                pos = low.find(pat, pos + 1)
        if non_ascii:
            drop = set(non_ascii)
            found = [i for i in found if i not in drop]
    if non_ascii:
        lo_i = bisect_left(non_ascii, a)
        hi_i = bisect_left(non_ascii, b)
        extra = [i for i in non_ascii[lo_i:hi_i] if needle in text.message(i).lower()]
        if extra:
            found = sorted(set(found).union(extra))
    return found


class BlockRun:
    """One sealed shard's records as consecutive blocks: record `p` (its
    physical index, in (timestamp, seq) order) is record `p - starts[j]` of
    block `j`. Whole blocks before `dropped_to` are gone (trimmed by TTL or
    eviction); their bytes are freed at once.
    """

    __slots__ = ("blocks", "cache", "first_block", "starts")

    def __init__(self, blocks: list[Block], cache: BlockCache) -> None:
        self.blocks = blocks
        self.cache = cache
        self.starts = array("q", accumulate((b.n for b in blocks), initial=0))
        self.first_block = 0  # blocks before it are dropped

    @property
    def nbytes(self) -> int:
        return 120 + 8 * len(self.starts) + sum(b.nbytes for b in self.live_blocks())

    def live_blocks(self) -> list[Block]:
        return self.blocks[self.first_block :]

    def block_of(self, p: int) -> int:
        return bisect_right(self.starts, p) - 1

    def drop_before(self, p: int) -> int:
        """Drop every block whose records all lie before `p`; returns the bytes freed."""
        j = self.block_of(p) if p < self.starts[-1] else len(self.blocks)
        freed = 0
        while self.first_block < j:
            block = self.blocks[self.first_block]
            freed += block.nbytes
            self.cache.forget(block)
            self.blocks[self.first_block] = _DROPPED
            self.first_block += 1
        return freed

    def forget(self) -> None:
        """Drop the decoded frames of every block from the cache (the shard goes)."""
        for block in self.live_blocks():
            self.cache.forget(block)

    def message(self, p: int) -> str:
        j = self.block_of(p)
        return self.cache.text(self.blocks[j]).message(p - self.starts[j])

    def records(self, phys: Sequence[int], ts: Sequence[int] | None = None) -> list[Record]:
        """The records at physical indices `phys` (any order), block by block;
        `ts`, their timestamps if known (saves decoding keys)."""
        out: list[Record] = []
        k = 0
        n = len(phys)
        starts = self.starts
        while k < n:
            j = self.block_of(phys[k])
            lo, hi = starts[j], starts[j + 1]
            stop = k + 1
            while stop < n and lo <= phys[stop] < hi:
                stop += 1
            part = None if ts is None else ts[k:stop]
            out.extend(records(self.blocks[j], [p - lo for p in phys[k:stop]], self.cache, part))
            k = stop
        return out

    def search(
        self,
        needle: str,
        pa: int,
        pb: int,
        mapper: Callable[..., Iterable[list[int]]] = map,
    ) -> list[int]:
        """Physical indices in [pa, pb) whose message lower-cased contains `needle` (lower-cased).

        `mapper` runs the per-block scans: pass a thread pool's `map` to use
        both cores (decompression releases the GIL).
        """
        if pa >= pb:
            return []
        j0, j1 = self.block_of(pa), self.block_of(pb - 1)
        starts, blocks, cache = self.starts, self.blocks, self.cache

        def scan(j: int) -> list[int]:
            base = starts[j]
            block = blocks[j]
            a, b = max(pa - base, 0), min(pb - base, block.n)
            return [base + i for i in find_substring(block, cache.text(block), needle, a, b)]

        out: list[int] = []
        for hits in mapper(scan, range(j0, j1 + 1)):
            out.extend(hits)
        return out

    def may_contain_keys(self, keys: Sequence[int], pa: int, pb: int) -> bool:
        """Whether some block holding records of [pa, pb) may hold every hashed word."""
        if pa >= pb:
            return False
        j0, j1 = self.block_of(pa), self.block_of(pb - 1)
        return any(self.blocks[j].may_contain_keys(keys) for j in range(j0, j1 + 1))


# Stands in for a dropped block in BlockRun.blocks (indices stay valid).
_DROPPED = Block(
    n=0,
    first=(0, 0),
    last=(0, 0),
    dicts=((), (), (), (), ()),
    widths=(1, 1, 1, 1, 1),
    host_counts=(),
    service_counts=(),
    level_counts={},
    facility_counts={},
    word_filter=WordFilter(16, array("I", [0, 0]), array("H")),
    non_ascii=array("I"),
    text_bytes=0,
    keys_z=b"",
    attrs_z=b"",
    text_z=b"",
    extras_z=None,
)
