"""Store stage: one sealed block of records, encoded column by column and compressed.

Pure: no asyncio, no clock, no logging. A block is built once from columns
sorted by (timestamp, seq) and never changes. It keeps small summaries in the
clear (time range, per-column value sets and counts, a word filter) so most
queries decide from them alone, and everything else zstd-compressed in
frames that decode separately and lazily: the keys, then per group of 512
records the attributes and text, and the structured data and fields.
"""

from __future__ import annotations

import marshal
import threading
import zlib
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, count, islice
from operator import attrgetter, itemgetter, le, sub
from typing import Any

import zstandard

from collector.record import Record
from collector.wordfilter import WordFilter, message_words, word_keys

# zstd level 1: on ~250-byte log lines it compresses to within 3% of level 3
# at twice the speed, and decompresses at ~1.7 GB/s per core; lz4 is 2.5x
# faster to decompress but keeps 1.8x the bytes (bench/block.py, docs/store.md).
ZSTD_LEVEL = 1
# Records per block the store seals by default: ~1 MiB of text, decoded in
# well under a millisecond, large enough that zstd sees the repetition.
BLOCK_RECORDS = 4096
# Records per group: a block's attributes and text are compressed in frames
# of this many consecutive records, so that a page of 100 decodes ~128 KiB
# rather than the whole block (512: +1.5 bytes a record against one frame
# per block, bench/block.py).
GROUP_RECORDS = 512
_MARSHAL_VERSION = 4  # stable since Python 3.4; newer Pythons read it
# The layout of Block.to_bytes(): 1 had one text frame per block; 2 has
# frames per group of records (attributes and text together).
FORMAT_VERSION = 2
_NO_FACILITY = 255
FACILITY_OUT: tuple[int | None, ...] = (*range(255), None)
_LOW_COLUMNS = ("host", "service", "procid", "msgid", "format")
_serials = count(1)


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


_local = threading.local()


def _compress(data: bytes) -> bytes:
    # A compressor per thread: they are not safe to share between threads.
    # zstandard's result keeps the allocation of its worst case (as big as
    # the input): the caller copies it (encode_block joins a block's frames).
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    out: bytes = c.compress(data)
    return out


def _decompress(data: bytes | memoryview) -> bytes:
    # One decompressor per thread (they are not safe to share): making one
    # per call costs as much as decoding a small frame.
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    out: bytes = d.decompress(data)
    return out


def _deltas(xs: Sequence[int]) -> array[int]:
    """xs[0], then each value minus the one before: small numbers that compress to ~1 byte."""
    out = array("q", xs[:1])
    out.extend(map(sub, islice(xs, 1, None), xs))
    return out


def _undelta(data: bytes | memoryview) -> array[int]:
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


class Group:
    """One decoded group of a block: records [start, start + m).

    Attribute columns (codes into the block's dictionaries; `lateness` is
    received_at - timestamp) and the messages, UTF-8, in `data` between
    `text_lo` and `text_hi`: message k from `offs[k]` to `offs[k + 1] - gap`
    (k counted from the group's first record; `gap` is 1 when each message
    is followed by a NUL separator, 0 when lengths were stored because a
    message holds a NUL). `data` is the whole decoded frame: messages are
    not copied out of it, offsets are worked out on first use (a scan that
    finds nothing never needs them), and each record's structured data and
    fields stay marshalled (`extras_idx` lists the records that have any,
    `extras_offs` where each one's bytes start) until a record is asked for.
    """

    __slots__ = (
        "_offs",
        "codes",
        "data",
        "extras_idx",
        "extras_offs",
        "facility",
        "gap",
        "lateness",
        "lens_at",
        "level",
        "m",
        "start",
        "text_hi",
        "text_lo",
    )

    def __init__(
        self,
        start: int,
        m: int,
        lateness: array[int],
        codes: tuple[Sequence[int], ...],
        level: bytes,
        facility: bytes,
        data: bytes,
        text_lo: int,
        text_hi: int,
        lens_at: int,
        extras_idx: array[int],
        extras_offs: array[int],
    ) -> None:
        self.start = start
        self.m = m
        self.lateness = lateness
        self.codes = codes  # host, service, procid, msgid, format
        self.level = level
        self.facility = facility
        self.data = data
        self.text_lo = text_lo
        self.text_hi = text_hi
        self.lens_at = lens_at  # where stored lengths start; -1: NUL-separated
        self.gap = 1 if lens_at < 0 else 0
        self.extras_idx = extras_idx
        self.extras_offs = extras_offs
        self._offs: array[int] | None = None

    @property
    def nbytes(self) -> int:
        return 800 + len(self.data) + 24 * self.m + 16 * len(self.extras_idx)

    @property
    def offs(self) -> array[int]:
        offs = self._offs
        if offs is None:
            if self.lens_at < 0:
                pieces = self.data[self.text_lo : self.text_hi].split(b"\0")
                pieces.pop()  # after the last separator
                lens: Iterable[int] = map((1).__add__, map(len, pieces))
            else:
                stored = array("I")
                stored.frombytes(self.data[self.lens_at : self.lens_at + 4 * self.m])
                lens = stored
            offs = self._offs = array("q", accumulate(lens, initial=self.text_lo))
        return offs

    def span(self, a: int, b: int) -> tuple[int, int]:
        """Where the text of messages [a, b) lies in `data` (gaps included)."""
        if a == 0 and b == self.m:
            return self.text_lo, self.text_hi
        offs = self.offs
        return offs[a], offs[b]

    def message(self, k: int) -> str:
        offs = self.offs
        return self.data[offs[k] : offs[k + 1] - self.gap].decode("utf-8", "surrogatepass")

    def extras(self, k: int) -> tuple[Any, Any]:
        """(structured_data, fields) of the group's record k."""
        idx = self.extras_idx
        x = bisect_left(idx, k)
        if x == len(idx) or idx[x] != k:
            return _NO_EXTRAS
        offs = self.extras_offs
        pair: tuple[Any, Any] = marshal.loads(self.data[offs[x] : offs[x + 1]])
        return pair


_NO_EXTRAS = (None, None)


class Block:
    """An immutable, sealed run of records in (timestamp, seq) order.

    In the clear: `n`, the first and last keys, per low-cardinality column the
    distinct values (its dictionary), live counts per value for host,
    service, level and facility, the word filter, and which messages are not
    ASCII. Compressed: the keys in one frame, then per group of
    `group_records` consecutive records one frame of attributes and text
    and, for groups where some record has any, one of structured data and
    fields; each decoded on demand (see BlockCache), so a page decodes only
    the groups it shows.
    """

    __slots__ = (
        "dicts",
        "extras_in",
        "facility_counts",
        "first",
        "frame_ends",
        "frames",
        "group_records",
        "host_counts",
        "last",
        "level_counts",
        "n",
        "non_ascii",
        "serial",
        "service_counts",
        "text_bytes",
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
        frames: bytes,
        frame_ends: array[int],
        group_records: int,
        extras_in: bytes,
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
        # The compressed frames back to back in one object (one allocation
        # per block, not one per frame: small long-lived buffers scattered
        # among freed ones would keep ~20% more resident): the keys frame,
        # then one per group; frame i ends at frame_ends[i].
        self.frames = frames
        self.frame_ends = frame_ends
        self.group_records = group_records
        self.extras_in = extras_in

    def __len__(self) -> int:
        return self.n

    @property
    def min_ts(self) -> int:
        return self.first[0]

    @property
    def max_ts(self) -> int:
        return self.last[0]

    @property
    def has_extras(self) -> bool:
        return any(self.extras_in)

    @property
    def nbytes(self) -> int:
        """What the block holds in memory (compressed frames, summaries, filter)."""
        size = 700 + len(self.frames) + 4 * len(self.frame_ends)
        size += 33 + len(self.extras_in)
        size += self.word_filter.nbytes + 4 * len(self.non_ascii)
        for values in self.dicts:
            size += 64 + sum(60 + len(v) for v in values if v is not None)
        size += 36 * (len(self.host_counts) + len(self.service_counts))
        size += 100 * (len(self.level_counts) + len(self.facility_counts))
        return size

    # -- decoding (prefer BlockCache, which keeps recent results) ----------

    def group_of(self, i: int) -> int:
        """The group holding record `i`."""
        return i // self.group_records

    @property
    def ngroups(self) -> int:
        return len(self.frame_ends) - 1

    def frame(self, i: int) -> memoryview:
        """Compressed frame `i`: 0 the keys, 1 + j group j."""
        ends = self.frame_ends
        return memoryview(self.frames)[ends[i - 1] if i else 0 : ends[i]]

    def group_range(self, j: int) -> tuple[int, int]:
        """Records [a, b) of group `j`."""
        a = j * self.group_records
        return a, min(self.n, a + self.group_records)

    def decode_keys(self) -> Keys:
        data = _decompress(self.frame(0))
        half = 8 * self.n
        return Keys(_undelta(data[:half]), _undelta(data[half:]))

    def decode_group(self, j: int) -> Group:
        a, b = self.group_range(j)
        m = b - a
        data = _decompress(self.frame(1 + j))
        view = memoryview(data)
        separated = data[0] == 1
        k = self.extras_in[j]
        text_lo = 1
        if k == 255:
            k = int.from_bytes(view[1:5], "little")
            text_lo = 5
        # The columns after the text (zstd-1 keeps ~2 bytes a record less
        # than with them first): their sizes are known, so read from the end.
        at = len(data) - 6 * k - m * (10 + sum(self.widths)) - (0 if separated else 4 * m)
        extras_idx, extras_lens = array("H"), array("I")
        if k:
            extras_idx.frombytes(view[at : at + 2 * k])
            extras_lens.frombytes(view[at + 2 * k : at + 6 * k])
        blobs_at = at - sum(extras_lens)
        at += 6 * k
        lateness = array("q")
        lateness.frombytes(view[at : at + 8 * m])
        at += 8 * m
        level = bytes(view[at : at + m])
        facility = bytes(view[at + m : at + 2 * m])
        at += 2 * m
        codes: list[Sequence[int]] = []
        for w in self.widths:
            codes.append(_codes(bytes(view[at : at + w * m]), w))
            at += w * m
        extras_offs = array("q", accumulate(extras_lens, initial=blobs_at))
        return Group(
            a,
            m,
            lateness,
            tuple(codes),
            level,
            facility,
            data,
            text_lo,
            blobs_at,
            -1 if separated else at,
            extras_idx,
            extras_offs,
        )

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
        """The block as bytes, written once: `from_bytes` reads it back.

        The first item is the layout's version (FORMAT_VERSION): a reader
        refuses bytes of another layout rather than misreading them.
        """
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
                self.frames,
                self.frame_ends.tobytes(),
                self.group_records,
                self.extras_in,
            ),
            _MARSHAL_VERSION,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Block:
        """A block from `to_bytes`; ValueError when the bytes are not one (of this layout)."""
        try:
            t = marshal.loads(data)
            if type(t) is not tuple or len(t) != 17 or t[0] != FORMAT_VERSION:
                raise ValueError("not a block of this format version")
            non_ascii = array("I")
            non_ascii.frombytes(t[11])
            n, frames, size, extras = t[1], t[13], t[15], t[16]
            ends = array("I")
            ends.frombytes(t[14])
            if (
                type(size) is not int
                or not 0 < size <= 65536
                or type(frames) is not bytes
                or type(extras) is not bytes
                or len(ends) != 1 + -(-n // size)
                or len(extras) != len(ends) - 1
                or ends[-1] != len(frames)
                or not all(map(le, ends, islice(ends, 1, None)))
            ):
                raise ValueError("groups do not match the record count")
            return cls(
                n=n,
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
                frames=frames,
                frame_ends=ends,
                group_records=size,
                extras_in=extras,
            )
        except (EOFError, TypeError, IndexError, ValueError) as e:
            raise ValueError(f"not a block: {e}") from e


def encode_block(cols: Columns, group_records: int = GROUP_RECORDS) -> Block:
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
    non_ascii = array("I", compress(range(n), map((1).__sub__, map(str.isascii, msgs))))
    word_filter = WordFilter.build(map(zlib.crc32, message_words(msgs)))
    recv = cols.received_at
    sds, fds = cols.structured_data, cols.fields
    any_extras = sds.count(None) != n or fds.count(None) != n
    size = group_records
    if not 0 < size <= 65536:
        raise ValueError("group_records must be 1-65536")
    ts_deltas = _deltas(ts).tobytes() + _deltas(seqs).tobytes()
    frames: list[bytes] = [_compress(ts_deltas)]
    extras_in = bytearray()
    text_bytes = 0
    for a in range(0, n, size):
        b = min(n, a + size)
        text = b"".join(encoded[a:b])
        text_bytes += len(text)
        # Each message followed by a NUL: ~2.5 bytes a record less than
        # stored lengths (which zstd-1 compresses badly beside text); lengths
        # only for a group where some message holds a NUL.
        separated = b"\0" not in text
        if separated:
            text = b"\0".join(encoded[a:b]) + b"\0"
        idx = (
            [i for i in range(a, b) if sds[i] is not None or fds[i] is not None]
            if any_extras
            else []
        )
        blobs = [marshal.dumps((sds[i], fds[i]), _MARSHAL_VERSION) for i in idx]
        k = len(idx)
        extras_in.append(min(k, 255))
        parts = [
            b"\1" if separated else b"\0",
            k.to_bytes(4, "little") if k >= 255 else b"",
            text,
            *blobs,
            array("H", [i - a for i in idx]).tobytes(),
            array("I", map(len, blobs)).tobytes(),
            array("q", map(sub, recv[a:b], ts[a:b])).tobytes(),
            levels[a:b],
            facilities[a:b],
            *(c[w * a : w * b] for c, w in zip(code_bytes, widths, strict=True)),
            b"" if separated else array("I", map(len, encoded[a:b])).tobytes(),
        ]
        frames.append(_compress(b"".join(parts)))
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
        text_bytes=text_bytes,
        frames=b"".join(frames),
        frame_ends=array("I", accumulate(map(len, frames))),
        group_records=size,
        extras_in=bytes(extras_in),
    )
