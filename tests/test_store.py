"""The store's edge cases: identical times, shard boundaries, empty store,
bad parameters, cursors across expiry, desc paging, bounds, stats."""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import replace

import pytest

from collector.config import StoreConfig
from collector.query import MAX_BUCKETS, Query, QueryError
from collector.record import Record, make_id
from collector.store import Store
from tests.support import get_json, listener_addr, local_config, running_daemon, wait_for

SPAN = 1_000


def rec(
    ts: int,
    message: str = "Hello World",
    *,
    host: str | None = "web-1",
    service: str | None = "sshd",
    level: int = 6,
    facility: int | None = 4,
    structured_data: dict[str, dict[str, str | list[str]]] | None = None,
    fields: dict[str, object] | None = None,
) -> Record:
    return Record(
        timestamp=ts,
        received_at=ts + 7,
        host=host,
        service=service,
        procid="42",
        msgid=None,
        facility=facility,
        level=level,
        message=message,
        structured_data=structured_data,
        fields=fields,
        format="rfc5424",
    )


def store(**kw: int) -> Store:
    args = {"ttl_us": 10**12, "max_records": 10**9, "max_memory": 1 << 40, "shard_span_us": SPAN}
    args.update(kw)
    return Store(**args)


def page_all(s: Store, q: Query) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = s.query(replace(q, cursor=cursor))
        ids += [i for i, _ in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return ids


def test_an_empty_store_answers_empty_pages_stats_and_lookups() -> None:
    s = store()
    page = s.query(Query())
    assert page.items == []
    assert page.next_cursor is None
    assert s.stats(Query(), ("level",), 1_000) == {"total": 0, "by": {"level": {}}, "histogram": []}
    assert s.expire(10**15) == 0
    assert s.get(make_id(1, 1)) is None
    assert len(s) == 0
    assert s.shard_count == 0


def test_records_come_back_equal_to_what_was_added() -> None:
    s = store()
    added = [
        rec(5, "", host=None, service=None, facility=None),
        rec(6, "x", structured_data={}, fields={}),
        rec(7, "Ünïcode\udcff", structured_data={"a@1": {"k": ["1", "2"]}}, fields={"n": 1}),
        rec(8, "line\nwith\x00nul"),
    ]
    first = s.add_many(added)
    got = [r for _, r in s.query(Query()).items]
    assert got == added
    assert [s.get(make_id(r.timestamp, first + i)) for i, r in enumerate(added)] == added


def test_a_batch_takes_consecutive_seqs_and_ids_find_records() -> None:
    s = store()
    assert s.add_many([rec(10), rec(3)]) == 1
    assert s.add_many([rec(1)]) == 3
    assert [i for i, _ in s.query(Query()).items] == [make_id(1, 3), make_id(3, 2), make_id(10, 1)]


@pytest.mark.parametrize(
    "bad", ["", "zz", "1-", "-1", "1", "0x1-1", "1_0-1", " 1-1", "1-1-1", "g-1"]
)
def test_malformed_ids_find_nothing(bad: str) -> None:
    s = store()
    s.add_many([rec(1), rec(16)])
    assert s.get(bad) is None


def test_identical_timestamps_page_in_arrival_order_both_ways() -> None:
    s = store()
    for _ in range(5):
        s.add_many([rec(500)] * 50)
    asc = page_all(s, Query(limit=7))
    assert asc == [make_id(500, i) for i in range(1, 251)]
    assert page_all(s, Query(limit=7, order="desc")) == asc[::-1]


def test_records_at_shard_boundaries_fall_on_the_right_side() -> None:
    s = store()
    times = [SPAN - 1, SPAN, 2 * SPAN - 1, 2 * SPAN, 0, -1, -SPAN]
    s.add_many([rec(t) for t in times])
    assert s.shard_count == 4
    got = [r.timestamp for _, r in s.query(Query(start=SPAN, end=2 * SPAN - 1)).items]
    assert got == [SPAN, 2 * SPAN - 1]
    got = [r.timestamp for _, r in s.query(Query(end=-1)).items]
    assert got == [-SPAN, -1]
    assert s.get(make_id(-1, 6)) == rec(-1)


def test_end_before_start_and_a_bad_cursor_are_query_errors() -> None:
    s = store()
    s.add_many([rec(1)])
    with pytest.raises(QueryError, match=r"^end:"):
        s.query(Query(start=10, end=9))
    for bad in ("nonsense", "1-", "abc-xyz", ""):
        with pytest.raises(QueryError, match=r"^cursor:"):
            s.query(Query(cursor=bad))
    with pytest.raises(QueryError, match=r"^by:"):
        s.stats(Query(), ("colour",), None)
    with pytest.raises(QueryError, match=r"^step:"):
        s.stats(Query(), (), 0)


def test_desc_paging_visits_every_match_newest_first() -> None:
    s = store()
    s.add_many([rec(t, level=t % 8) for t in range(0, 5_000, 3)])
    got = page_all(s, Query(order="desc", limit=13, levels=frozenset({1, 2})))
    want = [make_id(t, t // 3 + 1) for t in range(0, 5_000, 3) if t % 8 in (1, 2)]
    assert got == want[::-1]


def test_next_cursor_is_null_when_the_page_ends_the_matches() -> None:
    s = store()
    s.add_many([rec(t) for t in range(10)])
    assert s.query(Query(limit=10)).next_cursor is None
    assert s.query(Query(limit=9)).next_cursor == make_id(8, 9)
    assert s.query(Query(limit=9, cursor=make_id(8, 9))).next_cursor is None


def test_a_cursor_from_an_expired_shard_continues_with_what_is_left() -> None:
    s = store(ttl_us=10 * SPAN)
    s.add_many([rec(t * 100) for t in range(100)])  # 10 shards
    first = s.query(Query(limit=5))
    assert s.expire(15 * SPAN) == 50  # the cursor's shard is gone
    rest = page_all(s, Query(limit=5, start=None))
    second = s.query(Query(limit=100, cursor=first.next_cursor))
    assert [i for i, _ in second.items] == rest
    assert second.next_cursor is None
    desc = s.query(Query(limit=100, order="desc", cursor=first.next_cursor))
    assert desc.items == []
    assert desc.next_cursor is None


def test_paging_sees_records_arriving_after_the_cursor_but_not_late_ones_before_it() -> None:
    s = store()
    s.add_many([rec(t) for t in range(0, 100, 10)])
    page = s.query(Query(limit=5))
    assert [r.timestamp for _, r in page.items] == [0, 10, 20, 30, 40]
    s.add_many([rec(5), rec(40), rec(95), rec(200)])  # 5 is late and before the cursor
    rest = s.query(Query(limit=100, cursor=page.next_cursor))
    assert [r.timestamp for _, r in rest.items] == [40, 50, 60, 70, 80, 90, 95, 200]


def test_expire_drops_whole_shards_and_trims_the_boundary_one() -> None:
    s = store(ttl_us=5 * SPAN)
    s.add_many([rec(t) for t in range(0, 10 * SPAN, 10)])
    before = s.memory_bytes()
    assert s.expire(5 * SPAN + 2_505) == 251  # 0, 10, ..., 2_500
    assert s.expired_total == 251
    assert len(s) == 749
    assert s.shard_count == 8
    assert s.query(Query(limit=1)).items[0][1].timestamp == 2_510
    assert s.memory_bytes() < before
    assert s.expire(100 * SPAN) == 749
    assert s.memory_bytes() == 0
    assert s.shard_count == 0


def test_max_records_evicts_the_oldest_and_counts_them() -> None:
    s = store(max_records=100)
    s.add_many([rec(t) for t in range(0, 150)])
    s.add_many([rec(t) for t in range(1_000, 1_030)] + [rec(3)])
    assert len(s) == 100
    assert s.evicted_total == 81
    assert [r.timestamp for _, r in s.query(Query(limit=1)).items] == [
        80
    ]  # 0..49, then 3 and 50..79
    s.configure(ttl_us=s.ttl_us, max_records=10, max_memory=s.max_memory)
    assert len(s) == 10
    assert s.evicted_total == 171


def test_a_tiny_max_memory_keeps_the_newest_records_within_the_bound() -> None:
    s = store(max_memory=64 * 1024)
    msg = "x" * 250
    for i in range(20):
        s.add_many([rec(i * 100 + j, msg) for j in range(50)])
        assert s.memory_bytes() <= 64 * 1024
    assert 0 < len(s) < 1_000
    assert len(s) + s.evicted_total == 1_000
    times = [r.timestamp for _, r in s.snapshot_items()]
    assert times == list(range(2_000 - len(s), 2_000)) or times == sorted(times)[-len(s) :]
    assert times[-1] == 1_949


def test_a_record_bigger_than_max_memory_is_evicted_and_counted() -> None:
    s = store(max_memory=10_000)
    s.add_many([rec(1, "y" * 20_000)])
    assert len(s) == 0
    assert s.evicted_total == 1
    assert s.memory_bytes() <= 10_000
    s.add_many([rec(2, "small")])
    assert len(s) == 1


def test_out_of_order_arrivals_are_counted_and_sorted() -> None:
    s = store()
    s.add_many([rec(t) for t in (100, 200, 300)])
    s.add_many([rec(150), rec(50), rec(400)])
    assert s.out_of_order_total == 2
    assert [r.timestamp for _, r in s.query(Query()).items] == [50, 100, 150, 200, 300, 400]


def test_q_is_a_case_insensitive_substring_of_one_message() -> None:
    s = store()
    s.add_many([rec(1, "Failed PASSWORD for root"), rec(2, "ab"), rec(3, "cd"), rec(4, "ÉTÉ")])
    assert [r.timestamp for _, r in s.query(Query(q="password for")).items] == [1]
    assert s.query(Query(q="bc")).items == []  # never across two messages
    assert [r.timestamp for _, r in s.query(Query(q="été")).items] == [4]
    assert s.query(Query(q="nothing")).items == []


def test_filters_on_values_no_shard_holds_match_nothing() -> None:
    s = store()
    s.add_many([rec(t, service="sshd" if t % 2 else None) for t in range(100)])
    assert s.query(Query(services=frozenset({"cron"}))).items == []
    assert len(s.query(Query(services=frozenset({"sshd"}), limit=100)).items) == 50
    assert s.query(Query(facilities=frozenset({0}))).items == []
    assert s.stats(Query(hosts=frozenset({"nope"})), ("host",), None)["total"] == 0


def test_stats_names_values_counts_missing_ones_and_aligns_buckets() -> None:
    s = store()
    s.add_many(
        [
            rec(1_500, level=3, host=None, facility=None),
            rec(1_600, level=3),
            rec(4_100, level=6, service="cron"),
        ]
    )
    got = s.stats(Query(), ("level", "host", "facility", "service"), 1_000)
    assert got["total"] == 3
    assert got["by"] == {
        "level": {"err": 2, "info": 1},
        "host": {"web-1": 2, "-": 1},
        "facility": {"auth": 2, "-": 1},
        "service": {"sshd": 2, "cron": 1},
    }
    assert got["histogram"] == [  # by=level with a step: each bucket stacked by level
        {"start": "1970-01-01T00:00:00.001000Z", "count": 2, "by_level": {"err": 2}},
        {"start": "1970-01-01T00:00:00.002000Z", "count": 0, "by_level": {}},
        {"start": "1970-01-01T00:00:00.003000Z", "count": 0, "by_level": {}},
        {"start": "1970-01-01T00:00:00.004000Z", "count": 1, "by_level": {"info": 1}},
    ]
    filtered = s.stats(Query(levels=frozenset({3}), start=1_550), ("level",), None)
    assert filtered == {"total": 1, "by": {"level": {"err": 1}}, "histogram": []}


def test_stats_refuse_a_step_that_makes_too_many_buckets() -> None:
    s = store()
    s.add_many([rec(0), rec(10**9)])
    with pytest.raises(QueryError, match=r"^step:"):
        s.stats(Query(), (), 1_000)
    with pytest.raises(QueryError, match=r"^step:"):
        s.stats(Query(q="hello"), (), 1_000)
    assert len(s.stats(Query(), (), 10**6)["histogram"]) == 1_001


def test_the_histogram_bound_is_the_one_the_http_parameters_have() -> None:
    s = store()
    s.add_many([rec(0), rec((MAX_BUCKETS - 1) * 1_000)])
    assert len(s.stats(Query(), (), 1_000)["histogram"]) == MAX_BUCKETS
    s.add_many([rec(MAX_BUCKETS * 1_000)])
    with pytest.raises(QueryError, match=rf"^step: .* at most {MAX_BUCKETS}\)$"):
        s.stats(Query(), (), 1_000)


def test_restore_keeps_ids_and_new_seqs_continue_above() -> None:
    s = store()
    s.add_many([rec(t) for t in (30, 10, 20)])
    items = list(s.snapshot_items())
    assert [seq for seq, _ in items] == [2, 3, 1]
    fresh = store()
    fresh.restore(reversed(items), last_seq=10)
    assert list(fresh.snapshot_items()) == items
    assert fresh.get(make_id(10, 2)) == rec(10)
    assert fresh.add_many([rec(5)]) == 11


def test_memory_estimate_grows_with_messages() -> None:
    s = store()
    s.add_many([rec(t, "m" * 100) for t in range(1_000)])
    small = s.memory_bytes()
    s.add_many([rec(t, "m" * 1_000) for t in range(1_000)])
    assert s.memory_bytes() - small > 1_000 * 1_000  # the text, held once


def test_sealed_shards_give_back_the_same_records_in_less_memory() -> None:
    s = store(block_records=100)
    added = [
        rec(
            t * 10,
            f"User {t} FAILED to log in from 10.0.0.{t % 256} via SSH; {'ÉTÉ' if t % 100 == 0 else 'ete'} {t}",
        )
        for t in range(1_000)
    ]
    s.add_many(added)
    s.add_many([rec(5_005, "Late ARRIVAL")])  # lands in a shard sealed below
    before = s.memory_bytes()
    assert s.seal() > 0
    assert s.memory_bytes() < before * 0.8  # 8 of 10 shards sealed; 60-byte messages
    s.add_many([rec(5_006, "Later STILL")])  # appended after sealing: plain text again
    got = [r for _, r in s.query(Query(limit=10_000)).items]
    want = sorted(
        [*added, rec(5_005, "Late ARRIVAL"), rec(5_006, "Later STILL")], key=lambda r: r.timestamp
    )
    assert got == want
    assert [
        r.message for _, r in s.query(Query(q="user 77 failed to log in from 10.0.0.77 ")).items
    ] == ["User 77 FAILED to log in from 10.0.0.77 via SSH; ete 77"]
    assert s.get(make_id(5_005, 1_001)) == rec(5_005, "Late ARRIVAL")
    s.seal()
    assert [r for _, r in s.snapshot_items()] == want


def test_a_record_with_an_impossible_value_is_refused_and_leaves_the_store_intact() -> None:
    s = store()
    s.add_many([rec(1, "before")])
    with pytest.raises(ValueError, match="range"):
        s.add_many([rec(2, "fine"), rec(3, "bad", level=300)])
    s.add_many([rec(4, "after")])
    assert [r.message for _, r in s.query(Query()).items] == ["before", "after"]
    assert len(s) == 2


async def test_the_daemon_shards_by_the_configured_span_and_serves_records_in_time_order() -> None:
    config = local_config(store=replace(StoreConfig(), shard_span=5.0))
    async with running_daemon(config) as d:
        assert d.store.shard_span_us == 5_000_000
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        times = [now - dt.timedelta(seconds=2 * i) for i in range(20)]  # newest first: all late
        host, port = listener_addr(d, "udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, t in enumerate(times):
                stamp = t.strftime("%Y-%m-%dT%H:%M:%SZ")
                s.sendto(f"<14>1 {stamp} web-1 app - - - message {i}".encode(), (host, port))

        async def all_stored() -> list[dict[str, object]] | None:
            logs = (await get_json(d, "/logs?start=0&limit=100"))["logs"]
            return logs if len(logs) == 20 else None

        logs = await wait_for(all_stored)
        assert [r["message"] for r in logs] == [f"message {i}" for i in range(19, -1, -1)]
        assert d.store.shard_count >= 8
        assert all(d.store.get(str(r["id"])) is not None for r in logs)


def test_a_smaller_max_memory_on_reload_evicts_the_oldest_at_once() -> None:
    s = store()
    s.add_many([rec(t, "z" * 200) for t in range(0, 5_000, 5)])
    assert s.evicted_total == 0
    s.configure(ttl_us=s.ttl_us, max_records=s.max_records, max_memory=s.memory_bytes() // 2)
    assert s.memory_bytes() <= s.max_memory
    assert 0 < len(s) < 1_000
    assert len(s) + s.evicted_total == 1_000
    assert [r.timestamp for _, r in s.snapshot_items()][-1] == 4_995


def test_a_cursor_is_a_position_whichever_order_reads_from_it() -> None:
    s = store()
    s.add_many([rec(t) for t in range(10)])
    cursor = s.query(Query(limit=4)).next_cursor
    assert cursor == make_id(3, 4)
    older = s.query(Query(order="desc", cursor=cursor))
    assert [r.timestamp for _, r in older.items] == [2, 1, 0]
    assert older.next_cursor is None


# --- the search language in the store ------------------------------------------------

SEARCHES = [
    "password",
    "pass*",
    "*word",
    "*ssw*",
    '"failed password"',
    "user_id",
    "-password",
    "host:web-1",
    "host:WEB-*",
    "-host:web-1",
    "host:*",
    "-host:*",
    "service:sshd,cron",
    "-service:cron level>=err",
    "level<=info",
    "-level:err",
    "facility:auth",
    "-facility:auth",
    "fields.user_id:42",
    "fields.user_id:*",
    "-fields.user_id:*",
    "sd.origin.ip:10.0.0.1",
    "/fail(ed)? pass/",
    "password OR cron",
    "-(host:web-1 OR service:cron)",
    "host:web-1 (failed OR accepted) -/root/",
    "procid:42",
    "msgid:*",
    "format:rfc5424",
]


def _brute(records: list[tuple[str, Record]], text: str) -> list[str]:
    from collector.matching import predicate
    from collector.search import parse

    match = predicate(parse(text))
    return [rid for rid, r in records if match(r)]


def _population() -> tuple[Store, list[tuple[str, Record]]]:
    import random

    r = random.Random(7)
    s = store()
    recs = []
    for i in range(600):
        words = r.sample(["Failed", "password", "Accepted", "root", "user_id=42", "cron", "x"], 3)
        recs.append(
            Record(
                timestamp=i * 37,  # a few records per shard of SPAN
                received_at=i * 37,
                host=r.choice(["web-1", "web-2", "db-1", None]),
                service=r.choice(["sshd", "cron", "nginx", None]),
                procid=r.choice(["42", None]),
                msgid=r.choice(["ID1", None]),
                facility=r.choice([4, 9, None]),
                level=r.randrange(8),
                message=" ".join(words),
                structured_data=r.choice([None, {"origin": {"ip": "10.0.0.1"}}]),
                fields=r.choice([None, {"user_id": 42}, {"user_id": "7", "http": {"s": 1}}]),
                format=r.choice(["rfc5424", "json"]),
            )
        )
    r.shuffle(recs)  # late arrivals too
    first = s.add_many(recs)
    ids = [make_id(rec.timestamp, first + k) for k, rec in enumerate(recs)]
    both = sorted(
        zip(ids, recs, strict=True), key=lambda p: (p[1].timestamp, int(p[0].split("-")[1], 16))
    )
    return s, both


@pytest.mark.parametrize("sealed", [False, True])
@pytest.mark.parametrize("text", SEARCHES)
def test_a_search_pages_exactly_what_the_tree_matches_in_both_orders(
    text: str, sealed: bool
) -> None:
    from collector.search import parse

    s, records = _population()
    if sealed:  # older shards as compressed blocks
        s.seal()
        assert s.sealed_records > len(records) // 2
        assert s.get(records[0][0]) == records[0][1]
    want = _brute(records, text)
    q = Query(search=parse(text), limit=7)
    assert page_all(s, q) == want
    assert page_all(s, replace(q, order="desc")) == want[::-1]
    assert s.stats(Query(search=parse(text)))["total"] == len(want)


def test_a_search_and_the_same_filter_as_parameters_find_the_same_records() -> None:
    from collector.search import parse

    s, _ = _population()
    as_params = Query(services=frozenset({"sshd"}), levels=frozenset(range(4)), q="password")
    as_search = Query(search=parse("service:sshd level>=err *password*"))
    assert page_all(s, as_params) == page_all(s, as_search)


def test_stats_count_by_fields_and_sd_with_a_dash_for_records_without() -> None:
    from collector.search import parse

    s, records = _population()
    got = s.stats(Query(), by=("fields.user_id", "sd.origin.ip"))
    n_42 = sum(1 for _, r in records if r.fields and r.fields.get("user_id") == 42)
    n_7 = sum(1 for _, r in records if r.fields and r.fields.get("user_id") == "7")
    assert got["by"]["fields.user_id"] == {"42": n_42, "7": n_7, "-": 600 - n_42 - n_7} or (
        sorted(got["by"]["fields.user_id"].items())
        == sorted({"42": n_42, "7": n_7, "-": 600 - n_42 - n_7}.items())
    )
    n_sd = sum(1 for _, r in records if r.structured_data)
    assert got["by"]["sd.origin.ip"] == {"-": 600 - n_sd, "10.0.0.1": n_sd} or got["by"][
        "sd.origin.ip"
    ] == {"10.0.0.1": n_sd, "-": 600 - n_sd}
    # Filtered, counted from the matching records only; twice (the memo) the same.
    q = Query(search=parse("host:web-1"))
    sub = s.stats(q, by=("fields.user_id",))
    assert sum(sub["by"]["fields.user_id"].values()) == sub["total"]
    assert (
        s.stats(Query(), by=("fields.user_id",))["by"]
        == s.stats(Query(), by=("fields.user_id",))["by"]
    )


def test_stats_answer_the_top_1000_values_and_others() -> None:
    s = store()
    s.add_many([rec(i, fields={"req": f"r{i % 1500}"}) for i in range(3000)])
    got = s.stats(Query(), by=("fields.req",))["by"]["fields.req"]
    assert len(got) == 1001
    assert got["others"] == 3000 - 1000 * 2
    assert all(n == 2 for k, n in got.items() if k != "others")


def test_stats_with_step_and_by_level_stack_each_bucket_by_level() -> None:
    from collector.search import parse

    s = store()
    s.add_many([rec(i * 100, level=3 if i % 3 == 0 else 6) for i in range(30)])
    for q in (Query(), Query(search=parse("-nothing"))):
        got = s.stats(q, by=("level",), step_us=1000)
        assert [b["count"] for b in got["histogram"]] == [10, 10, 10]
        assert got["histogram"][0]["by_level"] == {"err": 4, "info": 6}
        assert sum(sum(b["by_level"].values()) for b in got["histogram"]) == 30
    # Many records a bucket: counted per bucket and level at C speed, same answer.
    s = store()
    s.add_many([rec(i * 2, level=i % 4) for i in range(1500)])
    whole = s.stats(Query(), by=("level",), step_us=250)
    scanned = s.stats(Query(search=parse("-nothing")), by=("level",), step_us=250)
    assert whole == scanned
    assert whole["histogram"][0]["by_level"] == {"emerg": 32, "alert": 31, "crit": 31, "err": 31}
    assert "by_level" not in s.stats(Query(), by=("host",), step_us=1000)["histogram"][0]


def test_fields_names_fields_and_sd_params_with_counts_most_frequent_first() -> None:
    from collector.search import parse

    s, records = _population()
    names = dict(s.fields(Query()))
    assert names["fields.user_id"] == sum(1 for _, r in records if r.fields)
    assert names["fields.http.s"] == sum(1 for _, r in records if r.fields and "http" in r.fields)
    assert names["sd.origin.ip"] == sum(1 for _, r in records if r.structured_data)
    counts = [c for _, c in s.fields(Query())]
    assert counts == sorted(counts, reverse=True)
    only = dict(s.fields(Query(search=parse("fields.http.s:*"))))
    assert only["fields.user_id"] == only["fields.http.s"]


def test_context_is_the_exact_neighbours_in_scope_in_time_then_id_order() -> None:
    from collector.query import ContextQuery

    s, records = _population()
    mid_id, mid = records[300]
    for scope, same in (
        ("all", lambda r: True),
        ("host", lambda r: r.host == mid.host),
        ("host,service", lambda r: r.host == mid.host and r.service == mid.service),
    ):
        inscope = [rid for rid, r in records if same(r)]
        k = inscope.index(mid_id)
        items, anchor = s.context(mid_id, ContextQuery(before=5, after=3, scope=scope)) or ([], -1)
        assert [rid for rid, _ in items] == inscope[max(0, k - 5) : k + 4]
        assert items[anchor][0] == mid_id
    items, anchor = s.context(records[0][0], ContextQuery(before=5, after=0, scope="all")) or (
        [],
        -1,
    )
    assert (len(items), anchor) == (1, 0)
    assert s.context("nope", ContextQuery()) is None


def test_a_scan_cut_short_by_the_budget_pages_on_and_still_visits_every_match_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collector import store as store_module
    from collector.search import parse

    monkeypatch.setattr(store_module, "SCAN_BUDGET", 10)
    s, records = _population()
    for text in ("/pass/", "-password", "pass*", "fields.user_id:42 /root/"):
        want = _brute(records, text)
        q = Query(search=parse(text), limit=50)
        first = s.query(q)
        assert len(first.items) < 50  # cut short: at most 10 records tested
        assert first.next_cursor is not None
        assert page_all(s, q) == want
        assert page_all(s, replace(q, order="desc")) == want[::-1]


def test_fields_terms_past_the_index_budget_are_tested_record_by_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collector import store as store_module
    from collector.search import parse

    monkeypatch.setattr(store_module, "INDEX_BUDGET", 5)  # fewer than any shard holds
    s, records = _population()
    for text in ("fields.user_id:42", "fields.user_id:*", "sd.origin.ip:10.0.0.1 host:web-1"):
        want = _brute(records, text)
        q = Query(search=parse(text), limit=9)
        assert page_all(s, q) == want
        assert page_all(s, replace(q, order="desc")) == want[::-1]


def test_expire_counts_older_shards_field_names_ahead_of_fields() -> None:
    s, _ = _population()
    want = s.fields(Query())
    fresh, _ = _population()
    assert fresh.warm(10**9) > 0
    assert fresh.warm(10**9) == 0  # counted once while the shards do not change
    assert fresh.fields(Query()) == want
    fresh.expire(10**9)  # the sweeper's call: warming is part of it, a budget at a time
    assert fresh.fields(Query()) == want


def test_remembered_counts_and_indexes_are_bounded_and_least_recently_used_go_first() -> None:
    from collector.memo import Memo

    memo = Memo(max_entries=10)
    assert memo.get(("a",), dict.fromkeys, "abcd") == dict.fromkeys("abcd")  # 5 entries
    memo.get(("b",), dict.fromkeys, "xyz")  # 4 more: 9
    assert memo.peek(("a",)) is not None  # a is now the most recent
    memo.get(("c",), dict.fromkeys, "pq")  # 3 more: b goes
    assert memo.peek(("b",)) is None
    assert memo.peek(("a",)) is not None
    assert memo.entries <= 10
    big = memo.get(("d",), dict.fromkeys, "0123456789")  # too big to keep: computed, not kept
    assert len(big) == 10
    assert memo.peek(("d",)) is None


def test_a_few_hits_in_a_big_shard_are_walked_in_order_both_ways() -> None:
    from collector.search import parse

    s = store(shard_span_us=10**9)  # one shard of 3,000 records
    recs = [
        rec(i, "needle here" if i % 500 == 7 else "hay", host="web-1" if i % 1000 == 7 else "db-1")
        for i in range(3000)
    ]
    first = s.add_many(recs)
    ids = [make_id(r.timestamp, first + k) for k, r in enumerate(recs)]
    want = [ids[i] for i in range(3000) if i % 500 == 7]
    for q in (Query(q="needle", limit=2), Query(search=parse("needle"), limit=2)):
        assert page_all(s, q) == want
        assert page_all(s, replace(q, order="desc")) == want[::-1]
    both = Query(search=parse("needle host:web-1"), limit=2)
    assert page_all(s, both) == [ids[i] for i in range(3000) if i % 1000 == 7]
    assert page_all(s, replace(both, order="desc", start=1000)) == [ids[2007], ids[1007]]


def test_records_with_ids_are_stored_once_under_them_and_new_ones_take_this_node() -> None:
    from collector.record import NODE_SHIFT, node_of

    s = store(node=3)
    other = 9 << NODE_SHIFT
    items: list[tuple[int | None, Record]] = [
        (other + 2, rec(20, "b")),
        (other + 1, rec(10, "a")),
        (None, rec(15, "mine")),
        (other + 1, rec(10, "a")),  # repeated in the batch
    ]
    stored = s.add_items(items)
    assert [r.message for _, r in stored] == ["b", "a", "mine"]
    assert s.add_items(items[:2]) == []  # already held: a replay stores nothing
    assert len(s) == 3
    assert s.get(make_id(10, other + 1)) == rec(10, "a")
    minted = stored[2][0]
    assert node_of(minted) == 3
    assert [r.message for _, r in s.query(Query()).items] == ["a", "mine", "b"]
    first = s.add_many([rec(30, "next")])
    assert first == minted + 1  # the foreign seqs did not move this node's counter


def test_a_shard_whose_records_cannot_be_sealed_stays_open_and_answers() -> None:
    s = store(block_records=16)
    odd = rec(10, "odd one")
    odd.fields = {"handle": object()}  # nothing a parser makes; marshal refuses it
    s.add_many([rec(t, f"m{t} " + "x" * 300) for t in range(0, 5_000, 100)] + [odd])
    s.seal()
    s.seal()  # not retried: the failed shard stays open
    got = [r for _, r in s.query(Query(limit=1_000)).items]
    assert odd in got
    assert len(got) == 51
    assert s.sealed_records == 20  # shards 1 and 2; 0 holds the odd record, 3 and 4 are the newest


def test_a_sealed_shard_rules_out_absent_words_from_its_word_filter_and_misses_no_match() -> None:
    from collector.search import parse
    from collector.shardquery import _Summary

    s = store()
    messages = ["disk full on sda7", "İd ready", "ΟΔΟΣ closed", "user_id=42 logged in"]
    recs = [rec(t, messages[t // 100 % 4] + " " + "x" * 300) for t in range(0, 8_000, 100)]
    first = s.add_many(recs)
    ids = [make_id(r.timestamp, first + k) for k, r in enumerate(recs)]
    s.seal()
    sealed = [sh for sh in s._shards.values() if sh.run is not None]
    assert sealed
    for sh in sealed:
        summary = _Summary(sh, 0, len(sh))
        assert not summary.may_have_word("nosuchword")
        assert summary.may_have_word("disk") or all(
            "disk" not in r.message for r in sh.records(range(len(sh)))
        )
    for text in ["disk", "sda7", "i", "ready", "οδος", "οδοσ", "user", "id", "42", "timeout"]:
        want = [i for i, r in zip(ids, recs, strict=True) if parse(text) and _match(text, r)]
        assert page_all(s, Query(search=parse(text), limit=5)) == want, text


def _match(text: str, r: Record) -> bool:
    from collector.matching import predicate
    from collector.search import parse

    return predicate(parse(text))(r)


def _mixed(i: int) -> Record:
    # Some structured data and some non-ASCII text: both are keyed by physical index.
    sd = {"meta@1": {"n": str(i)}} if i % 7 == 0 else None
    return rec(
        i, f"request {i} {'grüße' if i % 5 == 0 else 'plain'} " + "z" * (i % 90), structured_data=sd
    )


def test_an_open_shard_evicted_for_memory_keeps_its_live_records_without_a_rebuild() -> None:
    s = store(max_memory=400_000, shard_span_us=10**12, freeze_bytes=2_000, cache_bytes=0)
    added: list[Record] = []
    shard = None
    evicting = 0
    for b in range(60):
        batch = [_mixed(b * 100 + j) for j in range(100)]
        added += batch
        before = s.evicted_total
        s.add_many(batch)
        evicting += s.evicted_total > before
        (only,) = s.shards()
        if shard is None:
            shard = only
        # The same object all along: no record-by-record rebuild into a fresh shard.
        assert only is shard
        assert only.run is None
        assert only.order is None
        # The dead prefix is gone from every column, and its text but
        # what shares the first held chunk with live text.
        assert len(only.recv) == len(only.host) == len(only.text.offs) - 1 == len(only)
        first = only.text.texts[0] if only.text.texts else only.text.tail
        assert 0 <= only.dead_bytes < len(first)
        assert s.memory_bytes() <= 400_000
    assert evicting >= 5
    kept = added[s.evicted_total :]
    assert len(kept) == len(s)
    assert [r for _, r in s.snapshot_items()] == kept
    for seq, r in list(s.snapshot_items())[::37]:
        assert s.get(make_id(r.timestamp, seq)) == r
    page = s.query(Query(q="grüße", limit=10_000))
    found = sorted((r for _, r in page.items), key=lambda r: r.timestamp)
    assert found == [r for r in kept if "grüße" in r.message]
    with_sd = [r for _, r in s.snapshot_items() if r.structured_data]
    assert with_sd == [r for r in kept if r.structured_data]


def test_late_records_in_an_open_shard_evicted_for_memory_are_kept_exactly() -> None:
    s = store(max_memory=300_000, shard_span_us=10**12, freeze_bytes=2_000, cache_bytes=0)
    model: dict[tuple[int, int], Record] = {}
    uids = set()
    for b in range(60):
        # Every tenth record of a batch is 500 us late.
        batch = [_mixed(b * 100 + j - (500 if j % 10 == 0 else 0)) for j in range(100)]
        fresh = s.add_items([(None, r) for r in batch])
        model.update(((r.timestamp, seq), r) for seq, r in fresh)
        uids.add(s.shards()[0].uid)
        assert s.memory_bytes() <= 300_000
    keys = sorted(model)[s.evicted_total :]
    assert [(r.timestamp, seq) for seq, r in s.snapshot_items()] == keys
    assert [r for _, r in s.snapshot_items()] == [model[k] for k in keys]
    # Rebuilds are amortised: far fewer than the batches that evicted (14 before).
    assert len(uids) <= 4, len(uids)


def test_a_record_older_than_one_evicted_for_memory_counts_as_evicted_at_once() -> None:
    """At its bound the store evicts the oldest first, so a late record older
    than one it already evicted would be the next to go: it is counted as
    evicted on arrival, and does not hold the store's oldest time back
    (the log's pruning waits on it). Below the bound it is kept."""
    s = store(max_memory=300_000, shard_span_us=10**12, freeze_bytes=2_000, cache_bytes=0)
    for b in range(40):
        s.add_many([_mixed(10_000 + b * 100 + j) for j in range(100)])
    assert s.evicted_total > 0
    oldest = s.oldest_timestamp()
    assert oldest is not None
    assert oldest > 10_000
    before, held = s.evicted_total, len(s)
    first = s.add_many([_mixed(10_000), _mixed(5_000)])  # both older than the evicted
    assert s.evicted_total == before + 2
    assert len(s) == held
    assert s.oldest_timestamp() == oldest
    assert s.get(make_id(10_000, first)) is None
    # Newer than what was evicted: stored as ever.
    s.add_many([_mixed(oldest + 1)])
    assert len(s) == held + 1
    # Below the bound (the TTL took most of it): old records are kept again.
    s.expire(oldest + 10**12 - 1 + 40 * 100 - 200)
    assert s.memory_bytes() < 150_000
    first = s.add_many([_mixed(5_000)])
    assert s.get(make_id(5_000, first)) is not None


def _one_by_one(shard: object, need: int) -> int:
    """How many records eviction took before: record_bytes added one at a time."""
    freed = k = 0
    n = len(shard)  # type: ignore[arg-type]
    while freed < need and k < n:
        freed += shard.record_bytes(k)  # type: ignore[attr-defined]
        k += 1
    return k


@pytest.mark.parametrize("sealed", [False, True])
def test_records_to_free_takes_what_adding_record_bytes_one_by_one_takes(sealed: bool) -> None:
    # Eviction frees an eighth of the store at once: it must not take a Python
    # step per record, yet take the records the one-by-one sum took (sealed:
    # exactly, blocks freed with their last record; open: never fewer, at
    # most the few that structured data's bytes, left out, account for).
    s = store(block_records=100)
    s.add_many(
        [
            rec(
                t,
                "m" * (20 + t % 200),
                structured_data={"a@1": {"k": "v" * (t % 30)}} if t % 5 == 0 else None,
            )
            for t in range(3 * SPAN)
        ]
    )
    if sealed:
        s.seal()
    shard = s._shards[s._keys[0]]
    assert (shard.run is not None) is sealed
    total = sum(shard.record_bytes(i) for i in range(len(shard)))
    for need in (1, 50, 99, 100, 101, 2_999, 3_000, 20_000, 40_000, total - 1, total, total + 5):
        got = shard.records_to_free(need)
        want = _one_by_one(shard, need)
        if sealed:
            assert got == want, need
        else:
            # 20% of these records carry SD worth ~30% of their bytes.
            assert want <= got <= want + max(2, want // 2), need
            assert sum(shard.record_bytes(i) for i in range(got)) >= min(need, total)
