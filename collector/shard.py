"""Store stage, one shard: the key index and the columns of one span of event time.

Pure: no asyncio, no logging, no clock. Columns grow in arrival order only
(append, never insert); a sorted (timestamp, seq) key index orders them, so a
late arrival costs one bisect and a memmove inside this shard. Message text
lives in the shard's TextHeap; this module reads a Plan, it never checks one.
"""

from __future__ import annotations

import itertools
import marshal
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain, compress, repeat
from operator import attrgetter, itemgetter
from typing import Any

from collector import matching, search
from collector.block import BLOCK_RECORDS, Columns, encode_block
from collector.blockcache import BlockCache
from collector.blockrun import BlockRun
from collector.record import Record
from collector.textheap import FREEZE_BYTES, TextHeap
from collector.wordfilter import word_keys, words

# Memory accounting (bytes), calibrated against tracemalloc in bench/store.py:
# per record 3 x 8 (ts, seq, received_at) + 4 x 4 (host, service, procid,
# msgid codes) + 4 (message offset) + 4 (key index) + 3 (level, facility,
# format) plus ~10% array over-allocation; the message is counted twice (its
# text and its lower-cased search copy). A shard's empty columns, dicts and
# summaries cost a few KiB.
RECORD_BYTES = 56
SHARD_BYTES = 4096
# A sealed shard keeps in the clear, per record, its key (timestamp and seq,
# 8 + 8), host and service codes (2 + 2 bytes, 4 + 4 past 65,536 values) and
# level and facility (1 + 1); everything else lives in its compressed blocks.
SEALED_KEY_BYTES = 18
NO_FACILITY = 255  # the facility column's code for "none"

_NO_EXTRAS = (None, None)
# What one Memo (a store's) may hold: the entries of its values summed (a
# value index counts its distinct values, a count table its keys); ~100-200
# bytes an entry, so ~20-40 MB at most, whatever the number of shards.
MEMO_MAX_ENTRIES = 200_000
_uids = itertools.count(1)
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_FACILITY_OUT: tuple[int | None, ...] = (*range(255), None)
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


def count_bytes(counts: list[int], data: bytes) -> None:
    """counts[b] += how often byte b occurs in `data`."""
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


class Table:
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
                count_bytes(self.counts, bytes(codes))
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


@dataclass(slots=True)
class Plan:
    """A validated Query as shards read it: bounds as (timestamp, seq) keys and the filters."""

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
    # From the search language (see store._plan): tests of the values of the
    # interned columns (by table index), words/phrases found through the text
    # search then checked at word boundaries, and the rest as a record test.
    value_tests: tuple[tuple[int, Callable[[str | None], bool]], ...] = ()
    texts: tuple[search.Text, ...] = ()
    residual: matching.Predicate | None = None
    # fields.*/sd.* terms ANDed at the top: found through a per-shard value
    # index (built once per shard version) instead of unpacking every record.
    extra_terms: tuple[search.Field | search.Exists, ...] = ()
    # At most this many per-record tests (word edges, residual) per request
    # (0: no bound); past it the scan stops, `exhausted` is set, and
    # `last_key` is the last record tested (where the next page goes on).
    budget: int = 0
    spent: int = 0
    # Records a request may still unpack to build value indexes (None: no
    # bound); a shard without one then leaves its fields.*/sd.* terms to `residual`.
    index_budget: int | None = None
    last_key: tuple[int, int] | None = None
    exhausted: bool = False
    tree: search.Node | None = None  # the whole tree, for the summaries' verdict


# One filter over one shard: a column (None = the physical index itself) and
# the set of values that pass.
# How many live records of the shard pass it orders the filters: the most
# selective runs at C speed over the range, the others only over its hits.
_Filter = tuple[Any, set[int], int]


def _hits(f: _Filter) -> int:
    return f[2]


class Shard:
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
        "dead_bytes",
        "extras",
        "fac",
        "fac_counts",
        "fmt",
        "host",
        "key",
        "lvl",
        "lvl_counts",
        "memo",
        "msgid",
        "nbytes",
        "order",
        "procid",
        "recv",
        "run",
        "run_base",
        "seal_failed",
        "seqs",
        "service",
        "tables",
        "text",
        "ts",
        "uid",
        "version",
    )

    def __init__(
        self, key: int, freeze_bytes: int = FREEZE_BYTES, memo: Memo | None = None
    ) -> None:
        self.key = key
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
        self.tables = (Table(), Table(), Table(), Table(), Table())
        self.text = TextHeap(freeze_bytes)
        # p -> (structured_data, fields), marshalled (see _pack_extras)
        self.extras: dict[int, bytes | tuple[Any, Any]] = {}
        self.lvl_counts = [0] * 256
        self.fac_counts = [0] * 256
        self.nbytes = SHARD_BYTES
        self.dead_bytes = 0
        # Whole-shard counts and indexes computed once (see memo_get), kept in
        # the store's bounded Memo under this shard's uid and version.
        self.memo = Memo() if memo is None else memo
        self.uid = next(_uids)
        # Sealed (see `sealed_copy`): the records' blocks, and the block-run
        # index of logical record 0 (records trimmed from the front go).
        self.run: BlockRun | None = None
        self.run_base = 0
        self.version = 0  # bumped by every change: a seal made meanwhile is stale
        self.seal_failed = False  # sealing failed or saved nothing: skip until it changes

    def __len__(self) -> int:
        return len(self.ts)

    # -- writing -----------------------------------------------------------

    def add(self, recs: list[Record], ts: list[int], seqs: Sequence[int]) -> int:
        """Store records sorted by (timestamp, seq); returns how many went in late.

        Only an open shard takes records: the store reopens a sealed one first.
        """
        if self.run is not None:
            raise ValueError("a sealed shard takes no records")
        self.version += 1
        self.seal_failed = False  # changed: worth another try
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
        self.text.truncate(p0)
        for p in [p for p in self.extras if p >= p0]:
            del self.extras[p]

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
            facs = [NO_FACILITY if f is None else f for f in facs]
        fac_bytes = bytes(facs)
        msgs: list[str] = list(map(_MESSAGE, recs))
        encoded = self.text.encode(msgs)
        self.recv.extend(map(_RECV, recs))
        self.lvl += levels
        self.fac += fac_bytes
        formats = format_t.encode(list(map(_FORMAT, recs)), count=False)
        self.fmt += bytes(formats.tolist() if isinstance(formats, array) else formats)
        count_bytes(self.lvl_counts, levels)
        count_bytes(self.fac_counts, fac_bytes)
        self.host.extend(host_t.encode(list(map(_HOST, recs))))
        self.service.extend(service_t.encode(list(map(_SERVICE, recs))))
        self.procid.extend(procid_t.encode(list(map(_PROCID, recs)), count=False))
        self.msgid.extend(msgid_t.encode(list(map(_MSGID, recs)), count=False))
        added = self.text.append(msgs, encoded)

        sds = list(map(_SD, recs))
        fields = list(map(_FIELDS, recs))
        if sds.count(None) != n or fields.count(None) != n:
            for i, (sd, fd) in enumerate(zip(sds, fields, strict=True)):
                if sd is not None or fd is not None:
                    packed = self.extras[p0 + i] = _pack_extras(sd, fd)
                    added += _extras_bytes(packed)
        grown = sum(t.nbytes for t in self.tables) - before
        self.nbytes += n * RECORD_BYTES + added + grown

    def trim(self, k: int) -> None:
        """Forget the `k` oldest live records (their bytes stay, as dead)."""
        if k <= 0:
            return
        k = min(k, len(self.ts))
        self.version += 1
        if self.run is not None:
            self._trim_sealed(k)
            return
        if self.order is None:
            a, b = self.base, self.base + k
            phys: Sequence[int] = range(a, b)
            msg_bytes = self.text.bytes_of_range(a, b)

            def column(col: Any) -> Iterable[int]:
                return col[a:b]  # type: ignore[no-any-return]
        else:
            phys = self.order[:k]
            msg_bytes = self.text.bytes_of_many(phys)

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
        if self.extras:
            for p in phys:
                ex = self.extras.get(p)
                if ex is not None:
                    extra += _extras_bytes(ex)
        self.dead_bytes += k * RECORD_BYTES + msg_bytes + extra
        del self.ts[:k], self.seqs[:k]
        if self.order is None:
            self.base += k
        else:
            del self.order[:k]

    def _trim_sealed(self, k: int) -> None:
        # Columns in the clear go at once; a block goes with its last record.
        assert self.run is not None
        for counts, col in (
            (self.lvl_counts, self.lvl),
            (self.fac_counts, self.fac),
            (self.tables[0].counts, self.host),
            (self.tables[1].counts, self.service),
        ):
            for code, n in Counter(col[:k]).items():
                counts[code] -= n
            del col[:k]
        del self.ts[:k], self.seqs[:k]
        self.run_base += k
        self.nbytes -= k * self.sealed_record_bytes() + self.run.drop_before(self.run_base)

    def sealed_record_bytes(self) -> int:
        """What a sealed shard keeps in the clear per record."""
        return SEALED_KEY_BYTES + self.host.itemsize + self.service.itemsize

    def record_bytes(self, i: int) -> int:
        """The accounted bytes of live record `i` (what evicting it frees).

        In a sealed shard a block's bytes are freed with its last record.
        """
        if self.run is not None:
            p = self.run_base + i
            j = self.run.block_of(p)
            last = self.run.starts[j + 1] - 1 == p
            return self.sealed_record_bytes() + (self.run.blocks[j].nbytes if last else 0)
        p = self.phys(i)
        size = RECORD_BYTES + self.text.bytes_of(p)
        ex = self.extras.get(p)
        if ex is not None:
            size += _extras_bytes(ex)
        return size

    def seal_snapshot(self) -> tuple[int, array[int], array[int], Sequence[int]]:
        """(version, ts, seqs, physical indices) of the live records, for
        `sealed_copy` in a worker thread: taken on the writer's side, cheap
        (array copies), and the open tail's text frozen so that what the
        worker reads is never moved."""
        self.text.freeze()
        phys: Sequence[int] = (
            range(self.base, self.base + len(self.ts))
            if self.order is None
            else array("I", self.order)
        )
        return self.version, array("q", self.ts), array("q", self.seqs), phys

    def sealed_copy(
        self,
        snapshot: tuple[int, array[int], array[int], Sequence[int]],
        cache: BlockCache,
        block_records: int = BLOCK_RECORDS,
    ) -> Shard:
        """A sealed shard holding the snapshot's records: blocks of `block_records`.

        Reads this shard without changing it (only appends may run
        meanwhile), so it can run in a worker thread; the store installs the
        copy only if `version` still matches.
        """
        _, ts, seqs, phys = snapshot
        n = len(ts)
        out = Shard(self.key, 1, self.memo)
        host_t, service_t, procid_t, msgid_t, format_t = self.tables

        def values(table: Table, col: Any) -> list[Any]:
            return list(map(table.values.__getitem__, map(col.__getitem__, phys)))

        hosts = values(host_t, self.host)
        services = values(service_t, self.service)
        lvl = bytearray(map(self.lvl.__getitem__, phys))
        fac = bytearray(map(self.fac.__getitem__, phys))
        out.ts, out.seqs, out.lvl, out.fac = ts, seqs, lvl, fac
        host_codes = out.tables[0].encode(hosts)
        service_codes = out.tables[1].encode(services)
        out.host = array("H" if len(out.tables[0].values) <= 65536 else "I", host_codes)
        out.service = array("H" if len(out.tables[1].values) <= 65536 else "I", service_codes)
        count_bytes(out.lvl_counts, bytes(lvl))
        count_bytes(out.fac_counts, bytes(fac))
        recv = list(map(self.recv.__getitem__, phys))
        procids = values(procid_t, self.procid)
        msgids = values(msgid_t, self.msgid)
        formats = [v or "" for v in values(format_t, self.fmt)]
        facilities = list(map(_FACILITY_OUT.__getitem__, fac))
        messages = list(map(self.text.message, phys))
        if self.extras:
            extras = list(map(_unpack_extras, map(self.extras.get, phys)))
            sds: list[Any] = list(map(_FIRST, extras))
            fields: list[Any] = list(map(_SECOND, extras))
        else:
            sds = fields = [None] * n
        blocks = []
        for a in range(0, n, block_records):
            b = min(n, a + block_records)
            blocks.append(
                encode_block(
                    Columns(
                        ts=ts[a:b],
                        seqs=seqs[a:b],
                        received_at=recv[a:b],
                        host=hosts[a:b],
                        service=services[a:b],
                        procid=procids[a:b],
                        msgid=msgids[a:b],
                        facility=facilities[a:b],
                        level=lvl[a:b],
                        format=formats[a:b],
                        message=messages[a:b],
                        structured_data=sds[a:b],
                        fields=fields[a:b],
                    )
                )
            )
        out.run = BlockRun(blocks, cache)
        out.text = TextHeap(1)
        out.nbytes = (
            SHARD_BYTES
            + n * out.sealed_record_bytes()
            + out.run.nbytes
            + out.tables[0].nbytes
            + out.tables[1].nbytes
        )
        return out

    # -- reading -----------------------------------------------------------

    def phys(self, i: int) -> int:
        """The arrival number of live record `i`."""
        return self.base + i if self.order is None else self.order[i]

    def record(self, i: int) -> Record:
        """The live record at logical index `i`, rebuilt from the columns."""
        if self.run is not None:
            return self.run.records([self.run_base + i], [self.ts[i]])[0]
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
            facility=None if fac == NO_FACILITY else fac,
            level=self.lvl[p],
            message=self.text.message(p),
            structured_data=sd,
            fields=fields,
            format=formats.values[self.fmt[p]] or "",
        )

    def records(self, idx: Sequence[int]) -> list[Record]:
        """The live records at logical indices `idx`, column by column (C-speed maps)."""
        if self.run is not None:
            return self.run.records(
                list(map(self.run_base.__add__, idx)), list(map(self.ts.__getitem__, idx))
            )
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
                map(self.text.message, phys),
                sds,
                fields,
                map(formats.values.__getitem__, column(self.fmt)),
            )
        )

    def may_contain_words(self, keys: Sequence[int], a: int, b: int) -> bool:
        """Whether some record in [a, b) may hold every word hashed in `keys`
        (`block.word_keys` of `block.words`); False only when certainly not.
        An open shard has no word filter and always answers True."""
        if self.run is None or a >= b:
            return a < b
        return self.run.may_contain_keys(keys, self.run_base + a, self.run_base + b)

    def position(self, ts: int, seq: int) -> int:
        """The logical index of the first key >= (ts, seq)."""
        lo = bisect_left(self.ts, ts)
        hi = bisect_left(self.ts, ts + 1, lo)
        if hi - lo <= 1:
            return lo if lo == hi or self.seqs[lo] >= seq else hi
        return bisect_left(self.seqs, seq, lo, hi)

    def bounds(self, plan: Plan) -> tuple[int, int]:
        """The logical range [a, b) of the plan's time bounds and cursor."""
        n = len(self.ts)
        a = 0 if plan.start is None else bisect_left(self.ts, plan.start)
        b = n if plan.end is None else bisect_right(self.ts, plan.end)
        if plan.after is not None:
            a = max(a, self.position(plan.after[0], plan.after[1] + 1))
        if plan.before is not None:
            b = min(b, self.position(*plan.before))
        return a, b

    def filters(self, plan: Plan, a: int, b: int) -> list[_Filter] | None:
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
                codes = {c for c in ints if 0 <= c < NO_FACILITY and counts[c]}
                hits = sum(counts[c] for c in codes)
                if not hits:
                    return None
                if hits < n:
                    out.append((small_col, codes, hits))
        if plan.tree is not None and not matching.may_match(plan.tree, _Summary(self, a, b)):
            return None
        sealed = self.run is not None
        columns = (self.host, self.service, self.procid, self.msgid, self.fmt)
        for ti, test in plan.value_tests:
            if sealed and ti >= 2:
                continue  # sealed: only host and service stay in the clear; select() tests it
            table = self.tables[ti]
            counted = ti < 2  # live-record counts are kept for host and service only
            codes = {
                c
                for c, v in enumerate(table.values)
                if (not counted or table.counts[c]) and test(v)
            }
            hits = sum(table.counts[c] for c in codes) if counted else n
            if not codes or (counted and not hits):
                return None
            if not counted or hits < n:
                out.append((columns[ti], codes, hits))
        if self.run is not None and (plan.needle is not None or plan.texts):
            # Sealed: the blocks' text is searched (a block at a time, on the
            # scan pool); hits are logical indices (a sealed shard has no order).
            run, rb = self.run, self.run_base
            needles = [t.text for t in plan.texts]
            if plan.needle is not None:
                assert plan.q is not None
                needles.insert(0, plan.q)
            for needle in needles:
                in_run = run.search(needle, rb + a, rb + b, run.cache.mapper)
                if not in_run:
                    return None
                logical = set(map((-rb).__add__, in_run))
                out.append((None, logical, len(logical)))
        elif plan.needle is not None or plan.texts:
            if self.order is None:
                pa, pb = self.base + a, self.base + b
            else:  # the key range is not a physical one: search every message
                pa, pb = 0, len(self.recv)
            if plan.needle is not None:
                assert plan.q is not None
                found = self.text.search(plan.needle, plan.q, pa, pb)
                if not found:
                    return None
                out.append((None, found, len(found)))
            for t in plan.texts:
                # Substring hits here; whole-word edges are checked lazily in
                # select(), on the records the other filters leave.
                found = self.text.search(t.text.encode("utf-8", "surrogatepass"), t.text, pa, pb)
                if not found:
                    return None
                out.append((None, found, len(found)))
        for term in () if sealed else plan.extra_terms:  # sealed: the residual tests them
            key = ("index", term.name)
            index = self.memo_peek(key)
            if index is None:
                if plan.index_budget is not None:
                    if plan.index_budget < len(self.extras):
                        continue  # not in this request's budget: the residual tests it
                    plan.index_budget -= len(self.extras)
                index = self.memo_get(key, self._value_index, term.name)
            if isinstance(term, search.Exists):
                matched = set(index.ps)
            elif term.prefixes:
                continue  # a hash index cannot answer a prefix: the residual tests it
            else:
                matched = index.lookup(term.values)
            if self.order is None:
                pa, pb = self.base + a, self.base + b
                matched = {p for p in matched if pa <= p < pb}
            if not matched:
                return None
            out.append((None, matched, len(matched)))
        return out

    def select(self, plan: Plan, a: int, b: int) -> Iterator[int]:
        """Logical indices in [a, b) matching the plan, in the plan's order."""
        if a >= b or plan.exhausted:
            return iter(())
        filters = self.filters(plan, a, b)
        if filters is None:
            return iter(())
        reverse = plan.reverse
        idx = range(b - 1, a - 1, -1) if reverse else range(a, b)
        found = self._select(filters, idx, a, b, reverse)
        # Then, lazily, the per-record tests: a first page runs them only on
        # as many records as it needs.
        tests = self._sealed_tests(plan) if self.run is not None else self._open_tests(plan)
        if not tests:
            return found
        return self._tested(plan, found, tests)

    def tests_records(self, plan: Plan) -> bool:
        """Whether select() tests records one by one beyond what filters() says."""
        return plan.residual is not None or (
            self.run is not None and any(ti >= 2 for ti, _ in plan.value_tests)
        )

    def _open_tests(self, plan: Plan) -> list[Callable[[int], bool]]:
        tests: list[Callable[[int], bool]] = []
        phys = self.phys
        for t in plan.texts:
            if t.start or t.end:
                tests.append(partial(_edges_hold, self.text.lowered, phys, t))
        if plan.residual is not None:
            residual = plan.residual
            tests.append(lambda i: residual(_Row(self, phys(i))))
        return tests

    def _sealed_tests(self, plan: Plan) -> list[Callable[[int], bool]]:
        """A sealed shard's per-record tests read the record decoded from its
        block (one decode per record, shared by its tests): word edges on
        its message lower-cased, the value tests of columns not kept in the
        clear (procid, msgid, format), the residual."""
        last: list[Any] = [-1, None]

        def rec(i: int) -> Record:
            if last[0] != i:
                last[0], last[1] = i, self.record(i)
            return last[1]  # type: ignore[no-any-return]

        tests: list[Callable[[int], bool]] = []
        for t in plan.texts:
            if t.start or t.end:
                tests.append(partial(_sealed_edges_hold, rec, t))
        for ti, test in plan.value_tests:
            if ti >= 2:
                tests.append(partial(_sealed_value_holds, rec, search.TEXT_FIELDS[ti], test))
        if plan.residual is not None:
            residual = plan.residual
            tests.append(lambda i: residual(rec(i)))
        return tests

    def _tested(
        self, plan: Plan, found: Iterable[int], tests: list[Callable[[int], bool]]
    ) -> Iterator[int]:
        ts, seqs = self.ts, self.seqs
        for i in found:
            if plan.budget and plan.spent >= plan.budget:
                plan.exhausted = True
                return
            plan.spent += 1
            plan.last_key = (ts[i], seqs[i])
            if all(test(i) for test in tests):
                yield i

    def _select(
        self, filters: list[_Filter], idx: range, a: int, b: int, reverse: bool
    ) -> Iterator[int]:
        if not filters:
            return iter(idx)
        if self.order is None:
            # A few records named by a set (a text search's hits, an index's):
            # walk them in order rather than test every record of the range.
            few = min((f for f in filters if f[0] is None), key=_hits, default=None)
            if few is not None and few[2] * 16 < b - a:
                base = self.base
                lo, hi = base + a, base + b
                hits = sorted((p for p in few[1] if lo <= p < hi), reverse=reverse)
                walk: Iterator[int] = (p - base for p in hits)
                for f in filters:
                    if f is not few:
                        walk = filter(self._passes(f[0], f[1]), walk)
                return walk
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

    def has_extras(self) -> int:
        """How many records may have structured data or fields (0: none has)."""
        return len(self) if self.run is not None else len(self.extras)

    def extras_at(self, phys: Iterable[int]) -> Iterator[tuple[Any, Any]]:
        """(structured_data, fields) of physical records (None, None without any)."""
        if self.run is not None:  # sealed: physical = logical; decoded from the blocks
            recs = self.records(list(phys))
            return ((r.structured_data, r.fields) for r in recs)
        if not self.extras:
            return repeat(_NO_EXTRAS)
        get = self.extras.get
        return (_NO_EXTRAS if (e := get(p)) is None else _unpack_extras(e) for p in phys)

    def memo_peek(self, key: tuple[Any, ...]) -> Any:
        """What `memo_get` kept for `key` at this version, or None."""
        return self.memo.peek((self.uid, self.version, *key))

    def memo_put(self, key: tuple[Any, ...], value: Any) -> None:
        """Remember `value` for `key` at this version (see memo_get)."""
        self.memo.put((self.uid, self.version, *key), value)

    def memo_get(self, key: tuple[Any, ...], compute: Callable[..., Any], *args: Any) -> Any:
        """`compute(*args)`, kept while the shard does not change (older
        shards never do) and the store's Memo has room for it."""
        return self.memo.get((self.uid, self.version, *key), compute, *args)

    def _value_index(self, name: str) -> _HashIndex:
        """Physical records by the hash of their (lower-cased) values of a
        fields.*/sd.* name."""
        pairs: list[tuple[int, int]] = []
        for p, packed in self.extras.items():
            sd, fields = _unpack_extras(packed)
            values = matching.extra_values(name, sd, fields)
            if values is not None:
                pairs.extend((hash(v), p) for v in {v.lower() for v in values})
        pairs.sort()
        return _HashIndex(array("q", map(_FIRST, pairs)), array("q", map(_SECOND, pairs)))

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


class _HashIndex:
    """Records by the hash of a field's value: 16 bytes an entry (a dict of
    values would be ~100), so a whole store's indexes fit the Memo. A hash
    hit is a candidate: the term's own test confirms it (the residual)."""

    __slots__ = ("hashes", "ps")

    def __init__(self, hashes: array[int], ps: array[int]) -> None:
        self.hashes = hashes
        self.ps = ps

    def __len__(self) -> int:
        # The Memo's measure of size: an entry here is ~1/8 of a dict entry.
        return len(self.ps) // 8

    def lookup(self, values: Iterable[str]) -> set[int]:
        out: set[int] = set()
        hashes, ps = self.hashes, self.ps
        for v in values:
            h = hash(v)
            i = bisect_left(hashes, h)
            j = bisect_right(hashes, h, i)
            out.update(ps[i:j])
        return out


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


class _Summary:
    """What a shard knows without reading records, for matching.may_match."""

    __slots__ = ("a", "b", "shard")

    def __init__(self, shard: Shard, a: int, b: int) -> None:
        self.shard = shard
        self.a = a
        self.b = b

    def may_have_word(self, word: str) -> bool:
        # A sealed shard answers from its blocks' word filters over [a, b)
        # (block.words splits as the search language does: runs of letters
        # and digits of the lower-cased text); an open one has none: True.
        shard = self.shard
        if shard.run is None:
            return True
        ws = words(word)
        return not ws or shard.may_contain_words(word_keys(ws), self.a, self.b)

    def values(self, name: str) -> list[str | None] | None:
        if name not in ("host", "service"):
            return None
        table = self.shard.tables[0 if name == "host" else 1]
        return [v for v, n in zip(table.values, table.counts, strict=True) if n]

    def codes(self, name: str) -> list[int] | None:
        counts = self.shard.lvl_counts if name == "level" else self.shard.fac_counts
        return [c for c, n in enumerate(counts) if n]


def _sealed_edges_hold(rec: Callable[[int], Record], t: search.Text, i: int) -> bool:
    return matching.find_text(rec(i).message.lower(), t)


def _sealed_value_holds(
    rec: Callable[[int], Record], name: str, test: Callable[[str | None], bool], i: int
) -> bool:
    value: str | None = getattr(rec(i), name)
    return test(value)


def _edges_hold(
    lowered: Callable[[int], str], phys: Callable[[int], int], t: search.Text, i: int
) -> bool:
    return matching.find_text(lowered(phys(i)), t)


class _Row:
    """A stored record as a search predicate reads it: each column only when
    asked for (most terms read one), not the whole Record rebuilt."""

    __slots__ = ("_extras", "p", "shard")

    def __init__(self, shard: Shard, p: int) -> None:
        self.shard = shard
        self.p = p
        self._extras: tuple[Any, Any] | None = None

    @property
    def message(self) -> str:
        return self.shard.text.message(self.p)

    @property
    def level(self) -> int:
        return self.shard.lvl[self.p]

    @property
    def facility(self) -> int | None:
        fac = self.shard.fac[self.p]
        return None if fac == NO_FACILITY else fac

    @property
    def host(self) -> str | None:
        return self.shard.tables[0].values[self.shard.host[self.p]]

    @property
    def service(self) -> str | None:
        return self.shard.tables[1].values[self.shard.service[self.p]]

    @property
    def procid(self) -> str | None:
        return self.shard.tables[2].values[self.shard.procid[self.p]]

    @property
    def msgid(self) -> str | None:
        return self.shard.tables[3].values[self.shard.msgid[self.p]]

    @property
    def format(self) -> str:
        return self.shard.tables[4].values[self.shard.fmt[self.p]] or ""

    def _both(self) -> tuple[Any, Any]:
        if self._extras is None:
            self._extras = _unpack_extras(self.shard.extras.get(self.p))
        return self._extras

    @property
    def structured_data(self) -> Any:
        return self._both()[0]

    @property
    def fields(self) -> Any:
        return self._both()[1]
