"""HTTP stage, the routes: a parsed request -> a Response, handlers are functions.

Every failure becomes JSON, never a trace; counters are plain ints. POST /logs
hands records to the `ingest` callable it is given (the listeners' seam) and
/tail answers with a Query the connection turns into a stream (http.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from collector import access
from collector.config import HttpConfig
from collector.inflight import Inflight
from collector.jsonlines import MAX_DEPTH, nested_deeper_than, read_warnings, record_from_object
from collector.query import (
    Query,
    QueryError,
    logs_json,
    logs_json_rows,
    make_cursor,
    object_json,
    opt_json,
    parse_context_query,
    parse_fields_query,
    parse_logs_query,
    parse_stats_query,
    parse_tail_query,
    record_json,
    records_json,
    to_json,
)
from collector.record import Record, apply_clock_skew, make_id, record_to_dict
from collector.settings import Settings
from collector.shard import ROWS_NATIVE
from collector.store import Page, Store
from collector.tail import TAIL_KEEPALIVE, LiveTails
from collector.times import format_timestamp

log = logging.getLogger("collector.http")

# A /logs page also ends before the record that takes its JSON past this many
# bytes (its next_cursor continues after the last record sent).
MAX_PAGE_BYTES = 16 * 1024 * 1024
# A /logs page of up to this many records is read in one store query and
# written in one buffer (unless its JSON passes MAX_PAGE_BYTES); longer ones stream.
PAGE_WHOLE = 200
PAGE_SLICE_MIN = 64  # records read from the store per slice of a streamed page, at first
PAGE_SLICE_MAX = 2048  # ... and at most, as slices prove cheap
PAGE_SLICE_BYTES = 1024 * 1024  # ... and about this much JSON (in-flight memory)
POST_MAX_ITEMS = 100_000  # records per POST /logs; more is 413
POST_SLICE = 2000  # POST /logs ids rendered per piece of a streamed answer
POST_STEP_SECONDS = 0.005  # POST /logs work per loop turn (decoding, checking, storing)
POST_STORE_SLICE = 500  # records handed to the sink at once by POST /logs
POST_MAX_ITEM_ERRORS = 50  # bad items named in one 400 answer
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/jsonlines")
# Upper bounds (seconds) of the request-duration histogram buckets; +Inf is implicit.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

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
    connections: set[Any] = field(default_factory=set)  # http.py's HttpProtocols
    stats: HttpStats = field(default_factory=HttpStats)
    body_bytes: int = 0  # request body bytes held by all connections now (http.py)
    inflight: Inflight = field(default_factory=Inflight)  # the daemon's bound on bytes for clients

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
    # A large answer: its body in pieces, pulled a slice per loop turn while
    # the socket keeps up (http.py); `body` is then unused.
    stream: Iterator[bytes] | None = None
    # Work too big for one loop turn: steps yield None until the answer.
    job: Iterator[Response | None] | None = None


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
    """A page, streamed: read from the store a slice at a time and cut at
    MAX_PAGE_BYTES of JSON, so neither memory nor the loop carry a whole
    10,000-record page of large records at once."""
    q = parse_logs_query(req.query, now_us=_now_us())
    if q.limit <= PAGE_WHOLE:
        if ROWS_NATIVE:  # straight from the store's columns to JSON: no Record per row
            rows, count, next_cursor = app.store.query_json(q, record_json, object_json)
            body = logs_json_rows(rows, count, make_cursor(next_cursor, q))  # 400s above
            if len(body) <= MAX_PAGE_BYTES:
                return Response(200, body)
            page = app.store.query(q)
        else:
            page = app.store.query(q)  # 400s happen here
            body = logs_json(page.items, make_cursor(page.next_cursor, q))
            if len(body) <= MAX_PAGE_BYTES:
                return Response(200, body)
        return Response(200, b"", stream=_page_stream(app.store, q, page))
    first = app.store.query(replace(q, limit=PAGE_SLICE_MIN))
    if first.next_cursor is None:
        return Response(200, logs_json(first.items, make_cursor(first.next_cursor, q)))
    return Response(200, b"", stream=_page_stream(app.store, q, first))


def _page_stream(store: Store, q: Query, page: Page) -> Iterator[bytes]:
    """The `GET /logs` answer in pieces. Records come from the store in slices
    (paging by cursor inside one answer, sized to take a few ms each); the
    page ends after `limit` records, or before the record that would take its
    JSON past MAX_PAGE_BYTES, and `next_cursor` then continues right after
    the last record sent, as between any two pages."""
    yield b'{"logs":['
    count = size = 0
    step = PAGE_SLICE_MIN
    last_id: str | None = None
    next_cursor: str | None = None
    while True:
        cut = False
        items = page.items
        for k in range(0, len(items), PAGE_SLICE_MIN):
            chunk = items[k : k + PAGE_SLICE_MIN]
            whole = records_json(chunk)  # a few records at once, when they fit
            if size + len(whole) <= MAX_PAGE_BYTES:
                yield whole if not count else b"," + whole
                count += len(chunk)
                size += len(whole)
                last_id = chunk[-1][0]
                continue
            for rid, rec in chunk:
                text = record_json(rec, rid)
                if count and size + len(text) > MAX_PAGE_BYTES:
                    cut = True
                    break
                yield (text if not count else "," + text).encode("ascii")
                count += 1
                size += len(text)
                last_id = rid
            if cut:
                break
        if cut:
            next_cursor = last_id
            break
        next_cursor = page.next_cursor
        if next_cursor is None or count >= q.limit:
            break
        t0 = time.perf_counter()
        page = store.query(replace(q, limit=min(q.limit - count, step), cursor=next_cursor))
        took = time.perf_counter() - t0
        step = min(step * 2, PAGE_SLICE_MAX) if took < 0.002 else max(step // 2, PAGE_SLICE_MIN)
        step = min(step, _slice_by_bytes(size, count))
    # The cursor handed out carries the filters it was made for (query.py).
    handed = make_cursor(next_cursor, q)
    yield f'],"count":{count},"next_cursor":{opt_json(handed)}}}'.encode("ascii")


def _slice_by_bytes(size: int, count: int) -> int:
    """Records per store slice so that one slice holds about PAGE_SLICE_BYTES
    of JSON, judged by the records sent so far (large records: few at a
    time, as the answer waits in memory for a slow client)."""
    return max(1, PAGE_SLICE_BYTES * count // max(size, 1))


def handle_log(req: Request, app: App, rec_id: str) -> Response:
    rec = app.store.get(rec_id)
    if rec is None:
        return error(404, f"id: no record with id {rec_id!r} (expired, or never stored)")
    return json_response(200, {"log": record_to_dict(rec, rec_id)})


def handle_context(req: Request, app: App, rec_id: str) -> Response:
    found = app.store.context(rec_id, parse_context_query(req.query))
    if found is None:
        return error(404, f"id: no record with id {rec_id!r} (expired, or never stored)")
    items, anchor = found
    return Response(200, b'{"logs":[%s],"anchor":%d}' % (records_json(items), anchor))


def handle_fields(req: Request, app: App) -> Response:
    names = app.store.fields(parse_fields_query(req.query, now_us=_now_us()))
    return json_response(200, {"fields": [{"name": n, "count": c} for n, c in names]})


def handle_post_logs(req: Request, app: App) -> Response:
    """Store a JSON object, an array of objects, or NDJSON; all or nothing.

    The work runs in slices of POST_SLICE items (http.py runs one per loop
    turn), so a body of a million small objects never holds up the loop."""
    return Response(0, b"", job=_post_steps(req, app))


class _Turns:
    """When a sliced handler should yield: after POST_STEP_SECONDS of work."""

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline = time.perf_counter() + POST_STEP_SECONDS

    def due(self) -> bool:
        now = time.perf_counter()
        if now < self.deadline:
            return False
        self.deadline = now + POST_STEP_SECONDS
        return True


def _post_items(req: Request) -> Iterator[Any]:
    """The body's items one at a time: NDJSON line by line, else the
    decoded document (one object, or an array of them)."""
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in NDJSON_TYPES:
        yield from _decode_post_body(req)
        return
    _check_post_body(req)
    body, pos, end_of_body, n = req.body, 0, len(req.body), 0
    while pos < end_of_body:
        end = body.find(b"\n", pos)
        if end < 0:
            end = end_of_body
        line, pos = body[pos:end], end + 1
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as e:
            raise QueryError(f"body: item {n}: not valid JSON: {e}") from None
        except RecursionError:
            raise QueryError(f"body: item {n}: nested too deeply") from None
        n += 1


def _post_steps(req: Request, app: App) -> Iterator[Response | None]:
    """The steps of a POST /logs: None after each slice of about
    POST_STEP_SECONDS, the answer last. Two passes over the body: every
    item is decoded, checked and made a record, then dropped (nothing per
    item lives on for the GC to walk, memory stays one slice); only when
    all are valid, the second pass makes them again and stores them, a
    slice at a time."""
    turns = _Turns()
    bad: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    now = _now_us()
    opts = app.settings.parse_options
    for i, o in enumerate(_post_items(req)):
        if i >= POST_MAX_ITEMS:
            yield error(413, f"body: more than {POST_MAX_ITEMS} items per request")
            return
        # A record whose fields the API could not print would break every
        # page it falls in; the JSON-lines listener keeps such lines as raw text.
        if not isinstance(o, dict):
            bad.append({"index": i, "error": f"expected a JSON object; got {_json_kind(o)}"})
        elif nested_deeper_than(o):
            bad.append({"index": i, "error": f"nested deeper than {MAX_DEPTH} levels"})
        elif not bad:
            try:
                rec = apply_clock_skew(record_from_object(o, now, req.peer, opts), opts)
            except (ValueError, TypeError) as e:
                bad.append({"index": i, "error": f"cannot be read as a record: {e}"})
            else:
                # Stored leniently, but the sender is told (bounded like the errors).
                if len(warnings) < POST_MAX_ITEM_ERRORS:
                    warnings += (
                        {"index": i, "warning": w} for w in read_warnings(o, rec, opts.ttl_us)
                    )
        if turns.due():
            yield None
    if bad:
        named = "; ".join(f"item {b['index']}: {b['error']}" for b in bad[:POST_MAX_ITEM_ERRORS])
        more = (
            f" (and {len(bad) - POST_MAX_ITEM_ERRORS} more)"
            if len(bad) > POST_MAX_ITEM_ERRORS
            else ""
        )
        yield error(400, f"body: nothing stored; {named}{more}", items=bad[:POST_MAX_ITEM_ERRORS])
        return
    # Every item is valid: from here on all of them are stored, a slice at a time.
    ids: list[str] = []
    part: list[Record] = []
    for o in _post_items(req):
        part.append(apply_clock_skew(record_from_object(o, now, req.peer, opts), opts))
        due = turns.due()
        if len(part) >= POST_STORE_SLICE or due:
            ids += _store_part(app, part)
            part = []
        if due:
            yield None
    ids += _store_part(app, part)
    warnings = warnings[:POST_MAX_ITEM_ERRORS]
    if len(ids) <= POST_SLICE:
        yield json_response(201, {"accepted": len(ids), "ids": ids, "warnings": warnings})
    else:
        yield Response(201, b"", stream=_ids_stream(ids, warnings))


def _store_part(app: App, part: list[Record]) -> list[str]:
    """Hand a slice of records to the sink; their ids."""
    if not part:
        return []
    first = app.ingest(part)
    return [make_id(rec.timestamp, first + i) for i, rec in enumerate(part)]


def _ids_stream(ids: list[str], warnings: list[dict[str, Any]]) -> Iterator[bytes]:
    """`{"accepted": n, "ids": [...], "warnings": [...]}` in pieces: a million
    ids are 25 MB."""
    yield b'{"accepted":%d,"ids":[' % len(ids)
    for start in range(0, len(ids), POST_SLICE):
        part = ",".join(map(opt_json, ids[start : start + POST_SLICE]))
        yield (part if not start else "," + part).encode("ascii")
    yield b'],"warnings":' + json.dumps(warnings, separators=(",", ":")).encode() + b"}"


def step(job: Iterator[Response | None], method: str, pattern: str) -> Response | None:
    """Run one step of a handler's job: its answer when done, else None.
    Failures become JSON as in route()."""
    try:
        return next(job)
    except StopIteration:
        log.error("handler for %s %s ended without an answer", method, pattern)
        return error(500, "internal error; see the daemon log")
    except QueryError as e:
        return error(400, str(e))
    except Exception:
        log.exception("handler for %s %s failed", method, pattern)
        return error(500, "internal error; see the daemon log")


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


def _check_post_body(req: Request) -> None:
    coding = req.headers.get("content-encoding", "identity").strip().lower()
    if coding != "identity":
        raise QueryError(f"content-encoding: {coding!r} is not supported; send the body as is")
    if not req.body or req.body.isspace():  # (no copy of a large body)
        raise QueryError("body: empty; expected a JSON object, an array of objects, or NDJSON")


def _decode_post_body(req: Request) -> list[Any]:
    """A JSON document body: one object, or an array of them."""
    _check_post_body(req)
    body = req.body
    try:
        doc = json.loads(body)
    except RecursionError:
        raise QueryError("body: JSON nested too deeply") from None
    except ValueError as e:
        hint = " (send NDJSON as Content-Type: application/x-ndjson)" if b"\n{" in body else ""
        raise QueryError(f"body: not valid JSON: {e}{hint}") from None
    return doc if isinstance(doc, list) else [doc]


def handle_stats(req: Request, app: App) -> Response:
    """Counted in steps (one per loop turn, http.py), so that counting by a
    field of 200,000 values never holds up the loop."""
    sq = parse_stats_query(req.query, now_us=_now_us())
    return Response(0, b"", job=_stats_steps(app.store.stats_steps(sq.query, sq.by, sq.step_us)))


def _stats_steps(steps: Iterator[dict[str, Any] | None]) -> Iterator[Response | None]:
    for answer in steps:
        if answer is not None:
            yield json_response(200, answer)
            return
        yield None


def handle_tail(req: Request, app: App) -> Response:
    return Response(
        200, b"", "application/x-ndjson", tail=parse_tail_query(req.query, now_us=_now_us())
    )


def handle_metrics(req: Request, app: App) -> Response:
    return Response(200, generate_latest(app.registry), CONTENT_TYPE_LATEST)


# --- the web page -------------------------------------------------------------------

WEB_DIR = Path(__file__).resolve().parent / "web"
WEB_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page loads only its own files and talks only to this origin's API:
# no inline script or style, nothing from any other host (offline networks).
WEB_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
WEB_HEADERS = [
    ("Content-Security-Policy", WEB_CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]


@functools.cache
def web_files() -> tuple[str, dict[str, tuple[bytes, str]]]:
    """(version, {name: (bytes, content type)}), read once from `collector/web/`.

    Assets are served under `/assets/<version>/`, the version being a hash of
    every file, so they can be cached for a year: a new release is a new URL."""
    files = {
        p.name: (p.read_bytes(), WEB_TYPES[p.suffix])
        for p in sorted(WEB_DIR.iterdir())
        if p.suffix in WEB_TYPES
    }
    version = hashlib.sha256(b"".join(n.encode() + b for n, (b, _) in files.items()))
    return version.hexdigest()[:12], files


def handle_web(req: Request, app: App) -> Response:
    """`/` (the page, never cached) and `/assets/<version>/<file>`."""
    version, files = web_files()
    if req.path == "/":
        body = files["index.html"][0].replace(b"{{version}}", version.encode())
        headers = [*WEB_HEADERS, ("Cache-Control", "no-cache")]
        return Response(200, body, WEB_TYPES[".html"], headers)
    _, _, given, name = req.path.split("/", 3) if req.path.count("/") == 3 else ("",) * 4
    found = files.get(name) if name != "index.html" else None
    if found is None:
        return error(404, f"path: no route for {req.path}")
    # An old page asking for an old version gets today's file, uncached.
    cache = "public, max-age=31536000, immutable" if given == version else "no-cache"
    return Response(200, found[0], found[1], [*WEB_HEADERS, ("Cache-Control", cache)])


Handler = Callable[[Request, App], Response]
ROUTES: dict[str, dict[str, Handler]] = {
    "/health": {"GET": handle_health},
    "/logs": {"GET": handle_logs, "POST": handle_post_logs},
    "/stats": {"GET": handle_stats},
    "/fields": {"GET": handle_fields},
    "/tail": {"GET": handle_tail},
    "/metrics": {"GET": handle_metrics},
}
LOG_ROUTE = "/logs/{id}"
CONTEXT_ROUTE = "/logs/{id}/context"
OPEN_ROUTES = frozenset({"/health"})  # reachable without http.auth_token


def unauthorized(method: str, path: str, headers: dict[str, str], app: App) -> Response | None:
    """The 401 or 403 for a request with these headers (access.py decides), or
    None when it may pass. Called once the head is complete, before any body
    is read. The page and its files need no token: the page asks for one
    when the API answers 401."""
    if path in OPEN_ROUTES or path == "/" or path.startswith("/assets/"):
        return None
    denied = access.check(app.http, headers.get("authorization", ""), method, path)
    if denied is None:
        return None
    resp = error(*denied)
    if denied[0] == 401:
        resp.headers.append(("WWW-Authenticate", 'Bearer realm="collector"'))
    resp.route = path if path in ROUTES else "other"
    return resp


def route(req: Request, app: App) -> Response:
    """Authorize, find and run the handler; every failure becomes JSON."""
    if req.path == "/" or req.path.startswith("/assets/"):
        if req.method not in ("GET", "HEAD"):
            resp = error(405, f"method: {req.method} is not allowed on {req.path}")
            resp.headers.append(("Allow", "GET, HEAD"))
        else:
            resp = handle_web(req, app)
        resp.route = "/" if req.path == "/" else "/assets/{file}"
        return resp
    denied = unauthorized(req.method, req.path, req.headers, app)
    if denied is not None:
        return denied
    pattern, methods, arg = req.path, ROUTES.get(req.path), None
    if methods is None and req.path.startswith("/logs/") and req.path.count("/") == 2:
        pattern, arg = LOG_ROUTE, req.path[6:]
        methods = {"GET": cast(Handler, None)}
    elif (
        methods is None
        and req.path.startswith("/logs/")
        and req.path.endswith("/context")
        and req.path.count("/") == 3
    ):
        pattern, arg = CONTEXT_ROUTE, req.path[6 : -len("/context")]
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
        if arg is None:
            resp = methods[method](req, app)
        elif pattern == CONTEXT_ROUTE:
            resp = handle_context(req, app, arg)
        else:
            resp = handle_log(req, app, arg)
    except QueryError as e:
        resp = error(400, str(e))
    except Exception:
        log.exception("handler for %s %s failed", req.method, pattern)
        resp = error(500, "internal error; see the daemon log")
    if resp.job is not None:
        # A first step now: a small job (most POSTs) is answered at once.
        done = step(resp.job, req.method, pattern)
        if done is not None:
            resp = done
    resp.route = pattern
    return resp
