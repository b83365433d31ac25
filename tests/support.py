"""Test support: a daemon on ephemeral ports, a small HTTP client, and a
bounded wait-for-condition. Real sockets on 127.0.0.1, no mocks, no sleeps
as synchronisation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httptools

from collector.config import Config, HttpConfig, ListenerConfig
from collector.daemon import Daemon, start, stop


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
