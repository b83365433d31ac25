"""HTTP: routing without sockets, the protocol over a fake transport, and the
whole API end to end over real sockets on 127.0.0.1 (every error status,
pipelining, keep-alive, /tail, slow and vanishing clients, auth)."""

from __future__ import annotations

import asyncio
import gc
import gzip
import itertools
import json
import socket
import time
import weakref
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import routes
from collector.config import Config, HttpConfig
from collector.http import HttpProtocol
from collector.metrics import make_registry
from collector.query import parse_time
from collector.routes import App, Request, route
from collector.settings import Settings
from collector.store import Store
from collector.times import format_timestamp
from tests.support import (
    Conn,
    get,
    get_json,
    http_request,
    jl,
    parse_answers,
    post,
    running_daemon,
    small_config,
    wait_for,
)

# --- helpers ----------------------------------------------------------------------------


def make_app(**http_kw: Any) -> App:
    store = Store(ttl_us=3600 * 10**6, max_records=10**6, max_memory=1 << 30)
    return App(
        store=store,
        registry=make_registry(store, list),
        listener_names=lambda: ["udp"],
        settings=Settings(replace(Config(), http=HttpConfig(**http_kw))),
        ingest=store.add_many,
    )


def req(method: str, path: str, query: dict[str, list[str]] | None = None, **kw: Any) -> Request:
    return Request(method, path, query or {}, kw.pop("headers", {}), **kw)


# --- routing, no sockets ---------------------------------------------------------------


def test_route_names_the_pattern_for_counting() -> None:
    app = make_app()
    assert route(req("GET", "/logs/abc-1"), app).route == "/logs/{id}"
    assert route(req("GET", "/nowhere"), app).route == "other"
    assert route(req("GET", "/health"), app).route == "/health"


def test_an_unknown_path_is_404_json() -> None:
    resp = route(req("GET", "/nowhere"), make_app())
    assert resp.status == 404
    assert json.loads(resp.body)["error"].startswith("path: ")


def test_a_wrong_method_is_405_with_allow() -> None:
    resp = route(req("DELETE", "/logs"), make_app())
    assert resp.status == 405
    assert ("Allow", "GET, HEAD, POST") in resp.headers
    resp = route(req("POST", "/logs/x-1"), make_app())
    assert ("Allow", "GET, HEAD") in resp.headers


def test_a_handler_crash_is_500_json_without_a_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()

    def boom(q: Any) -> Any:
        raise RuntimeError("secret internals")

    # Every way a page reads the store (a page of <= 200 records: its columns).
    for name in ("query", "query_json"):
        monkeypatch.setattr(app.store, name, boom)
    resp = route(req("GET", "/logs"), app)
    assert resp.status == 500
    assert b"secret" not in resp.body
    assert b"Traceback" not in resp.body


def test_auth_guards_every_route_but_health() -> None:
    app = make_app(auth_token="s3cret")
    assert route(req("GET", "/health"), app).status == 200
    for path in ("/logs", "/logs/x-1", "/stats", "/tail", "/metrics", "/nowhere"):
        assert route(req("GET", path), app).status == 401, path
    good = {"authorization": "Bearer s3cret"}
    assert route(req("GET", "/logs", headers=good), app).status == 200
    assert route(req("GET", "/logs", headers={"authorization": "bearer s3cret"}), app).status == 200
    for bad in ("Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret", ""):
        assert route(req("GET", "/logs", headers={"authorization": bad}), app).status == 401


def test_post_is_all_or_nothing_naming_each_bad_item() -> None:
    app = make_app()
    body = json.dumps([{"message": "a"}, 5, {"message": "b"}, [1]]).encode()
    resp = route(req("POST", "/logs", body=body), app)
    assert resp.status == 400
    answer = json.loads(resp.body)
    assert "item 1" in answer["error"]
    assert "item 3" in answer["error"]
    assert [i["index"] for i in answer["items"]] == [1, 3]
    assert len(app.store) == 0


def test_durations_count_into_fixed_buckets() -> None:
    d = routes.Durations()
    for s in (0.0001, 0.003, 0.003, 100.0):
        d.observe(s)
    cum = d.cumulative()
    assert cum[0] == (0.0005, 1)
    assert dict(cum)[0.005] == 3
    assert cum[-1] == (float("inf"), 4)
    assert d.count == 4


# --- the protocol over a fake transport ----------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.reading = True
        self.eof = False

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, parts: list[bytes]) -> None:
        for part in parts:
            self.write(part)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def close(self) -> None:
        self.closed = True

    abort = close

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def fake_conn(app: App | None = None) -> tuple[HttpProtocol, FakeTransport]:
    proto = HttpProtocol(app or make_app())
    transport = FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto, transport


PIPELINE = get("/health") + get("/nowhere") + get("/logs?limit=0") + get("/stats")


async def test_pipelined_requests_are_answered_in_order_fed_whole_or_byte_by_byte() -> None:
    for step in (len(PIPELINE), 1, 7):
        proto, t = fake_conn()
        for i in range(0, len(PIPELINE), step):
            proto.data_received(PIPELINE[i : i + step])
        # One answer per loop turn: the rest wait, and so does reading.
        await wait_for(lambda t=t: len(parse_answers(bytes(t.data))) == 4)
        statuses = [a.status for a in parse_answers(bytes(t.data))]
        assert statuses == [200, 404, 400, 200], step
        assert t.reading
        assert not t.closed
        proto.connection_lost(None)


async def test_every_answer_carries_server_date_and_length() -> None:
    proto, t = fake_conn()
    proto.data_received(get("/health"))
    (a,) = parse_answers(bytes(t.data))
    assert a.headers["server"].startswith("collector/")
    assert a.headers["date"].endswith(" GMT")
    assert int(a.headers["content-length"]) == len(a.body)
    proto.connection_lost(None)


async def test_a_chunked_body_over_the_limit_is_413_before_it_ends() -> None:
    proto, t = fake_conn(make_app(max_body=1000))
    proto.data_received(b"POST /logs HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    proto.data_received(b"400\r\n" + b"x" * 0x400 + b"\r\n")
    (a,) = parse_answers(bytes(t.data))
    assert a.status == 413
    assert a.json()["error"].startswith("body: ")
    assert t.eof  # we said all; the rest of the body is read and dropped
    before = len(t.data)
    proto.data_received(b"400\r\n" + b"x" * 0x400 + b"\r\n0\r\n\r\n")
    assert len(t.data) == before
    proto.connection_lost(None)


async def test_a_declared_length_over_the_limit_is_413_without_reading_the_body() -> None:
    proto, t = fake_conn(make_app(max_body=1000))
    proto.data_received(b"POST /logs HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n")
    (a,) = parse_answers(bytes(t.data))
    assert a.status == 413
    proto.connection_lost(None)


async def test_garbage_is_400_json_and_closes() -> None:
    proto, t = fake_conn()
    proto.data_received(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n")
    (a,) = parse_answers(bytes(t.data))
    assert a.status == 400
    assert a.json()["error"].startswith("request: ")
    assert t.eof
    proto.connection_lost(None)


async def test_writes_backed_up_pause_reading_until_drained() -> None:
    proto, t = fake_conn()
    proto.pause_writing()
    assert not t.reading
    proto.resume_writing()
    assert t.reading
    proto.connection_lost(None)


async def test_a_connection_over_max_connections_gets_503() -> None:
    app = make_app(max_connections=1)
    first, _ = fake_conn(app)
    second, t = fake_conn(app)
    (a,) = parse_answers(bytes(t.data))
    assert a.status == 503
    assert app.stats.connections_refused == 1
    first.connection_lost(None)
    second.connection_lost(None)


# --- end to end: reading ------------------------------------------------------------------


async def test_posted_records_come_back_by_id_and_in_logs() -> None:
    async with running_daemon() as d:
        a = await post(d, jl(0))
        assert a.status == 201
        (one,) = a.json()["ids"]
        b = await post(d, [jl(1), jl(2)])
        c = await post(
            d, b'{"message": "event 3"}\n\n{"message": "event 4"}\n', "application/x-ndjson"
        )
        ids = [one, *b.json()["ids"], *c.json()["ids"]]
        assert [a.json()["accepted"], b.json()["accepted"], c.json()["accepted"]] == [1, 2, 2]
        for i, rid in enumerate(ids):
            got = (await get_json(d, f"/logs/{rid}"))["log"]
            assert got["id"] == rid
            assert got["message"] == f"event {i}"
            assert got["format"] == "json"
        page = await get_json(d, "/logs?limit=10")
        assert page["count"] == 5
        assert page["next_cursor"] is None
        assert sorted(r["id"] for r in page["logs"]) == sorted(ids)


async def test_post_stores_leniently_and_says_what_it_changed_in_warnings() -> None:
    async with running_daemon() as d:
        answer = await post(
            d,
            [
                {"message": "fine", "level": "warn"},
                {"message": "odd level", "level": "bogus"},
                {"message": "old", "timestamp": "2020-01-01T00:00:00Z"},
                {"message": "unreadable time", "time": "yesterday"},
            ],
        )
        assert answer.status == 201
        body = answer.json()
        assert body["accepted"] == 4
        assert body["warnings"] == [
            {"index": 1, "warning": "level: unknown 'bogus', stored as info"},
            {
                "index": 2,
                "warning": "timestamp: 2020-01-01T00:00:00.000000Z is older than the store's "
                "ttl (3600s), stored with the receipt time (the original is in "
                "fields.original_timestamp)",
            },
            {"index": 3, "warning": "time: cannot read 'yesterday', stored with the receipt time"},
        ]
        odd = (await get_json(d, f"/logs/{body['ids'][1]}"))["log"]
        assert (odd["level"], odd["fields"]) == ("info", {"level": "bogus"})
        plain = await post(d, {"message": "plain"})
        assert plain.json()["warnings"] == []


async def test_post_errors_are_400_and_store_nothing() -> None:
    async with running_daemon() as d:
        bad = [
            (b"{nope", "application/json", "body: not valid JSON"),
            (b"", "application/json", "body: empty"),
            (b"[{}, 3]", "application/json", "item 1"),
            (b'{"a": 1}\n[]\n', "application/x-ndjson", "item 1"),
            (b'{"a": 1}\n{bad\n', "application/x-ndjson", "item 1: not valid JSON"),
            (b"\xff\xfe\x00", "application/json", "body: "),
            (b"[" * 100_000, "application/json", "body: JSON nested too deeply"),
            (b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json", "nested too deeply"),
            (b'{"a":1}\n' + b"[" * 100_000 + b"\n", "application/x-ndjson", "item 1: nested"),
            (
                b'{"m": 1, "f": ' + b"[" * 900 + b"]" * 900 + b"}",
                "application/json",
                "item 0: nested deeper than 100 levels",
            ),
        ]
        a = await post(d, b"\x1f\x8b", "application/json", **{"Content-Encoding": "gzip"})
        assert a.json()["error"].startswith("content-encoding: ")
        for body, ctype, words in bad:
            a = await post(d, body, ctype)
            assert a.status == 400, body
            assert words in a.json()["error"], (body, a.json())
        assert len(d.store) == 0


async def test_a_missing_id_is_404_and_a_malformed_cursor_is_400() -> None:
    async with running_daemon() as d:
        a = await http_request(d.http_address, "GET", "/logs/ffff-1")
        assert a.status == 404
        assert a.json()["error"].startswith("id: ")
        a = await http_request(d.http_address, "GET", "/logs?cursor=garbage")
        assert a.status == 400
        assert a.json()["error"].startswith("cursor: ")


async def test_filters_and_order_select_and_sort() -> None:
    async with running_daemon() as d:
        await post(
            d,
            [
                jl(0, timestamp="2026-01-30T12:00:00Z", level="error", service="db"),
                jl(1, timestamp="2026-01-30T12:00:01Z", level="warn"),
                jl(2, timestamp="2026-01-30T12:00:02Z", level="debug", host="h2"),
            ],
        )
        # Whatever the clock-skew rule does to these times, order holds.
        msgs = lambda page: [r["message"] for r in page["logs"]]  # noqa: E731
        assert msgs(await get_json(d, "/logs?order=desc")) == ["event 2", "event 1", "event 0"]
        assert msgs(await get_json(d, "/logs?min_level=warning")) == ["event 0", "event 1"]
        assert msgs(await get_json(d, "/logs?level=ERR,debug")) == ["event 0", "event 2"]
        assert msgs(await get_json(d, "/logs?service=db")) == ["event 0"]
        assert msgs(await get_json(d, "/logs?host=h2")) == ["event 2"]
        assert msgs(await get_json(d, "/logs?q=EVENT%201")) == ["event 1"]
        assert msgs(await get_json(d, "/logs?facility=local0")) == []


async def test_paging_visits_every_record_once_while_records_arrive() -> None:
    async with running_daemon() as d:
        await post(d, [jl(i) for i in range(25)])
        seen: list[str] = []
        cursor = None
        for page_no in range(100):
            target = "/logs?limit=7" + (f"&cursor={cursor}" if cursor else "")
            page = await get_json(d, target)
            seen += [r["message"] for r in page["logs"]]
            if page_no < 3:
                await post(d, [jl(100 + page_no)])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 28


async def test_stats_count_by_field_and_step() -> None:
    async with running_daemon() as d:
        await post(d, [jl(0, level="err"), jl(1, level="err"), jl(2), {"message": "x"}])
        s = await get_json(d, "/stats?by=level,service&step=1m")
        assert s["total"] == 4
        assert s["by"]["level"] == {"err": 2, "info": 2}
        assert s["by"]["service"] == {"api": 3, "-": 1}
        assert sum(b["count"] for b in s["histogram"]) == 4
        assert all(b["start"].endswith(":00.000000Z") for b in s["histogram"])
        starts = [parse_time("start", b["start"]) for b in s["histogram"]]
        assert all(b - a == 60_000_000 for a, b in itertools.pairwise(starts))
        s = await get_json(d, "/stats?level=err")
        assert s["total"] == 2
        a = await http_request(d.http_address, "GET", "/stats?by=colour")
        assert a.status == 400
        assert a.json()["error"].startswith("by: ")


async def test_health_and_metrics_answer() -> None:
    async with running_daemon() as d:
        await post(d, jl(0))
        assert (await get_json(d, "/health"))["records"] == 1
        a = await http_request(d.http_address, "GET", "/metrics")
        assert a.status == 200
        assert a.headers["content-type"].startswith("text/plain")
        assert b"collector_store_records 1.0" in a.body


async def test_large_answers_are_gzipped_when_the_client_accepts_it() -> None:
    async with running_daemon() as d:
        await post(d, [jl(i) for i in range(50)])
        plain = await http_request(d.http_address, "GET", "/logs")
        zipped = await http_request(
            d.http_address, "GET", "/logs", headers={"Accept-Encoding": "br, gzip;q=0.5"}
        )
        assert "content-encoding" not in plain.headers
        assert zipped.headers["content-encoding"] == "gzip"
        assert len(zipped.body) < len(plain.body)
        assert json.loads(gzip.decompress(zipped.body))["count"] == 50
        refused = await http_request(
            d.http_address, "GET", "/logs", headers={"Accept-Encoding": "gzip;q=0"}
        )
        assert "content-encoding" not in refused.headers


# --- end to end: HTTP/1.1 on the wire -----------------------------------------------------


async def test_keep_alive_and_pipelining_answer_in_order_on_one_connection() -> None:
    async with running_daemon() as d:
        c = await Conn.open(d)
        try:
            await c.send(get("/health"))
            (a,) = await c.read()
            assert a.status == 200
            await c.send(get("/nowhere") + get("/logs?limit=x") + get("/health"))
            assert [a.status for a in await c.read(3)] == [404, 400, 200]
            await c.send(get("/health", close=True))
            (a,) = await c.read()
            assert a.headers["connection"] == "close"
            assert await c.closed_by_server()
        finally:
            await c.close()


async def test_a_wrong_method_on_the_wire_is_405_with_allow_and_odd_targets_are_json() -> None:
    async with running_daemon() as d:
        a = await http_request(d.http_address, "DELETE", "/logs")
        assert a.status == 405
        assert a.headers["allow"] == "GET, HEAD, POST"
        assert a.json()["error"].startswith("method: ")
        a = await http_request(d.http_address, "OPTIONS", "*")
        assert a.status in (400, 404)
        assert "error" in a.json()
        a = await http_request(d.http_address, "GET", "http://example.org/health")
        assert a.status == 200


async def test_head_answers_headers_only() -> None:
    async with running_daemon() as d:
        c = await Conn.open(d)
        try:
            c.writer.write(b"HEAD /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            raw = await asyncio.wait_for(c.reader.read(), 5)
            head, _, rest = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"Content-Length: " in head
            assert rest == b""
        finally:
            await c.close()


async def test_a_chunked_request_body_is_accepted() -> None:
    async with running_daemon() as d:
        c = await Conn.open(d)
        try:
            body = json.dumps(jl(0)).encode()
            await c.send(
                b"POST /logs HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n" % (5, body[:5])
                + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - 5, body[5:])
            )
            (a,) = await c.read()
            assert a.status == 201
        finally:
            await c.close()


async def test_expect_100_continue_gets_continue_before_the_body() -> None:
    async with running_daemon() as d:
        c = await Conn.open(d)
        try:
            body = json.dumps(jl(0)).encode()
            await c.send(
                b"POST /logs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            (cont,) = await c.read()
            assert cont.status == 100
            await c.send(body)
            (a,) = await c.read()
            assert a.status == 201
        finally:
            await c.close()


async def test_oversized_bodies_are_413_and_oversized_headers_431() -> None:
    async with running_daemon(small_config(max_body=4096)) as d:
        a = await post(d, [jl(i) for i in range(200)])
        assert a.status == 413
        assert a.json()["error"].startswith("body: ")
        a = await http_request(d.http_address, "GET", "/health", headers={"X-Big": "x" * 70_000})
        assert a.status == 431
        assert a.json()["error"].startswith("headers: ")
        a = await http_request(d.http_address, "GET", "/logs?q=" + "x" * 20_000)
        assert a.status == 431
        assert a.json()["error"].startswith("url: ")
        # The server shrugged all of it off.
        assert (await get_json(d, "/health"))["status"] == "ok"


async def test_auth_on_the_wire() -> None:
    async with running_daemon(small_config(auth_token="tok")) as d:
        a = await http_request(d.http_address, "GET", "/logs")
        assert a.status == 401
        assert a.json()["error"].startswith("authorization: ")
        assert "www-authenticate" in a.headers
        a = await http_request(
            d.http_address, "GET", "/logs", headers={"Authorization": "Bearer tok"}
        )
        assert a.status == 200
        assert (await http_request(d.http_address, "GET", "/health")).status == 200


async def test_a_slowloris_client_gets_408_and_does_not_block_others() -> None:
    async with running_daemon(small_config(idle_timeout=0.5)) as d:
        slow = await Conn.open(d)
        try:
            await slow.send(b"GET /health HTTP/1.1\r\nHost: t\r\n")
            for _ in range(3):  # a trickle of header bytes does not reset the deadline
                assert (await get_json(d, "/health"))["status"] == "ok"
                await slow.send(b"X-Drip: 1\r\n")
                await asyncio.sleep(0.1)
            (a,) = await slow.read(timeout=3)
            assert a.status == 408
            assert await slow.closed_by_server()
            assert d.app is not None
            assert d.app.stats.timeouts == 1
        finally:
            await slow.close()


async def test_an_idle_keep_alive_connection_is_closed_quietly() -> None:
    async with running_daemon(small_config(idle_timeout=0.3)) as d:
        c = await Conn.open(d)
        try:
            await c.send(get("/health"))
            await c.read()
            assert await c.closed_by_server(timeout=3)
        finally:
            await c.close()


async def test_two_hundred_concurrent_clients_all_get_answers() -> None:
    async with running_daemon() as d:
        await post(d, [jl(i) for i in range(10)])
        answers = await asyncio.gather(
            *(http_request(d.http_address, "GET", "/logs?limit=5") for _ in range(200))
        )
        assert [a.status for a in answers] == [200] * 200
        assert all(a.json()["count"] == 5 for a in answers)


async def test_http_1_0_keep_alive_is_honoured_and_said() -> None:
    async with running_daemon() as d:
        c = await Conn.open(d)
        try:
            await c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            (a,) = await c.read()
            assert a.headers["connection"] == "keep-alive"
            await c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            (a,) = await c.read()
            assert a.status == 200
        finally:
            await c.close()


async def test_http_1_0_without_keep_alive_is_closed_after_the_answer() -> None:
    async with running_daemon() as d:
        c = await Conn.open(d)
        try:
            await c.send(b"GET /health HTTP/1.0\r\n\r\n")
            (a,) = await c.read()
            assert a.status == 200
            assert await c.closed_by_server()
        finally:
            await c.close()


def test_config_replace_keeps_other_http_keys() -> None:
    # local_config's HttpConfig keeps every default but bind: guards small_config.
    cfg = small_config(max_body=5)
    assert cfg.http.max_body == 5
    assert replace(cfg.http, max_body=16 * 1024 * 1024) == HttpConfig(bind="127.0.0.1:0")


@given(st.binary(max_size=300), st.integers(1, 50))
@settings(max_examples=150, deadline=None)
def test_any_bytes_fed_in_any_pieces_never_escape_the_protocol(data: bytes, step: int) -> None:
    async def feed() -> None:
        proto, t = fake_conn(make_app(max_body=100))
        for i in range(0, len(data), step):
            proto.data_received(data[i : i + step])
        proto.data_received(PIPELINE)
        for a in parse_answers(bytes(t.data)) if t.data.startswith(b"HTTP/1.1 ") else []:
            assert a.status < 500
        proto.connection_lost(None)

    asyncio.run(feed())


async def test_requests_are_counted_by_route_pattern_and_status() -> None:
    app = make_app()
    proto, _ = fake_conn(app)
    proto.data_received(get("/logs/abc-1") + get("/logs/abc-2") + get("/nope") + get("/health"))
    await wait_for(lambda: sum(app.stats.requests.values()) == 4)
    assert app.stats.requests == {("/logs/{id}", 404): 2, ("other", 404): 1, ("/health", 200): 1}
    assert app.stats.duration["/logs/{id}"].count == 2
    proto.connection_lost(None)


async def test_connections_over_max_connections_get_503_on_the_wire() -> None:
    async with running_daemon(small_config(max_connections=2)) as d:
        held = [await Conn.open(d) for _ in range(2)]
        try:
            for c in held:  # both are served: they count
                await c.send(get("/health"))
                assert (await c.read())[0].status == 200
            extra = await Conn.open(d)
            try:
                (a,) = await extra.read()
                assert a.status == 503
                assert a.json()["error"].startswith("connections: ")
            finally:
                await extra.close()
        finally:
            for c in held:
                await c.close()
        assert d.app is not None
        app = d.app
        await wait_for(lambda: len(app.connections) == 0)
        assert (await get_json(d, "/health"))["status"] == "ok"


async def test_the_stats_histogram_covers_the_matching_span_in_step_buckets() -> None:
    async with running_daemon() as d:
        now = int(time.time()) // 60 * 60  # a minute boundary
        host, port = d.listeners["udp"].address
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for ago in (630, 610, 130):  # minutes -11, -11 and -3
                stamp = format_timestamp((now - ago) * 1_000_000)
                s.sendto(f"<34>1 {stamp} web-1 sshd - - - x".encode(), (host, port))
        await wait_for(lambda: len(d.store) == 3)
        st_ = await get_json(d, "/stats?step=1m&service=sshd")
        counts = [b["count"] for b in st_["histogram"]]
        assert counts == [2, 0, 0, 0, 0, 0, 0, 0, 1]
        assert st_["histogram"][0]["start"] == format_timestamp((now - 660) * 1_000_000)


@pytest.mark.parametrize(
    "sent",
    [
        b"POST /logs HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 50_000,
        get("/tail"),
        get("/health") * 50,
    ],
    ids=["half a body", "a tail", "a pipeline"],
)
async def test_a_closed_connection_is_freed_by_reference_counting_alone(sent: bytes) -> None:
    """No reference cycle outlives connection_lost: what a client left behind
    is freed at once, even with the cycle collector off (as the daemon's
    tuned GC may leave it for a long time)."""
    gc.collect()
    gc.disable()
    try:
        proto, _ = fake_conn()
        proto.data_received(sent)
        ref = weakref.ref(proto)
        proto.connection_lost(None)
        del proto
        assert ref() is None
    finally:
        gc.enable()
