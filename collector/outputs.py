"""Outputs: forward every stored record to Redis Streams, Kafka or a syslog server.

Stage: store -> *outputs* -> destination. `Output.offer()` is all the ingest
path pays: it appends the batch (no copy, no encoding) to a bounded pending
list. Two tasks per output do the rest off the hot path: the encoder turns
pending batches into chunks of (key, value) items in the output's queue (in
memory, or a DiskSpool that survives restarts), and the sender delivers the
oldest chunk and acknowledges it only when the destination has (at least
once). A down destination fills the queue, never the listeners'; it is
retried with backoff, and `up` says whether the last attempt worked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from collector.config import OutputConfig
from collector.query import record_json as _api_json
from collector.record import Record, make_id
from collector.spool import DiskSpool, Item, MemoryQueue, OutputQueue
from collector.times import format_timestamp

log = logging.getLogger("collector.outputs")

# Without spool_dir the queue lives in memory: at most this much of spool_max,
# so that a long outage cannot take the process past store.max_memory + 128 MiB.
MEMORY_QUEUE_MAX = 64 * 1024 * 1024
PENDING_MAX_RECORDS = (
    50_000  # offered, not yet encoded (~30 MB of records); past it the oldest go (counted)
)
CHUNK_RECORDS = 2000  # records per chunk: one pipeline / produce round / write
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
CONNECT_TIMEOUT = 5.0
SEND_TIMEOUT = 30.0
UDP_MAX_PAYLOAD = 65507  # IPv4 UDP payload limit; longer records are cut
_LOG_EVERY = 10.0

_second_cache: dict[int, str] = {}


def _ts(us: int) -> str:
    # format_timestamp costs a datetime per call; records of one second share
    # the "YYYY-MM-DDTHH:MM:SS" part, so it is made once per second seen.
    secs, frac = divmod(us, 1_000_000)
    head = _second_cache.get(secs)
    if head is None:
        if len(_second_cache) >= 4096:
            _second_cache.clear()
        head = _second_cache[secs] = format_timestamp(secs * 1_000_000)[:19]
    return f"{head}.{frac:06d}Z"


def record_json(rec_id: str, r: Record) -> bytes:
    """The record's JSON exactly as the API shows it (the API's own fast writer)."""
    return _api_json(r, rec_id).encode("ascii")


# --- RFC 5424 (syslog output) -----------------------------------------------


def _header_field(value: str | None, limit: int) -> str:
    # RFC 5424 §6: header fields are PRINTUSASCII (33..126), NILVALUE when absent.
    if not value:
        return "-"
    out = "".join(c if "!" <= c <= "~" else "_" for c in value[:limit])
    return out or "-"


def _sd_name(value: str) -> str:
    # §6.3.2/6.3.3: SD-NAME is PRINTUSASCII except '=', SP, ']', '"', at most 32.
    out = "".join(c if "!" <= c <= "~" and c not in '=]"' else "_" for c in value[:32])
    return out or "_"


def _sd_value(value: Any) -> str:
    # §6.3.3: '"', '\' and ']' are escaped with a backslash.
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _structured_data(sd: dict[str, dict[str, Any]] | None) -> str:
    if not sd:
        return "-"
    parts = []
    for sd_id, params in sd.items():
        inner = [_sd_name(sd_id)]
        for name, value in params.items():
            for v in value if isinstance(value, list) else [value]:
                inner.append(f'{_sd_name(name)}="{_sd_value(v)}"')
        parts.append("[" + " ".join(inner) + "]")
    return "".join(parts)


def record_rfc5424(r: Record) -> bytes:
    """The record as one RFC 5424 message (no framing): header, SD, MSG as UTF-8."""
    facility = 1 if r.facility is None else r.facility
    head = (
        f"<{facility * 8 + r.level}>1 {_ts(r.timestamp)} {_header_field(r.host, 255)} "
        f"{_header_field(r.service, 48)} {_header_field(r.procid, 128)} "
        f"{_header_field(r.msgid, 32)} {_structured_data(r.structured_data)}"
    )
    if r.message:
        head = f"{head} {r.message}"
    return head.encode("utf-8", "replace")


def encode_items(kind: str, seqs: Sequence[int], records: Sequence[Record]) -> list[Item]:
    """Queue items for an output of `kind`: kafka keys by host; values are the wire form."""
    if kind == "syslog":
        return [(b"", record_rfc5424(r)) for r in records]
    out: list[Item] = []
    for seq, r in zip(seqs, records, strict=True):
        value = record_json(make_id(r.timestamp, seq), r)
        out.append(((r.host or "").encode("utf-8", "replace") if kind == "kafka" else b"", value))
    return out


# --- senders ------------------------------------------------------------------


class Sender(Protocol):
    """One destination: connect, deliver a chunk (raise if not acknowledged), close."""

    async def connect(self) -> None: ...
    async def send(self, items: list[Item]) -> None: ...
    async def close(self) -> None: ...


def _resp_bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


async def read_replies(reader: asyncio.StreamReader, n: int) -> str | None:
    """Read `n` RESP replies of simple shapes (XADD's: a bulk string, or an
    error); returns the first error's text, or None. ConnectionError when the
    connection ends or says something else."""
    buf = b""
    count = 0
    error: str | None = None
    while count < n:
        chunk = await reader.read(256 * 1024)
        if not chunk:
            raise ConnectionError("connection closed by redis")
        buf = buf + chunk if buf else chunk
        pos = 0
        end = len(buf)
        while count < n:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                break
            kind = buf[pos]
            if kind == 36:  # "$": bulk string, its length, then the data
                size = int(buf[pos + 1 : nl])
                nxt = nl + 2 if size < 0 else nl + 4 + size
                if nxt > end:
                    break
                pos = nxt
            elif kind in (43, 58, 95):  # "+", ":", "_": one line
                pos = nl + 2
            elif kind == 45:  # "-": an error
                if error is None:
                    error = buf[pos + 1 : nl].decode("utf-8", "replace")
                pos = nl + 2
            else:
                raise ConnectionError(f"unexpected reply from redis: {buf[pos : pos + 20]!r}")
            count += 1
        buf = buf[pos:]
    if buf:
        raise ConnectionError("more replies from redis than commands sent")
    return error


class RedisSender:
    """XADD stream MAXLEN ~ N * record <json>, a chunk per pipelined write.

    The commands are packed once per chunk (RESP) and written with redis-py's
    connection: redis-py's pipeline builds a Python object per command, which
    halves the rate a collector can forward."""

    def __init__(self, url: str, stream: str, maxlen: int) -> None:
        self.url = url
        self.prefix = (
            b"*8\r\n$4\r\nXADD\r\n"
            + _resp_bulk(stream.encode())
            + b"$6\r\nMAXLEN\r\n$1\r\n~\r\n"
            + _resp_bulk(str(maxlen).encode())
            + b"$1\r\n*\r\n$6\r\nrecord\r\n"
        )
        self._pool: Any = None
        self._conn: Any = None

    async def connect(self) -> None:
        import redis.asyncio as aioredis

        await self.close()
        self._pool = aioredis.ConnectionPool.from_url(
            self.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_keepalive=True
        )
        self._conn = await self._pool.get_connection()
        await self._conn.connect()

    async def send(self, items: list[Item]) -> None:
        conn = self._conn
        if conn is None:
            raise ConnectionError("not connected")
        prefix = self.prefix
        payload = b"".join([prefix + _resp_bulk(v) for _, v in items])
        await conn.send_packed_command(payload, check_health=False)
        # The replies are read off the connection's stream here: redis-py's
        # read_response costs ~60 us a reply (a timeout context each), which
        # made it the bottleneck of forwarding.
        reader = conn._reader
        if reader is None:
            raise ConnectionError("not connected")
        error = await read_replies(reader, len(items))
        if error is not None:
            raise ConnectionError(f"redis: {error}")

    async def close(self) -> None:
        pool, self._pool, self._conn = self._pool, None, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.disconnect()


class KafkaSender:
    """librdkafka's producer (confluent-kafka): acks=all, key = host.

    produce() only queues in librdkafka, whose own threads batch and send;
    the event loop polls for delivery reports without blocking."""

    def __init__(self, url: str, topic: str) -> None:
        self.servers = url.removeprefix("kafka://").rstrip("/")
        self.topic = topic
        self._producer: Any = None
        self._broker_down = False

    async def connect(self) -> None:
        from confluent_kafka import KafkaError, Producer

        def on_error(err: Any) -> None:
            if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
                self._broker_down = True

        if self._producer is None:
            self._producer = Producer(
                {
                    "bootstrap.servers": self.servers,
                    "acks": "all",
                    "linger.ms": 5,
                    # Order per host (one partition per key) across retries.
                    "max.in.flight.requests.per.connection": 1,
                    "message.timeout.ms": int(SEND_TIMEOUT * 1000 * 0.8),
                    "socket.keepalive.enable": True,
                    "error_cb": on_error,
                    # librdkafka would print each failed reconnect (every 50 ms) on
                    # stderr; failures reach our own rate-limited warnings instead.
                    "log_level": 0,
                }
            )
        # Metadata for the topic proves the broker answers (and creates it
        # when the broker auto-creates topics).
        loop = asyncio.get_running_loop()
        producer = self._producer
        await loop.run_in_executor(
            None, lambda: producer.list_topics(self.topic, timeout=CONNECT_TIMEOUT)
        )
        self._broker_down = False

    async def send(self, items: list[Item]) -> None:
        producer = self._producer
        if producer is None:
            raise ConnectionError("not connected")
        errors: list[Any] = []
        left = [len(items)]

        def delivered(err: Any, _msg: Any) -> None:
            left[0] -= 1
            if err is not None:
                errors.append(err)

        topic = self.topic
        for key, value in items:
            while True:
                try:
                    producer.produce(topic, value, key or None, on_delivery=delivered)
                    break
                except BufferError:  # librdkafka's own queue is full: let it drain
                    producer.poll(0)
                    await asyncio.sleep(0.01)
        delay = 0.001
        while left[0] > 0:
            producer.poll(0)
            if left[0] > 0:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
        if errors:
            raise ConnectionError(f"kafka: {errors[0]}")

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # Whatever it still holds was not acknowledged: it is resent from the queue.
            producer.purge()
            producer.poll(0)


class SyslogSender:
    """RFC 5424 to a syslog server: octet-counted (RFC 6587 §3.4.1) over
    TCP or TLS (RFC 5425), a datagram per record over UDP (RFC 5426)."""

    def __init__(self, url: str, *, tls_ca: str | None = None, tls_verify: bool = True) -> None:
        scheme, _, rest = url.partition("://")
        from collector.configvalues import parse_host_port

        self.scheme = scheme
        self.host, self.port = parse_host_port(rest)
        self.tls_ca = tls_ca
        self.tls_verify = tls_verify
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._closed_by_peer = False

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if not self.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    async def connect(self) -> None:
        await self.close()
        self._closed_by_peer = False
        if self.scheme == "udp":
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(self.host, self.port)
            )
            self._udp = transport
            return
        reader, writer = await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self._ssl() if self.scheme == "tls" else None,
            server_hostname=self.host if self.scheme == "tls" else None,
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._writer = writer
        self._reader_task = asyncio.ensure_future(self._watch(reader))

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        # A syslog server sends nothing; EOF or an error means it went away.
        with contextlib.suppress(Exception):
            while await reader.read(4096):
                pass
        self._closed_by_peer = True

    async def send(self, items: list[Item]) -> None:
        if self._udp is not None:
            for _, value in items:
                self._udp.sendto(value[:UDP_MAX_PAYLOAD])
            return
        writer = self._writer
        if writer is None or self._closed_by_peer or writer.is_closing():
            raise ConnectionError("connection closed")
        writer.write(b"".join([b"%d %s" % (len(v), v) for _, v in items]))
        await writer.drain()
        if self._closed_by_peer:
            raise ConnectionError("connection closed by the server")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


def make_sender(cfg: OutputConfig) -> Sender:
    """The sender for an output's `type`."""
    if cfg.type == "redis":
        return RedisSender(cfg.url, cfg.stream, cfg.maxlen)
    if cfg.type == "kafka":
        return KafkaSender(cfg.url, cfg.stream)
    return SyslogSender(cfg.url, tls_ca=cfg.tls_ca, tls_verify=cfg.tls_verify)


# --- the output -----------------------------------------------------------------


@dataclass(slots=True)
class OutputStats:
    """Plain counters, folded into metrics at scrape time."""

    sent: int = 0
    failed: int = 0  # records in chunks whose delivery failed (they are retried)
    dropped: int = 0  # records given up: queue or pending bound, or lost at exit
    up: bool = False


class Output:
    """One forwarding destination with its bounded queue and two tasks."""

    def __init__(self, cfg: OutputConfig, sender: Sender | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.sender = sender if sender is not None else make_sender(cfg)
        self.queue: OutputQueue = (
            DiskSpool(cfg.spool_dir, cfg.spool_max)
            if cfg.spool_dir is not None
            else MemoryQueue(min(cfg.spool_max, MEMORY_QUEUE_MAX))
        )
        self.stats = OutputStats()
        # The stream this output writes to (see streams.stream_key), so that
        # records read from it are not sent back; None for syslog.
        self.key: str | None = None
        self._pending: deque[tuple[Sequence[int], list[Record]]] = deque()
        self._pending_records = 0
        self._pending_dropped = 0
        self._offered = asyncio.Event()
        self._queued = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_log = 0.0
        self._suppressed = 0

    @property
    def queue_records(self) -> int:
        """Records waiting: offered but not encoded, plus queued but not acknowledged."""
        return self._pending_records + self.queue.records

    @property
    def dropped(self) -> int:
        """Records given up on: past a bound, or left in memory at exit."""
        return self.stats.dropped + self._pending_dropped + self.queue.dropped

    def offer(self, seqs: Sequence[int], records: list[Record]) -> None:
        """Hand over a stored batch (seqs are the records' sequence numbers). O(1)."""
        if not records:
            return
        # A copy of the list (not of the records): a listener reuses its list.
        self._pending.append((seqs, records[:]))
        self._pending_records += len(records)
        while self._pending_records > PENDING_MAX_RECORDS and len(self._pending) > 1:
            _, old = self._pending.popleft()
            self._pending_records -= len(old)
            self._pending_dropped += len(old)
        self._offered.set()

    def start(self) -> None:
        """Open the queue and start the encoder and sender tasks."""
        if isinstance(self.queue, DiskSpool):
            self.queue.open()
            if self.queue.records:
                log.info(
                    "output %s: %d records waiting in %s from before",
                    self.name,
                    self.queue.records,
                    self.cfg.spool_dir,
                )
        self._tasks = [
            asyncio.ensure_future(self._encoder()),
            asyncio.ensure_future(self._sender()),
        ]

    def _encode_some(self) -> bool:
        """Move up to a chunk of pending records into the queue; False when none."""
        if not self._pending:
            return False
        seqs_all: list[int] = []
        recs_all: list[Record] = []
        while self._pending and len(recs_all) < CHUNK_RECORDS:
            seqs, recs = self._pending[0]
            room = CHUNK_RECORDS - len(recs_all)
            if len(recs) > room:
                self._pending[0] = (seqs[room:], recs[room:])
                seqs, recs = seqs[:room], recs[:room]
            else:
                self._pending.popleft()
            seqs_all.extend(seqs)
            recs_all.extend(recs)
        self._pending_records -= len(recs_all)
        try:
            items = encode_items(self.cfg.type, seqs_all, recs_all)
            self.queue.put(items)
        except OSError as e:  # the spool's disk: count, say so, carry on
            self.stats.dropped += len(recs_all)
            self._warn("output %s: cannot spool %d records: %s", self.name, len(recs_all), e)
        self._queued.set()
        return True

    async def _encoder(self) -> None:
        while True:
            more = self._encode_some()
            while more:
                await asyncio.sleep(0)  # one chunk at a time: the listeners go first
                more = self._encode_some()
            if self._stopping.is_set():
                return
            self._offered.clear()
            waiter = asyncio.ensure_future(self._offered.wait())
            stopper = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _sender(self) -> None:
        backoff = BACKOFF_MIN
        connected = False
        while True:
            head = self.queue.peek()
            if head is None:
                if self._stopping.is_set() and not self._pending:
                    return
                self._queued.clear()
                if self.queue.peek() is None:
                    await self._queued.wait()
                continue
            if not connected:
                try:
                    await asyncio.wait_for(self.sender.connect(), CONNECT_TIMEOUT)
                except (Exception, asyncio.TimeoutError) as e:
                    self.stats.up = False
                    self._warn("output %s: cannot connect to %s: %s", self.name, self.cfg.url, e)
                    if self._stopping.is_set():
                        return  # shutting down: no more retries
                    await self._pause(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                connected = True
                self.stats.up = True
                log.info("output %s: connected to %s", self.name, self.cfg.url)
            number, items = head
            try:
                await asyncio.wait_for(self.sender.send(items), SEND_TIMEOUT)
            except (Exception, asyncio.TimeoutError) as e:
                self.stats.failed += len(items)
                self.stats.up = False
                connected = False
                self._warn("output %s: sending to %s failed: %s", self.name, self.cfg.url, e)
                await self.sender.close()
                if self._stopping.is_set():
                    return
                await self._pause(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_MIN
            self.queue.ack(number)
            self.stats.sent += len(items)

    async def close(self, timeout: float = 5.0) -> None:
        """Encode what is pending, try to deliver the queue for up to `timeout`
        seconds, then stop. A spool keeps the rest; a memory queue's rest is
        counted as dropped."""
        self._stopping.set()
        self._offered.set()
        self._queued.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.wait(self._tasks, timeout=1.0)
        while self._encode_some():  # the encoder may have been cut short
            pass
        left = self.queue.records
        if left and isinstance(self.queue, MemoryQueue):
            self.stats.dropped += left
            log.warning("output %s: %d records not delivered before exit", self.name, left)
        elif left:
            log.info("output %s: %d records kept in %s", self.name, left, self.cfg.spool_dir)
        self.queue.close()
        await self.sender.close()
        self.stats.up = False

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
