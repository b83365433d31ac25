"""The fleet inside one process: daemons forwarding to a real redis-server and
reading it back, ids kept, duplicates skipped, no echo, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from collector.config import Config, ListenerConfig, OutputConfig, StoreConfig
from collector.daemon import node_id
from collector.record import NODE_SHIFT, Record, node_of, parse_id
from collector.running import Daemon
from collector.streams import stream_key
from tests.brokers import Broker, needs_redis
from tests.support import get_json, listener_addr, local_config, running_daemon, wait_for


def edge_config(broker: Broker, **store: Any) -> Config:
    return local_config(
        ListenerConfig(name="tcp", transport="tcp", bind="127.0.0.1:0"),
        outputs=(OutputConfig(name="out", type="redis", url=broker.url, stream="logs"),),
        store=StoreConfig(**store),
    )


def replica_config(broker: Broker, name: str = "in", group: str | None = None, **kw: Any) -> Config:
    return local_config(
        ListenerConfig(
            name=name, transport="redis", url=broker.url, stream="logs", group=group, **kw
        ),
    )


async def send_tcp(addr: tuple[str, int], lines: list[str]) -> None:
    _, writer = await asyncio.open_connection(*addr)
    writer.write(
        "".join(f"<14>1 - web-{i % 3} app - - - {line}\n" for i, line in enumerate(lines)).encode()
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def all_logs(daemon: Daemon) -> list[dict[str, Any]]:
    body = await get_json(daemon, "/logs?limit=10000")
    logs: list[dict[str, Any]] = body["logs"]
    return logs


@needs_redis
async def test_a_replica_holds_what_the_edge_stored_with_the_same_ids(redis_server: Broker) -> None:
    async with (
        running_daemon(edge_config(redis_server)) as edge,
        running_daemon(replica_config(redis_server)) as replica,
    ):
        await send_tcp(listener_addr(edge, "tcp"), [f"line {i}" for i in range(300)])
        await wait_for(lambda: len(edge.store) == 300, timeout=10)
        await wait_for(lambda: len(replica.store) == 300, timeout=20)
        await wait_for(lambda: replica.streams["in"].lag == 0, timeout=5)
        at_edge = await all_logs(edge)
        at_replica = await all_logs(replica)
        health = await get_json(replica, "/health")
        text = (await _metrics(edge)) + (await _metrics(replica))
    assert at_replica == at_edge
    assert health["listeners"] == ["in"]
    assert 'collector_output_records_total{output="out",result="sent"} 300.0' in text
    assert 'collector_output_up{output="out"} 1.0' in text
    assert 'collector_output_queue_records{output="out"} 0.0' in text
    assert 'collector_messages_received_total{listener="in"} 300.0' in text
    assert 'collector_stream_lag_records{listener="in"} 0.0' in text


async def _metrics(daemon: Daemon) -> str:
    from tests.support import http_request

    answer = await http_request(daemon.http_address, "GET", "/metrics")
    assert answer.status == 200
    return answer.body.decode()


@needs_redis
async def test_two_collectors_never_mint_the_same_ids(redis_server: Broker) -> None:
    a_cfg = edge_config(redis_server)
    async with running_daemon(a_cfg) as a, running_daemon(a_cfg) as b:
        assert a.node != b.node
        a.ingest([_rec(1)])
        b.ingest([_rec(1)])  # the same time, the same first counter
        ids = [r["id"] for d in (a, b) for r in await all_logs(d)]
    assert len(set(ids)) == 2
    assert {node_of(parse_id(i)[1]) for i in ids if parse_id(i)} == {a.node, b.node}


def _rec(i: int, **kw: Any) -> Record:
    import time

    now = time.time_ns() // 1000
    base: dict[str, Any] = {
        "timestamp": now - 1_000_000 + i,
        "received_at": now,
        "host": "h",
        "service": "s",
        "procid": None,
        "msgid": None,
        "facility": 1,
        "level": 6,
        "message": f"m{i}",
        "structured_data": None,
        "fields": None,
        "format": "rfc5424",
    }
    base.update(kw)
    return Record(**base)


def test_the_node_id_is_kept_in_persist_dir_and_the_configured_one_wins(tmp_path: Any) -> None:
    cfg = dataclasses.replace(Config(), store=StoreConfig(persist_dir=str(tmp_path / "p")))
    first = node_id(cfg)
    assert node_id(cfg) == first
    assert (tmp_path / "p" / "node-id").read_text().strip() == str(first)
    pinned = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, node_id=7))
    assert node_id(pinned) == 7
    assert 1 << NODE_SHIFT > 0


@needs_redis
async def test_an_id_already_stored_is_not_stored_twice(redis_server: Broker) -> None:
    async with running_daemon(replica_config(redis_server)) as replica:
        sink = replica.stream_sink("elsewhere")
        seq = (5 << NODE_SHIFT) + 1
        r1, r2 = _rec(1), _rec(2)
        items: list[tuple[int | None, Record]] = [(seq, r1), (seq + 1, r2)]
        await sink(items)
        await sink(items)  # a replay after a crash, as at-least-once delivery allows
        await sink([(seq + 1, r2), (seq + 1, r2)])
        assert len(replica.store) == 2
        # the replica's own ids go on in its own node
        replica.ingest([_rec(3)])
        own = [r["id"] for r in await all_logs(replica) if r["message"] == "m3"]
    parsed = parse_id(own[0])
    assert parsed is not None
    assert node_of(parsed[1]) == replica.node


@needs_redis
async def test_a_record_read_from_a_stream_is_not_sent_back_to_it(redis_server: Broker) -> None:
    # A collector that both reads and writes the same stream (and a second one).
    cfg = local_config(
        ListenerConfig(name="in", transport="redis", url=redis_server.url, stream="logs"),
        outputs=(
            OutputConfig(name="same", type="redis", url=redis_server.url, stream="logs"),
            OutputConfig(name="other", type="redis", url=redis_server.url, stream="copy"),
        ),
    )
    async with running_daemon(edge_config(redis_server)) as edge, running_daemon(cfg) as both:
        edge.ingest([_rec(i) for i in range(20)])
        await wait_for(lambda: len(both.store) == 20, timeout=20)
        same, other = both.outputs
        await wait_for(lambda: other.stats.sent == 20, timeout=10)
        assert same.key == stream_key("redis", redis_server.url, "logs")
        assert same.stats.sent == 0
        assert same.queue_records == 0
