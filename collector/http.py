"""HTTP stage, the connection: one asyncio.Protocol per connection over httptools.

Requests are routed by routes.route(); answers go in request order (RFC 9112
§9.3.2); heads and bodies are bounded, every error is JSON, and a /tail
answer turns the connection into a stream of the daemon's LiveTails.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote

import httptools

from collector.httpwire import (
    accepts_gzip,
    gzipped,
    head,
    pull,
    tail_headers,
)
from collector.inflight import Holder, Source
from collector.routes import App, Request, Response, error, route, step, unauthorized
from collector.tail import Tail
from collector.tls import TlsServer

MAX_URL_BYTES = 16 * 1024  # longer request targets are 431, as docs/api.md lists (no 414)
MAX_HEADER_BYTES = 64 * 1024  # header section beyond this is 431 (RFC 6585 §5)
GZIP_MIN_BYTES = 1024  # smaller bodies gain less than gzip's own framing costs
LINGER = 2.0  # seconds to keep reading (and discarding) after a closing answer
FEED_SLICE = 8 * 1024  # bytes parsed at a time: bounds the requests one slice can queue
STREAM_SLICE = 1024 * 1024  # bytes of a streaming answer written per loop turn (at most)
# Small answers that go even while the in-flight bound holds others back.
UNBOUNDED_PATHS = frozenset({"/health", "/metrics"})
# What a streaming answer in progress is counted as holding, beyond its write
# buffer: the slice pulled and the records its source read ahead (in-flight bound).
STREAM_HOLD = 4 * STREAM_SLICE
# What a sliced job (a POST being decoded and stored) holds, per byte of its
# request body: the body, and about that much again for a slice in progress.
JOB_HOLD_FACTOR = 2

# --- the protocol ---------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A parsed request waiting for its turn, or an error answer that ends the
    connection once the requests before it are answered."""

    req: Request | None
    keep_alive: bool
    version: str
    started: float
    early: Response | None = None


class HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: keep-alive, pipelining in order, bounded
    heads and bodies, a deadline per request, and `/tail` streams.

    Bounded in flight: bytes are handed to httptools a slice at a time and
    only while no parsed request waits, so a pipeline of thousands is read
    as it is answered; one answer per loop turn; nothing more while the
    socket is backed up (reading pauses too); a large answer streams."""

    def __init__(self, app: App) -> None:
        self.app = app
        # The loop, once: asyncio.get_running_loop() makes a getpid() system
        # call each time, and a request asked for it twice.
        self._loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self.write_paused = False
        self.tail: Tail | None = None
        self._drain: asyncio.Future[None] | None = None
        self._closing = False  # a closing answer was written: nothing more
        self._halted = False  # stop reacting to parser callbacks (error, tail, close)
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._in_request = False
        self._url = b""
        self._parsed: Any = None  # httptools' parsed URL of the request being read
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._started = 0.0
        self._inbox = bytearray()  # read, not yet parsed (while requests wait)
        self._queue: deque[_Pending] = deque()
        self._turn: asyncio.Handle | None = None  # the next loop turn's _pump
        self._reading = True
        self._stream: Iterator[bytes] | None = None  # a streaming answer in progress
        self._job: tuple[Iterator[Response | None], _Pending, str] | None = None  # a sliced handler
        self._stream_close = False
        self._stream_chunked = True
        self._waiting = False  # held back by the in-flight bound until the guard wakes it

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
        self.app.inflight.forget(self)
        if self.tail is not None:
            self.tail.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._turn is not None:
            self._turn.cancel()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        # Break every reference cycle that could hold a large buffer (the
        # parser calls back into this object; a Tail writes to it): memory
        # returns when the client leaves, whatever the GC's thresholds.
        self._halted = self._closing = True
        self.parser = _DEAD_PARSER
        self.tail = None
        self._timer = self._turn = self._drain = self._stream = self._job = None
        self._drop_body()
        self._inbox, self._headers = bytearray(), {}
        self._queue.clear()
        self.transport = None

    def pause_writing(self) -> None:
        # Backpressure: stop reading requests while answers pile up unread.
        self.write_paused = True
        self._set_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self.tail is not None:
            self.tail.resume()
        elif not self._closing:
            self._pump()

    async def drained(self) -> None:
        """Return once the socket's write buffer is below its high-water mark."""
        if self.write_paused and self.transport is not None:
            self._drain = self._loop.create_future()
            await self._drain

    def data_received(self, data: bytes) -> None:
        if self._closing or self.tail is not None:
            return  # a /tail owns the connection; anything pipelined after it is ignored
        if self._halted:
            return  # an error answer waits behind earlier ones; the rest is dropped
        self._inbox += data
        self._pump()

    def eof_received(self) -> bool | None:
        return None  # close our side too; a half-closed client gets no more answers

    # the work loop: parse a slice, answer one request, per loop turn
    def _pump(self) -> None:
        """Parse and answer while the socket keeps up: feed httptools only when
        no request waits, answer at most one request (or one stream slice) per
        loop turn, then yield so other connections and ingest run."""
        self._turn = None
        answered = False
        self._waiting = False
        while self.transport is not None and not self._closing and self.tail is None:
            if self.write_paused:
                break
            if (self._stream or (self._queue and not self._job)) and self._must_wait():
                break
            if self._job is not None:
                if answered:
                    break
                self._job_step()
                answered = True
                continue
            if self._stream is not None:
                if answered:
                    break
                self._stream_slice()
                answered = True
                continue
            if self._queue:
                if answered:
                    break
                self._answer(self._queue.popleft())
                answered = True
                continue
            if not self._inbox or self._halted:
                break
            piece = bytes(self._inbox[:FEED_SLICE])
            del self._inbox[:FEED_SLICE]
            self._feed(piece)
        more = bool(self._queue) or self._stream is not None or self._job is not None
        if (
            more
            and self._turn is None
            and self.transport is not None
            and not self._closing
            and not self.write_paused
            and not self._waiting
            and self.tail is None
        ):
            self._turn = self._loop.call_soon(self._pump)
        self._set_reading()

    def _must_wait(self) -> bool:
        """Over the in-flight bound: the next answer (or slice of one) waits
        until the guard measures room again; /health, /metrics and closing
        error answers still go at once, so the daemon stays observable, and
        a job in progress (a POST storing) goes on: it frees as it ends."""
        inflight = self.app.inflight
        if not inflight.over():
            return False
        if self._stream is None and self._queue:
            item = self._queue[0]
            if item.req is None or item.req.path in UNBOUNDED_PATHS:
                return False
        self._waiting = True
        inflight.wait(self, self._wake)
        return True

    def _wake(self) -> None:
        if self.transport is not None and not self._closing and self._turn is None:
            self._turn = asyncio.get_running_loop().call_soon(self._pump)

    def held(self) -> int:
        """Bytes this connection holds for its client: unparsed input, the
        body being read and those of requests waiting, the answer waiting in
        the socket's write buffer, a /tail's backlog."""
        transport = self.transport
        if transport is None:
            return 0
        n = transport.get_write_buffer_size() + len(self._inbox) + self._body_bytes
        for item in self._queue:
            if item.req is not None:
                n += len(item.req.body)
        if self._job is not None and self._job[1].req is not None:
            n += JOB_HOLD_FACTOR * len(self._job[1].req.body)
        if self._stream is not None:
            n += STREAM_HOLD
        if self.tail is not None:
            n += self.tail.held
        return n

    def shed(self) -> None:
        """Close this connection at once (the in-flight bound's last resort)."""
        if self.transport is not None:
            self.transport.abort()

    def _set_reading(self) -> None:
        """Read from the socket only while nothing waits to be parsed or
        answered and the socket is not backed up; a /tail always reads (to
        see the client leave)."""
        transport = self.transport
        if transport is None or self._closing:
            return
        busy = self._stream is not None or self._job is not None
        want = self.tail is not None or not (
            self.write_paused or self._inbox or self._queue or busy
        )
        if want != self._reading:
            self._reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(error(400, "upgrade: protocol upgrade is not supported"))
        except httptools.HttpParserError as e:
            self._fail(error(400, f"request: malformed HTTP: {e}"))

    def _fail(self, resp: Response) -> None:
        """Answer `resp` and close, after the requests already waiting."""
        if self._halted:
            return
        self._halted = True
        self._inbox = bytearray()
        self._drop_body()
        if self._queue or self._stream is not None or self._job is not None:
            self._queue.append(_Pending(None, False, "1.1", self._started, resp))
        else:
            self._reply(resp, False)

    # the per-connection deadline: idle between requests, whole request otherwise
    def _arm(self, seconds: float) -> None:
        # Deadlines only move later, so the timer is not re-created per
        # request: when it fires early, it re-arms for the current deadline.
        loop = self._loop
        self._deadline = loop.time() + seconds
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._timeout)

    def _timeout(self) -> None:
        self._timer = None
        loop = self._loop
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._timeout)
            return
        if self.tail is not None or self._closing or self.transport is None:
            return
        if self._in_request and not self._queue and self._stream is None and self._job is None:
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
        if self._halted:
            return
        self._in_request = True
        self._started = time.perf_counter()
        self._url = b""
        self._headers = {}
        self._head_bytes = 0
        self._drop_body()
        self._arm(self.app.http.idle_timeout)

    def on_url(self, url: bytes) -> None:
        if self._halted:
            return
        self._url += url
        if len(self._url) > MAX_URL_BYTES:
            # 431, as Node and others answer an oversized request head: the
            # API's error statuses are 400 401 404 405 413 431.
            self._fail(error(431, f"url: longer than {MAX_URL_BYTES} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._halted:
            return
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEADER_BYTES:
            msg = f"headers: header section larger than {MAX_HEADER_BYTES} bytes"
            self._fail(error(431, msg))
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        # RFC 9110 §5.3: repeated fields combine into a comma list.
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        if self._halted:
            return
        refused = self._refuse_head()
        if refused is not None:
            self._fail(refused)
            return
        expect = self._headers.get("expect")
        if expect is not None:
            if expect.lower() != "100-continue":
                self._fail(error(417, f"expect: only 100-continue is supported; got {expect!r}"))
            elif self.transport is not None and not (self._queue or self._stream or self._job):
                # RFC 9110 §10.1.1: tell the client to send the body it holds back.
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _refuse_head(self) -> Response | None:
        """The answer to a request refused on its head alone, in the order a
        client can act on: malformed, then unauthorized (no body is read and
        no 100 Continue sent for it), then too large."""
        version = self.parser.get_http_version()
        if version not in ("1.0", "1.1"):
            return error(400, f"request: HTTP/{version} is not supported; speak HTTP/1.1")
        method = self.parser.get_method()
        if method == b"CONNECT":
            return error(405, "method: CONNECT is not allowed; this is not a proxy")
        coding = self._headers.get("transfer-encoding")
        if coding is not None and coding.strip().lower() != "chunked":
            return error(400, f"transfer-encoding: only chunked is supported; got {coding!r}")
        try:
            self._parsed = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            return error(400, "url: not a valid request target")
        path = unquote(self._parsed.path.decode("utf-8", "replace"))
        denied = unauthorized(method.decode("latin-1"), path, self._headers, self.app)
        if denied is not None:
            return denied
        limit = self.app.http.max_body
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            # Refuse before the body arrives; no point reading it.
            return error(413, f"body: larger than {limit} bytes (http.max_body)")
        return None

    def on_body(self, body: bytes) -> None:
        if self._halted:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.app.http.max_body:
            # A chunked body has no length up front: count as it arrives.
            limit = self.app.http.max_body
            self._fail(error(413, f"body: larger than {limit} bytes (http.max_body)"))
            return
        app = self.app
        others = app.body_bytes - (self._body_bytes - len(body))
        if others > 0 and not app.inflight.room(len(body)):
            # Bounded across connections too: 1,024 clients x max_body is not.
            # (One body at a time may pass the bound: max_body is the operator's.)
            app.inflight.stats.refused += 1
            resp = error(503, "body: the server holds too many bytes for clients now; retry")
            resp.headers.append(("Retry-After", "1"))
            self._fail(resp)
            return
        app.body_bytes += len(body)
        app.inflight.charge(len(body))
        self._body.append(body)

    def _drop_body(self) -> None:
        """Forget the body being read (and give its bytes back to the budget)."""
        if self._body:
            self.app.body_bytes -= sum(map(len, self._body))
            self._body = []
        self._body_bytes = 0

    def on_message_complete(self) -> None:
        if self._halted:
            return
        self._in_request = False
        self._arm(self.app.http.idle_timeout)
        url = self._parsed  # by _refuse_head, for this request
        path = unquote(url.path.decode("utf-8", "replace"))
        raw_query = url.query.decode("utf-8", "replace") if url.query else ""
        query = _query_params(raw_query) if raw_query else {}
        method = self.parser.get_method().decode("latin-1")
        req = Request(method, path, query, self._headers, b"".join(self._body), self.peer)
        self._drop_body()
        version = self.parser.get_http_version()
        self._queue.append(_Pending(req, self.parser.should_keep_alive(), version, self._started))

    # answers
    def _answer(self, item: _Pending) -> None:
        if item.early is not None:
            self._reply(item.early, False)
            return
        req = item.req
        assert req is not None
        resp = route(req, self.app)
        if resp.job is not None:
            self._job = (resp.job, item, resp.route)  # the next turns run it
            return
        self._deliver(item, req, resp)

    def _job_step(self) -> None:
        assert self._job is not None
        job, item, pattern = self._job
        assert item.req is not None
        resp = step(job, item.req.method, pattern)
        if resp is not None:
            self._job = None
            resp.route = pattern
            self._deliver(item, item.req, resp)

    def _deliver(self, item: _Pending, req: Request, resp: Response) -> None:
        head_only = req.method == "HEAD"
        if resp.tail is not None and resp.status == 200:
            if head_only:
                headers = tail_headers(item.version != "1.0", item.keep_alive)
                self._write_head(200, headers, item.keep_alive)
            else:
                self._start_tail(resp, item.version != "1.0")
        elif resp.stream is not None and head_only:
            # The head a GET would get, when its answer is long: chunked.
            chunked = [("Transfer-Encoding", "chunked")] if item.version != "1.0" else []
            headers = [("Content-Type", resp.content_type), *resp.headers, *chunked]
            self._write_head(resp.status, headers, item.keep_alive and bool(chunked))
        elif resp.stream is not None:
            self._start_stream(resp, req, item)
        else:
            gz = len(resp.body) >= GZIP_MIN_BYTES and accepts_gzip(
                req.headers.get("accept-encoding", "")
            )
            self._reply(resp, item.keep_alive, head_only, gz, item.version)
        self.app.stats.count(resp.route, resp.status, time.perf_counter() - item.started)

    def _reply(
        self,
        resp: Response,
        keep_alive: bool,
        head_only: bool = False,
        gz: bool = False,
        version: str = "1.1",
    ) -> None:
        if self.transport is None or self._closing:
            return
        body = resp.body
        headers = [("Content-Type", resp.content_type), *resp.headers]
        if gz:
            body = gzip.compress(body, compresslevel=1, mtime=0)
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        headers.append(("Content-Length", str(len(body))))
        if keep_alive and version == "1.0":
            headers.append(("Connection", "keep-alive"))  # 1.0 assumes close otherwise
        self._write_head(resp.status, headers, keep_alive, b"" if head_only else body)

    def _write_head(
        self, status: int, headers: list[tuple[str, str]], keep_alive: bool, body: bytes = b""
    ) -> None:
        transport = self.transport
        if transport is None or self._closing:
            return
        if not keep_alive:
            headers = [*headers, ("Connection", "close")]
        data = head(status, headers) + body
        self.app.inflight.charge(len(data))
        transport.write(data)
        if not keep_alive:
            self._close_after_write()

    def _close_after_write(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self._closing = self._halted = True
        self._queue.clear()
        self._inbox = bytearray()
        if self._timer is not None:
            self._timer.cancel()
        if transport.can_write_eof():
            # Lingering close: a client still sending (a 413'd body) would
            # get a RST that can destroy the answer before it is read.
            transport.write_eof()
            self._timer = self._loop.call_later(LINGER, transport.close)
        else:
            transport.close()
        if not self._reading:
            self._reading = True
            transport.resume_reading()  # read and drop what the client still sends

    def _start_stream(self, resp: Response, req: Request, item: _Pending) -> None:
        """Begin a large answer: pull its first slice; an answer that fits in
        it goes out whole with a Content-Length, a longer one chunked (or,
        to an HTTP/1.0 client, ended by close)."""
        assert resp.stream is not None
        gz = accepts_gzip(req.headers.get("accept-encoding", ""))
        stream = gzipped(resp.stream) if gz else resp.stream
        first, done = pull(stream, STREAM_SLICE)
        headers = [("Content-Type", resp.content_type), *resp.headers]
        if gz:
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        if done:
            headers.append(("Content-Length", str(len(first))))
            if item.keep_alive and item.version == "1.0":
                headers.append(("Connection", "keep-alive"))
            self._write_head(resp.status, headers, item.keep_alive, first)
            return
        chunked = item.version != "1.0"
        keep_alive = item.keep_alive and chunked
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            headers.append(("Connection", "close"))
        assert self.transport is not None
        self.transport.write(head(resp.status, headers))
        self._stream, self._stream_chunked, self._stream_close = stream, chunked, not keep_alive
        self._write_piece(first)

    def _stream_slice(self) -> None:
        """Write the next slice of the streaming answer; end it when done."""
        assert self._stream is not None
        piece, done = pull(self._stream, STREAM_SLICE)
        self._write_piece(piece)
        if done:
            self._stream = None
            if self.transport is None:
                return
            if self._stream_chunked:
                self.transport.write(b"0\r\n\r\n")
            if self._stream_close:
                self._close_after_write()

    def _write_piece(self, piece: bytes) -> None:
        if piece and self.transport is not None:
            self.app.inflight.charge(len(piece))
            if self._stream_chunked:
                self.transport.writelines([b"%x\r\n" % len(piece), piece, b"\r\n"])
            else:
                self.transport.write(piece)

    def _start_tail(self, resp: Response, chunked: bool) -> None:
        assert resp.tail is not None
        assert self.transport is not None
        self._halted = True
        self._queue.clear()
        self._inbox = bytearray()
        self.transport.write(head(200, tail_headers(chunked, True)))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        app = self.app
        self.tail = Tail(
            self,
            resp.tail,
            chunked,
            tails=app.tails,
            counters=app.stats,
            replay=app.store.query,
            keepalive=app.tail_keepalive,
            inflight=app.inflight,
        )
        self._set_reading()


def _query_params(raw: str) -> dict[str, list[str]]:
    """`parse_qs(raw, keep_blank_values=True)`, without its per-item
    unquoting when there is nothing to unquote (the common case)."""
    if "%" in raw or "+" in raw:
        return parse_qs(raw, keep_blank_values=True)
    out: dict[str, list[str]] = {}
    for item in raw.split("&"):
        if item:
            name, _, value = item.partition("=")
            out.setdefault(name, []).append(value)
    return out


def inflight_source(app: App) -> Source:
    """The HTTP connections as one source of the in-flight bound: what they
    hold, and the one holding most (a /tail counts as kind "tail")."""

    def total() -> int:
        return sum(conn.held() for conn in app.connections)

    def largest() -> list[tuple[str, Holder]]:
        # A request being worked on (a POST storing) is not shed: it ends
        # on its own and frees what it holds.
        conns = [c for c in app.connections if c._job is None]
        if not conns:
            return []
        conn = max(conns, key=HttpProtocol.held)
        return [("tail" if conn.tail is not None else "http", (conn.held(), conn.shed))]

    return Source("http", total, largest)


class _Discard:
    """The callback object of a finished connection's parser."""


_DEAD_PARSER = httptools.HttpRequestParser(_Discard())


async def start_http(
    app: App, host: str, port: int, sock: socket.socket | None = None, tls: TlsServer | None = None
) -> asyncio.Server:
    """Bind the HTTP port (or serve on `sock`), HTTPS while `tls` has a certificate;
    OSError when it cannot be bound."""
    loop = asyncio.get_running_loop()
    factory: Callable[[], asyncio.BaseProtocol] = functools.partial(HttpProtocol, app)
    if tls is not None:
        factory = tls.wrap(factory)
    if sock is not None:
        return await loop.create_server(factory, sock=sock)
    return await loop.create_server(factory, host, port, reuse_address=True)
