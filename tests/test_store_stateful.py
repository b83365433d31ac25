"""The store against a plain sorted list, through random adds (in and out of
order), expiries, evictions (by count and by memory), restores, queries with
random filters and paging (also while records arrive) and stats."""

from __future__ import annotations

import marshal
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from collector.block import Block
from collector.query import Query
from collector.record import FACILITIES, LEVELS, Record, make_id
from collector.sealing import sealed_columns
from collector.shard import RECORD_BYTES, SHARD_BYTES, _extras_bytes
from collector.store import Store
from collector.textheap import _UNI_BYTES

SPAN = 100
TTL = 2_000
SERVICES = ["sshd", "cron", "nginx", None]
HOSTS = ["web-1", "web-2", "db", None]
PIECES = [
    "Failed ",
    "password ",
    "ROOT ",
    "GET /x ",
    "été ",
    "ÉTÉ ",
    "İz ",
    "\u212a ",
    "ok",
    "o",
    "",
]
NEEDLES = ["failed", "root", "ét", "été", "i̇z", "k", "o", "ok", "get /", "zzz", "d p", "k o"]

Key = tuple[int, int]

records_st = st.builds(
    lambda lateness, host, service, level, facility, pieces, sd, fields, fmt: (
        lateness,
        Record(
            timestamp=0,
            received_at=0,
            host=host,
            service=service,
            procid=None if level % 2 else str(level * 7),
            msgid=None,
            facility=facility,
            level=level,
            message="".join(pieces),
            structured_data=sd,
            fields=fields,
            format=fmt,
        ),
    ),
    lateness=st.sampled_from([0, 0, 0, 0, 1, 5, 50, 99, 100, 101, 250]),
    host=st.sampled_from(HOSTS),
    service=st.sampled_from(SERVICES),
    level=st.integers(0, 7),
    facility=st.sampled_from([None, 0, 1, 4, 23]),
    pieces=st.lists(st.sampled_from(PIECES), max_size=4),
    sd=st.sampled_from([None, {}, {"origin@1": {"ip": "10.0.0.1"}}]),
    fields=st.sampled_from([None, {}, {"truncated": True}]),
    fmt=st.sampled_from(["rfc5424", "rfc3164", "json", "raw"]),
)

queries_st = st.builds(
    Query,
    start=st.one_of(st.none(), st.integers(-200, 6_000)),
    end=st.one_of(st.none(), st.integers(0, 8_000)),
    services=st.one_of(st.none(), st.frozensets(st.sampled_from(["sshd", "cron", "nope"]))),
    hosts=st.one_of(st.none(), st.frozensets(st.sampled_from(["web-1", "db", "other"]))),
    levels=st.one_of(st.none(), st.frozensets(st.integers(0, 7), min_size=1)),
    facilities=st.one_of(st.none(), st.frozensets(st.sampled_from([0, 1, 4, 5]))),
    q=st.one_of(st.none(), st.none(), st.sampled_from(NEEDLES)),
    limit=st.integers(1, 7),
    order=st.sampled_from(["asc", "desc"]),
).filter(lambda q: q.start is None or q.end is None or q.start <= q.end)


def matches(rec: Record, q: Query) -> bool:
    return (
        (q.start is None or rec.timestamp >= q.start)
        and (q.end is None or rec.timestamp <= q.end)
        and (q.services is None or rec.service in q.services)
        and (q.hosts is None or rec.host in q.hosts)
        and (q.levels is None or rec.level in q.levels)
        and (q.facilities is None or rec.facility in q.facilities)
        and (q.q is None or q.q in rec.message.lower())
    )


def model_page(
    model: dict[Key, Record], q: Query, cursor: Key | None
) -> tuple[list[str], Key | None]:
    desc = q.order == "desc"
    keys = sorted((k for k, r in model.items() if matches(r, q)), reverse=desc)
    if cursor is not None:
        keys = [k for k in keys if (k < cursor if desc else k > cursor)]
    page = keys[: q.limit]
    more = len(keys) > q.limit
    return [make_id(*k) for k in page], (page[-1] if more else None)


def model_stats(model: dict[Key, Record], q: Query, by: tuple[str, ...], step: int | None) -> Any:
    recs = [r for r in model.values() if matches(r, q)]
    names = {
        "level": lambda r: LEVELS[r.level],
        "facility": lambda r: "-" if r.facility is None else FACILITIES[r.facility],
        "host": lambda r: "-" if r.host is None else r.host,
        "service": lambda r: "-" if r.service is None else r.service,
    }
    hist: list[tuple[int, int]] = []
    if step is not None and recs:
        buckets = Counter(r.timestamp // step for r in recs)
        hist = [(k * step, buckets.get(k, 0)) for k in range(min(buckets), max(buckets) + 1)]
    return (
        len(recs),
        {f: dict(Counter(names[f](r) for r in recs)) for f in by},
        hist,
    )


class StoreAgainstSortedList(RuleBasedStateMachine):
    @initialize(
        max_records=st.sampled_from([10**9, 40, 7]),
        max_memory=st.sampled_from([1 << 40, 1 << 40, 64 * 1024, 12_000]),
        seal_budget=st.sampled_from([0, 10, 1 << 40]),
        block_records=st.sampled_from([1, 5, 64, 4096]),
        cache_bytes=st.sampled_from([0, 3_000, 1 << 20]),
        freeze_bytes=st.sampled_from([1, 100, 1 << 16]),
    )
    def start(
        self,
        max_records: int,
        max_memory: int,
        seal_budget: int,
        block_records: int,
        cache_bytes: int,
        freeze_bytes: int,
    ) -> None:
        self.store = Store(
            ttl_us=TTL,
            max_records=max_records,
            max_memory=max_memory,
            shard_span_us=SPAN,
            seal_budget=seal_budget,
            block_records=block_records,
            cache_bytes=cache_bytes,
            freeze_bytes=freeze_bytes,
        )
        self.model: dict[Key, Record] = {}
        self.clock = 1_000
        self.seq = 0
        self.evicted = 0
        self.expired = 0
        self.pager: tuple[Query, Key | None, set[str]] | None = None

    def _settle_evictions(self) -> None:
        """Evict from the model as the bounds say: by count exactly, and as many
        more of the oldest as the store dropped for memory."""
        keys = sorted(self.model)
        over = len(keys) - self.store.max_records
        drop = max(over, 0)
        drop = max(drop, len(keys) - len(self.store))
        for k in keys[:drop]:
            del self.model[k]
        self.evicted += drop
        assert self.store.evicted_total == self.evicted
        assert len(self.store) == len(self.model)

    @rule(batch=st.lists(records_st, max_size=25), advance=st.integers(0, 150))
    def add(self, batch: list[tuple[int, Record]], advance: int) -> None:
        self.clock += advance
        recs = []
        for lateness, rec in batch:
            rec.timestamp = self.clock - lateness
            rec.received_at = self.clock
            recs.append(rec)
        first = self.store.add_many(recs)
        assert first == self.seq + 1
        for i, rec in enumerate(recs):
            self.model[(rec.timestamp, first + i)] = rec
        self.seq += len(recs)
        self._settle_evictions()

    @rule(ahead=st.integers(0, 3_000))
    def expire(self, ahead: int) -> None:
        now = self.clock + ahead - 1_000
        cutoff = now - TTL
        gone = [k for k in self.model if k[0] < cutoff]
        for k in gone:
            del self.model[k]
        assert self.store.expire(now) == len(gone)
        self.expired += len(gone)
        assert self.store.expired_total == self.expired

    @rule(max_records=st.sampled_from([10**9, 50, 5, 1]))
    def configure(self, max_records: int) -> None:
        self.store.configure(ttl_us=TTL, max_records=max_records, max_memory=self.store.max_memory)
        self._settle_evictions()

    @rule(budget=st.sampled_from([1, 30, None]))
    def seal(self, budget: int | None) -> None:
        self.store.seal(budget)  # reads after it are checked by every other rule
        self._settle_evictions()  # tiny test chunks can cost more than they save

    @rule(batch=st.lists(records_st, max_size=5), advance=st.integers(0, 150))
    def seal_in_a_worker_while_records_arrive(
        self, batch: list[tuple[int, Record]], advance: int
    ) -> None:
        # As the daemon does: jobs taken, sealed elsewhere, installed later;
        # records added (late ones reopen or change shards) in between.
        jobs = self.store.seal_jobs()
        sealed = [job.run() for job in jobs]
        self.add(batch, advance)
        for job, shard in zip(jobs, sealed, strict=True):
            self.store.install(job, shard)
        self._settle_evictions()

    @rule()
    def restore_into_a_new_store(self) -> None:
        fresh = Store(
            ttl_us=TTL,
            max_records=self.store.max_records,
            max_memory=self.store.max_memory,
            shard_span_us=SPAN,
            block_records=self.store.block_records,
            cache_bytes=self.store.cache_bytes,
            freeze_bytes=self.store.freeze_bytes,
        )
        items = list(self.store.snapshot_items())
        # Restore in shuffled-by-shard order and with duplicates (snapshot + log replay).
        fresh.restore(items[::-1] + items[: len(items) // 2])
        fresh.evicted_total = self.store.evicted_total
        fresh.expired_total = self.store.expired_total
        assert list(fresh.snapshot_items()) == items
        self.store = fresh
        if items:
            # Later seqs continue above the restored ones (evicted seqs above
            # them are the write-ahead log's to remember, not the snapshot's).
            assert self.store.add_many([]) == max(s for s, _ in items) + 1
        self.seq = self.store.add_many([]) - 1

    @rule()
    def restart_from_sealed_blocks(self) -> None:
        # As persistence restores (persist.py): each sealed shard's live blocks
        # through their bytes (Block.to_bytes/from_bytes) straight into a
        # sealed shard, trimmed to its live records; the open shards' records.
        fresh = Store(
            ttl_us=TTL,
            max_records=self.store.max_records,
            max_memory=self.store.max_memory,
            shard_span_us=SPAN,
            block_records=self.store.block_records,
            cache_bytes=self.store.cache_bytes,
            freeze_bytes=self.store.freeze_bytes,
        )
        items = list(self.store.snapshot_items())
        for shard in self.store.shards():
            if shard.run is not None:
                blocks = [Block.from_bytes(b.to_bytes()) for b in shard.run.live_blocks()]
                # The clear columns as a block file has them (None after a trim).
                columns = sealed_columns(shard)
                if columns is not None:
                    columns = marshal.loads(marshal.dumps(columns))
                fresh.restore_sealed(shard.key, blocks, len(shard), columns=columns)
            else:
                fresh.restore(list(zip(shard.seqs, shard.records(range(len(shard))), strict=True)))
        fresh.restore([], last_seq=self.seq)  # the log's last seq
        assert list(fresh.snapshot_items()) == items
        assert fresh.sealed_records == self.store.sealed_records
        fresh.evicted_total = self.store.evicted_total
        fresh.expired_total = self.store.expired_total
        self.store = fresh
        assert self.store.add_many([]) == self.seq + 1

    @rule(q=queries_st)
    def query_pages_through_every_match_once(self, q: Query) -> None:
        cursor: str | None = None
        mcursor: Key | None = None
        seen: list[str] = []
        for _ in range(1_000):
            page = self.store.query(_with(q, cursor))
            ids, mcursor = model_page(self.model, q, mcursor)
            assert [i for i, _ in page.items] == ids
            for rec_id, rec in page.items:
                assert rec == self.model[_key(rec_id)]
            seen += ids
            cursor = page.next_cursor
            assert (cursor is None) == (mcursor is None)
            if cursor is None:
                break
        assert len(seen) == len(set(seen))

    @rule(q=queries_st)
    def start_paging(self, q: Query) -> None:
        self.pager = (q, None, set())

    @precondition(lambda self: self.pager is not None)
    @rule()
    def page_once_while_records_arrive(self) -> None:
        assert self.pager is not None
        q, mcursor, seen = self.pager
        page = self.store.query(_with(q, None if mcursor is None else make_id(*mcursor)))
        ids, next_key = model_page(self.model, q, mcursor)
        assert [i for i, _ in page.items] == ids
        assert not seen & set(ids)
        seen |= set(ids)
        if next_key is None:
            assert page.next_cursor is None
            self.pager = None
        else:
            assert page.next_cursor == make_id(*next_key)
            self.pager = (q, next_key, seen)

    @rule(q=queries_st, by=st.sampled_from([(), ("level",), ("service", "host"), ("facility",)]))
    def stats_agree(self, q: Query, by: tuple[str, ...]) -> None:
        for step in (None, 7, 100, 1_000):
            got = self.store.stats(q, by, step)
            total, counts, hist = model_stats(self.model, q, by, step)
            assert got["total"] == total
            assert got["by"] == counts
            assert [(h["start"], h["count"]) for h in got["histogram"]] == [
                (_fmt(s), c) for s, c in hist
            ]

    @rule(data=st.data())
    def get_finds_stored_records_only(self, data: st.DataObject) -> None:
        if self.model:
            key = data.draw(st.sampled_from(sorted(self.model)))
            assert self.store.get(make_id(*key)) == self.model[key]
            assert self.store.get(make_id(key[0], key[1] + 10**6)) is None
        assert self.store.get(make_id(self.clock, self.seq + 1)) is None

    @invariant()
    def same_records_in_time_order(self) -> None:
        assert [(r.timestamp, s) for s, r in self.store.snapshot_items()] == sorted(self.model)
        assert len(self.store) == len(self.model)

    @invariant()
    def open_shards_account_for_what_they_hold(self) -> None:
        for shard in self.store.shards():
            if shard.run is not None:
                continue
            live = SHARD_BYTES + sum(t.nbytes for t in shard.tables)
            live += sum(map(shard.record_bytes, range(len(shard))))
            assert shard.nbytes - shard.dead_bytes == live
            assert shard.dead_bytes >= 0
            if shard.order is None:  # dead = the physical prefix [0, base), as held
                text = shard.text
                held_from = text.chunk_starts[0] if len(text.chunk_starts) else text.tail_start
                dead = shard.base * RECORD_BYTES + text.offs[shard.base] - held_from
                dead += sum(_UNI_BYTES for p in text.uni if p < shard.base)
                dead += sum(
                    _extras_bytes(e)
                    for a, e in shard.extras.items()
                    if a - shard.pdrop < shard.base  # keyed by arrival number
                )
                if shard.xsize is not None:  # each record's structured-data size cell
                    dead += 4 * shard.base
                assert shard.dead_bytes == dead

    @invariant()
    def within_bounds(self) -> None:
        assert len(self.store) <= self.store.max_records
        assert self.store.memory_bytes() <= self.store.max_memory


def _with(q: Query, cursor: str | None) -> Query:
    return Query(
        start=q.start,
        end=q.end,
        services=q.services,
        hosts=q.hosts,
        levels=q.levels,
        facilities=q.facilities,
        q=q.q,
        limit=q.limit,
        order=q.order,
        cursor=cursor,
    )


def _key(rec_id: str) -> Key:
    ts, _, seq = rec_id.rpartition("-")
    return int(ts, 16), int(seq, 16)


def _fmt(us: int) -> str:
    from collector.times import format_timestamp

    return format_timestamp(us)


StoreAgainstSortedList.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreAgainstSortedList = StoreAgainstSortedList.TestCase
