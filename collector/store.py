"""Store stage: the shard map, records in memory by event time.

Pure: no asyncio, no logging, no clock (callers pass `now`). Shards of a
fixed span of event time are kept by key; this module bounds them (TTL,
max_records, max_memory: oldest first, counted), finds the shards a query
overlaps and fans queries and `/stats` out to them. It checks a Query only
by calling query.py's `check`: the rules are written once, there. Ids and
cursors are its own tokens, (timestamp, seq) in hex.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter, le, lt
from typing import Any

from collector.block import BLOCK_RECORDS, Block
from collector.blockcache import BlockCache
from collector.memo import Memo
from collector.query import ContextQuery, Query, StatsQuery, check, check_stats
from collector.record import NODE_SHIFT, Record, make_id, node_of, parse_id
from collector.sealing import SealedColumns, SealJob, seal_snapshot, sealed_from_blocks
from collector.shard import Shard
from collector.shardquery import Plan, bounds, plan_of, select
from collector.stats import aggregate, aggregate_steps, field_counts, warm_names
from collector.textheap import FREEZE_BYTES

DEFAULT_SHARD_SPAN_US = 60_000_000
SEAL_BUDGET = 2 * 1024 * 1024  # message bytes sealed per inline expire() call
# Decoded blocks kept for queries: at most this, and at most an eighth of
# max_memory (the cache is part of what max_memory bounds).
CACHE_BYTES = 32 * 1024 * 1024
# /logs: at most this many records tested one by one (regular expressions,
# wildcards, negated words, word edges) per page, so that one request holds
# the event loop for a bounded time (~0.1 s); a page cut short still has
# a next_cursor.
SCAN_BUDGET = 20_000
# /logs: at most this many records unpacked per request to build the
# per-shard value indexes of fields.*/sd.* terms (each built once per shard
# version); shards past it are searched by the per-record test instead.
INDEX_BUDGET = 20_000
# Records (with fields or structured data) per expire() call read to count
# older shards' field names ahead of /fields, a whole shard at a time (so a
# first /fields over a full store reads few records; ~50 ms a sweep).
WARM_BUDGET = 5_000

_TS = attrgetter("timestamp")
COMPACT_CHUNK = 16_384  # records re-added at a time when a shard is compacted


@dataclass(slots=True)
class Page:
    """One page of a query: (id, record) pairs and where the next page starts."""

    items: list[tuple[str, Record]]
    next_cursor: str | None


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
        block_records: int = BLOCK_RECORDS,
        freeze_bytes: int = FREEZE_BYTES,
        node: int = 0,
        cache_bytes: int = CACHE_BYTES,
        seal_inline: bool = True,
    ) -> None:
        if shard_span_us <= 0 or block_records <= 0:
            raise ValueError("shard_span_us and block_records must be positive")
        self.seal_budget = seal_budget
        self.block_records = block_records
        self.freeze_bytes = freeze_bytes
        # Inline: expire() seals too (tests, tools). The daemon says False
        # and runs seal_jobs() in a worker thread instead.
        self.seal_inline = seal_inline
        self.cache_bytes = cache_bytes
        self.cache = BlockCache(min(cache_bytes, max_memory // 8))
        self.ttl_us = ttl_us
        self.max_records = max_records
        self.max_memory = max_memory
        self.shard_span_us = shard_span_us
        self._shards: dict[int, Shard] = {}
        self.memo = Memo()  # whole-shard counts and indexes, bounded (memo.Memo)
        # uids of open shards a seal job (maybe in a worker thread) reads
        self._sealing: set[int] = set()
        self._keys: list[int] = []  # shard keys, sorted
        # Seqs this store mints are node << NODE_SHIFT | counter (see record.py).
        self.node = node
        self._seq = node << NODE_SHIFT
        self._count = 0
        self._bytes = 0
        self.expired_total = 0
        self.evicted_total = 0
        self.last_evicted_for: str | None = None  # "max_records" or "max_memory"
        self.out_of_order_total = 0
        # The newest event time evicted for max_records or max_memory. While
        # the store is at its bound, a record older than that would be the
        # first evicted: it counts as evicted at once (see _ingest) instead
        # of moving the key index to go in at the front, and of holding the
        # store's oldest time (and so the log's pruning) back until then.
        self._evicted_upto: int | None = None

    def configure(self, *, ttl_us: int, max_records: int, max_memory: int) -> None:
        """New bounds (config reload); smaller ones evict at once, TTL at the next expire."""
        self.ttl_us = ttl_us
        self.max_records = max_records
        self.max_memory = max_memory
        self.cache.max_bytes = min(self.cache_bytes, max_memory // 8)
        self.cache.clear()
        self._enforce()

    def __len__(self) -> int:
        return self._count

    @property
    def shard_count(self) -> int:
        """How many shards hold records."""
        return len(self._keys)

    def memory_bytes(self) -> int:
        """Bytes the stored records take (dead space included) plus the block cache's."""
        return self._bytes + self.cache.nbytes

    def oldest_timestamp(self) -> int | None:
        """The event time of the oldest record held, or None when empty."""
        return self._shards[self._keys[0]].first_ts() if self._keys else None

    def newest_timestamp(self) -> int | None:
        """The event time of the newest record held, or None when empty."""
        return self._shards[self._keys[-1]].last_ts() if self._keys else None

    @property
    def sealed_records(self) -> int:
        """How many records live in sealed (compressed) shards."""
        return sum(len(s) for s in self._shards.values() if s.run is not None)

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
        if node_of(last_seq) == self.node:
            self._seq = max(self._seq, last_seq)
        batch: list[tuple[int, Record]] = []
        for item in items:
            batch.append(item)
            if len(batch) >= 65536:
                self._restore_batch_sealed(batch)
                batch = []
        if batch:
            self._restore_batch(batch)
        self._enforce()

    def _restore_batch_sealed(self, batch: list[tuple[int, Record]]) -> None:
        self._restore_batch(batch)
        # Restored records arrive open (2-3x their sealed size): seal as we
        # go, so that a restore never evicts what the sealed store holds.
        if self.seal_inline or self._bytes > self._record_budget() // 2:
            self.seal()

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
            # Only this node's seqs move its counter: records read from a
            # stream keep other nodes' ids.
            node = self.node
            mine = [s for s in seqs if s >> NODE_SHIFT == node]
            if mine:
                self._seq = max(self._seq, max(mine))

    # -- persistence: sealed shards as blocks (persist.py) -----------------

    def shards(self) -> list[Shard]:
        """The shards holding records, oldest first (persistence reads them:
        a sealed shard's blocks are written once, an open one's records)."""
        return [self._shards[k] for k in self._keys]

    def restore_sealed(
        self,
        key: int,
        blocks: list[Block],
        live: int | None = None,
        *,
        columns: SealedColumns | None = None,
        max_seq: int | None = None,
    ) -> Shard:
        """Put back a sealed shard from blocks read from disk, as they are (no
        re-encoding, no re-sealing); the oldest records beyond `live` are
        trimmed (they had left the shard by TTL or eviction). `columns`:
        `sealing.sealed_columns` of the shard as written (else decoded from
        the blocks); `max_seq`: the highest seq in them, when known. ValueError
        when the blocks do not make shard `key` (out of order, another span,
        columns that do not fit) or the store holds that shard already:
        restore their records instead."""
        if not blocks:
            raise ValueError("no blocks")
        span = self.shard_span_us
        if key in self._shards:
            raise ValueError(f"shard {key} is held already")
        if blocks[0].first[0] // span != key or blocks[-1].last[0] // span != key:
            raise ValueError(f"the blocks are not shard {key} of a {span} us span")
        if not all(map(lt, (b.last for b in blocks), (b.first for b in blocks[1:]))):
            raise ValueError("the blocks are not in (timestamp, seq) order")
        shard = sealed_from_blocks(key, blocks, self.cache, self.memo, columns)
        self._shards[key] = shard
        self._keys.insert(bisect_left(self._keys, key), key)
        self._count += len(shard)
        self._bytes += shard.nbytes
        if live is not None and live < len(shard):
            self._trim(shard, len(shard) - max(live, 0))
        if len(shard.seqs):
            hi = max(shard.seqs) if max_seq is None else max_seq
            if hi >> NODE_SHIFT == self.node:
                self._seq = max(self._seq, hi)
            else:
                mine = [s for s in shard.seqs if s >> NODE_SHIFT == self.node]
                if mine:
                    self._seq = max(self._seq, max(mine))
        self._enforce()
        return shard

    def add_items(self, items: list[tuple[int | None, Record]]) -> list[tuple[int, Record]]:
        """Store records that come with ids (read from a stream), minting new
        seqs for those without; a record whose id is already stored, or
        repeats in the batch, is skipped (at-least-once delivery replays).
        Returns the (seq, record) pairs actually stored, in the given order."""
        fresh: list[tuple[int, Record]] = []
        seen: set[tuple[int, int]] = set()
        for seq, rec in items:
            if seq is None:
                self._seq += 1
                seq = self._seq
            else:
                key = (rec.timestamp, seq)
                if key in seen or self._find(rec.timestamp, seq) is not None:
                    continue
                seen.add(key)
            fresh.append((seq, rec))
        if fresh:
            # Deduplicated above: sorted by key and stored without a second lookup.
            keyed = sorted(fresh, key=lambda it: (it[1].timestamp, it[0]))
            seqs = [seq for seq, _ in keyed]
            recs = [rec for _, rec in keyed]
            self._ingest(recs, [r.timestamp for r in recs], seqs, presorted=True)
            node = self.node
            mine = [seq for seq in seqs if seq >> NODE_SHIFT == node]
            if mine:
                self._seq = max(self._seq, max(mine))
            self._enforce()
        return fresh

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
        upto = self._evicted_upto
        if upto is not None and ts[0] < upto and self._at_bound():
            cut = bisect_left(ts, upto)
            self.evicted_total += cut
            if cut == n:
                return
            recs, ts, seqs = recs[cut:], ts[cut:], seqs[cut:]
            n -= cut
        span = self.shard_span_us
        shards = self._shards
        i = 0
        while i < n:
            key = ts[i] // span
            j = n if ts[-1] < (key + 1) * span else bisect_left(ts, (key + 1) * span, i)
            shard = shards.get(key)
            if shard is not None and shard.run is not None:
                # Late records for a sealed shard reopen it (rare: only
                # records older than the two newest shards' spans); the
                # next seal pass seals it again.
                shard = self._compact(shard)
            if shard is None:
                shard = shards[key] = Shard(key, self.freeze_bytes, self.memo)
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

    def _drop_oldest_shard(self) -> Shard:
        key = self._keys.pop(0)
        shard = self._shards.pop(key)
        self._count -= len(shard)
        self._bytes -= shard.nbytes
        if shard.run is not None:
            shard.run.forget()
        return shard

    def _trim(self, shard: Shard, k: int) -> None:
        before = shard.nbytes  # a sealed shard frees its bytes at once, an open one keeps them dead
        shard.trim(k)
        self._count -= k
        self._bytes += shard.nbytes - before
        if not len(shard):
            self._keys.remove(shard.key)
            del self._shards[shard.key]
            self._bytes -= shard.nbytes
            if shard.run is not None:
                shard.run.forget()

    def _compact(self, shard: Shard) -> Shard:
        """Rebuild a shard, open, from its live records: frees dead bytes and stale table entries."""
        n = len(shard)
        fresh = Shard(shard.key, self.freeze_bytes, self.memo)
        ts, seqs = list(shard.ts), shard.seqs
        # In chunks: a shard of a million records materialised at once held
        # ~600 MB of Record objects for a moment (RSS spikes past max_memory).
        for lo in range(0, n, COMPACT_CHUNK):
            hi = min(lo + COMPACT_CHUNK, n)
            fresh.add(shard.records(range(lo, hi)), ts[lo:hi], seqs[lo:hi])
        self._shards[shard.key] = fresh
        self._bytes += fresh.nbytes - shard.nbytes
        if shard.run is not None:
            shard.run.forget()
        return fresh

    def _record_budget(self) -> int:
        # The cache's whole bound is set aside, so records plus cache stay within max_memory.
        return self.max_memory - self.cache.max_bytes

    def _free_dead(self, shard: Shard) -> None:
        """Free an open shard's dead (trimmed) records, bounded work: the
        dead physical prefix goes by slicing the columns (drop_dead_prefix);
        the record-by-record rebuild runs only when what stays dead is over
        half the shard (late records left dead ones behind live ones), so
        its cost is amortised over at least as many evictions."""
        if shard.run is not None or not shard.dead_bytes:
            return
        if shard.uid not in self._sealing:  # a seal worker may be reading its columns
            before = shard.nbytes
            shard.drop_dead_prefix()
            self._bytes += shard.nbytes - before
        if shard.dead_bytes > shard.nbytes - shard.dead_bytes:
            self._compact(shard)

    def _enforce(self) -> None:
        over = self._count - self.max_records
        if over > 0:
            self.last_evicted_for = "max_records"
        while over > 0 and self._keys:
            shard = self._shards[self._keys[0]]
            if len(shard) <= over:
                over -= len(shard)
                self.evicted_total += len(shard)
                self._evicted_to(shard, len(shard))
                self._drop_oldest_shard()
            else:
                self.evicted_total += over
                self._evicted_to(shard, over)
                self._trim(shard, over)
                over = 0
                self._free_dead(shard)
        budget = self._record_budget()
        if self._bytes > budget:
            self.last_evicted_for = "max_memory"
            # Evict down to 7/8 of the bound, so eviction runs once per
            # eighth of the store, not per batch.
            target = budget - budget // 8
            while self._bytes > target and self._keys:
                shard = self._shards[self._keys[0]]
                need = self._bytes - target
                if shard.nbytes <= need or len(shard) == 0:
                    self.evicted_total += len(shard)
                    self._evicted_to(shard, len(shard))
                    self._drop_oldest_shard()
                    continue
                if shard.run is None and shard.dead_bytes:
                    before = self._bytes
                    self._free_dead(shard)
                    if self._bytes < before:
                        continue  # freed some: weigh the need again
                # Evict live records for what is still needed; each pass
                # trims at least one, so the loop ends. An open shard frees
                # text a whole frozen chunk at a time: ask for one more
                # chunk's worth, or the dead remainder of a chunk takes a
                # second pass (another trim and another move of every
                # column, ~10 ms each at 2M records) for a few KiB.
                if shard.run is None:
                    need += self.freeze_bytes
                k = shard.records_to_free(need)
                self.evicted_total += k
                self._evicted_to(shard, k)
                self._trim(shard, k)
                if self._shards.get(shard.key) is shard:
                    self._free_dead(shard)

    def _evicted_to(self, shard: Shard, k: int) -> None:
        """Note that the `k` oldest records of `shard` are being evicted."""
        if k:
            t = shard.last_ts() if k >= len(shard) else shard.ts[k - 1]
            if self._evicted_upto is None or t > self._evicted_upto:
                self._evicted_upto = t

    def _at_bound(self) -> bool:
        """Evicting for max_records or max_memory: near a bound (eviction
        takes the store down to 7/8 of max_memory, then it fills again)."""
        budget = self._record_budget()
        return self._count >= self.max_records - self.max_records // 8 or (
            self._bytes >= budget - budget // 4
        )

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
        if self.seal_inline:
            self.seal(self.seal_budget)
        self.warm(WARM_BUDGET)
        return dropped

    def warm(self, max_records: int) -> int:
        """Count older shards' field names ahead of `/fields`, reading at most
        about `max_records` records (the sweeper's share, a shard at a time);
        returns how many it read. Open shards only: a sealed shard keeps
        the counts its open self had (see `install`)."""
        done = 0
        for key in self._keys[:-2]:
            if done >= max_records:
                break
            done += warm_names(self._shards[key])
        return done

    def seal_jobs(self) -> list[SealJob]:
        """Every open shard but the newest two (by event time), ready to seal.

        Run each job's `run()` anywhere (a worker thread: compression
        releases the GIL) and hand the result to `install` on the writer's
        thread. Taking the jobs costs array copies, not the sealing.
        """
        jobs = []
        for key in self._keys[:-2]:
            shard = self._shards[key]
            if shard.run is None and len(shard) and not shard.seal_failed:
                jobs.append(SealJob(shard, seal_snapshot(shard), self.cache, self.block_records))
                self._sealing.add(shard.uid)
        return jobs

    def seal_failed(self, job: SealJob) -> None:
        """`job.run()` raised: leave that shard open for good (not retried)."""
        job.shard.seal_failed = True
        self._sealing.discard(job.shard.uid)

    def install(self, job: SealJob, sealed: Shard) -> bool:
        """Swap in a sealed shard made by `job.run()`; False (nothing done)
        when its shard changed meanwhile (records added or trimmed), so the
        next pass seals it again, or when the sealed copy would not be
        smaller (then the shard stays open)."""
        shard = job.shard
        self._sealing.discard(shard.uid)
        if self._shards.get(shard.key) is not shard or shard.version != job.snapshot[0]:
            sealed.run.forget()  # type: ignore[union-attr]
            return False
        if sealed.nbytes >= shard.nbytes:
            # A few records: the blocks' fixed costs outweigh the savings.
            # Left open for good, so sealing never makes the store evict.
            sealed.run.forget()  # type: ignore[union-attr]
            shard.seal_failed = True
            return False
        self._shards[shard.key] = sealed
        self._bytes += sealed.nbytes - shard.nbytes
        names = shard.memo_peek(("names",))  # same records: the /fields counts hold
        if names is not None:
            sealed.memo_put(("names",), names)
        return True

    def seal(self, max_bytes: int | None = None) -> int:
        """Seal open shards but the newest two, here and now, until `max_bytes`
        of message text (None: all); returns the message bytes sealed."""
        budget = (1 << 62) if max_bytes is None else max_bytes
        done = 0
        jobs = self.seal_jobs()
        for job in jobs:
            if done >= budget:
                self._sealing.discard(job.shard.uid)  # not run: nothing reads it
                continue
            size = job.shard.text.offs[-1]
            try:
                sealed = job.run()
            except ValueError:  # a value the block format cannot hold
                self.seal_failed(job)
                continue
            if self.install(job, sealed):
                done += max(size, 1)
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

    def _find(self, ts: int, seq: int) -> tuple[Shard, int] | None:
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

    def _shards_for(self, plan: Plan) -> list[Shard]:
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
        An invalid `q` raises QueryError naming the parameter (query.check),
        and so does a cursor this store did not make.
        """
        runs, next_cursor = self._page(q)
        items: list[tuple[str, Record]] = []
        for shard, idx in runs:
            ids = map(make_id, map(shard.ts.__getitem__, idx), map(shard.seqs.__getitem__, idx))
            items.extend(zip(ids, shard.records(idx), strict=True))
        return Page(items, next_cursor)

    def query_json(
        self,
        q: Query,
        record_json: Callable[[Record, str], str],
        object_json: Callable[[Any], str],
    ) -> tuple[bytes, int, str | None]:
        """`query` as (the records' JSON with `,` between them, how many,
        next_cursor), written straight from the columns (shard.ROWS_NATIVE
        must be true); `record_json(record, id)` writes a record the native
        code hands back, `object_json` non-empty structured data and fields."""
        runs, next_cursor = self._page(q)
        parts: list[bytes] = []
        count = 0
        for shard, idx in runs:

            def row(k: int, shard: Shard = shard, idx: list[int] = idx) -> str:
                i = idx[k]
                return record_json(shard.record(i), make_id(shard.ts[i], shard.seqs[i]))

            parts.append(shard.rows_json(idx, row, object_json))
            count += len(idx)
        return b",".join(parts), count, next_cursor

    def _page(self, q: Query) -> tuple[list[tuple[Shard, list[int]]], str | None]:
        """The page `query` answers: runs of (shard, logical indices), and the next cursor."""
        plan = plan_of(check(q))
        plan.budget = SCAN_BUDGET
        plan.index_budget = INDEX_BUDGET
        limit = max(1, q.limit)
        # Each shard's matches in turn, until one more than the page holds:
        # a shard past that point is never asked (select() is lazy).
        runs: list[tuple[Shard, list[int]]] = []
        left = limit + 1
        for shard in self._shards_for(plan):
            idx = list(islice(select(shard, plan, *bounds(shard, plan)), left))
            if idx:
                runs.append((shard, idx))
                left -= len(idx)
                if not left:
                    break
        more = not left
        if more:
            last = runs[-1][1]
            del last[-1]
            if not last:
                del runs[-1]
        if not more and plan.exhausted and plan.last_key is not None:
            # The scan budget ran out: this page ends at the last record
            # tested, and the next one goes on from there.
            return runs, make_id(*plan.last_key)
        if not more:
            return runs, None
        shard, idx = runs[-1]
        return runs, make_id(shard.ts[idx[-1]], shard.seqs[idx[-1]])

    def stats(
        self, q: Query, by: tuple[str, ...] = (), step_us: int | None = None
    ) -> dict[str, Any]:
        """Counts of records matching `q`: total, by field values, and a histogram.

        `by` names fields of query.STATS_BY; values read as in the API (level
        and facility names), records without one count under "-". With
        `step_us`, the histogram has one bucket per multiple of the step
        (since the epoch) from the first matching record's to the last's,
        empty buckets included; more than query.MAX_BUCKETS is a QueryError
        naming `step`. The cursor, limit and order of `q` are ignored.
        """
        sq = check_stats(StatsQuery(q, by, step_us))  # query.py's one check
        plan = plan_of(sq.query, use_cursor=False)
        plan.reverse = False
        return aggregate(self._shards_for(plan), plan, sq.by, sq.step_us)

    def stats_steps(
        self, q: Query, by: tuple[str, ...] = (), step_us: int | None = None
    ) -> Iterator[dict[str, Any] | None]:
        """`stats` in steps (stats.aggregate_steps): None after each bounded
        piece of work, the answer last, so a caller can serve between steps.
        The query is checked at once (QueryError here, not in a step)."""
        sq = check_stats(StatsQuery(q, by, step_us))
        plan = plan_of(sq.query, use_cursor=False)
        plan.reverse = False
        return aggregate_steps(list(self._shards_for(plan)), plan, sq.by, sq.step_us)

    def fields(self, q: Query) -> list[tuple[str, int]]:
        """`/fields`: fields.*/sd.* names in records matching `q` with how
        many records have each, most frequent first (query.MAX_FIELDS at most)."""
        plan = plan_of(check(q), use_cursor=False)
        plan.reverse = False
        return field_counts(self._shards_for(plan), plan)

    def context(self, rec_id: str, cq: ContextQuery) -> tuple[list[tuple[str, Record]], int] | None:
        """The records around `rec_id` in (timestamp, id) order among those of
        its scope (same host, same host and service, or all), and the index
        of the record itself in that list; None for an unknown id."""
        rec = self.get(rec_id)
        if rec is None:
            return None
        # Exact values (None included): neighbours share the record's own host.
        hosts = services = None
        if cq.scope in ("host", "host,service"):
            hosts = frozenset([rec.host])
        if cq.scope == "host,service":
            services = frozenset([rec.service])
        scope = Query(hosts=hosts, services=services, cursor=rec_id)  # type: ignore[arg-type]
        before: list[tuple[str, Record]] = []
        after: list[tuple[str, Record]] = []
        if cq.before:
            before = self.query(_with(scope, order="desc", limit=cq.before)).items
            before.reverse()
        if cq.after:
            after = self.query(_with(scope, order="asc", limit=cq.after)).items
        return [*before, (rec_id, rec), *after], len(before)


def _with(q: Query, **changes: Any) -> Query:
    return dataclasses.replace(q, **changes)
