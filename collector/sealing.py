"""Store stage, sealing: an open shard's snapshot becomes a sealed copy
whose records live in compressed blocks.

Pure: no asyncio, no logging, no clock. `seal_snapshot` runs on the writer's
side; `sealed_copy` (a SealJob's run) reads the shard without changing it, in
any thread; the store installs the copy only if the shard did not change.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from collector.block import BLOCK_RECORDS, GROUP_RECORDS, Block, Columns, encode_block
from collector.blockcache import BlockCache
from collector.blockrun import BlockRun
from collector.memo import Memo
from collector.shard import (
    FACILITY_OUT,
    SHARD_BYTES,
    Shard,
    Table,
    count_bytes,
    unpack_extras,
)
from collector.textheap import TextHeap
from collector.times import format_timestamp

_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


@dataclass(slots=True)
class SealJob:
    """One shard to seal: `run()` (any thread) builds the sealed copy, and
    `Store.install` (the writer's thread) swaps it in if nothing changed."""

    shard: Shard
    snapshot: tuple[Any, ...]
    cache: BlockCache
    block_records: int

    def run(self) -> Shard:
        return sealed_copy(self.shard, self.snapshot, self.cache, self.block_records)

    @property
    def start_text(self) -> str:
        """The time of the shard's first record, for messages."""
        ts = self.snapshot[1]
        return format_timestamp(ts[0]) if len(ts) else "-"


def seal_snapshot(shard: Shard) -> tuple[int, array[int], array[int], Sequence[int]]:
    """(version, ts, seqs, physical indices) of the live records, for
    `sealed_copy` in a worker thread: taken on the writer's side, cheap
    (array copies), and the open tail's text frozen so that what the
    worker reads is never moved."""
    shard.text.freeze()
    phys: Sequence[int] = (
        range(shard.base, shard.base + len(shard.ts))
        if shard.order is None
        else array("I", shard.order)
    )
    return shard.version, array("q", shard.ts), array("q", shard.seqs), phys


def sealed_copy(
    shard: Shard,
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
    out = Shard(shard.key, 1, shard.memo)
    host_t, service_t, procid_t, msgid_t, format_t = shard.tables

    def values(table: Table, col: Any) -> list[Any]:
        return list(map(table.values.__getitem__, map(col.__getitem__, phys)))

    hosts = values(host_t, shard.host)
    services = values(service_t, shard.service)
    lvl = bytearray(map(shard.lvl.__getitem__, phys))
    fac = bytearray(map(shard.fac.__getitem__, phys))
    out.ts, out.seqs, out.lvl, out.fac = ts, seqs, lvl, fac
    host_codes = out.tables[0].encode(hosts)
    service_codes = out.tables[1].encode(services)
    out.host = array("H" if len(out.tables[0].values) <= 65536 else "I", host_codes)
    out.service = array("H" if len(out.tables[1].values) <= 65536 else "I", service_codes)
    count_bytes(out.lvl_counts, bytes(lvl))
    count_bytes(out.fac_counts, bytes(fac))
    recv = list(map(shard.recv.__getitem__, phys))
    procids = values(procid_t, shard.procid)
    msgids = values(msgid_t, shard.msgid)
    formats = [v or "" for v in values(format_t, shard.fmt)]
    facilities = list(map(FACILITY_OUT.__getitem__, fac))
    messages = list(map(shard.text.message, phys))
    if shard.extras:
        extras = list(map(unpack_extras, shard.extras_of(phys)))
        sds: list[Any] = list(map(_FIRST, extras))
        fields: list[Any] = list(map(_SECOND, extras))
    else:
        sds = fields = [None] * n
    blocks = []
    # Groups of an eighth of a block, at most GROUP_RECORDS (smaller blocks,
    # as tests make, still have several groups).
    group_records = max(1, min(GROUP_RECORDS, block_records // 8))
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
                ),
                group_records,
            )
        )
    return _with_run(out, blocks, cache, n)


# The columns a sealed shard keeps in the clear, as builtin values (for
# marshal): ts, seqs (array bytes), level, facility (bytes), host and
# service as (values, code typecode, code bytes, live count per code), and
# the level and facility counts (256 each).
SealedColumns = tuple[Any, ...]


def sealed_columns(shard: Shard) -> SealedColumns | None:
    """A sealed shard's clear columns, copied (cheap: array copies) so that
    persistence can write them beside the blocks and `sealed_from_blocks`
    need not decode them again. None when records were trimmed from the
    shard: its blocks then hold records its columns no longer have."""
    run = shard.run
    if run is None or shard.run_base != 0 or run.first_block != 0:
        return None
    tables = shard.tables
    return (
        shard.ts.tobytes(),
        shard.seqs.tobytes(),
        bytes(shard.lvl),
        bytes(shard.fac),
        (
            tuple(tables[0].values),
            shard.host.typecode,
            shard.host.tobytes(),
            tuple(tables[0].counts),
        ),
        (
            tuple(tables[1].values),
            shard.service.typecode,
            shard.service.tobytes(),
            tuple(tables[1].counts),
        ),
        (tuple(shard.lvl_counts), tuple(shard.fac_counts)),
    )


def _table(
    values: tuple[str | None, ...], typecode: str, data: bytes, counts: tuple[int, ...], n: int
) -> tuple[Table, array[int]]:
    if typecode not in ("H", "I"):
        raise ValueError(f"code typecode {typecode!r}")
    codes = array(typecode)
    codes.frombytes(data)
    table = Table()
    for value in values[1:]:
        table._intern(value)
    if values[:1] != (None,) or len(table.values) != len(values):
        raise ValueError("a column's values are not a table")
    if len(counts) != len(values) or sum(counts) != n:
        raise ValueError("a column's counts do not add up")
    table.counts = list(counts)
    return table, codes


def sealed_from_blocks(
    key: int,
    blocks: list[Block],
    cache: BlockCache,
    memo: Memo,
    columns: SealedColumns | None = None,
) -> Shard:
    """A sealed shard over blocks read back from disk (persistence): the
    blocks are kept as they are, never re-encoded. The columns a sealed
    shard keeps in the clear (keys, host, service, level, facility) come
    from `columns` (`sealed_columns` of the shard written) or, without
    them, are decoded from the blocks. Blocks must be in (timestamp, seq)
    order; ValueError when `columns` do not fit them."""
    n = sum(b.n for b in blocks)
    if columns is not None:
        out = _from_columns(key, blocks, memo, columns, n)
    else:
        out = _from_block_columns(key, blocks, memo)
        count_bytes(out.lvl_counts, bytes(out.lvl))
        count_bytes(out.fac_counts, bytes(out.fac))
    return _with_run(out, blocks, cache, n)


def _from_columns(
    key: int, blocks: list[Block], memo: Memo, columns: SealedColumns, n: int
) -> Shard:
    ts_b, seqs_b, lvl, fac, host, service, (lvl_counts, fac_counts) = columns
    out = Shard(key, 1, memo)
    out.ts.frombytes(ts_b)
    out.seqs.frombytes(seqs_b)
    out.lvl, out.fac = bytearray(lvl), bytearray(fac)
    host_t, out.host = _table(host[0], host[1], host[2], host[3], n)
    service_t, out.service = _table(service[0], service[1], service[2], service[3], n)
    if not (len(lvl_counts) == len(fac_counts) == 256 and sum(lvl_counts) == sum(fac_counts) == n):
        raise ValueError("the level and facility counts do not add up")
    out.lvl_counts, out.fac_counts = list(lvl_counts), list(fac_counts)
    out.tables = (host_t, service_t, *out.tables[2:])
    if not all(len(c) == n for c in (out.ts, out.seqs, out.lvl, out.fac, out.host, out.service)):
        raise ValueError("the columns do not hold the blocks' records")
    i = 0
    for b in blocks:  # the keys at each block's edges: the columns are the blocks'
        j = i + b.n - 1
        if (out.ts[i], out.seqs[i]) != b.first or (out.ts[j], out.seqs[j]) != b.last:
            raise ValueError("the columns' keys are not the blocks'")
        i = j + 1
    return out


def _from_block_columns(key: int, blocks: list[Block], memo: Memo) -> Shard:
    out = Shard(key, 1, memo)
    ts, seqs = array("q"), array("q")
    lvl, fac = bytearray(), bytearray()
    hosts: list[str | None] = []
    services: list[str | None] = []
    for block in blocks:
        keys = block.decode_keys()
        ts += keys.ts
        seqs += keys.seqs
        for j in range(block.ngroups):  # layout 2: attributes live in each group's frame
            group = block.decode_group(j)
            lvl += group.level
            fac += group.facility
            hosts.extend(map(block.dicts[0].__getitem__, group.codes[0]))
            services.extend(map(block.dicts[1].__getitem__, group.codes[1]))
    out.ts, out.seqs, out.lvl, out.fac = ts, seqs, lvl, fac
    host_codes = out.tables[0].encode(hosts)
    service_codes = out.tables[1].encode(services)
    out.host = array("H" if len(out.tables[0].values) <= 65536 else "I", host_codes)
    out.service = array("H" if len(out.tables[1].values) <= 65536 else "I", service_codes)
    return out


def _with_run(out: Shard, blocks: list[Block], cache: BlockCache, n: int) -> Shard:
    """A sealed shard's block run, empty text heap and byte account, once its
    clear columns are set (sealing and restoring from block files alike)."""
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
