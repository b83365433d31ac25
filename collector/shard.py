"""Store stage, one shard: the key index and the columns of one span of event time.

Pure: no asyncio, no logging, no clock. Columns grow in arrival order only
(append, never insert); a sorted (timestamp, seq) key index orders them.
Late arrivals wait beside the index until it is next read, then go in
together (one bisect each, one memmove of the index's tail). Message text
lives in the shard's TextHeap; shardquery.py queries a shard, sealing.py seals it.
"""

from __future__ import annotations

import itertools
import marshal
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, compress, repeat
from operator import attrgetter, itemgetter
from typing import Any

from collector.blockrun import BlockRun, RowJson
from collector.columns import min_of, shift_down, sum_at, uncount, uncount_at
from collector.memo import Memo
from collector.record import Record
from collector.textheap import FREEZE_BYTES, TextHeap

_rows: Callable[..., bytes] | None
try:  # pages' JSON straight from the columns, in C (collector/_render.c)
    from collector._render import rows as _rows
except ImportError:
    _rows = None

ROWS_NATIVE = _rows is not None  # rows_json can run

# Memory accounting (bytes), calibrated against tracemalloc in bench/store.py:
# per record 3 x 8 (ts, seq, received_at) + 4 x 4 (host, service, procid,
# msgid codes) + 4 (message offset) + 4 (key index) + 3 (level, facility,
# format) plus ~10% array over-allocation; then the message's text (one
# copy: `q` searches it case-insensitively). A shard's empty columns, dicts
# and summaries cost a few KiB.
RECORD_BYTES = 56
SHARD_BYTES = 4096
# A sealed shard keeps in the clear, per record, its key (timestamp and seq,
# 8 + 8), host and service codes (2 + 2 bytes, 4 + 4 past 65,536 values) and
# level and facility (1 + 1); everything else lives in its compressed blocks.
SEALED_KEY_BYTES = 18
# Late records wait outside the key index until it is read, or until more
# than this many wait: a bound on what one merge costs (~1 us a record to
# place, plus one move of the index's tail). A shard no query reads (the
# previous minute's, where most late records go) merges at this size.
LATE_WAITING = 8192
RECORDS_TO_FREE_CHUNK = 4096  # records summed at once by records_to_free with late records
NO_FACILITY = 255  # the facility column's code for "none"

_NO_EXTRAS = (None, None)
_uids = itertools.count(1)
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
FACILITY_OUT: tuple[int | None, ...] = (*range(255), None)
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


def unpack_extras(packed: bytes | tuple[Any, Any] | None) -> tuple[Any, Any]:
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
        "_late_phys",
        "_late_seqs",
        "_late_ts",
        "_order",
        "_seqs",
        "_ts",
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
        "pdrop",
        "procid",
        "recv",
        "run",
        "run_base",
        "seal_failed",
        "service",
        "tables",
        "text",
        "uid",
        "version",
        "xsize",
    )

    def __init__(
        self, key: int, freeze_bytes: int = FREEZE_BYTES, memo: Memo | None = None
    ) -> None:
        self.key = key
        self._ts = array("q")
        self._seqs = array("q")
        self._order: array[int] | None = None
        # Late records not yet in the key index (see `add`), in arrival order.
        self._late_ts = array("q")
        self._late_seqs = array("q")
        self._late_phys = array("I")
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
        # p + pdrop -> (structured_data, fields), marshalled (see _pack_extras).
        # Keyed by arrival number, not position: cutting a dead prefix drops
        # its entries from the front instead of renumbering every other one.
        self.extras: dict[int, bytes | tuple[Any, Any]] = {}
        # Each record's structured-data bytes by arrival number (0 without),
        # from its first record with any: an eviction step sums them in C
        # (looking up each evicted record's entry cost ~15 ms a step).
        self.xsize: array[int] | None = None
        self.pdrop = 0  # records cut from the front of the columns so far
        self.lvl_counts = [0] * 256
        self.fac_counts = [0] * 256
        self.nbytes = SHARD_BYTES
        self.dead_bytes = 0
        # Whole-shard counts and indexes computed once (see memo_get), kept in
        # the store's bounded Memo under this shard's uid and version.
        self.memo = Memo() if memo is None else memo
        self.uid = next(_uids)
        # Sealed (see `sealing.sealed_copy`): the records' blocks, and the block-run
        # index of logical record 0 (records trimmed from the front go).
        self.run: BlockRun | None = None
        self.run_base = 0
        self.version = 0  # bumped by every change: a seal made meanwhile is stale
        self.seal_failed = False  # sealing failed or saved nothing: skip until it changes

    def __len__(self) -> int:
        return len(self._ts) + len(self._late_ts)

    # The key index. Late records wait outside it until something reads it:
    # merging them in moves the index's tail (~17 MB at 1.7M records), once
    # per read instead of once per batch. Every reader goes through these.
    @property
    def ts(self) -> array[int]:
        if self._late_ts:
            self._settle()
        return self._ts

    @ts.setter
    def ts(self, value: array[int]) -> None:
        self._ts = value

    @property
    def seqs(self) -> array[int]:
        if self._late_ts:
            self._settle()
        return self._seqs

    @seqs.setter
    def seqs(self, value: array[int]) -> None:
        self._seqs = value

    @property
    def order(self) -> array[int] | None:
        if self._late_ts:
            self._settle()
        return self._order

    @order.setter
    def order(self, value: array[int] | None) -> None:
        self._order = value

    def first_ts(self) -> int:
        """The oldest event time held, without merging waiting late records
        (/health and the log's pruning ask often). The shard is not empty."""
        first = self._ts[0]
        return min(first, min(self._late_ts)) if self._late_ts else first

    def last_ts(self) -> int:
        """The newest event time held (a late record is older than it)."""
        return self._ts[-1]

    def _settle(self) -> None:
        """Merge the waiting late records into the key index."""
        keys = sorted(zip(self._late_ts, self._late_seqs, self._late_phys, strict=True))
        self._late_ts = array("q")
        self._late_seqs = array("q")
        self._late_phys = array("I")
        self._insert_late([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])

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
        # Records after the current last key append; the others wait for the
        # next read of the key index (see `ts`), unless many already wait.
        split = 0
        if len(self._ts):
            last = (self._ts[-1], self._seqs[-1])
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
            if self._order is None:  # arrival numbers no longer follow the index
                self._order = array("I", range(self.base, self.base + len(self._ts)))
            self._late_ts.extend(ts[:split])
            self._late_seqs.extend(seqs[:split])
            self._late_phys.extend(range(p0, p0 + split))
        if split < n:
            self._ts.extend(ts[split:] if split else ts)
            self._seqs.extend(seqs[split:] if split else seqs)
            if self._order is not None:
                self._order.extend(range(p0 + split, p0 + n))
        if len(self._late_ts) > LATE_WAITING:
            self._settle()
        return split

    def _physical_columns(self) -> tuple[array[int] | bytearray, ...]:
        """The columns indexed by physical position (arrival order)."""
        cols = (
            self.recv,
            self.lvl,
            self.fac,
            self.fmt,
            self.host,
            self.service,
            self.procid,
            self.msgid,
        )
        return cols if self.xsize is None else (*cols, self.xsize)

    def _truncate(self, p0: int) -> None:
        for col in self._physical_columns():
            del col[p0:]
        self.text.truncate(p0)
        a0 = p0 + self.pdrop
        for a in [a for a in self.extras if a >= a0]:
            del self.extras[a]

    def _insert_late(self, ts: list[int], seqs: Sequence[int], phys: Sequence[int]) -> None:
        if self._order is None:
            self._order = array("I", range(self.base, self.base + len(self._ts)))
        kts, kseqs, order = self._ts, self._seqs, self._order
        if len(ts) * 16 > len(kts):
            # A big late batch: one merge beats many memmoves.
            merged = sorted(
                chain(zip(kts, kseqs, order, strict=True), zip(ts, seqs, phys, strict=True)),
            )
            self._ts = array("q", [m[0] for m in merged])
            self._seqs = array("q", [m[1] for m in merged])
            self._order = array("I", [m[2] for m in merged])
            return
        # Where each goes in the index as it is now (the late records come
        # sorted by key, so these never decrease); then every index entry
        # from the first of them on moves once, each block straight to its
        # place (one insert() per record moved the whole tail each time:
        # with 5% of records late into a 1.5M-record shard, the loop spent
        # most of its time in memmove and fell behind at 54k msg/s).
        pos = []
        for t, s in zip(ts, seqs, strict=True):
            i = bisect_right(kts, t)
            while i and kts[i - 1] == t and kseqs[i - 1] > s:
                i -= 1
            pos.append(i)
        m, end = len(pos), len(kts)
        kts.extend(ts)
        kseqs.extend(seqs)
        order.extend(phys)
        # Through memoryviews: a slice assignment between two views of one
        # buffer is one memmove; between arrays it copies the block first.
        with memoryview(kts) as vts, memoryview(kseqs) as vseqs, memoryview(order) as vorder:
            for j in range(m - 1, -1, -1):
                a = pos[j]
                if end > a:  # the block [a, end) moves past the j + 1 inserted at or before it
                    d = j + 1
                    vts[a + d : end + d] = vts[a:end]
                    vseqs[a + d : end + d] = vseqs[a:end]
                    vorder[a + d : end + d] = vorder[a:end]
                vts[a + j] = ts[j]
                vseqs[a + j] = seqs[j]
                vorder[a + j] = phys[j]
                end = a

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
            if self.xsize is None:
                # Zeros for the records before; the dead ones' cells are dead bytes.
                self.xsize = array("I", bytes(4 * p0))
                added += 4 * p0
                self.dead_bytes += 4 * (p0 - len(self))
            sizes = [0] * n
            for i, (sd, fd) in enumerate(zip(sds, fields, strict=True)):
                if sd is not None or fd is not None:
                    packed = self.extras[self.pdrop + p0 + i] = _pack_extras(sd, fd)
                    sizes[i] = _extras_bytes(packed)
            self.xsize.extend(sizes)
            added += sum(sizes) + 4 * n
        elif self.xsize is not None:
            self.xsize.frombytes(bytes(4 * n))
            added += 4 * n
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
        columns = (
            (self.lvl_counts, self.lvl),
            (self.fac_counts, self.fac),
            (self.tables[0].counts, self.host),
            (self.tables[1].counts, self.service),
        )
        if self.order is None:
            a, b = self.base, self.base + k
            phys: Sequence[int] = range(a, b)
            msg_bytes = self.text.bytes_of_range(a, b)
            for counts, col in columns:
                uncount(counts, col[a:b])
        else:
            phys = self.order[:k]
            msg_bytes = self.text.bytes_of_many(phys)
            for counts, col in columns:
                uncount_at(counts, col, phys)
        xsize = self.xsize
        if xsize is None:
            extra = 0
        elif self.order is None:
            extra = 4 * k + sum(xsize[self.base : self.base + k])
        else:
            extra = 4 * k + sum_at(xsize, self.order[:k])
        self.dead_bytes += k * RECORD_BYTES + msg_bytes + extra
        del self.ts[:k], self.seqs[:k]
        if self.order is None:
            self.base += k
        else:
            del self.order[:k]

    def drop_dead_prefix(self) -> int:
        """Free the physical prefix of records that are all dead (trimmed),
        by slicing every column (memcpy, no Record rebuilt); returns the
        accounted bytes freed. The prefix is [0, base) while records arrived
        in order, else [0, min(order)). Text of the dead prefix sharing a
        frozen chunk with live text stays, counted as dead. Columns change
        in place: the caller makes sure no seal worker is reading them.
        """
        if self.run is not None:
            return 0
        if self.order is None:
            m = self.base
        else:
            m = min_of(self.order) if len(self.order) else len(self.recv)
        if m <= 0:
            return 0
        self.version += 1
        # In place (a memmove; a bytearray just moves its start): slicing
        # into new arrays cost ~6x more, page faults for fresh memory
        # included, and held the old and new columns at once.
        freed = 0
        if self.xsize is not None:
            sizes = self.xsize[:m]
            freed = 4 * m + sum(sizes)
            # The dead records with structured data are those with a size:
            # deleted by key (iterating the dict from its front walked every
            # slot deleted before, ~40 ms a step after a few minutes).
            extras = self.extras
            for a in compress(range(self.pdrop, self.pdrop + m), sizes):
                del extras[a]
        for col in self._physical_columns():
            del col[:m]
        freed += m * RECORD_BYTES + self.text.drop_prefix(m)
        self.pdrop += m
        if self.order is None:
            self.base -= m
        else:
            shift_down(self.order, m)
        self.dead_bytes -= freed
        self.nbytes -= freed
        return freed

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
        return size if self.xsize is None else size + 4 + self.xsize[p]

    # -- reading -----------------------------------------------------------

    def records_to_free(self, need: int) -> int:
        """How many of the oldest live records to evict so that at least
        `need` accounted bytes are freed (all of them if they cannot), as
        many as adding `record_bytes(i)` one record at a time would give,
        without a Python step per record: eviction frees an eighth of the
        store at once, hundreds of thousands of records.

        In a sealed shard, block by block (exact). In an open shard in
        arrival order, one bisect over the text offsets, leaving out the
        structured data's bytes, so it may take a few records more than
        needed (never fewer). With late records, chunk by chunk in key
        order, then record by record in the last chunk."""
        n = len(self.ts)
        if n == 0:
            return 0
        if self.run is not None:
            run = self.run
            srb = self.sealed_record_bytes()
            p = self.run_base
            end_p = p + n
            got = k = 0
            j = run.block_of(p)
            while p < end_p:
                end = min(run.starts[j + 1], end_p)
                cnt = end - p
                if end == run.starts[j + 1] and got + (cnt - 1) * srb < need:
                    # The block's last record frees the block with it.
                    got += cnt * srb + run.blocks[j].nbytes
                    k += cnt
                    if got >= need:
                        return k
                elif got + cnt * srb >= need:
                    return k + max(1, -(-(need - got) // srb))
                else:
                    got += cnt * srb
                    k += cnt
                p = end
                j += 1
            return n
        if self.order is None:
            base, text = self.base, self.text

            def prefix(k: int) -> int:
                return k * RECORD_BYTES + text.bytes_of_range(base, base + k)

            lo, hi = 1, n  # the smallest k whose prefix frees `need`, else n
            while lo < hi:
                mid = (lo + hi) // 2
                if prefix(mid) >= need:
                    hi = mid
                else:
                    lo = mid + 1
            return lo
        # Late records: in key order through the order index, a chunk of
        # records at a time at map speed (messages and the fixed part, not
        # the structured data: never fewer than needed), then record by
        # record within the chunk that reaches `need` (was record by record
        # throughout: ~110 ms per eviction step at 800k records).
        order, text = self.order, self.text
        total = k = 0
        while k < n:
            j = min(n, k + RECORDS_TO_FREE_CHUNK)
            chunk = (j - k) * RECORD_BYTES + text.bytes_of_many(order[k:j])
            if total + chunk >= need:
                break
            total += chunk
            k = j
        while total < need and k < n:
            total += self.record_bytes(k)
            k += 1
        return max(1, k)

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
        sd, fields = unpack_extras(self.extra(p))
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
            extras = list(map(unpack_extras, self.extras_of(phys)))
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
                map(FACILITY_OUT.__getitem__, column(self.fac)),
                column(self.lvl),
                map(self.text.message, phys),
                sds,
                fields,
                map(formats.values.__getitem__, column(self.fmt)),
            )
        )

    def rows_json(
        self, idx: list[int], fallback: RowJson, object_json: Callable[[Any], str]
    ) -> bytes:
        """The JSON of live records `idx` (`,` between them), written by
        collector._render.rows straight from the columns; `fallback(k)`
        writes record idx[k] when it is unusual. Only when ROWS_NATIVE."""
        assert _rows is not None
        if self.run is not None:
            phys = list(map(self.run_base.__add__, idx))
            return self.run.rows_json((self.ts, self.seqs), idx, phys, fallback, object_json)
        if self.order is None:
            phys = list(map(self.base.__add__, idx))
        else:
            phys = list(map(self.order.__getitem__, idx))
        extras = None
        if self.extras:
            extras = list(map(unpack_extras, self.extras_of(phys)))
        text = self.text
        cols = (self.recv, self.host, self.service, self.procid, self.msgid, self.fac, self.lvl)
        return _rows(
            self.ts,
            self.seqs,
            idx,
            phys,
            (*cols, self.fmt),
            tuple(t.values for t in self.tables),
            ([*text.texts, text.tail], [*text.chunk_starts, text.tail_start], text.offs),
            extras,
            b",",
            fallback,
            object_json,
        )

    def may_contain_words(self, keys: Sequence[int], a: int, b: int) -> bool:
        """Whether some record in [a, b) may hold every word hashed in `keys`
        (`wordfilter.word_keys` of `wordfilter.words`); False only when certainly not.
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
        return (_NO_EXTRAS if e is None else unpack_extras(e) for e in self.extras_of(phys))

    def extra(self, p: int) -> bytes | tuple[Any, Any] | None:
        """The packed extras of physical record `p` (None: it has none)."""
        return self.extras.get(p + self.pdrop)

    def extras_of(self, phys: Iterable[int]) -> Iterator[bytes | tuple[Any, Any] | None]:
        """The packed extras of physical records `phys` (None for those without)."""
        get = self.extras.get
        return map(get, map(self.pdrop.__add__, phys)) if self.pdrop else map(get, phys)

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
