"""Test support: a daemon on ephemeral ports, a small HTTP client, and a
bounded wait-for-condition. Real sockets on 127.0.0.1, no mocks, no sleeps
as synchronisation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httptools

from collector.config import Config, HttpConfig, ListenerConfig
from collector.daemon import start, stop
from collector.running import Daemon


def local_config(*listeners: ListenerConfig, **sections: Any) -> Config:
    """A config on 127.0.0.1 with ephemeral ports (default: udp + tcp syslog)."""
    if not listeners:
        listeners = (
            ListenerConfig(name="udp", transport="udp", bind="127.0.0.1:0"),
            ListenerConfig(name="tcp", transport="tcp", bind="127.0.0.1:0"),
            ListenerConfig(name="json", transport="tcp", format="json", bind="127.0.0.1:0"),
        )
    http = sections.pop("http", HttpConfig(bind="127.0.0.1:0"))
    return replace(Config(), listeners=tuple(listeners), http=http, **sections)


@asynccontextmanager
async def running_daemon(config: Config | None = None) -> AsyncIterator[Daemon]:
    """The daemon in this event loop, stopped (in order) on exit."""
    daemon = await start(config or local_config())
    try:
        yield daemon
    finally:
        await stop(daemon)


def listener_addr(daemon: Daemon, name: str) -> Any:
    """The bound address of a listener: (host, port) or a socket path."""
    return daemon.listeners[name].address


async def wait_for(
    condition: Callable[[], Awaitable[Any]] | Callable[[], Any],
    timeout: float = 5.0,
    interval: float = 0.01,
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        await asyncio.sleep(interval)


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _ResponseSink:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


async def http_request(
    addr: tuple[str, int],
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> HttpAnswer:
    """One request on a fresh connection, response parsed by httptools."""
    reader, writer = await asyncio.open_connection(addr[0], addr[1])
    try:
        hdrs = {"Host": f"{addr[0]}:{addr[1]}", "Connection": "close"}
        if body or method in ("POST", "PUT"):
            hdrs["Content-Length"] = str(len(body))
        hdrs.update(headers or {})
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        sink = _ResponseSink()
        parser = httptools.HttpResponseParser(sink)

        async def read_all() -> None:
            while not sink.done:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                parser.feed_data(chunk)

        await asyncio.wait_for(read_all(), timeout)
        return HttpAnswer(parser.get_status_code(), sink.headers, bytes(sink.body))
    finally:
        writer.close()


async def get_json(daemon: Daemon, target: str) -> Any:
    """GET a path on the daemon's HTTP port; assert 200 and return the JSON."""
    answer = await http_request(daemon.http_address, "GET", target)
    assert answer.status == 200, (answer.status, answer.body)
    return answer.json()


# --- a raw HTTP/1.1 client: any bytes out, parsed answers in --------------------


class Answer:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    def json(self) -> Any:
        return json.loads(self.body)


class _Answers:
    """httptools response callbacks collecting every answer in a byte stream."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[Answer] = []
        self.cur = Answer()

    def feed(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.cur = Answer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.cur.headers[name.decode().lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.cur.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.cur.body += body

    def on_message_complete(self) -> None:
        self.done.append(self.cur)


def parse_answers(data: bytes) -> list[Answer]:
    a = _Answers()
    a.feed(data)
    return a.done


class Conn:
    """A raw client connection: write any bytes, read parsed answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.answers = _Answers()

    @classmethod
    async def open(cls, d: Daemon) -> Conn:
        return cls(*await asyncio.open_connection(*d.http_address))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, n: int = 1, timeout: float = 5.0) -> list[Answer]:
        async def fill() -> None:
            while len(self.answers.done) < n:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise AssertionError(f"closed after {len(self.answers.done)} of {n} answers")
                self.answers.feed(chunk)

        await asyncio.wait_for(fill(), timeout)
        out, self.answers.done = self.answers.done[:n], self.answers.done[n:]
        return out

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        async def drain() -> None:
            while await self.reader.read(65536):
                pass

        await asyncio.wait_for(drain(), timeout)
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def get(target: str, *extra: str, close: bool = False) -> bytes:
    head = [f"GET {target} HTTP/1.1", "Host: t", *extra]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode()


async def post(d: Daemon, body: Any, ctype: str = "application/json", **hdr: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http_request(d.http_address, "POST", "/logs", raw, {"Content-Type": ctype, **hdr})


def small_config(**http_kw: Any) -> Any:
    return local_config(http=HttpConfig(bind="127.0.0.1:0", **http_kw))


def jl(i: int, **kw: Any) -> dict[str, Any]:
    return {"message": f"event {i}", "service": "api", "host": "h1", "level": "info", **kw}
