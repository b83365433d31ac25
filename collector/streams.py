"""Stream listeners: read records other collectors forwarded to Redis Streams or Kafka.

Stage: broker -> *stream listener* -> sink -> store. A reader with `group:
null` reads the whole stream from the oldest entry it holds (a replica); in a
group, readers share the stream (Redis: XREADGROUP; Kafka: a consumer group).
Each batch is handed to an async `sink` that returns once the records are
stored (and logged, with persistence); only then is it acknowledged (XACK /
commit) or the position saved, so a crash replays rather than loses. Replays
are harmless: records keep their ids and the store keeps one per id.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from collector.config import ListenerConfig
from collector.ingest import ListenerStats
from collector.record import Record, facility_from_name, level_from_name, parse_id
from collector.times import parse_timestamp

log = logging.getLogger("collector.streams")

# (seq, record) pairs: seq from the record's id, or None for a record that
# came without one (written by another program), which gets a new id.
StreamItem = tuple[int | None, Record]
StreamSink = Callable[[list[StreamItem]], Awaitable[None]]

READ_COUNT = 2000  # entries per read
BLOCK_MS = 1000  # how long one read waits for new entries (bounds shutdown too)
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
LAG_EVERY = 1.0  # seconds between two lag queries
SAVE_EVERY = 1.0  # seconds between two position saves (replica with persistence)
CLAIM_EVERY = 30.0  # redis group: take over entries a dead reader left pending
CLAIM_IDLE_MS = 60_000
_LOG_EVERY = 10.0
_UTC = _dt.timezone.utc


def stream_key(kind: str, url: str, stream: str) -> str:
    """One spelling per stream, so that an output and a listener on the same
    stream can be told apart from others (`redis://h:6379` is `redis://h:6379/0`)."""
    if kind == "kafka":
        servers = sorted(url.removeprefix("kafka://").rstrip("/").split(","))
        return f"kafka://{','.join(servers)}/{stream}"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"redis+unix://{parts.path}/{stream}"
    db = parts.path.strip("/") or "0"
    return f"redis://{parts.hostname}:{parts.port or 6379}/{db}/{stream}"


def record_from_json(data: bytes | str) -> StreamItem:
    """The (seq, record) a forwarded record's JSON describes; ValueError if it is not one."""
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    ts = _time(obj.get("timestamp"), "timestamp")
    recv = _time(obj.get("received_at"), "received_at") if obj.get("received_at") else ts
    level = level_from_name(str(obj.get("level") or "info"))
    if level is None:
        raise ValueError(f"unknown level {obj.get('level')!r}")
    fac_name = obj.get("facility")
    facility = None if fac_name is None else facility_from_name(str(fac_name))
    if fac_name is not None and facility is None:
        raise ValueError(f"unknown facility {fac_name!r}")
    message = obj.get("message")
    if not isinstance(message, str):
        message = "" if message is None else json.dumps(message, ensure_ascii=False)
    sd = obj.get("structured_data") or None
    fields = obj.get("fields") or None
    if sd is not None and not isinstance(sd, dict):
        raise ValueError("structured_data is not an object")
    if fields is not None and not isinstance(fields, dict):
        raise ValueError("fields is not an object")
    fmt = obj.get("format")
    rec = Record(
        timestamp=ts,
        received_at=recv,
        host=_opt_str(obj.get("host")),
        service=_opt_str(obj.get("service")),
        procid=_opt_str(obj.get("procid")),
        msgid=_opt_str(obj.get("msgid")),
        facility=facility,
        level=level,
        message=message,
        structured_data=sd,
        fields=fields,
        format=fmt if fmt in ("rfc5424", "rfc3164", "json", "raw") else "json",
    )
    rec_id = obj.get("id")
    if rec_id is None:
        return None, rec
    key = parse_id(rec_id) if isinstance(rec_id, str) else None
    if key is None or key[0] != ts:
        raise ValueError(f"id {rec_id!r} is not a collector id for this timestamp")
    return key[1], rec


def _time(value: Any, name: str) -> int:
    us = parse_timestamp(value, _UTC) if isinstance(value, str) else None
    if us is None:
        raise ValueError(f"{name} is not an RFC 3339 time: {value!r}")
    return us


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _consumer_name(cfg: ListenerConfig, node: int) -> str:
    return cfg.consumer or f"{socket.gethostname()}-{node:x}-{cfg.name}"


class StreamListener:
    """What the daemon holds of a stream listener: stats, run and close."""

    def __init__(
        self,
        cfg: ListenerConfig,
        sink: StreamSink,
        *,
        node: int = 0,
        state_dir: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.sink = sink
        self.node = node
        self.state_dir = state_dir
        self.stats = ListenerStats()
        self.lag: int | None = None
        self.up = False
        self.key = stream_key(cfg.transport, cfg.url or "", cfg.stream)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_log = 0.0
        self._suppressed = 0
        self._last_save = 0.0

    @property
    def position_path(self) -> str | None:
        """Where a replica with persistence keeps how far it read."""
        if self.state_dir is None or self.cfg.group is not None:
            return None
        return os.path.join(self.state_dir, f"stream-{self.name}.pos")

    def start(self) -> None:
        """Start reading in a task."""
        self._task = asyncio.ensure_future(self._run())

    async def close(self, timeout: float = 5.0) -> None:
        """Stop after the batch in hand is stored and acknowledged."""
        self._stopping.set()
        task = self._task
        if task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.up = False

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        while not self._stopping.is_set():
            try:
                await self._session()
                backoff = BACKOFF_MIN
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker's errors are many; all mean "retry later"
                self.up = False
                self._warn("listener %s: reading %s failed: %s", self.name, self.cfg.url, e)
            finally:
                await self._disconnect()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _session(self) -> None:
        raise NotImplementedError

    async def _disconnect(self) -> None:
        """Release the broker connection (subclasses)."""

    def _decode(self, values: list[bytes | None]) -> list[StreamItem]:
        items: list[StreamItem] = []
        bad = 0
        for value in values:
            self.stats.bytes += len(value) if value else 0
            if value is None:
                bad += 1
                continue
            try:
                items.append(record_from_json(value))
            except (ValueError, TypeError, RecursionError):
                bad += 1
        if bad:
            self.stats.drop("bad_record", bad)
            self._warn("listener %s: %d entries that are not collector records", self.name, bad)
        return items

    async def _store(self, items: list[StreamItem]) -> None:
        if items:
            await self.sink(items)
            self.stats.received += len(items)

    def _save_due(self, force: bool) -> bool:
        if self.position_path is None:
            return False
        now = time.monotonic()
        if force or now - self._last_save >= SAVE_EVERY:
            self._last_save = now
            return True
        return False

    def _write_position(self, data: dict[str, Any]) -> None:
        path = self.position_path
        if path is None:
            return
        tmp = path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, path)
        except OSError as e:
            self._warn("listener %s: cannot save position to %s: %s", self.name, path, e)

    def _read_position(self) -> dict[str, Any]:
        path = self.position_path
        if path is None:
            return {}
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _warn(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log < _LOG_EVERY:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += f" ({self._suppressed} similar messages suppressed)"
        self._suppressed = 0
        self._last_log = now
        log.warning(msg, *args)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamListener(StreamListener):
    """XREAD (a replica) or XREADGROUP + XACK (a share) on one Redis stream."""

    _client: Any = None

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _session(self) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(
            self.cfg.url or "", socket_connect_timeout=5.0, socket_keepalive=True
        )
        await self._client.ping()
        self.up = True
        log.info("listener %s: reading %s stream %s", self.name, self.cfg.url, self.cfg.stream)
        if self.cfg.group is None:
            await self._replica()
        else:
            await self._share(self.cfg.group)

    async def _replica(self) -> None:
        r = self._client
        stream = self.cfg.stream
        pos = self._read_position()
        last_id = str(pos.get("last_id", "0-0"))
        index: int | None = pos.get("index") if isinstance(pos.get("index"), int) else None
        if index is None and last_id == "0-0":
            # Entries before the oldest one held were trimmed: our position
            # in the count of entries ever added starts after them.
            info = await self._info()
            index = (
                0
                if info is None
                else int(info.get("entries-added", 0)) - int(info.get("length", 0))
            )
        next_lag = 0.0
        while not self._stopping.is_set():
            resp = await r.xread({stream: last_id}, count=READ_COUNT, block=BLOCK_MS)
            entries = resp[0][1] if resp else []
            if entries:
                await self._store(self._decode([fields.get(b"record") for _, fields in entries]))
                last_id = _s(entries[-1][0])
                if index is not None:
                    index += len(entries)
            if self._save_due(force=not entries):
                self._write_position({"last_id": last_id, "index": index})
            now = time.monotonic()
            if now >= next_lag:
                next_lag = now + LAG_EVERY
                info = await self._info()
                if info is not None:
                    if _s(info.get("last-generated-id", "")) == last_id:
                        self.lag = 0
                    elif index is not None:
                        self.lag = max(0, int(info.get("entries-added", 0)) - index)
        self._write_position({"last_id": last_id, "index": index})

    async def _info(self) -> dict[str, Any] | None:
        from redis.exceptions import ResponseError

        try:
            info = await self._client.xinfo_stream(self.cfg.stream)
        except ResponseError:  # no such stream yet
            return None
        return {_s(k): v for k, v in info.items()} if isinstance(info, dict) else None

    async def _share(self, group: str) -> None:
        from redis.exceptions import ResponseError

        r = self._client
        stream = self.cfg.stream
        consumer = _consumer_name(self.cfg, self.node)
        try:
            # A new group starts at the oldest entry the stream holds ("0").
            await r.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        # First what this reader was given before a restart and did not ack.
        cursor = "0"
        next_lag = next_claim = 0.0
        while not self._stopping.is_set():
            resp = await r.xreadgroup(
                group, consumer, {stream: cursor}, count=READ_COUNT, block=BLOCK_MS
            )
            entries = resp[0][1] if resp else []
            if cursor == "0" and not entries:
                cursor = ">"
                continue
            if entries:
                await self._handle(group, entries)
                if cursor == "0":
                    cursor = _s(entries[-1][0])
            now = time.monotonic()
            if now >= next_claim:
                next_claim = now + CLAIM_EVERY
                claimed = await r.xautoclaim(
                    stream, group, consumer, CLAIM_IDLE_MS, start_id="0-0", count=READ_COUNT
                )
                if claimed and claimed[1]:
                    await self._handle(group, claimed[1])
            if now >= next_lag:
                next_lag = now + LAG_EVERY
                for g in await r.xinfo_groups(stream):
                    g = {_s(k): v for k, v in g.items()}
                    if _s(g.get("name")) == group and g.get("lag") is not None:
                        self.lag = int(g["lag"])

    async def _handle(self, group: str, entries: list[Any]) -> None:
        ids = [entry_id for entry_id, _ in entries]
        values = [fields.get(b"record") if fields else None for _, fields in entries]
        await self._store(self._decode(values))
        await self._client.xack(self.cfg.stream, group, *ids)


class KafkaStreamListener(StreamListener):
    """librdkafka's consumer: assigned every partition (a replica) or in a group."""

    _consumer: Any = None

    async def _disconnect(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(Exception):
                await loop.run_in_executor(None, consumer.close)

    async def _session(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        loop = asyncio.get_running_loop()
        servers = (self.cfg.url or "").removeprefix("kafka://").rstrip("/")
        group = self.cfg.group
        conf: dict[str, Any] = {
            "bootstrap.servers": servers,
            # librdkafka wants a group id even to read assigned partitions;
            # a replica never commits, so its own name does no harm.
            "group.id": group or f"collector-replica-{self.node:x}-{self.name}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # A member that died (kill -9) is replaced after this long, not 45 s.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "log_level": 0,  # as for the producer: our warnings, rate-limited
        }
        if group is not None:
            conf["client.id"] = _consumer_name(self.cfg, self.node)
        consumer = self._consumer = Consumer(conf)
        topic = self.cfg.stream
        positions: dict[int, int] = {}
        if group is None:
            saved = self._read_position()
            while not self._stopping.is_set():
                meta = await loop.run_in_executor(None, lambda: consumer.list_topics(topic, 5.0))
                tmeta = meta.topics.get(topic)
                if tmeta is not None and tmeta.error is None and tmeta.partitions:
                    break
                await self._wait(1.0)  # the topic does not exist yet
            else:
                return
            for p in tmeta.partitions:
                positions[p] = int(saved.get(str(p), OFFSET_BEGINNING))
            consumer.assign([TopicPartition(topic, p, off) for p, off in positions.items()])
        else:
            consumer.subscribe([topic])
        self.up = True
        log.info("listener %s: reading %s topic %s", self.name, self.cfg.url, topic)
        next_lag = 0.0
        while not self._stopping.is_set():
            msgs = await loop.run_in_executor(None, consumer.consume, READ_COUNT, BLOCK_MS / 1000)
            good = [m for m in msgs if m.error() is None]
            for m in msgs:
                err = m.error()
                if err is not None and (err.fatal() or not err.retriable()):
                    self._warn("listener %s: %s", self.name, err)
            if good:
                await self._store(self._decode([m.value() for m in good]))
                for m in good:
                    part, off = m.partition(), m.offset()
                    if part is not None and off is not None:
                        positions[part] = off + 1
                if group is not None:
                    offsets = [TopicPartition(topic, p, off) for p, off in positions.items()]
                    await loop.run_in_executor(None, _commit, consumer, offsets)
            if group is None and self._save_due(force=not good):
                self._write_position({str(p): off for p, off in positions.items()})
            now = time.monotonic()
            if now >= next_lag:
                next_lag = now + LAG_EVERY
                self.lag = self._kafka_lag(consumer)
        if group is None:
            self._write_position({str(p): off for p, off in positions.items()})

    def _kafka_lag(self, consumer: Any) -> int | None:
        total = 0
        try:
            for tp in consumer.position(consumer.assignment()):
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high is None or high < 0:
                    return None
                total += max(0, high - tp.offset) if tp.offset >= 0 else high
        except Exception:
            return None
        return total

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _commit(consumer: Any, offsets: list[Any]) -> None:
    consumer.commit(offsets=offsets, asynchronous=False)


def make_stream_listener(
    cfg: ListenerConfig, sink: StreamSink, *, node: int = 0, state_dir: str | None = None
) -> StreamListener:
    """The reader for a stream listener's transport."""
    cls = RedisStreamListener if cfg.transport == "redis" else KafkaStreamListener
    return cls(cfg, sink, node=node, state_dir=state_dir)
