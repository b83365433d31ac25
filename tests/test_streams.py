"""Stream listeners against real brokers: replicas, groups, ack after store, resume."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from collector.config import ListenerConfig, OutputConfig
from collector.outputs import Output, record_json
from collector.record import Record, make_id, record_to_dict
from collector.streams import (
    StreamItem,
    StreamListener,
    make_stream_listener,
    record_from_json,
    stream_key,
)
from tests.brokers import Broker, needs_kafka, needs_redis
from tests.support import wait_for

T0 = (time.time_ns() // 1_000_000_000 - 60) * 1_000_000 + 654_321


def rec(i: int, **kw: Any) -> Record:
    base: dict[str, Any] = {
        "timestamp": T0 + i,
        "received_at": T0 + i + 500,
        "host": f"h{i % 4}",
        "service": "app",
        "procid": None,
        "msgid": "M1",
        "facility": 16,
        "level": 6,
        "message": f"message {i}",
        "structured_data": None,
        "fields": None,
        "format": "rfc5424",
    }
    base.update(kw)
    return Record(**base)


def test_a_record_read_back_from_its_json_is_the_same_record_with_the_same_id() -> None:
    r = rec(1, structured_data={"a@1": {"k": ["x", "y"]}}, fields={"n": 1}, facility=None)
    seq, back = record_from_json(record_json(make_id(r.timestamp, 77), r))
    assert seq == 77
    assert back == r


def test_a_record_without_an_id_is_read_with_none_for_a_new_one() -> None:
    d = record_to_dict(rec(2), "x")
    del d["id"]
    seq, back = record_from_json(json.dumps(d))
    assert seq is None
    assert back.message == "message 2"


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1, 2]",
        b'{"timestamp": "yesterday"}',
        json.dumps(record_to_dict(rec(3), "zz-1")).encode(),  # not a collector id
        json.dumps(record_to_dict(rec(3), make_id(T0, 1))).encode(),  # id of another time
        json.dumps({**record_to_dict(rec(3), make_id(T0 + 3, 1)), "level": "loud"}).encode(),
    ],
)
def test_entries_that_are_not_collector_records_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (the reason varies)
        record_from_json(data)


def test_one_stream_has_one_key_however_its_url_is_spelled() -> None:
    assert stream_key("redis", "redis://h:6379", "s") == stream_key("redis", "redis://h/0", "s")
    assert stream_key("redis", "redis://h/1", "s") != stream_key("redis", "redis://h/0", "s")
    assert stream_key("kafka", "kafka://b:1,a:2", "t") == stream_key(
        "kafka", "kafka://a:2,b:1/", "t"
    )


class Collected:
    """A sink that keeps what it is given, optionally failing the first calls."""

    def __init__(self, fail_first: int = 0) -> None:
        self.items: list[StreamItem] = []
        self.fail_first = fail_first
        self.calls = 0

    async def __call__(self, items: list[StreamItem]) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise OSError("disk full")
        self.items.extend(items)

    def ids(self) -> list[str]:
        return [make_id(r.timestamp, s) for s, r in self.items if s is not None]


async def forward(broker: Broker, records: list[Record], first_seq: int = 1) -> None:
    out = Output(OutputConfig(name="o", type=broker.kind, url=broker.url, stream="logs"))
    out.start()
    try:
        out.offer(range(first_seq, first_seq + len(records)), records)
        await wait_for(lambda: out.stats.sent == len(records), timeout=30)
    finally:
        await out.close()


def listener(broker: Broker, name: str, group: str | None = None, **kw: Any) -> ListenerConfig:
    return ListenerConfig(
        name=name, transport=broker.kind, url=broker.url, stream="logs", group=group, **kw
    )


def ids_of(n: int, start: int = 0) -> list[str]:
    return [make_id(T0 + i, i + 1) for i in range(start, start + n)]


async def started(lst: StreamListener) -> StreamListener:
    lst.start()
    return lst


@needs_redis
async def test_two_redis_replicas_each_read_the_whole_stream(redis_server: Broker) -> None:
    await forward(redis_server, [rec(i) for i in range(3000)])
    sinks = [Collected(), Collected()]
    readers = [make_stream_listener(listener(redis_server, f"r{k}"), sinks[k]) for k in (0, 1)]
    for r in readers:
        r.start()
    try:
        await wait_for(lambda: all(len(s.items) == 3000 for s in sinks), timeout=20)
        await forward(redis_server, [rec(i) for i in range(3000, 3100)], first_seq=3001)
        await wait_for(lambda: all(len(s.items) == 3100 for s in sinks), timeout=20)
        await wait_for(lambda: all(r.lag == 0 for r in readers), timeout=5)
    finally:
        for r in readers:
            await r.close()
    for s in sinks:
        assert s.ids() == ids_of(3100)
    assert readers[0].stats.received == 3100


@needs_redis
async def test_redis_readers_in_a_group_share_the_stream_without_overlap(
    redis_server: Broker,
) -> None:
    sinks = [Collected(), Collected()]
    readers = [
        make_stream_listener(listener(redis_server, f"g{k}", group="shards"), sinks[k], node=k)
        for k in (0, 1)
    ]
    for r in readers:
        r.start()
    try:
        for b in range(0, 4000, 500):  # several batches, so that both readers get some
            await forward(redis_server, [rec(i) for i in range(b, b + 500)], first_seq=b + 1)
        await wait_for(lambda: sum(len(s.items) for s in sinks) >= 4000, timeout=20)
        await wait_for(lambda: readers[0].lag == 0, timeout=5)
    finally:
        for r in readers:
            await r.close()
    got = sinks[0].ids() + sinks[1].ids()
    assert sorted(got) == sorted(ids_of(4000))
    assert len(set(sinks[0].ids()) & set(sinks[1].ids())) == 0
    assert await pending(redis_server, "shards") == 0


async def pending(broker: Broker, group: str) -> int:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(broker.url)
    try:
        info = await r.xpending("logs", group)
        return int(info["pending"])
    finally:
        await r.aclose()


@needs_redis
async def test_a_group_reader_acks_only_what_was_stored_and_gets_the_rest_again_after_restart(
    redis_server: Broker,
) -> None:
    await forward(redis_server, [rec(i) for i in range(100)])
    failing = Collected(fail_first=1_000_000)  # storing always fails: nothing may be acked
    cfg = listener(redis_server, "g", group="grp", consumer="me")
    first = make_stream_listener(cfg, failing)
    first.start()
    try:
        await wait_for(lambda: failing.calls >= 1, timeout=10)
    finally:
        await first.close()
    assert await pending(redis_server, "grp") == 100
    ok = Collected()
    again = make_stream_listener(cfg, ok)  # the same consumer name, as after a restart
    again.start()
    try:
        await wait_for(lambda: len(ok.items) == 100, timeout=10)
    finally:
        await again.close()
    assert sorted(ok.ids()) == sorted(ids_of(100))
    assert await pending(redis_server, "grp") == 0


@needs_redis
async def test_a_replica_with_a_state_dir_resumes_after_what_it_stored(
    redis_server: Broker, tmp_path: Any
) -> None:
    await forward(redis_server, [rec(i) for i in range(500)])
    cfg = listener(redis_server, "rep")
    first = Collected()
    r1 = make_stream_listener(cfg, first, state_dir=str(tmp_path))
    r1.start()
    try:
        await wait_for(lambda: len(first.items) == 500, timeout=10)
    finally:
        await r1.close()
    await forward(redis_server, [rec(i) for i in range(500, 600)], first_seq=501)
    second = Collected()
    r2 = make_stream_listener(cfg, second, state_dir=str(tmp_path))
    r2.start()
    try:
        await wait_for(lambda: len(second.items) >= 100, timeout=10)
        await wait_for(lambda: r2.lag == 0, timeout=5)
    finally:
        await r2.close()
    assert second.ids() == ids_of(100, 500)


@needs_redis
async def test_entries_that_are_not_records_are_counted_and_skipped(redis_server: Broker) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_server.url)
    try:
        await r.xadd("logs", {"record": b"garbage"})
        await r.xadd("logs", {"other": b"field"})
        await r.xadd("logs", {"record": record_json(make_id(T0, 5), rec(0))})
    finally:
        await r.aclose()
    sink = Collected()
    lst = make_stream_listener(listener(redis_server, "r"), sink)
    lst.start()
    try:
        await wait_for(lambda: len(sink.items) == 1, timeout=10)
    finally:
        await lst.close()
    assert lst.stats.dropped == {"bad_record": 2}


@needs_redis
async def test_a_reader_comes_back_by_itself_after_redis_restarts(redis_server: Broker) -> None:
    sink = Collected()
    lst = make_stream_listener(listener(redis_server, "r"), sink)
    lst.start()
    try:
        await forward(redis_server, [rec(0)])
        await wait_for(lambda: len(sink.items) == 1, timeout=10)
        redis_server.stop()
        await wait_for(lambda: not lst.up, timeout=10)
        redis_server.start()  # empty again: --save '' keeps nothing
        await forward(redis_server, [rec(1)], first_seq=2)
        await wait_for(lambda: len(sink.items) == 2, timeout=20)
        assert lst.up
    finally:
        await lst.close()
    assert sink.ids() == ids_of(2)


@needs_kafka
async def test_kafka_replicas_read_everything_and_a_group_shares_it(kafka_server: Broker) -> None:
    await forward(kafka_server, [rec(i) for i in range(1000)])
    replica = Collected()
    shared = [Collected(), Collected()]
    readers = [make_stream_listener(listener(kafka_server, "rep"), replica)]
    readers += [
        make_stream_listener(listener(kafka_server, f"g{k}", group="grp"), shared[k], node=k)
        for k in (0, 1)
    ]
    for r in readers:
        r.start()
    try:
        await wait_for(
            lambda: len(replica.items) == 1000 and sum(len(s.items) for s in shared) >= 1000,
            timeout=60,
        )
    finally:
        for r in readers:
            await r.close()
    assert sorted(replica.ids()) == sorted(ids_of(1000))
    both = shared[0].ids() + shared[1].ids()
    assert sorted(set(both)) == sorted(ids_of(1000))


@needs_kafka
async def test_a_kafka_group_reader_resumes_after_its_commit(kafka_server: Broker) -> None:
    await forward(kafka_server, [rec(i) for i in range(200)])
    cfg = listener(kafka_server, "g", group="resume")
    first = Collected()
    r1 = make_stream_listener(cfg, first)
    r1.start()
    try:
        await wait_for(lambda: len(first.items) == 200, timeout=60)
    finally:
        await r1.close()
    await forward(kafka_server, [rec(i) for i in range(200, 250)], first_seq=201)
    second = Collected()
    r2 = make_stream_listener(cfg, second)
    r2.start()
    try:
        await wait_for(lambda: len(second.items) >= 50, timeout=60)
    finally:
        await r2.close()
    assert sorted(second.ids()) == sorted(ids_of(50, 200))
