"""Store stage: reading sealed blocks: records by index, substring scans, a shard's run of blocks.

Pure: no asyncio, no clock, no logging. Reads go through a BlockCache so a
block's frames are decompressed once while they are in use.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, repeat
from operator import add, itemgetter
from typing import Any

from collector.block import FACILITY_OUT, Block, Group
from collector.blockcache import BlockCache
from collector.record import Record
from collector.textheap import Finder
from collector.wordfilter import WordFilter

_rows: Callable[..., bytes] | None
try:  # pages' JSON straight from the columns, in C (collector/_render.c)
    from collector._render import rows as _rows
except ImportError:
    _rows = None

RowJson = Callable[[int], str]  # the JSON of a page's row k, written in Python


def records(
    block: Block, idx: Sequence[int], cache: BlockCache, ts: Sequence[int] | None = None
) -> list[Record]:
    """The records at indices `idx` of the block, group by group, column by
    column (C-speed maps); only the groups holding them are decoded.

    `ts`, their timestamps when the caller has them (a sealed shard keeps
    its keys in the clear), saves decoding the keys frame.
    """
    hosts, services, procids, msgids, formats = block.dicts
    size = block.group_records
    out: list[Record] = []
    k = 0
    n = len(idx)
    while k < n:
        j = idx[k] // size
        stop = k + 1
        while stop < n and idx[stop] // size == j:
            stop += 1
        group = cache.group(block, j)
        part = idx[k:stop]
        local = [i - group.start for i in part]
        host_c, service_c, procid_c, msgid_c, format_c = group.codes

        def column(col: Any, local: list[int] = local) -> Iterator[Any]:
            return map(col.__getitem__, local)

        sds: Iterable[Any]
        fields: Iterable[Any]
        if group.extras_idx:
            pairs = list(map(group.extras, local))
            sds, fields = map(itemgetter(0), pairs), map(itemgetter(1), pairs)
        else:
            sds = fields = repeat(None)
        times = list(map(cache.keys(block).ts.__getitem__, part) if ts is None else ts[k:stop])
        out.extend(
            map(
                Record,
                times,
                map(add, times, column(group.lateness)),
                map(hosts.__getitem__, column(host_c)),
                map(services.__getitem__, column(service_c)),
                map(procids.__getitem__, column(procid_c)),
                map(msgids.__getitem__, column(msgid_c)),
                map(FACILITY_OUT.__getitem__, column(group.facility)),
                column(group.level),
                map(group.message, local),
                sds,
                fields,
                map(formats.__getitem__, column(format_c)),
            )
        )
        k = stop
    return out


# -- matching ----------------------------------------------------------------


def find_substring(
    block: Block,
    cache: BlockCache,
    needle: str,
    a: int = 0,
    b: int | None = None,
    keep: bool = True,
) -> list[int]:
    """Indices in [a, b) whose message, lower-cased, contains `needle` (already lower-cased).

    The same answer as `needle in message.lower()` for each message: ASCII
    messages are searched group by group in the decoded text as it is,
    ASCII case folded by RE2 with the GIL released (textheap.Finder; only
    hits cost Python work), the few non-ASCII ones as str. `keep=False`
    decodes groups without keeping them in the cache (a long scan).
    """
    b = block.n if b is None else b
    if a >= b:
        return []
    if not needle:
        return list(range(a, b))
    found: list[int] = []
    non_ascii = block.non_ascii
    finder = Finder(needle.encode("ascii")) if needle.isascii() else None
    for j in range(block.group_of(a), block.group_of(b - 1) + 1):
        ga, gb = block.group_range(j)
        lo_i, hi_i = max(a, ga), min(b, gb)
        na_lo, na_hi = bisect_left(non_ascii, lo_i), bisect_left(non_ascii, hi_i)
        if finder is None and na_lo == na_hi:
            continue  # a non-ASCII needle: only non-ASCII messages can hold it
        group = cache.group(block, j, keep)
        if finder is not None:
            hits = _find_in(group, finder, lo_i - ga, hi_i - ga)
            if na_lo < na_hi:
                drop = set(non_ascii[na_lo:na_hi])
                found.extend(i for i in hits if i not in drop)
            else:
                found.extend(hits)
        if na_lo < na_hi:
            extra = [i for i in non_ascii[na_lo:na_hi] if needle in group.message(i - ga).lower()]
            if extra:
                found = sorted(set(found).union(extra))
    return found


def _find_in(group: Group, finder: Finder, a: int, b: int) -> list[int]:
    """Block indices of the group's messages [a, b) (counted in the group) holding the needle."""
    data, base, gap = group.data, group.start, group.gap
    size = len(finder.needle)
    found: list[int] = []
    lo, hi = group.span(a, b)
    pos = finder.find(data, lo, hi)
    if pos < 0:
        return found  # most groups of a scan: offsets never worked out
    offs = group.offs
    while pos >= 0:
        k = bisect_right(offs, pos, a, b + 1) - 1
        stop = offs[k + 1]
        if pos + size <= stop - gap:
            found.append(base + k)
            if stop >= hi:
                break
            pos = finder.find(data, stop, hi)
        else:  # the match runs into the next message (or its separator)
            pos = finder.find(data, pos + 1, hi)
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
        block = self.blocks[j]
        i = p - self.starts[j]
        group = self.cache.group(block, block.group_of(i))
        return group.message(i - group.start)

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

    def rows_json(
        self,
        keys: tuple[Any, Any],
        idx: list[int],
        phys: list[int],
        fallback: RowJson,
        object_json: Callable[[Any], str],
    ) -> bytes:
        """The JSON of records (`,` between them) straight from the blocks'
        columns (collector._render.rows): record k has the key at `idx[k]`
        of `keys` (the shard's timestamps and seqs) and physical index
        `phys[k]`; `fallback(k)` writes an unusual one. Needs _render."""
        assert _rows is not None
        parts: list[bytes] = []
        k = 0
        n = len(phys)
        starts, cache = self.starts, self.cache
        ts = keys[0]
        while k < n:
            j = self.block_of(phys[k])
            block = self.blocks[j]
            lo = starts[j]
            size = block.group_records
            g = (phys[k] - lo) // size
            # The run of records in the same group of the same block.
            glo = lo + g * size
            ghi = min(glo + size, starts[j + 1])
            stop = k + 1
            while stop < n and glo <= phys[stop] < ghi:
                stop += 1
            group = cache.group(block, g)
            inner = [p - lo - group.start for p in phys[k:stop]]
            extras = list(map(group.extras, inner)) if group.extras_idx else None
            # received_at is stored as lateness: only the page's rows need it.
            recv = array("q", bytes(8 * group.m))
            for i, x in zip(idx[k:stop], inner, strict=True):
                recv[x] = ts[i] + group.lateness[x]
            host_c, service_c, procid_c, msgid_c, format_c = group.codes
            cols = (recv, host_c, service_c, procid_c, msgid_c, group.facility)
            parts.append(
                _rows(
                    *keys,
                    idx[k:stop],
                    inner,
                    (*cols, group.level, format_c),
                    block.dicts,
                    ([group.data], [0], group.offs, group.gap),
                    extras,
                    b",",
                    lambda m, k0=k: fallback(k0 + m),
                    object_json,
                )
            )
            k = stop
        return b",".join(parts)

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
        # A long scan reads through the cache without filling it (that would
        # push out what pages use); a short one keeps what it decodes.
        keep = sum(blocks[j].text_bytes for j in range(j0, j1 + 1)) <= cache.max_bytes // 2

        def scan(j: int) -> list[int]:
            base = starts[j]
            block = blocks[j]
            a, b = max(pa - base, 0), min(pb - base, block.n)
            return [base + i for i in find_substring(block, cache, needle, a, b, keep)]

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
    frames=b"",
    frame_ends=array("I", [0]),
    group_records=1,
    extras_in=b"",
)
