"""Store stage: records in memory, in time-sharded compact columns.

Pure: no asyncio, no clock (callers pass `now`). A shard holds a fixed span of
event time. Its columns grow in arrival order only (append, never insert); a
sorted (timestamp, seq) key index orders them, so a late arrival costs one
bisect and a memmove inside its own shard. TTL, max_records and max_memory
drop or evict oldest first and count what they drop.
"""

from __future__ import annotations

import marshal
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, compress, islice, repeat
from operator import attrgetter, itemgetter, le
from typing import Any

from collector.query import Query, QueryError
from collector.record import FACILITIES, LEVELS, Record, make_id, parse_id
from collector.times import format_timestamp

DEFAULT_SHARD_SPAN_US = 60_000_000
MAX_BUCKETS = 10_000
STATS_FIELDS = ("level", "service", "host", "facility")

# Memory accounting (bytes), calibrated against tracemalloc in bench/store.py:
# per record 3 x 8 (ts, seq, received_at) + 4 x 4 (host, service, procid,
# msgid codes) + 4 (message offset) + 4 (key index) + 3 (level, facility,
# format) plus ~10% array over-allocation; the message is counted twice (its
# text and its lower-cased search copy). A shard's empty columns, dicts and
# summaries cost a few KiB.
RECORD_BYTES = 56
SHARD_BYTES = 4096
# Sealing folds a shard's message text into its lower-cased copy plus a
# case mask (0x20 where an ASCII letter was upper case), zlib-compressed in
# chunks of this many bytes: ~10 bytes per 250-byte message instead of 250.
SEAL_CHUNK = 16 * 1024
SEAL_BUDGET = 2 * 1024 * 1024  # message bytes sealed per expire() call
# Message text lives in frozen chunks of at least this many bytes plus an
# open tail: one growing buffer would be copied at every reallocation.
FREEZE_BYTES = 64 * 1024
_CASE_MASK = bytes(0x20 if 65 <= b <= 90 else 0 for b in range(256))
_NO_FACILITY = 255

_NO_EXTRAS = (None, None)
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_FACILITY_OUT: tuple[int | None, ...] = (*range(255), None)
_TS = attrgetter("timestamp")
_RECV = attrgetter("received_at")
_HOST = attrgetter("host")
_SERVICE = attrgetter("service")
_PROCID = attrgetter("procid")
_MSGID = attrgetter("msgid")
_FACILITY = attrgetter("facility")
_LEVEL = attrgetter("level")
_MESSAGE = attrgetter("message")
_SD = attrgetter("structured_data")
_FIELDS = attrgetter("fields")
_FORMAT = attrgetter("format")


@dataclass(slots=True)
class Page:
    """One page of a query: (id, record) pairs and where the next page starts."""

    items: list[tuple[str, Record]]
    next_cursor: str | None


def _count_bytes(counts: list[int], data: bytes) -> None:
    # A few memchr-speed passes beat Counter's dict update per element.
    for code in set(data):
        counts[code] += data.count(code)


def _zeros(n: int) -> array[int]:
    return array("I", bytes(4 * n))


def _str_bytes(value: str | None) -> int:
    # A compact str object plus its dict and list slots.
    return 0 if value is None else 100 + len(value)


def _pack_extras(sd: Any, fields: Any) -> bytes | tuple[Any, Any]:
    # Kept marshalled: a bytes object is invisible to the cyclic GC, while the
    # dicts themselves would be ~1 tracked object per record that every full
    # collection walks (~0.7 s per million records held). marshal takes
    # exactly what parsers make (dict, list, str, int, float, bool, None);
    # anything else is kept as it is.
    try:
        return marshal.dumps((sd, fields))
    except ValueError:
        return (sd, fields)


def _unpack_extras(packed: bytes | tuple[Any, Any] | None) -> tuple[Any, Any]:
    if packed is None:
        return _NO_EXTRAS
    if type(packed) is bytes:
        sd_fields: tuple[Any, Any] = marshal.loads(packed)
        return sd_fields
    return packed  # type: ignore[return-value]


def _extras_bytes(packed: bytes | tuple[Any, Any]) -> int:
    # The bytes object and its dict slot; unpacked, a dict is ~230 bytes small
    # and each entry a key and a value of ~60.
    if isinstance(packed, bytes):
        return 120 + len(packed)
    size = 120
    for d in packed:
        if d:
            size += 230 + 130 * len(d)
    return size


class _Table:
    """Interned values of one column in one shard, with how many live records use each.

    Code 0 is None. The counts (kept for host and service) are the shard summary that lets a query skip a
    shard holding no wanted value, and `/stats` count without a scan.
    """

    __slots__ = ("counts", "index", "nbytes", "values")

    def __init__(self) -> None:
        self.values: list[str | None] = [None]
        self.index: dict[str | None, int] = {None: 0}
        self.counts: list[int] = [0]
        self.nbytes = 0

    def encode(self, values: list[str | None], count: bool = True) -> Sequence[int]:
        """Codes for `values`, interning new ones; counts them as live if `count`."""
        n = len(values)
        if not n:
            return []
        first = values[0]
        if values.count(first) == n:
            # One value for the batch: MSGID "-", one format, one host per connection.
            code = self.index.get(first)
            if code is None:
                code = self._intern(first)
            if count:
                self.counts[code] += n
            return array("I", [code]) * n if code else _zeros(n)
        codes: list[Any]
        try:
            codes = list(map(self.index.__getitem__, values))
        except KeyError:  # new values: intern them, then look up again at C speed
            for value in set(values).difference(self.index):
                self._intern(value)
            codes = list(map(self.index.__getitem__, values))
        if count:
            try:
                _count_bytes(self.counts, bytes(codes))
            except ValueError:  # codes above 255: a shard with many distinct values
                counts = self.counts
                for code, k in Counter(codes).items():
                    counts[code] += k
        return codes

    def _intern(self, value: str | None) -> int:
        code = len(self.values)
        self.values.append(value)
        self.index[value] = code
        self.counts.append(0)
        self.nbytes += _str_bytes(value)
        return code

    def wanted(self, values: frozenset[str]) -> set[int]:
        """Codes of those `values` that live records of this shard hold."""
        out = set()
        for v in values:
            code = self.index.get(v)
            if code is not None and self.counts[code] > 0:
                out.add(code)
        return out


# One filter over one shard: a column (None = the physical index itself) and
# the set of values that pass.
# How many live records of the shard pass it orders the filters: the most
# selective runs at C speed over the range, the others only over its hits.
_Filter = tuple[Any, set[int], int]


@dataclass(slots=True)
class _Plan:
    """A Query resolved once: bounds as (timestamp, seq) keys and the filters."""

    start: int | None
    end: int | None
    services: frozenset[str] | None
    hosts: frozenset[str] | None
    levels: frozenset[int] | None
    facilities: frozenset[int] | None
    needle: bytes | None  # lower-cased UTF-8, searched in the ASCII-lowered text
    q: str | None
    after: tuple[int, int] | None  # asc cursor: keys strictly greater
    before: tuple[int, int] | None  # desc cursor: keys strictly smaller
    reverse: bool


def _plan(q: Query, use_cursor: bool = True) -> _Plan:
    after = before = None
    reverse = q.order == "desc"
    if q.order not in ("asc", "desc"):
        raise QueryError(f"order: expected asc or desc; got {q.order!r}")
    if use_cursor and q.cursor is not None:
        key = parse_id(q.cursor)
        if key is None:
            raise QueryError(f"cursor: not a cursor from this server: {q.cursor[:100]!r}")
        if reverse:
            before = key
        else:
            after = key
    if q.start is not None and q.end is not None and q.end < q.start:
        raise QueryError("end: is before start")
    text = q.q or None
    return _Plan(
        start=q.start,
        end=q.end,
        services=q.services,
        hosts=q.hosts,
        levels=q.levels,
        facilities=q.facilities,
        needle=None if text is None else text.encode("utf-8", "surrogatepass"),
        q=text,
        after=after,
        before=before,
        reverse=reverse,
    )


class _Shard:
    """Records whose event time falls in [key * span, (key + 1) * span).

    Physical columns (received_at ... message) are indexed by arrival number
    `p` and only ever appended. The logical index `i` runs over live records
    in (timestamp, seq) order: `ts[i]`, `seqs[i]`, and `p = order[i]`, or
    `p = base + i` while every record arrived in order (`order` is None).
    Records trimmed from the front stay in the physical columns as dead
    bytes until the shard is dropped or compacted.
    """

    __slots__ = (
        "base",
        "chunk_starts",
        "dead_bytes",
        "extras",
        "fac",
        "fac_counts",
        "fmt",
        "freeze_bytes",
        "host",
        "key",
        "low_tail",
        "lows",
        "lvl",
        "lvl_counts",
        "mask_cache",
        "mask_starts",
        "masks",
        "msgid",
        "n_sealed",
        "nbytes",
        "offs",
        "order",
        "plain_p",
        "procid",
        "recv",
        "seqs",
        "service",
        "tables",
        "tail",
        "tail_start",
        "texts",
        "ts",
        "uni",
    )

    def __init__(self, key: int, freeze_bytes: int = FREEZE_BYTES) -> None:
        self.key = key
        self.freeze_bytes = freeze_bytes
        self.ts = array("q")
        self.seqs = array("q")
        self.order: array[int] | None = None
        self.base = 0
        self.recv = array("q")
        self.lvl = bytearray()
        self.fac = bytearray()
        self.fmt = bytearray()
        self.host = array("I")
        self.service = array("I")
        self.procid = array("I")
        self.msgid = array("I")
        # host, service, procid, msgid, format
        self.tables = (_Table(), _Table(), _Table(), _Table(), _Table())
        # Messages, UTF-8, back to back: `offs[p]` is where message p starts.
        # Frozen chunks hold whole messages from `chunk_starts[j]` on: the
        # text (None once sealed) and its ASCII-lower-cased copy (same
        # offsets, for `q`). Then the open tail from `tail_start` on.
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
        # p -> (structured_data, fields), marshalled (see _pack_extras)
        self.extras: dict[int, bytes | tuple[Any, Any]] = {}
        self.uni: dict[int, str] = {}  # p -> message.lower() for non-ASCII messages
        self.lvl_counts = [0] * 256
        self.fac_counts = [0] * 256
        self.nbytes = SHARD_BYTES
        self.dead_bytes = 0

    def __len__(self) -> int:
        return len(self.ts)

    # -- writing -----------------------------------------------------------

    def add(self, recs: list[Record], ts: list[int], seqs: Sequence[int]) -> int:
        """Store records sorted by (timestamp, seq); returns how many went in late."""
        n = len(recs)
        p0 = len(self.recv)
        try:
            self._append_columns(recs)
        except BaseException:
            self._truncate(p0)  # a bad value (a level of 300) must not misalign the columns
            raise
        # Records after the current last key append; the others go in by bisect.
        split = 0
        if len(self.ts):
            last = (self.ts[-1], self.seqs[-1])
            while split < n and (ts[split], seqs[split]) < last:
                split += 1
                if split == 8 and n > 16:
                    # Many late ones: find the end of the late run by bisection.
                    lo, hi = split, n
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if (ts[mid], seqs[mid]) < last:
                            lo = mid + 1
                        else:
                            hi = mid
                    split = lo
                    break
        if split:
            self._insert_late(ts[:split], seqs[:split], range(p0, p0 + split))
        if split < n:
            self.ts.extend(ts[split:] if split else ts)
            self.seqs.extend(seqs[split:] if split else seqs)
            if self.order is not None:
                self.order.extend(range(p0 + split, p0 + n))
        return split

    def _truncate(self, p0: int) -> None:
        o0 = self.offs[p0]
        for col in (
            self.recv,
            self.lvl,
            self.fac,
            self.fmt,
            self.host,
            self.service,
            self.procid,
            self.msgid,
        ):
            del col[p0:]
        del self.offs[p0 + 1 :]
        if o0 >= self.tail_start:
            del self.tail[o0 - self.tail_start :], self.low_tail[o0 - self.tail_start :]
        for p in [p for p in self.extras if p >= p0]:
            del self.extras[p]
        for p in [p for p in self.uni if p >= p0]:
            del self.uni[p]

    def _insert_late(self, ts: list[int], seqs: Sequence[int], phys: range) -> None:
        if self.order is None:
            self.order = array("I", range(self.base, self.base + len(self.ts)))
        kts, kseqs, order = self.ts, self.seqs, self.order
        if len(ts) * 16 > len(kts):
            # A big late batch: one merge beats many memmoves.
            merged = sorted(
                chain(zip(kts, kseqs, order, strict=True), zip(ts, seqs, phys, strict=True)),
            )
            self.ts = array("q", [m[0] for m in merged])
            self.seqs = array("q", [m[1] for m in merged])
            self.order = array("I", [m[2] for m in merged])
            return
        for t, s, p in zip(ts, seqs, phys, strict=True):
            i = bisect_right(kts, t)
            while i and kts[i - 1] == t and kseqs[i - 1] > s:
                i -= 1
            kts.insert(i, t)
            kseqs.insert(i, s)
            order.insert(i, p)

    def _append_columns(self, recs: list[Record]) -> None:
        n = len(recs)
        p0 = len(self.recv)
        host_t, service_t, procid_t, msgid_t, format_t = self.tables
        before = sum(t.nbytes for t in self.tables)
        # What can fail (a level of 300, a message that is not text) runs
        # before anything is counted; _truncate undoes the appends.
        levels = bytes(map(_LEVEL, recs))
        facs: list[Any] = list(map(_FACILITY, recs))
        if None in facs:
            facs = [_NO_FACILITY if f is None else f for f in facs]
        fac_bytes = bytes(facs)
        msgs: list[str] = list(map(_MESSAGE, recs))
        joined = "".join(msgs)
        lens: Iterable[int]
        non_ascii = not joined.isascii()
        if non_ascii:
            encoded = [m.encode("utf-8", "surrogatepass") for m in msgs]
            data = b"".join(encoded)
            low_data = data.lower()
            lens = map(len, encoded)
        else:
            data = joined.encode("ascii")
            low_data = joined.lower().encode("ascii")  # str.lower is faster on ASCII
            lens = map(len, msgs)
        self.recv.extend(map(_RECV, recs))
        self.lvl += levels
        self.fac += fac_bytes
        formats = format_t.encode(list(map(_FORMAT, recs)), count=False)
        self.fmt += bytes(formats.tolist() if isinstance(formats, array) else formats)
        _count_bytes(self.lvl_counts, levels)
        _count_bytes(self.fac_counts, fac_bytes)
        self.host.extend(host_t.encode(list(map(_HOST, recs))))
        self.service.extend(service_t.encode(list(map(_SERVICE, recs))))
        self.procid.extend(procid_t.encode(list(map(_PROCID, recs)), count=False))
        self.msgid.extend(msgid_t.encode(list(map(_MSGID, recs)), count=False))

        extra = 0
        if non_ascii:
            # bytes.lower() folds ASCII only: non-ASCII messages keep their
            # full str.lower() for `q`, and the ASCII copy is not used for them.
            for i, m in enumerate(msgs):
                if not m.isascii():
                    low = m.lower()
                    self.uni[p0 + i] = low
                    extra += 80 + 4 * len(low)
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

        sds = list(map(_SD, recs))
        fields = list(map(_FIELDS, recs))
        if sds.count(None) != n or fields.count(None) != n:
            for i, (sd, fd) in enumerate(zip(sds, fields, strict=True)):
                if sd is not None or fd is not None:
                    packed = self.extras[p0 + i] = _pack_extras(sd, fd)
                    extra += _extras_bytes(packed)
        grown = sum(t.nbytes for t in self.tables) - before
        self.nbytes += n * RECORD_BYTES + 2 * len(data) + extra + grown

    def trim(self, k: int) -> None:
        """Forget the `k` oldest live records (their bytes stay, as dead)."""
        if k <= 0:
            return
        k = min(k, len(self.ts))
        if self.order is None:
            a, b = self.base, self.base + k
            phys: Sequence[int] = range(a, b)
            msg_bytes = self.offs[b] - self.offs[a]
            if b > self.plain_p:
                msg_bytes += self.offs[b] - self.offs[max(a, self.plain_p)]

            def column(col: Any) -> Iterable[int]:
                return col[a:b]  # type: ignore[no-any-return]
        else:
            phys = self.order[:k]
            offs = self.offs
            msg_bytes = sum(map(offs.__getitem__, map((1).__add__, phys))) - sum(
                map(offs.__getitem__, phys)
            )
            plain_p = self.plain_p
            msg_bytes += sum(offs[p + 1] - offs[p] for p in phys if p >= plain_p)

            def column(col: Any) -> Iterable[int]:
                return map(col.__getitem__, phys)

        for counts, col in (
            (self.lvl_counts, self.lvl),
            (self.fac_counts, self.fac),
            (self.tables[0].counts, self.host),
            (self.tables[1].counts, self.service),
        ):
            for code, n in Counter(column(col)).items():
                counts[code] -= n
        extra = 0
        if self.extras or self.uni:
            for p in phys:
                ex = self.extras.get(p)
                if ex is not None:
                    extra += _extras_bytes(ex)
                u = self.uni.get(p)
                if u is not None:
                    extra += 80 + 4 * len(u)
        self.dead_bytes += k * RECORD_BYTES + msg_bytes + extra
        del self.ts[:k], self.seqs[:k]
        if self.order is None:
            self.base += k
        else:
            del self.order[:k]

    def record_bytes(self, i: int) -> int:
        """The accounted bytes of live record `i` (what evicting it frees)."""
        p = self.phys(i)
        size = RECORD_BYTES + (self.offs[p + 1] - self.offs[p]) * (2 if p >= self.plain_p else 1)
        ex = self.extras.get(p)
        if ex is not None:
            size += _extras_bytes(ex)
        u = self.uni.get(p)
        if u is not None:
            size += 80 + 4 * len(u)
        return size

    def freeze(self) -> None:
        """Close the open tail into a chunk."""
        if self.tail:
            self.texts.append(bytes(self.tail))
            self.lows.append(bytes(self.low_tail))
            self.chunk_starts.append(self.tail_start)
            self.tail_start += len(self.tail)
            self.tail = bytearray()
            self.low_tail = bytearray()

    def seal(self, budget: int, piece: int = SEAL_CHUNK) -> int:
        """Replace message text by case masks, chunk by chunk, until `budget` bytes; returns how many.

        The lower-cased copy stays (for `q`), so the text is kept once plus
        the compressed mask (in pieces of `piece` bytes, so that reading a
        record decompresses a little). Text appended later stays plain
        until the next seal.
        """
        self.freeze()
        done = 0
        while self.n_sealed < len(self.texts) and done < budget:
            j = self.n_sealed
            data = self.texts[j]
            assert data is not None
            base = self.chunk_starts[j]
            for k in range(0, len(data), piece):
                mask = zlib.compress(data[k : k + piece].translate(_CASE_MASK), 1)
                self.mask_starts.append(base + k)
                self.masks.append(mask)
                self.nbytes += len(mask) + 50
            self.texts[j] = None
            self.nbytes -= len(data)
            done += len(data)
            self.n_sealed = j + 1
            self.plain_p = bisect_left(self.offs, base + len(data), self.plain_p)
        return done

    def unsealed_bytes(self) -> int:
        return len(self.tail) + sum(len(t) for t in self.texts[self.n_sealed :] if t is not None)

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

    # -- reading -----------------------------------------------------------

    def phys(self, i: int) -> int:
        return self.base + i if self.order is None else self.order[i]

    def record(self, i: int) -> Record:
        """The live record at logical index `i`, rebuilt from the columns."""
        p = self.base + i if self.order is None else self.order[i]
        hosts, services, procids, msgids, formats = self.tables
        fac = self.fac[p]
        sd, fields = _unpack_extras(self.extras.get(p))
        return Record(
            timestamp=self.ts[i],
            received_at=self.recv[p],
            host=hosts.values[self.host[p]],
            service=services.values[self.service[p]],
            procid=procids.values[self.procid[p]],
            msgid=msgids.values[self.msgid[p]],
            facility=None if fac == _NO_FACILITY else fac,
            level=self.lvl[p],
            message=self.message(p),
            structured_data=sd,
            fields=fields,
            format=formats.values[self.fmt[p]] or "",
        )

    def records(self, idx: Sequence[int]) -> list[Record]:
        """The live records at logical indices `idx`, column by column (C-speed maps)."""
        if self.order is None:
            phys: Sequence[int] = list(map(self.base.__add__, idx))
        else:
            phys = list(map(self.order.__getitem__, idx))

        def column(col: Any) -> Iterator[Any]:
            return map(col.__getitem__, phys)

        hosts, services, procids, msgids, formats = self.tables
        sds: Iterable[Any]
        fields: Iterable[Any]
        if self.extras:
            extras = list(map(_unpack_extras, map(self.extras.get, phys)))
            sds, fields = map(_FIRST, extras), map(_SECOND, extras)
        else:  # most shards: no record with structured data or fields
            sds = fields = repeat(None)
        return list(
            map(
                Record,
                map(self.ts.__getitem__, idx),
                column(self.recv),
                map(hosts.values.__getitem__, column(self.host)),
                map(services.values.__getitem__, column(self.service)),
                map(procids.values.__getitem__, column(self.procid)),
                map(msgids.values.__getitem__, column(self.msgid)),
                map(_FACILITY_OUT.__getitem__, column(self.fac)),
                column(self.lvl),
                map(self.message, phys),
                sds,
                fields,
                map(formats.values.__getitem__, column(self.fmt)),
            )
        )

    def position(self, ts: int, seq: int) -> int:
        """The logical index of the first key >= (ts, seq)."""
        lo = bisect_left(self.ts, ts)
        hi = bisect_left(self.ts, ts + 1, lo)
        if hi - lo <= 1:
            return lo if lo == hi or self.seqs[lo] >= seq else hi
        return bisect_left(self.seqs, seq, lo, hi)

    def bounds(self, plan: _Plan) -> tuple[int, int]:
        """The logical range [a, b) of the plan's time bounds and cursor."""
        n = len(self.ts)
        a = 0 if plan.start is None else bisect_left(self.ts, plan.start)
        b = n if plan.end is None else bisect_right(self.ts, plan.end)
        if plan.after is not None:
            a = max(a, self.position(plan.after[0], plan.after[1] + 1))
        if plan.before is not None:
            b = min(b, self.position(*plan.before))
        return a, b

    def filters(self, plan: _Plan, a: int, b: int) -> list[_Filter] | None:
        """Per-record filters still needed here; None when nothing here can match.

        The summaries decide first: a wanted value no live record holds skips
        the shard, and a filter every live record passes is dropped.
        """
        n = len(self.ts)
        out: list[_Filter] = []
        for values, col, table in (
            (plan.services, self.service, self.tables[1]),
            (plan.hosts, self.host, self.tables[0]),
        ):
            if values is not None:
                codes = table.wanted(values)
                hits = sum(table.counts[c] for c in codes)
                if not hits:
                    return None
                if hits < n:
                    out.append((col, codes, hits))
        for ints, small_col, counts in (
            (plan.levels, self.lvl, self.lvl_counts),
            (plan.facilities, self.fac, self.fac_counts),
        ):
            if ints is not None:
                codes = {c for c in ints if 0 <= c < _NO_FACILITY and counts[c]}
                hits = sum(counts[c] for c in codes)
                if not hits:
                    return None
                if hits < n:
                    out.append((small_col, codes, hits))
        if plan.needle is not None:
            found = self._search(plan, a, b)
            if not found:
                return None
            out.append((None, found, len(found)))
        return out

    def _search(self, plan: _Plan, a: int, b: int) -> set[int]:
        """Physical indices whose message contains the plan's `q`.

        The search runs over the shard's lower-cased text with bytes.find, at
        C speed; only hits cost Python work.
        """
        needle = plan.needle
        text = plan.q
        assert needle is not None
        assert text is not None
        offs = self.offs
        if self.order is None:
            pa, pb = self.base + a, self.base + b
        else:
            pa, pb = 0, len(offs) - 1
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

    def select(self, plan: _Plan, a: int, b: int) -> Iterator[int]:
        """Logical indices in [a, b) matching the plan, in the plan's order."""
        if a >= b:
            return iter(())
        filters = self.filters(plan, a, b)
        if filters is None:
            return iter(())
        reverse = plan.reverse
        idx = range(b - 1, a - 1, -1) if reverse else range(a, b)
        if not filters:
            return iter(idx)
        view: Callable[[Any], Iterable[int]]
        if self.order is None:
            pa, pb = self.base + a, self.base + b
            prange = range(pb - 1, pa - 1, -1) if reverse else range(pa, pb)

            def view(col: Any) -> Iterable[int]:
                if col is None:
                    return prange
                part = col[pa:pb]
                return part[::-1] if reverse else part  # type: ignore[no-any-return]
        else:
            phys = self.order[a:b]
            if reverse:
                phys.reverse()

            def view(col: Any) -> Iterable[int]:
                return phys if col is None else map(col.__getitem__, phys)

        if len(filters) > 1 and min(f[2] for f in filters) * 4 <= len(self.ts):
            filters.sort(key=_hits)
            col, codes, _ = filters[0]
            found: Iterator[int] = compress(idx, map(codes.__contains__, view(col)))
            for col, codes, _ in filters[1:]:
                found = filter(self._passes(col, codes), found)
            return found
        sels = [map(codes.__contains__, view(col)) for col, codes, _ in filters]
        sel = sels[0] if len(sels) == 1 else map(all, zip(*sels, strict=True))
        return compress(idx, sel)

    def _passes(self, col: Any, codes: set[int]) -> Callable[[int], bool]:
        """Whether logical record i passes one filter (for the few that passed another)."""
        order, base = self.order, self.base
        if col is None:
            if order is None:
                return lambda i: base + i in codes
            return lambda i: order[i] in codes
        if order is None:
            return lambda i: col[base + i] in codes
        return lambda i: col[order[i]] in codes

    def column_of(self, field: str) -> tuple[Any, Callable[[int], str]]:
        """A column and how its codes read as `/stats` keys."""
        if field == "level":
            return self.lvl, _level_name
        if field == "facility":
            return self.fac, _facility_name
        table = self.tables[0] if field == "host" else self.tables[1]
        col = self.host if field == "host" else self.service
        values = table.values

        def name(code: int) -> str:
            v = values[code]
            return "-" if v is None else v

        return col, name

    def summary(self, field: str) -> dict[int, int]:
        """Live-record counts by code for `field`, from the shard summary."""
        if field == "level":
            counts = self.lvl_counts
        elif field == "facility":
            counts = self.fac_counts
        else:
            counts = self.tables[0 if field == "host" else 1].counts
        return {c: n for c, n in enumerate(counts) if n}


def _hits(f: _Filter) -> int:
    return f[2]


def _level_name(code: int) -> str:
    return LEVELS[code] if code < len(LEVELS) else str(code)


def _facility_name(code: int) -> str:
    if code == _NO_FACILITY:
        return "-"
    return FACILITIES[code] if code < len(FACILITIES) else str(code)


def _is_sorted(xs: list[int]) -> bool:
    return all(map(le, xs, islice(xs, 1, None)))


class Store:
    """In-memory records; `add_many` from listeners, queries from HTTP.

    Ids and cursors encode (timestamp, seq). Paging with `next_cursor` visits
    every record that matches and is stored while paging exactly once, in
    order; a record arriving during paging is seen when it sorts after the
    cursor (asc: a later time, or the same time, since seqs only grow; desc:
    an earlier time). Late arrivals that sort before an asc cursor (or
    after a desc one) are not returned by the remaining pages.
    """

    def __init__(
        self,
        *,
        ttl_us: int,
        max_records: int,
        max_memory: int,
        shard_span_us: int = DEFAULT_SHARD_SPAN_US,
        seal_budget: int = SEAL_BUDGET,
        seal_chunk: int = SEAL_CHUNK,
        freeze_bytes: int = FREEZE_BYTES,
    ) -> None:
        if shard_span_us <= 0 or seal_chunk <= 0:
            raise ValueError("shard_span_us and seal_chunk must be positive")
        self.seal_budget = seal_budget
        self.seal_chunk = seal_chunk
        self.freeze_bytes = freeze_bytes
        self.ttl_us = ttl_us
        self.max_records = max_records
        self.max_memory = max_memory
        self.shard_span_us = shard_span_us
        self._shards: dict[int, _Shard] = {}
        self._keys: list[int] = []  # shard keys, sorted
        self._seq = 0
        self._count = 0
        self._bytes = 0
        self.expired_total = 0
        self.evicted_total = 0
        self.out_of_order_total = 0

    def configure(self, *, ttl_us: int, max_records: int, max_memory: int) -> None:
        """New bounds (config reload); smaller ones evict at once, TTL at the next expire."""
        self.ttl_us = ttl_us
        self.max_records = max_records
        self.max_memory = max_memory
        self._enforce()

    def __len__(self) -> int:
        return self._count

    @property
    def shard_count(self) -> int:
        """How many shards hold records."""
        return len(self._keys)

    def memory_bytes(self) -> int:
        """Estimated bytes the stored records take (dead space included)."""
        return self._bytes

    # -- writing -----------------------------------------------------------

    def add_many(self, records: list[Record]) -> int:
        """Store a batch, evicting the oldest beyond the bounds.

        The batch takes consecutive sequence numbers; returns the first one
        (the write-ahead log records them so that ids survive a restart).
        Records evicted at once to stay within max_records/max_memory,
        even ones of this batch, are counted in `evicted_total`."""
        first = self._seq + 1
        n = len(records)
        if not n:
            return first
        self._seq += n
        if not isinstance(records, list):
            records = list(records)
        self._ingest(records, list(map(_TS, records)), range(first, first + n))
        self._enforce()
        return first

    def restore(self, items: Iterable[tuple[int, Record]], *, last_seq: int = 0) -> None:
        """Put back (seq, record) pairs from a snapshot or log, ids unchanged.

        Pairs may come in any order and repeat (snapshot + log replay). New
        records then take seqs above the highest restored one and above
        `last_seq` (pass the highest seq ever handed out, so that a new
        record never reuses an evicted one's id)."""
        self._seq = max(self._seq, last_seq)
        batch: list[tuple[int, Record]] = []
        for item in items:
            batch.append(item)
            if len(batch) >= 65536:
                self._restore_batch(batch)
                batch = []
        if batch:
            self._restore_batch(batch)
        self._enforce()

    def _restore_batch(self, batch: list[tuple[int, Record]]) -> None:
        seqs = [s for s, _ in batch]
        recs = [r for _, r in batch]
        ts = list(map(_TS, recs))
        keys = list(zip(ts, seqs, strict=True))
        if not all(map(le, keys, islice(keys, 1, None))):
            perm = sorted(range(len(recs)), key=keys.__getitem__)
            recs = [recs[i] for i in perm]
            ts = [ts[i] for i in perm]
            seqs = [seqs[i] for i in perm]
        # Replayed records may duplicate stored ones (snapshot + log): keep one.
        fresh = [
            i for i, (t, s) in enumerate(zip(ts, seqs, strict=True)) if self._find(t, s) is None
        ]
        if len(fresh) < len(recs):
            recs = [recs[i] for i in fresh]
            ts = [ts[i] for i in fresh]
            seqs = [seqs[i] for i in fresh]
        dedup = [
            i for i in range(len(ts)) if i == 0 or (ts[i], seqs[i]) != (ts[i - 1], seqs[i - 1])
        ]
        if len(dedup) < len(ts):
            recs = [recs[i] for i in dedup]
            ts = [ts[i] for i in dedup]
            seqs = [seqs[i] for i in dedup]
        if recs:
            self._ingest(recs, ts, seqs, presorted=True)
            self._seq = max(self._seq, max(seqs))

    def _ingest(
        self,
        recs: list[Record],
        ts: list[int],
        seqs: Sequence[int],
        presorted: bool = False,
    ) -> None:
        n = len(recs)
        if not presorted and not _is_sorted(ts):
            # seqs grow with the batch, so a stable sort by time sorts by key.
            perm = sorted(range(n), key=ts.__getitem__)
            recs = [recs[i] for i in perm]
            ts = [ts[i] for i in perm]
            seqs = [seqs[i] for i in perm]
        span = self.shard_span_us
        shards = self._shards
        i = 0
        while i < n:
            key = ts[i] // span
            j = n if ts[-1] < (key + 1) * span else bisect_left(ts, (key + 1) * span, i)
            shard = shards.get(key)
            if shard is None:
                shard = shards[key] = _Shard(key, self.freeze_bytes)
                if not self._keys or key > self._keys[-1]:
                    self._keys.append(key)
                else:
                    self._keys.insert(bisect_left(self._keys, key), key)
                self._bytes += shard.nbytes
            before = shard.nbytes
            if i == 0 and j == n:
                late = shard.add(recs, ts, seqs)
            else:
                late = shard.add(recs[i:j], ts[i:j], seqs[i:j])
            self.out_of_order_total += late
            self._bytes += shard.nbytes - before
            self._count += j - i
            i = j

    # -- bounds ------------------------------------------------------------

    def _drop_oldest_shard(self) -> _Shard:
        key = self._keys.pop(0)
        shard = self._shards.pop(key)
        self._count -= len(shard)
        self._bytes -= shard.nbytes
        return shard

    def _trim(self, shard: _Shard, k: int) -> None:
        shard.trim(k)
        self._count -= k
        if not len(shard):
            self._keys.remove(shard.key)
            del self._shards[shard.key]
            self._bytes -= shard.nbytes

    def _compact(self, shard: _Shard) -> None:
        """Rebuild a shard from its live records: frees dead bytes and stale table entries."""
        n = len(shard)
        fresh = _Shard(shard.key, self.freeze_bytes)
        fresh.add([shard.record(i) for i in range(n)], list(shard.ts), shard.seqs)
        self._shards[shard.key] = fresh
        self._bytes += fresh.nbytes - shard.nbytes

    def _enforce(self) -> None:
        over = self._count - self.max_records
        while over > 0 and self._keys:
            shard = self._shards[self._keys[0]]
            if len(shard) <= over:
                over -= len(shard)
                self.evicted_total += len(shard)
                self._drop_oldest_shard()
            else:
                self.evicted_total += over
                self._trim(shard, over)
                over = 0
                if shard.dead_bytes > shard.nbytes - shard.dead_bytes:
                    self._compact(shard)
        if self._bytes > self.max_memory:
            # Evict down to 7/8 of the bound so that the compaction this
            # costs is paid once per eighth of the store, not per batch.
            target = self.max_memory - self.max_memory // 8
            while self._bytes > target and self._keys:
                shard = self._shards[self._keys[0]]
                need = self._bytes - target
                if shard.nbytes <= need or len(shard) == 0:
                    self.evicted_total += len(shard)
                    self._drop_oldest_shard()
                    continue
                freed = shard.dead_bytes
                k = 0
                n = len(shard)
                while freed < need and k < n:
                    freed += shard.record_bytes(k)
                    k += 1
                self.evicted_total += k
                self._trim(shard, k)
                if len(shard):
                    self._compact(shard)

    def expire(self, now: int) -> int:
        """Drop records older than `now - ttl`; returns how many.

        Whole shards go at once; the boundary shard is trimmed by one bisect."""
        cutoff = now - self.ttl_us
        m = bisect_left(self._keys, cutoff // self.shard_span_us)
        dropped = 0
        for _ in range(m):
            dropped += len(self._drop_oldest_shard())
        if self._keys:
            shard = self._shards[self._keys[0]]
            k = bisect_left(shard.ts, cutoff)
            if k:
                self._trim(shard, k)
                dropped += k
        self.expired_total += dropped
        self.seal(self.seal_budget)
        return dropped

    def seal(self, max_bytes: int | None = None) -> int:
        """Seal older shards' message text, at most `max_bytes` of it (None: all).

        Every shard but the newest two (by event time) is eligible: their
        text is kept once, lower-cased, plus a compressed case mask. Called
        by `expire`, so the sweeper does it a budget at a time. Returns the
        bytes sealed."""
        budget = (1 << 62) if max_bytes is None else max_bytes
        done = 0
        for key in self._keys[:-2]:
            if done >= budget:
                break
            shard = self._shards[key]
            if shard.unsealed_bytes():
                before = shard.nbytes
                done += shard.seal(budget - done, self.seal_chunk)
                self._bytes += shard.nbytes - before
        if self._bytes > self.max_memory:  # tiny chunks can cost more than they save
            self._enforce()
        return done

    # -- reading -----------------------------------------------------------

    def snapshot_items(self) -> Iterator[tuple[int, Record]]:
        """Every (seq, record) in time order, for a snapshot."""
        for key in list(self._keys):
            shard = self._shards.get(key)
            if shard is None:
                continue
            for a in range(0, len(shard), 4096):
                idx = range(a, min(a + 4096, len(shard)))
                yield from zip(shard.seqs[a : idx.stop], shard.records(idx), strict=True)

    def _find(self, ts: int, seq: int) -> tuple[_Shard, int] | None:
        shard = self._shards.get(ts // self.shard_span_us)
        if shard is None:
            return None
        i = shard.position(ts, seq)
        if i < len(shard) and shard.ts[i] == ts and shard.seqs[i] == seq:
            return shard, i
        return None

    def get(self, rec_id: str) -> Record | None:
        """The record with this id, or None (also for a malformed id)."""
        key = parse_id(rec_id)
        if key is None:
            return None
        found = self._find(*key)
        return None if found is None else found[0].record(found[1])

    def _shards_for(self, plan: _Plan) -> list[_Shard]:
        """Shards overlapping the plan's time range and cursor, in its order."""
        span = self.shard_span_us
        lo_t = plan.start
        hi_t = plan.end
        if plan.after is not None:
            lo_t = plan.after[0] if lo_t is None else max(lo_t, plan.after[0])
        if plan.before is not None:
            hi_t = plan.before[0] if hi_t is None else min(hi_t, plan.before[0])
        keys = self._keys
        a = 0 if lo_t is None else bisect_left(keys, lo_t // span)
        b = len(keys) if hi_t is None else bisect_right(keys, hi_t // span)
        shards = [self._shards[k] for k in keys[a:b]]
        if plan.reverse:
            shards.reverse()
        return shards

    def query(self, q: Query) -> Page:
        """One page of records matching `q`, in its order, and the cursor to the next.

        `next_cursor` is None exactly when no further record matches now.
        A malformed cursor raises QueryError naming `cursor`.
        """
        plan = _plan(q)
        limit = max(1, q.limit)
        found = list(
            islice(
                chain.from_iterable(
                    zip(repeat(shard), shard.select(plan, *shard.bounds(plan)))
                    for shard in self._shards_for(plan)
                ),
                limit + 1,
            )
        )
        more = len(found) > limit
        if more:
            del found[limit:]
        items: list[tuple[str, Record]] = []
        start = 0
        while start < len(found):
            shard = found[start][0]
            stop = start + 1
            while stop < len(found) and found[stop][0] is shard:
                stop += 1
            idx = [i for _, i in found[start:stop]]
            ids = map(make_id, map(shard.ts.__getitem__, idx), map(shard.seqs.__getitem__, idx))
            items.extend(zip(ids, shard.records(idx), strict=True))
            start = stop
        return Page(items, items[-1][0] if more else None)

    def stats(
        self, q: Query, by: tuple[str, ...] = (), step_us: int | None = None
    ) -> dict[str, Any]:
        """Counts of records matching `q`: total, by field values, and a histogram.

        `by` names fields of STATS_FIELDS; values read as in the API (level
        and facility names), records without one count under "-". With
        `step_us`, the histogram has one bucket per multiple of the step
        (since the epoch) from the first matching record's to the last's,
        empty buckets included. Shards whose every record passes the filters
        are counted from their summaries, without a scan.
        """
        for field in by:
            if field not in STATS_FIELDS:
                raise QueryError(f"by: expected {', '.join(STATS_FIELDS)}; got {field!r}")
        if step_us is not None and step_us <= 0:
            raise QueryError("step: must be positive")
        plan = _plan(q, use_cursor=False)
        plan.reverse = False
        total = 0
        counts: dict[str, Counter[str]] = {f: Counter() for f in by}
        buckets: Counter[int] = Counter()
        for shard in self._shards_for(plan):
            a, b = shard.bounds(plan)
            if a >= b:
                continue
            filters = shard.filters(plan, a, b)
            if filters is None:
                continue
            whole = a == 0 and b == len(shard)
            if not filters:
                total += b - a
                for field in by:
                    col, name = shard.column_of(field)
                    if whole:
                        tally: dict[int, int] = shard.summary(field)
                    elif shard.order is None:
                        tally = Counter(col[shard.base + a : shard.base + b])
                    else:
                        tally = Counter(map(col.__getitem__, shard.order[a:b]))
                    for code, n in tally.items():
                        counts[field][name(code)] += n
                if step_us is not None:
                    _count_buckets(buckets, shard.ts, a, b, step_us)
                continue
            matched = list(shard.select(plan, a, b))
            if not matched:
                continue
            total += len(matched)
            if shard.order is None:
                phys: Sequence[int] = list(map(shard.base.__add__, matched))
            else:
                phys = list(map(shard.order.__getitem__, matched))
            for field in by:
                col, name = shard.column_of(field)
                for code, n in Counter(map(col.__getitem__, phys)).items():
                    counts[field][name(code)] += n
            if step_us is not None:
                buckets.update(map(step_us.__rfloordiv__, map(shard.ts.__getitem__, matched)))
                if len(buckets) > MAX_BUCKETS:
                    _check_buckets(buckets)
        histogram: list[dict[str, Any]] = []
        if step_us is not None and buckets:
            first, last = _check_buckets(buckets)
            histogram = [
                {"start": format_timestamp(k * step_us), "count": buckets.get(k, 0)}
                for k in range(first, last + 1)
            ]
        return {
            "total": total,
            "by": {f: dict(sorted(c.items(), key=_by_count)) for f, c in counts.items()},
            "histogram": histogram,
        }


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _check_buckets(buckets: Counter[int]) -> tuple[int, int]:
    first, last = min(buckets), max(buckets)
    if last - first + 1 > MAX_BUCKETS:
        raise QueryError(
            f"step: too small for the matching time range ({last - first + 1} buckets;"
            f" at most {MAX_BUCKETS})"
        )
    return first, last


def _count_buckets(buckets: Counter[int], ts: array[int], a: int, b: int, step: int) -> None:
    """Histogram counts of ts[a:b] (sorted): by bisect when buckets are few."""
    first, last = ts[a] // step, ts[b - 1] // step
    if last - first + 1 > MAX_BUCKETS:
        raise QueryError(
            f"step: too small for the matching time range (over {MAX_BUCKETS} buckets)"
        )
    if (last - first + 1) * 16 < b - a:
        lo = a
        for k in range(first, last + 1):
            hi = bisect_left(ts, (k + 1) * step, lo, b)
            if hi > lo:
                buckets[k] += hi - lo
            lo = hi
    else:
        buckets.update(map(step.__rfloordiv__, ts[a:b]))
