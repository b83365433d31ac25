"""HTTP stage: one asyncio.Protocol per connection, driven by httptools.

httptools parses; this module only reacts to its callbacks (as uvicorn does),
routes the finished request to a handler function and writes the answer.
Handlers are plain functions `(request, app) -> Response`; errors become JSON
`{"error": ...}` and never a stack trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import parse_qs, unquote

import httptools
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from collector import __version__
from collector.query import QueryError, parse_logs_query
from collector.record import record_to_dict
from collector.store import Store

log = logging.getLogger("collector.http")

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(slots=True)
class App:
    """What handlers may read: the small shared server state."""

    store: Store
    registry: CollectorRegistry
    listener_names: Callable[[], list[str]]
    ttl_seconds: float
    started_at: float = field(default_factory=time.monotonic)
    connections: set[HttpProtocol] = field(default_factory=set)


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, obj: Any) -> Response:
    return Response(status, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())


def error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


# --- handlers ------------------------------------------------------------------


def handle_health(req: Request, app: App) -> Response:
    return json_response(
        200,
        {
            "status": "ok",
            "records": len(app.store),
            "uptime_seconds": round(time.monotonic() - app.started_at, 3),
            "ttl_seconds": app.ttl_seconds,
            "listeners": app.listener_names(),
        },
    )


def handle_logs(req: Request, app: App) -> Response:
    q = parse_logs_query(req.query)
    page = app.store.query(q)
    logs = [record_to_dict(rec, rid) for rid, rec in page.items]
    return json_response(200, {"logs": logs, "count": len(logs), "next_cursor": page.next_cursor})


def handle_metrics(req: Request, app: App) -> Response:
    return Response(200, generate_latest(app.registry), CONTENT_TYPE_LATEST)


Handler = Callable[[Request, App], Response]
ROUTES: dict[str, dict[str, Handler]] = {
    "/health": {"GET": handle_health},
    "/logs": {"GET": handle_logs},
    "/metrics": {"GET": handle_metrics},
}


def route(req: Request, app: App) -> Response:
    """Find and run the handler; every failure becomes a JSON error."""
    methods = ROUTES.get(req.path)
    if methods is None:
        return error(404, f"no route for {req.path}")
    handler = methods.get(req.method)
    if handler is None and req.method == "HEAD":
        handler = methods.get("GET")
    if handler is None:
        resp = error(405, f"method {req.method} not allowed on {req.path}")
        resp.headers.append(("Allow", ", ".join(sorted(methods))))
        return resp
    try:
        return handler(req, app)
    except QueryError as e:
        return error(400, str(e))
    except Exception:
        log.exception("handler for %s %s failed", req.method, req.path)
        return error(500, "internal error; see the daemon log")


# --- the protocol ----------------------------------------------------------------


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection; keep-alive and pipelining in order."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._closing = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; cast, don't assert.
        self.transport = cast(asyncio.Transport, transport)
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._send(error(400, "protocol upgrade is not supported"), keep_alive=False)
        except httptools.HttpParserError as e:
            self._send(error(400, f"malformed HTTP request: {e}"), keep_alive=False)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._closing:
            return
        url = httptools.parse_url(self._url)
        path = unquote(url.path.decode("latin-1"))
        query = parse_qs(url.query.decode("latin-1"), keep_blank_values=True) if url.query else {}
        method = self.parser.get_method().decode("latin-1")
        req = Request(method, path, query, self._headers, b"".join(self._body))
        resp = route(req, self.app)
        self._send(resp, keep_alive=self.parser.should_keep_alive(), head=method == "HEAD")

    def _send(self, resp: Response, keep_alive: bool, head: bool = False) -> None:
        if self.transport is None or self._closing:
            return
        reason = _REASONS.get(resp.status, "")
        lines = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Server: collector/{__version__}",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {resp.content_type}",
            f"Content-Length: {len(resp.body)}",
        ]
        lines += [f"{k}: {v}" for k, v in resp.headers]
        if not keep_alive:
            lines.append("Connection: close")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.transport.write(head_bytes if head else head_bytes + resp.body)
        if not keep_alive:
            self._closing = True
            self.transport.close()


async def start_http(app: App, host: str, port: int) -> asyncio.Server:
    """Bind the HTTP port; OSError when it cannot be bound."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpProtocol(app), host, port, reuse_address=True)
