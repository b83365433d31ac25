"""Outputs: encoding, bounded queues and spools, and delivery to real brokers."""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import time
from typing import Any

import pytest

from collector.config import ListenerConfig, OutputConfig
from collector.outputs import Output, encode_items, record_json, record_rfc5424
from collector.record import Record, make_id, record_to_dict
from collector.rfc5424 import parse_rfc5424
from collector.spool import DiskSpool, MemoryQueue
from tests.brokers import Broker, needs_kafka, needs_redis, redis_broker, running
from tests.support import listener_addr, local_config, running_daemon, wait_for

# A minute ago, on a whole second plus 123456 us: recent enough for any store's TTL.
T0 = (time.time_ns() // 1_000_000_000 - 60) * 1_000_000 + 123_456


def rec(i: int = 0, **kw: Any) -> Record:
    base: dict[str, Any] = {
        "timestamp": T0 + i,
        "received_at": T0 + i + 1000,
        "host": f"web-{i % 3}",
        "service": "sshd",
        "procid": "1234",
        "msgid": None,
        "facility": 4,
        "level": 3,
        "message": f"Failed password for root #{i}",
        "structured_data": None,
        "fields": None,
        "format": "rfc5424",
    }
    base.update(kw)
    return Record(**base)


ODD = [
    rec(1, host=None, service=None, procid=None, facility=None, message=""),
    rec(2, message='quote " backslash \\ newline \n tab \t é 日本 \x00 \u2028'),
    rec(3, structured_data={"origin@32473": {"ip": "10.0.0.1", "x": ["a", "b]"]}}),
    rec(4, fields={"user": {"id": 42}, "list": [1, 2], "none": None}, format="json"),
    rec(5, message="invalid \udcff surrogate from a bad byte"),
]


@pytest.mark.parametrize("r", ODD, ids=range(len(ODD)))
def test_record_json_is_the_api_shape_of_the_record(r: Record) -> None:
    rid = make_id(r.timestamp, 7)
    got = json.loads(record_json(rid, r))
    want = record_to_dict(r, rid)
    assert got == want
    assert list(got) == list(want)  # same key order as the API


@pytest.mark.parametrize("r", ODD[:4], ids=range(4))
def test_rfc5424_output_parses_back_to_the_same_record(r: Record) -> None:
    line = record_rfc5424(r).decode()
    back = parse_rfc5424(line, int(line[1 : line.index(">")]), 0, None, _dt.timezone.utc)
    assert back is not None
    assert back.timestamp == r.timestamp
    assert (back.host, back.service, back.procid, back.msgid) == (
        r.host,
        r.service,
        r.procid,
        r.msgid,
    )
    assert back.level == r.level
    assert back.facility == (1 if r.facility is None else r.facility)
    assert back.message == r.message
    assert (back.structured_data or None) == r.structured_data


def test_kafka_items_are_keyed_by_host_and_others_are_not() -> None:
    records = [rec(0), rec(1, host=None)]
    kafka = encode_items("kafka", [1, 2], records)
    assert [k for k, _ in kafka] == [b"web-0", b""]
    assert json.loads(kafka[0][1])["id"] == make_id(T0, 1)
    assert all(k == b"" for k, _ in encode_items("redis", [1, 2], records))


# --- queues -------------------------------------------------------------------


def items(n: int, start: int = 0, size: int = 100) -> list[tuple[bytes, bytes]]:
    return [(b"k", b"%08d" % (start + i) + b"x" * (size - 8)) for i in range(n)]


def test_memory_queue_drops_the_oldest_chunks_past_its_bound_and_counts_them() -> None:
    q = MemoryQueue(max_bytes=5000)
    for c in range(10):
        q.put(items(10, c * 10))
    assert q.dropped > 0
    assert q.records == 100 - q.dropped
    assert q.nbytes <= 5000
    head = q.peek()
    assert head is not None
    assert head[1][0][1].startswith(
        b"%08d" % q.dropped
    )  # the oldest left is right after those dropped


def test_memory_queue_keeps_a_chunk_until_it_is_acknowledged() -> None:
    q = MemoryQueue(max_bytes=1 << 20)
    q.put(items(3))
    q.put(items(2, 3))
    first = q.peek()
    assert first is not None
    assert q.peek() == first
    q.ack(first[0] + 99)  # not the head: nothing happens
    assert q.records == 5
    q.ack(first[0])
    second = q.peek()
    assert second is not None
    assert second[1] == items(2, 3)
    assert q.records == 2


def test_disk_spool_resends_unacknowledged_chunks_after_a_restart(tmp_path: Any) -> None:
    d = str(tmp_path / "spool")
    s = DiskSpool(d, 1 << 20)
    s.open()
    for c in range(3):
        s.put(items(5, c * 5))
    head = s.peek()
    assert head is not None
    s.ack(head[0])
    s.close()
    s2 = DiskSpool(d, 1 << 20)
    s2.open()
    assert s2.records == 10
    got = []
    while (h := s2.peek()) is not None:
        got.extend(v for _, v in h[1])
        s2.ack(h[0])
    assert got == [v for _, v in items(10, 5)]
    assert s2.records == 0
    s2.close()
    s3 = DiskSpool(d, 1 << 20)
    s3.open()
    assert s3.peek() is None
    s3.close()


def test_disk_spool_drops_whole_oldest_segments_past_spool_max(tmp_path: Any) -> None:
    d = str(tmp_path / "spool")
    s = DiskSpool(d, 512 * 1024)  # segments of 64 KiB
    for c in range(200):
        s.put(items(10, c * 10, size=500))  # 200 x ~5 KiB
    assert s.dropped > 0
    assert s.records == 2000 - s.dropped
    on_disk = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    assert on_disk <= 512 * 1024 + 64 * 1024
    head = s.peek()
    assert head is not None
    assert head[1][0][1].startswith(b"%08d" % s.dropped)
    s.close()


def test_disk_spool_ignores_a_torn_last_frame(tmp_path: Any) -> None:
    d = str(tmp_path / "spool")
    s = DiskSpool(d, 1 << 20)
    s.put(items(4))
    s.put(items(4, 4))
    s.close()
    seg = sorted(f for f in os.listdir(d) if f.startswith("spool-"))[0]
    path = os.path.join(d, seg)
    os.truncate(path, os.path.getsize(path) - 10)  # a crash in the middle of the last write
    s2 = DiskSpool(d, 1 << 20)
    s2.open()
    assert s2.records == 4
    head = s2.peek()
    assert head is not None
    assert head[1] == items(4)
    s2.close()


# --- delivery to real destinations ------------------------------------------------


def out_cfg(broker: Broker, **kw: Any) -> OutputConfig:
    return OutputConfig(
        name=kw.pop("name", "out"), type=broker.kind, url=broker.url, stream="logs", **kw
    )


async def xrange_all(url: str, stream: str = "logs") -> list[dict[str, Any]]:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    try:
        entries = await r.xrange(stream)
    finally:
        await r.aclose()
    return [json.loads(fields[b"record"]) for _, fields in entries]


async def xlen(url: str, stream: str = "logs") -> int:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    try:
        return int(await r.xlen(stream))
    finally:
        await r.aclose()


@needs_redis
async def test_redis_output_xadds_every_record_in_order_with_its_id(redis_server: Broker) -> None:
    out = Output(out_cfg(redis_server))
    out.start()
    try:
        records = [rec(i) for i in range(5000)]
        for b in range(0, 5000, 700):
            out.offer(range(b + 1, b + 1 + len(records[b : b + 700])), records[b : b + 700])
        await wait_for(lambda: out.stats.sent == 5000, timeout=20)
        assert out.stats.up
        assert out.queue_records == 0
    finally:
        await out.close()
    got = await xrange_all(redis_server.url)
    assert [g["id"] for g in got] == [make_id(T0 + i, i + 1) for i in range(5000)]
    assert got[42] == record_to_dict(records[42], make_id(T0 + 42, 43))


@needs_redis
async def test_redis_output_trims_the_stream_to_about_maxlen(redis_server: Broker) -> None:
    out = Output(out_cfg(redis_server, maxlen=1000))
    out.start()
    try:
        out.offer(range(1, 5001), [rec(i) for i in range(5000)])
        await wait_for(lambda: out.stats.sent == 5000, timeout=20)
    finally:
        await out.close()
    n = await xlen(redis_server.url)
    assert 1000 <= n < 5000


@needs_redis
async def test_a_down_redis_fills_the_queue_and_everything_arrives_once_it_is_back() -> None:
    broker = redis_broker()
    out = Output(out_cfg(broker))
    out.start()
    try:
        out.offer(range(1, 101), [rec(i) for i in range(100)])
        await wait_for(lambda: out.stats.failed > 0 or out.queue_records == 100, timeout=5)
        assert not out.stats.up
        assert out.queue_records == 100
        with running(broker):
            out.offer(range(101, 201), [rec(i) for i in range(100, 200)])
            await wait_for(lambda: out.stats.sent == 200, timeout=20)
            assert out.stats.up
            got = await xrange_all(broker.url)
    finally:
        await out.close()
    assert [g["id"] for g in got] == [make_id(T0 + i, i + 1) for i in range(200)]


@needs_redis
async def test_a_spooled_output_delivers_after_a_restart_what_waited_on_disk(
    tmp_path: Any,
) -> None:
    broker = redis_broker()
    spool = str(tmp_path / "spool")
    out = Output(out_cfg(broker, spool_dir=spool))
    out.start()
    out.offer(range(1, 1001), [rec(i) for i in range(1000)])
    await wait_for(lambda: out.queue.records == 1000, timeout=5)
    await out.close(timeout=0.5)
    assert out.dropped == 0
    assert any(f.startswith("spool-") for f in os.listdir(spool))
    with running(broker):
        again = Output(out_cfg(broker, spool_dir=spool))
        again.start()
        try:
            await wait_for(lambda: again.stats.sent == 1000, timeout=20)
        finally:
            await again.close()
        got = await xrange_all(broker.url)
    assert [g["id"] for g in got] == [make_id(T0 + i, i + 1) for i in range(1000)]


@needs_redis
async def test_a_memory_queue_past_its_bound_drops_the_oldest_and_counts_them() -> None:
    broker = redis_broker()  # never started: the destination stays down
    out = Output(out_cfg(broker, spool_max=200_000))
    out.start()
    try:
        for b in range(0, 5000, 500):
            out.offer(range(b + 1, b + 501), [rec(i) for i in range(b, b + 500)])
        await wait_for(lambda: out.dropped > 0 and out.queue_records < 5000, timeout=5)
        # the bound, plus at most the one chunk (up to 2000 records) the queue always keeps
        assert out.queue.nbytes <= 200_000 + 2000 * 400
        assert out.queue_records + out.dropped == 5000
    finally:
        await out.close(timeout=0.1)


@needs_kafka
async def test_kafka_output_sends_record_json_keyed_by_host(kafka_server: Broker) -> None:
    from confluent_kafka import Consumer

    out = Output(out_cfg(kafka_server))
    out.start()
    try:
        out.offer(range(1, 301), [rec(i) for i in range(300)])
        await wait_for(lambda: out.stats.sent == 300, timeout=30)
        assert out.stats.up
    finally:
        await out.close()
    c = Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{kafka_server.port}",
            "group.id": "check",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe(["logs"])
    got: list[Any] = []
    loop = asyncio.get_running_loop()
    try:

        async def all_read() -> bool:
            got.extend(await loop.run_in_executor(None, c.consume, 500, 0.5))
            return len(got) >= 300

        await wait_for(all_read, timeout=30)
    finally:
        c.close()
    assert sorted(json.loads(m.value())["id"] for m in got) == sorted(
        make_id(T0 + i, i + 1) for i in range(300)
    )
    for m in got:
        assert m.key() == json.loads(m.value())["host"].encode()
    # in order per host: each key's records come in their id order
    by_host: dict[bytes, list[int]] = {}
    for m in got:
        by_host.setdefault(m.key(), []).append(json.loads(m.value())["timestamp"])
    for ts in by_host.values():
        assert ts == sorted(ts)


@pytest.fixture
def receiver_config() -> Any:
    return local_config(
        ListenerConfig(name="tcp", transport="tcp", bind="127.0.0.1:0"),
        ListenerConfig(name="udp", transport="udp", bind="127.0.0.1:0"),
    )


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_syslog_output_relays_records_a_collector_reads_back_the_same(
    receiver_config: Any, transport: str
) -> None:
    async with running_daemon(receiver_config) as receiver:
        host, port = listener_addr(receiver, transport)
        cfg = OutputConfig(name="relay", type="syslog", url=f"{transport}://{host}:{port}")
        out = Output(cfg)
        out.start()
        sent = [rec(i, message=f"line {i}\nsecond line") for i in range(50)]
        sent.append(rec(99, structured_data={"origin": {"ip": "10.0.0.1"}}))
        try:
            out.offer(range(1, len(sent) + 1), sent)
            await wait_for(lambda: len(receiver.store) == len(sent), timeout=10)
        finally:
            await out.close()
        assert out.stats.sent == len(sent)
        page = receiver.store.query(_all_query())
        got = sorted((r.timestamp, r.host, r.message, r.structured_data) for _, r in page.items)
        want = sorted((r.timestamp, r.host, r.message, r.structured_data) for r in sent)
        assert got == want


def _all_query() -> Any:
    from collector.query import Query

    return Query(limit=10000)


async def test_syslog_output_over_tcp_reconnects_when_the_server_comes_back() -> None:
    got: list[bytes] = []
    first_closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(65536)
        got.append(data)
        if len(got) == 1:  # the first connection: close on the server's side
            writer.close()
            first_closed.set()
            return
        while chunk := await reader.read(65536):
            got.append(chunk)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    out = Output(OutputConfig(name="relay", type="syslog", url=f"tcp://127.0.0.1:{port}"))
    out.start()
    try:
        out.offer([1], [rec(1)])
        await asyncio.wait_for(first_closed.wait(), 10)
        out.offer(range(2, 12), [rec(i) for i in range(2, 12)])
        await wait_for(lambda: b"#11" in b"".join(got), timeout=15)
        assert out.stats.sent >= 11
    finally:
        await out.close()
        server.close()
        await server.wait_closed()


def _self_signed(tmp_path: Any) -> tuple[str, str]:
    import subprocess

    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_syslog_output_over_tls_checks_the_server_against_tls_ca(tmp_path: Any) -> None:
    import ssl

    cert, key = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    got: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            got.append(chunk)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    trusted = Output(
        OutputConfig(name="tls", type="syslog", url=f"tls://127.0.0.1:{port}", tls_ca=cert)
    )
    untrusted = Output(OutputConfig(name="nope", type="syslog", url=f"tls://127.0.0.1:{port}"))
    trusted.start()
    untrusted.start()
    try:
        trusted.offer([1, 2], [rec(1), rec(2)])
        untrusted.offer([1], [rec(1)])
        await wait_for(lambda: trusted.stats.sent == 2, timeout=15)
        await wait_for(lambda: b"#2" in b"".join(got), timeout=15)
        assert untrusted.stats.sent == 0
        assert not untrusted.stats.up  # the system CAs do not know this server
    finally:
        await trusted.close()
        await untrusted.close(timeout=0.5)
        server.close()
        await server.wait_closed()
    frames = b"".join(got)
    n, _, rest = frames.partition(b" ")
    assert rest[: int(n)].startswith(b"<35>1 ")  # auth.err, RFC 5424


def test_a_chunk_being_sent_is_never_also_counted_as_dropped(tmp_path: Any) -> None:
    for q in (MemoryQueue(max_bytes=3000), DiskSpool(str(tmp_path / "s"), 64 * 1024)):
        q.put(items(10))
        head = q.peek()  # in flight now
        assert head is not None
        for c in range(1, 400):
            q.put(items(10, c * 10, size=150))  # far past the bound
        q.ack(head[0])  # the destination took it after all
        sent = len(head[1])
        assert q.dropped > 0
        assert sent + q.dropped + q.records == 4000
        q.close()
