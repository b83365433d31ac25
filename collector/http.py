"""HTTP stage: one asyncio.Protocol per connection over httptools, handlers are functions.

Requests route to `(request, app) -> Response`; answers go in request order
(RFC 9112 §9.3.2); every error is JSON, never a trace; counters are plain ints.
POST /logs hands records to the `ingest` callable it is given (the listeners'
seam) and /tail joins the daemon's LiveTails: HTTP never calls the daemon.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import json
import logging
import socket
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
from collector.config import HttpConfig
from collector.jsonlines import MAX_DEPTH, nested_deeper_than, record_from_object
from collector.query import (
    Query,
    QueryError,
    logs_json,
    parse_logs_query,
    parse_stats_query,
    parse_tail_query,
    to_json,
)
from collector.record import Record, apply_clock_skew, make_id, record_to_dict
from collector.settings import Settings
from collector.store import Store
from collector.tail import TAIL_KEEPALIVE, LiveTails, Tail
from collector.times import format_timestamp

log = logging.getLogger("collector.http")

SERVER = f"collector/{__version__}"
MAX_URL_BYTES = 16 * 1024  # longer request targets are 431 (the contract's status set has no 414)
MAX_HEADER_BYTES = 64 * 1024  # header section beyond this is 431 (RFC 6585 §5)
GZIP_MIN_BYTES = 1024  # smaller bodies gain less than gzip's own framing costs
POST_MAX_ITEM_ERRORS = 50
LINGER = 2.0  # seconds to keep reading (and discarding) after a closing answer  # bad items named in one 400 answer
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/jsonlines")
# Upper bounds (seconds) of the request-duration histogram buckets; +Inf is implicit.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# --- counters ---------------------------------------------------------------------


@dataclass(slots=True)
class Durations:
    """One route's request durations: a fixed-bucket histogram.

    `buckets[i]` counts requests that took <= DURATION_BUCKETS[i] seconds and
    more than the bound before it (not cumulative); slower ones only count
    in `count`. `cumulative()` gives Prometheus' shape."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    sum: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.sum += seconds
        self.count += 1
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                return

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, requests at or under it), ending with (+Inf, count)."""
        out, running = [], 0
        for bound, n in zip(DURATION_BUCKETS, self.buckets, strict=True):
            running += n
            out.append((bound, running))
        out.append((float("inf"), self.count))
        return out


@dataclass(slots=True)
class HttpStats:
    """Plain-int HTTP counters for the metrics collector.

    `requests[(route, status)]`: route is the pattern (`/logs/{id}`), or
    `other` for paths that match none."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    duration: dict[str, Durations] = field(default_factory=dict)
    active_tails: int = 0
    tails_dropped: int = 0  # /tail clients cut off for falling too far behind
    connections_refused: int = 0  # over http.max_connections
    timeouts: int = 0  # requests not complete within http.idle_timeout (408)

    def count(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        d = self.duration.get(route)
        if d is None:
            d = self.duration[route] = Durations()
        d.observe(seconds)


# --- shared state -------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class App:
    """What handlers may read: the small shared server state.

    `settings` is the daemon's live Settings, read per request (a reload's
    http.*, TTL and timezone apply from the next request on). `ingest(records)
    -> first_seq` stores a batch: the same sink the listeners feed (store,
    write-ahead log, live tails). `tails` is the daemon's LiveTails."""

    store: Store
    registry: CollectorRegistry
    listener_names: Callable[[], list[str]]
    settings: Settings
    ingest: Callable[[list[Record]], int]
    tails: LiveTails = field(default_factory=LiveTails)
    tail_keepalive: float = TAIL_KEEPALIVE
    started_at: float = field(default_factory=time.monotonic)
    connections: set[HttpProtocol] = field(default_factory=set)
    stats: HttpStats = field(default_factory=HttpStats)

    @property
    def http(self) -> HttpConfig:
        """The running http.* section."""
        return self.settings.config.http


# --- requests and responses -------------------------------------------------------


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    peer: str | None = None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    route: str = "other"
    tail: Query | None = None  # set by /tail: the connection becomes a stream


def json_response(status: int, obj: Any) -> Response:
    return Response(status, to_json(obj))


def error(status: int, message: str, **extra: Any) -> Response:
    return json_response(status, {"error": message, **extra})


def _now_us() -> int:
    return time.time_ns() // 1000


# --- handlers ---------------------------------------------------------------------


def handle_health(req: Request, app: App) -> Response:
    oldest = app.store.oldest_timestamp()
    return json_response(
        200,
        {
            "status": "ok",
            "records": len(app.store),
            "uptime_seconds": round(time.monotonic() - app.started_at, 3),
            "ttl_seconds": app.settings.config.store.ttl,
            "listeners": app.listener_names(),
            "oldest": None if oldest is None else format_timestamp(oldest),
        },
    )


def handle_logs(req: Request, app: App) -> Response:
    page = app.store.query(parse_logs_query(req.query))
    return Response(200, logs_json(page.items, page.next_cursor))


def handle_log(req: Request, app: App, rec_id: str) -> Response:
    rec = app.store.get(rec_id)
    if rec is None:
        return error(404, f"id: no record with id {rec_id!r} (expired, or never stored)")
    return json_response(200, {"log": record_to_dict(rec, rec_id)})


def handle_post_logs(req: Request, app: App) -> Response:
    """Store a JSON object, an array of objects, or NDJSON; all or nothing."""
    objs = _decode_post_body(req)
    # A record whose fields the API could not print would break every page
    # it falls in; the JSON-lines listener keeps such lines as raw text.
    bad: list[dict[str, Any]] = []
    for i, o in enumerate(objs):
        if not isinstance(o, dict):
            bad.append({"index": i, "error": f"expected a JSON object; got {_json_kind(o)}"})
        elif nested_deeper_than(o):
            bad.append({"index": i, "error": f"nested deeper than {MAX_DEPTH} levels"})
    records: list[Record] = []
    if not bad:
        now = _now_us()
        opts = app.settings.parse_options
        for i, obj in enumerate(objs):
            try:
                records.append(apply_clock_skew(record_from_object(obj, now, req.peer, opts), opts))
            except (ValueError, TypeError) as e:
                bad.append({"index": i, "error": f"cannot be read as a record: {e}"})
    if bad:
        named = "; ".join(f"item {b['index']}: {b['error']}" for b in bad[:POST_MAX_ITEM_ERRORS])
        more = (
            f" (and {len(bad) - POST_MAX_ITEM_ERRORS} more)"
            if len(bad) > POST_MAX_ITEM_ERRORS
            else ""
        )
        return error(400, f"body: nothing stored; {named}{more}", items=bad[:POST_MAX_ITEM_ERRORS])
    ids: list[str] = []
    if records:
        first = app.ingest(records)
        ids = [make_id(rec.timestamp, first + i) for i, rec in enumerate(records)]
    return json_response(201, {"accepted": len(ids), "ids": ids})


def _json_kind(obj: Any) -> str:
    if isinstance(obj, list):
        return "an array"
    if isinstance(obj, str):
        return "a string"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    return "a number"


def _decode_post_body(req: Request) -> list[Any]:
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    coding = req.headers.get("content-encoding", "identity").strip().lower()
    if coding != "identity":
        raise QueryError(f"content-encoding: {coding!r} is not supported; send the body as is")
    body = req.body
    if not body.strip():
        raise QueryError("body: empty; expected a JSON object, an array of objects, or NDJSON")
    if ctype in NDJSON_TYPES:
        objs: list[Any] = []
        for n, line in enumerate(x for x in body.split(b"\n") if x.strip()):
            try:
                objs.append(json.loads(line))
            except ValueError as e:
                raise QueryError(f"body: item {n}: not valid JSON: {e}") from None
            except RecursionError:
                raise QueryError(f"body: item {n}: nested too deeply") from None
        return objs
    try:
        doc = json.loads(body)
    except RecursionError:
        raise QueryError("body: JSON nested too deeply") from None
    except ValueError as e:
        hint = " (send NDJSON as Content-Type: application/x-ndjson)" if b"\n{" in body else ""
        raise QueryError(f"body: not valid JSON: {e}{hint}") from None
    return doc if isinstance(doc, list) else [doc]


def handle_stats(req: Request, app: App) -> Response:
    sq = parse_stats_query(req.query)
    return json_response(200, app.store.stats(sq.query, sq.by, sq.step_us))


def handle_tail(req: Request, app: App) -> Response:
    return Response(200, b"", "application/x-ndjson", tail=parse_tail_query(req.query))


def handle_metrics(req: Request, app: App) -> Response:
    return Response(200, generate_latest(app.registry), CONTENT_TYPE_LATEST)


Handler = Callable[[Request, App], Response]
ROUTES: dict[str, dict[str, Handler]] = {
    "/health": {"GET": handle_health},
    "/logs": {"GET": handle_logs, "POST": handle_post_logs},
    "/stats": {"GET": handle_stats},
    "/tail": {"GET": handle_tail},
    "/metrics": {"GET": handle_metrics},
}
LOG_ROUTE = "/logs/{id}"
OPEN_ROUTES = frozenset({"/health"})  # reachable without http.auth_token


def _authorized(req: Request, token: str) -> bool:
    scheme, _, given = req.headers.get("authorization", "").strip().partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def route(req: Request, app: App) -> Response:
    """Authorize, find and run the handler; every failure becomes JSON."""
    token = app.http.auth_token
    if token and req.path not in OPEN_ROUTES and not _authorized(req, token):
        resp = error(401, "authorization: expected the header Authorization: Bearer <token>")
        resp.headers.append(("WWW-Authenticate", 'Bearer realm="collector"'))
        resp.route = req.path if req.path in ROUTES else "other"
        return resp
    pattern, methods, arg = req.path, ROUTES.get(req.path), None
    if methods is None and req.path.startswith("/logs/") and req.path.count("/") == 2:
        pattern, arg = LOG_ROUTE, req.path[6:]
        methods = {"GET": cast(Handler, None)}
    if methods is None:
        return error(404, f"path: no route for {req.path}")
    method = "GET" if req.method == "HEAD" else req.method
    if method not in methods:
        allowed = sorted({*methods, "HEAD"} if "GET" in methods else methods)
        resp = error(405, f"method: {req.method} is not allowed on {pattern}")
        resp.headers.append(("Allow", ", ".join(allowed)))
        resp.route = pattern
        return resp
    try:
        resp = handle_log(req, app, arg) if arg is not None else methods[method](req, app)
    except QueryError as e:
        resp = error(400, str(e))
    except Exception:
        log.exception("handler for %s %s failed", req.method, pattern)
        resp = error(500, "internal error; see the daemon log")
    resp.route = pattern
    return resp


# --- wire format helpers --------------------------------------------------------------

_date_cache: list[Any] = [0, ""]


def _http_date() -> str:
    # One formatdate per second, not per response.
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True)
    return cast(str, _date_cache[1])


def _accepts_gzip(value: str) -> bool:
    """Accept-Encoding names gzip (or *) with a non-zero q (RFC 9110 §12.5.3)."""
    for item in value.lower().split(","):
        name, _, params = item.partition(";")
        if name.strip() in ("gzip", "x-gzip", "*"):
            q = params.strip()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}", f"Server: {SERVER}"]
    lines.append(f"Date: {_http_date()}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- the protocol ---------------------------------------------------------------------


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: keep-alive, pipelining in order, bounded
    heads and bodies, a deadline per request, and `/tail` streams."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.write_paused = False
        self.tail: Tail | None = None
        self._drain: asyncio.Future[None] | None = None
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._in_request = False
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._started = 0.0

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; cast, don't assert.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else None
        if len(self.app.connections) >= self.app.http.max_connections:
            self.app.stats.connections_refused += 1
            self._reply(error(503, "connections: server is at http.max_connections"), False)
            return
        self.app.connections.add(self)
        self._arm(self.app.http.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)
        if self.tail is not None:
            self.tail.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self.transport = None

    def pause_writing(self) -> None:
        # Backpressure: stop reading requests while answers pile up unread.
        self.write_paused = True
        if self.transport is not None and self.tail is None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self.tail is not None:
            self.tail.resume()
        elif self.transport is not None and not self._closing:
            self.transport.resume_reading()

    async def drained(self) -> None:
        """Return once the socket's write buffer is below its high-water mark."""
        if self.write_paused and self.transport is not None:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def data_received(self, data: bytes) -> None:
        if self._closing or self.tail is not None:
            return  # a /tail owns the connection; anything pipelined after it is ignored
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reply(error(400, "upgrade: protocol upgrade is not supported"), False)
        except httptools.HttpParserError as e:
            if not self._closing:
                self._reply(error(400, f"request: malformed HTTP: {e}"), False)

    def eof_received(self) -> bool | None:
        return None  # close our side too; a half-closed client gets no more answers

    # the per-connection deadline: idle between requests, whole request otherwise
    def _arm(self, seconds: float) -> None:
        # Deadlines only move later, so the timer is not re-created per
        # request: when it fires early, it re-arms for the current deadline.
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + seconds
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._timeout)

    def _timeout(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._timeout)
            return
        if self.tail is not None or self._closing or self.transport is None:
            return
        if self._in_request:
            # Slowloris: a request must arrive whole within idle_timeout of its
            # first byte, however slowly it trickles in (RFC 9110 §15.5.9).
            self.app.stats.timeouts += 1
            self._reply(error(408, "request: not complete within http.idle_timeout"), False)
        else:
            self._closing = True
            if self.transport.get_write_buffer_size():
                self.transport.abort()  # idle because it stopped reading our answer
            else:
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._closing or self.tail is not None:
            return
        self._in_request = True
        self._started = time.perf_counter()
        self._url = b""
        self._headers = {}
        self._head_bytes = 0
        self._body = []
        self._body_bytes = 0
        self._arm(self.app.http.idle_timeout)

    def on_url(self, url: bytes) -> None:
        if self._closing or self.tail is not None:
            return
        self._url += url
        if len(self._url) > MAX_URL_BYTES and not self._closing:
            # 431, as Node and others answer an oversized request head: the
            # contract's error statuses are 400 401 404 405 413 431.
            self._reply(error(431, f"url: longer than {MAX_URL_BYTES} bytes"), False)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._closing or self.tail is not None:
            return
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEADER_BYTES:
            if not self._closing:
                msg = f"headers: header section larger than {MAX_HEADER_BYTES} bytes"
                self._reply(error(431, msg), False)
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        # RFC 9110 §5.3: repeated fields combine into a comma list.
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        if self._closing or self.tail is not None:
            return
        limit = self.app.http.max_body
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            # Refuse before the body arrives; no point reading it.
            self._reply(error(413, f"body: larger than {limit} bytes (http.max_body)"), False)
            return
        expect = self._headers.get("expect")
        if expect is not None:
            if expect.lower() != "100-continue":
                self._reply(
                    error(417, f"expect: only 100-continue is supported; got {expect!r}"), False
                )
            elif self.transport is not None:
                # RFC 9110 §10.1.1: tell the client to send the body it holds back.
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._closing or self.tail is not None:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.app.http.max_body:
            # A chunked body has no length up front: count as it arrives.
            self._body = []
            self._reply(
                error(413, f"body: larger than {self.app.http.max_body} bytes (http.max_body)"),
                False,
            )
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._closing or self.tail is not None:
            return
        self._in_request = False
        self._arm(self.app.http.idle_timeout)
        url = httptools.parse_url(self._url)
        path = unquote(url.path.decode("utf-8", "replace"))
        raw_query = url.query.decode("utf-8", "replace") if url.query else ""
        query = parse_qs(raw_query, keep_blank_values=True) if raw_query else {}
        method = self.parser.get_method().decode("latin-1")
        req = Request(method, path, query, self._headers, b"".join(self._body), self.peer)
        self._body = []
        resp = route(req, self.app)
        keep_alive = self.parser.should_keep_alive()
        head_only = method == "HEAD"
        if resp.tail is not None and resp.status == 200 and not head_only:
            self._start_tail(resp)
        else:
            gz = len(resp.body) >= GZIP_MIN_BYTES and _accepts_gzip(
                self._headers.get("accept-encoding", "")
            )
            self._reply(resp, keep_alive, head_only, gz)
        self.app.stats.count(resp.route, resp.status, time.perf_counter() - self._started)

    # answers
    def _reply(
        self, resp: Response, keep_alive: bool, head_only: bool = False, gz: bool = False
    ) -> None:
        transport = self.transport
        if transport is None or self._closing:
            return
        body = resp.body
        headers = [("Content-Type", resp.content_type), *resp.headers]
        if gz:
            body = gzip.compress(body, compresslevel=1, mtime=0)
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        headers.append(("Content-Length", str(len(body))))
        if not keep_alive:
            headers.append(("Connection", "close"))
        elif self.parser.get_http_version() == "1.0":
            headers.append(("Connection", "keep-alive"))  # 1.0 assumes close otherwise
        head = _head(resp.status, headers)
        transport.write(head if head_only else head + body)
        if not keep_alive:
            self._closing = True
            if self._timer is not None:
                self._timer.cancel()
            if transport.can_write_eof():
                # Lingering close: a client still sending (a 413'd body) would
                # get a RST that can destroy the answer before it is read.
                transport.write_eof()
                self._timer = asyncio.get_running_loop().call_later(LINGER, transport.close)
            else:
                transport.close()

    def _start_tail(self, resp: Response) -> None:
        assert resp.tail is not None
        assert self.transport is not None
        chunked = self.parser.get_http_version() != "1.0"
        headers = [
            ("Content-Type", "application/x-ndjson"),
            ("Cache-Control", "no-cache"),
            # An HTTP/1.0 client gets the stream unframed, ended by close.
            ("Transfer-Encoding", "chunked") if chunked else ("Connection", "close"),
        ]
        self.transport.write(_head(200, headers))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.write_paused:
            self.transport.resume_reading()
        app = self.app
        self.tail = Tail(
            self,
            resp.tail,
            chunked,
            tails=app.tails,
            counters=app.stats,
            replay=app.store.query,
            keepalive=app.tail_keepalive,
        )


async def start_http(
    app: App, host: str, port: int, sock: socket.socket | None = None
) -> asyncio.Server:
    """Bind the HTTP port (or serve on `sock`); OSError when it cannot be bound."""
    loop = asyncio.get_running_loop()
    if sock is not None:
        return await loop.create_server(lambda: HttpProtocol(app), sock=sock)
    return await loop.create_server(lambda: HttpProtocol(app), host, port, reuse_address=True)
