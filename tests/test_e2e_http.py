"""The HTTP API from outside: every route, parameter and error status against a real daemon on ephemeral ports."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json

import httptools
import pytest

from collector.config import HttpConfig, StoreConfig
from tests.e2e import (
    count_is,
    first,
    now,
    send_tcp,
    send_udp,
    z,
)
from tests.support import (
    _ResponseSink,
    get_json,
    http_request,
    listener_addr,
    local_config,
    running_daemon,
    wait_for,
)

# == HTTP API ====================================================================


BAD_QUERIES = [
    ("/logs?foo=1", 400, "foo"),
    ("/logs?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z", 400, "end"),
    ("/logs?start=tomorrowish", 400, "start"),
    ("/logs?end=x", 400, "end"),
    ("/logs?limit=0", 400, "limit"),
    ("/logs?limit=10001", 400, "limit"),
    ("/logs?limit=-1", 400, "limit"),
    ("/logs?limit=ten", 400, "limit"),
    ("/logs?order=sideways", 400, "order"),
    ("/logs?min_level=loud", 400, "min_level"),
    ("/logs?cursor=nonsense", 400, "cursor"),
    ("/stats?by=colour", 400, "by"),
    ("/stats?step=soon", 400, "step"),
    ("/stats?nope=1", 400, "nope"),
    ("/tail?nope=1", 400, "nope"),
    ("/logs/does-not-exist", 404, ""),
    ("/nowhere", 404, ""),
]


@pytest.mark.parametrize(("target", "status", "param"), BAD_QUERIES)
async def test_bad_requests_answer_json_errors_naming_the_parameter(
    target: str, status: int, param: str
) -> None:
    async with running_daemon() as d:
        answer = await http_request(d.http_address, "GET", target)
        assert answer.status == status
        assert answer.headers["content-type"].startswith("application/json")
        error = answer.json()["error"]
        assert param in error
        assert "Traceback" not in error
        assert (await get_json(d, "/health"))["status"] == "ok"  # still serving


@pytest.mark.parametrize(
    ("method", "target"),
    [("POST", "/logs/x"), ("PUT", "/logs"), ("POST", "/stats"), ("POST", "/tail"),
     ("DELETE", "/health"), ("POST", "/metrics"), ("OPTIONS", "/logs")],
)  # fmt: skip
async def test_a_method_a_route_does_not_take_is_405_with_a_json_error(
    method: str, target: str
) -> None:
    async with running_daemon() as d:
        answer = await http_request(d.http_address, method, target)
        assert answer.status == 405
        assert answer.headers["content-type"].startswith("application/json")
        assert method in answer.json()["error"]


@pytest.mark.parametrize(
    ("target", "headers"),
    [("/logs?q=" + "x" * 20_000, {}), ("/logs", {"X-Big": "y" * 70_000})],
    ids=["long-url", "big-headers"],
)
async def test_an_oversized_request_head_is_431_with_a_json_error(
    target: str, headers: dict[str, str]
) -> None:
    async with running_daemon() as d:
        answer = await http_request(d.http_address, "GET", target, headers=headers)
        assert answer.status == 431
        assert "error" in answer.json()
        assert (await get_json(d, "/health"))["status"] == "ok"


@pytest.mark.parametrize(("limit", "ok"), [(1, True), (10000, True), (100, True)])
async def test_limit_bounds_are_inclusive(limit: int, ok: bool) -> None:
    async with running_daemon() as d:
        answer = await http_request(d.http_address, "GET", f"/logs?limit={limit}")
        assert (answer.status == 200) == ok


async def test_filters_take_comma_lists_and_both_time_ends_are_inclusive() -> None:
    async with running_daemon() as d:
        t0 = now().replace(microsecond=0) - dt.timedelta(seconds=10)
        lines = [
            f"<{8 * 3 + 3}>1 {z(t0)} h1 svcA - - - one",
            f"<{8 * 4 + 4}>1 {z(t0 + dt.timedelta(seconds=1))} h2 svcB - - - two",
            f"<{8 * 1 + 6}>1 {z(t0 + dt.timedelta(seconds=2))} h3 svcC - - - three",
        ]
        await send_tcp(listener_addr(d, "tcp"), "".join(x + "\n" for x in lines).encode())
        await wait_for(lambda: count_is(d, "/logs?start=0", 3))

        async def msgs(q: str) -> list[str]:
            return [r["message"] for r in (await get_json(d, q))["logs"]]

        assert await msgs("/logs?service=svcA,svcC") == ["one", "three"]
        assert await msgs("/logs?host=h2,h3&order=desc") == ["three", "two"]
        assert await msgs("/logs?level=err,warning") == ["one", "two"]
        assert await msgs("/logs?facility=auth,user") == ["two", "three"]
        assert await msgs("/logs?min_level=warning") == ["one", "two"]
        assert await msgs("/logs?q=TW") == ["two"]
        s, e = t0.timestamp(), t0.timestamp() + 1
        assert await msgs(f"/logs?start={s}&end={e}") == ["one", "two"]
        naive = f"{t0 + dt.timedelta(seconds=1):%Y-%m-%dT%H:%M:%S}"
        assert await msgs(f"/logs?start={naive}&end={naive}") == ["two"]


async def test_limit_defaults_to_100_and_order_to_ascending_timestamp() -> None:
    async with running_daemon() as d:
        t0 = now() - dt.timedelta(seconds=60)
        # sent newest first: the answer is ordered by timestamp, not arrival
        data = "".join(
            f"<14>1 {z(t0 + dt.timedelta(milliseconds=i))} h a - - - n{i}\n"
            for i in reversed(range(150))
        )
        await send_tcp(listener_addr(d, "tcp"), data.encode())
        await wait_for(lambda: count_is(d, "/logs?limit=1000", 150))
        page = await get_json(d, "/logs")
        assert page["count"] == 100
        assert [r["message"] for r in page["logs"]] == [f"n{i}" for i in range(100)]
        assert page["next_cursor"] is not None
        rest = await get_json(d, f"/logs?cursor={page['next_cursor']}")
        assert [r["message"] for r in rest["logs"]] == [f"n{i}" for i in range(100, 150)]
        assert rest["next_cursor"] is None
        desc = await get_json(d, "/logs?order=desc&limit=3")
        assert [r["message"] for r in desc["logs"]] == ["n149", "n148", "n147"]


async def test_get_logs_by_id_finds_the_record_and_404s_otherwise() -> None:
    async with running_daemon() as d:
        await send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - by id")
        rec = await wait_for(lambda: first(d))
        answer = await get_json(d, f"/logs/{rec['id']}")
        assert answer == {"log": rec}
        missing = await http_request(d.http_address, "GET", f"/logs/{rec['id']}x")
        assert missing.status == 404
        assert "error" in missing.json()


async def test_paging_with_next_cursor_visits_every_match_once_while_records_arrive() -> None:
    async with running_daemon() as d:
        addr = listener_addr(d, "tcp")
        t0 = now() - dt.timedelta(seconds=30)
        first = "".join(
            f"<14>1 {z(t0 + dt.timedelta(microseconds=i))} h a - - - old {i}\n" for i in range(500)
        )
        await send_tcp(addr, first.encode())
        await wait_for(lambda: count_is(d, "/logs?limit=10000", 500))
        sent = [0]

        async def keep_sending() -> None:
            # Paced and bounded, so that paging to the newest end terminates.
            _, writer = await asyncio.open_connection(*addr)
            try:
                for i in range(4000):
                    # late times inside the window already paged, and new times after it
                    ts = t0 + dt.timedelta(microseconds=(i * 7919) % 500 if i % 2 else 10**6 + i)
                    writer.write(f"<14>1 {z(ts)} h a - - - new {i}\n".encode())
                    sent[0] = i + 1
                    if i % 20 == 19:
                        await writer.drain()
                        await asyncio.sleep(0.002)
            finally:
                writer.close()
                await writer.wait_closed()

        sender = asyncio.ensure_future(keep_sending())
        try:
            for order in ("asc", "desc"):
                seen: list[str] = []
                cursor = ""
                while True:
                    page = await get_json(d, f"/logs?limit=37&order={order}&q=old{cursor}")
                    seen += [r["id"] for r in page["logs"]]
                    assert page["count"] == len(page["logs"])
                    if page["next_cursor"] is None:
                        break
                    cursor = f"&cursor={page['next_cursor']}"
                assert len(seen) == len(set(seen)) == 500, order
                # the sender's records interleave; paging them too never repeats
                ids: list[str] = []
                cursor = ""
                while True:
                    page = await get_json(d, f"/logs?limit=100&order={order}{cursor}")
                    ids += [r["id"] for r in page["logs"]]
                    if page["next_cursor"] is None:
                        break
                    cursor = f"&cursor={page['next_cursor']}"
                assert len(ids) == len(set(ids))
                assert set(seen) <= set(ids)  # every record there before paging began
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        assert sent[0] > 0


async def test_post_logs_is_all_or_nothing_and_names_each_bad_item_by_index() -> None:
    async with running_daemon() as d:
        body = json.dumps([{"msg": "a"}, 3, {"msg": "b"}, "x", None]).encode()
        answer = await http_request(d.http_address, "POST", "/logs", body)
        assert answer.status == 400
        error = answer.json()["error"]
        for index in ("1", "3", "4"):
            assert index in error
        assert (await get_json(d, "/health"))["records"] == 0
        nd = b'{"msg": "n1", "service": "s"}\n{"msg": "n2"}\n'
        answer = await http_request(
            d.http_address, "POST", "/logs", nd, {"Content-Type": "application/x-ndjson"}
        )
        assert answer.status == 201
        assert answer.headers["content-type"].startswith("application/json")
        result = answer.json()
        assert result["accepted"] == 2
        for rid in result["ids"]:
            assert (await get_json(d, f"/logs/{rid}"))["log"]["format"] == "json"
        single = await http_request(d.http_address, "POST", "/logs", b'{"message": "one"}')
        assert single.status == 201
        assert single.json()["accepted"] == 1


async def test_a_post_body_over_16_mib_is_413() -> None:
    async with running_daemon() as d:
        body = b"[" + b'{"msg":"x"},' * (16 * 1024 * 1024 // 12 + 10) + b'{"msg":"x"}]'
        assert len(body) > 16 * 1024 * 1024
        answer = await http_request(d.http_address, "POST", "/logs", body, timeout=30)
        assert answer.status == 413
        assert "error" in answer.json()
        assert (await get_json(d, "/health"))["records"] == 0


async def test_stats_counts_by_fields_with_dash_for_missing_values_and_a_step_histogram() -> None:
    async with running_daemon() as d:
        t0 = (now() - dt.timedelta(minutes=3)).replace(second=0, microsecond=0)
        lines = [
            f"<11>1 {z(t0)} h1 sshd - - - a",
            f"<11>1 {z(t0 + dt.timedelta(seconds=61))} h1 - - - - b",
            f"<14>1 {z(t0 + dt.timedelta(seconds=62))} - cron - - - c",
        ]
        await send_tcp(listener_addr(d, "tcp"), "".join(x + "\n" for x in lines).encode())
        await wait_for(lambda: count_is(d, "/logs?start=0", 3))
        stats = await get_json(d, "/stats?by=level,service,host,facility&step=1m&start=0")
        assert stats["total"] == 3
        assert stats["by"]["level"] == {"err": 2, "info": 1}
        assert stats["by"]["service"] == {"sshd": 1, "cron": 1, "-": 1}
        assert stats["by"]["host"] == {"h1": 2, "127.0.0.1": 1}
        hist = {b["start"]: b["count"] for b in stats["histogram"]}
        assert hist[z(t0)] == 1
        assert hist[z(t0 + dt.timedelta(minutes=1))] == 2
        assert sum(hist.values()) == 3
        filtered = await get_json(d, "/stats?by=host&min_level=err")
        assert filtered["total"] == 2


async def test_json_posted_without_facility_counts_under_dash() -> None:
    async with running_daemon() as d:
        await http_request(d.http_address, "POST", "/logs", b'{"msg": "x"}')
        stats = await get_json(d, "/stats?by=facility")
        assert stats["by"]["facility"] == {"-": 1}


async def test_tail_replays_from_start_then_streams_live_ndjson() -> None:
    async with running_daemon() as d:
        await send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - stored one")
        await wait_for(lambda: count_is(d, "/logs?start=0", 1))
        host, port = d.http_address
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"GET /tail?start=0&service=a HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert b"200" in head.split(b"\r\n")[0]
            assert b"application/x-ndjson" in head
            assert b"chunked" in head.lower()
            body = b""

            async def has(text: bytes) -> bool:
                nonlocal body
                while text not in body:
                    body += await asyncio.wait_for(reader.read(65536), 5)
                return True

            await has(b"stored one")
            await send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - live two")
            await send_udp(listener_addr(d, "udp"), b"<14>1 - h other - - - filtered out")
            await has(b"live two")
            assert b"filtered out" not in body
        finally:
            writer.close()
            await writer.wait_closed()


async def test_an_idle_tail_sends_an_empty_keep_alive_line() -> None:
    # The documented 15 s (docs/api.md, GET /tail) is App.tail_keepalive; shortened here to keep the suite fast.
    async with running_daemon() as d:
        assert d.app is not None
        assert d.app.tail_keepalive == 15.0
        d.app.tail_keepalive = 0.1
        host, port = d.http_address
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"GET /tail HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            chunk = await asyncio.wait_for(reader.readexactly(6), 5)
            assert chunk == b"1\r\n\n\r\n"  # one chunk holding one LF
        finally:
            writer.close()
            await writer.wait_closed()


async def test_health_has_the_contract_fields() -> None:
    cfg = local_config(store=StoreConfig(ttl=90))
    async with running_daemon(cfg) as d:
        answer = await http_request(d.http_address, "GET", "/health")
        assert answer.headers["content-type"].startswith("application/json")
        health = answer.json()
        assert health["status"] == "ok"
        assert health["records"] == 0
        assert health["ttl_seconds"] == 90
        assert health["listeners"] == ["udp", "tcp", "json"]
        assert isinstance(health["uptime_seconds"], (int, float))


async def test_metrics_has_the_contract_names_and_counts_by_listener() -> None:
    async with running_daemon() as d:
        await send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - m")
        await send_tcp(listener_addr(d, "tcp"), b"<14>1 - h a - - - m\n12 <14>1 - h")
        await wait_for(lambda: count_is(d, "/logs?start=0", 2))
        answer = await http_request(d.http_address, "GET", "/metrics")
        assert answer.headers["content-type"].startswith("text/plain")
        text = answer.body.decode()
        assert 'collector_messages_received_total{listener="udp"} 1.0' in text
        assert 'collector_messages_received_total{listener="tcp"} 1.0' in text

        async def incomplete() -> bool:
            answer = await http_request(d.http_address, "GET", "/metrics")
            return (
                'collector_messages_dropped_total{listener="tcp",reason="incomplete_frame"} 1.0'
                in answer.body.decode()
            )

        await wait_for(incomplete)
        assert "collector_store_records 2.0" in text
        names = {ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if ln[:1] != "#"}
        assert all(n.startswith("collector_") for n in names if n), names


ROUTES = [("GET", "/logs"), ("GET", "/logs/x"), ("POST", "/logs"), ("GET", "/stats"),
          ("GET", "/tail"), ("GET", "/metrics"), ("GET", "/nowhere"), ("DELETE", "/logs")]  # fmt: skip


@pytest.mark.parametrize(("method", "target"), ROUTES)
async def test_auth_token_guards_every_route_but_health(method: str, target: str) -> None:
    cfg = local_config(http=HttpConfig(bind="127.0.0.1:0", auth_token="s3cret"))
    async with running_daemon(cfg) as d:
        answer = await http_request(d.http_address, method, target, b'{"msg":"x"}')
        assert answer.status == 401
        assert "error" in answer.json()
        wrong = await http_request(
            d.http_address, method, target, b"", {"Authorization": "Bearer nope"}
        )
        assert wrong.status == 401
        health = await http_request(d.http_address, "GET", "/health")
        assert health.status == 200
        if target in ("/logs", "/stats", "/metrics") and method == "GET":
            good = await http_request(
                d.http_address, method, target, b"", {"Authorization": "Bearer s3cret"}
            )
            assert good.status == 200


async def test_tail_with_start_replays_then_goes_live_without_gaps_or_repeats_under_load() -> None:
    async with running_daemon() as d:
        addr = listener_addr(d, "tcp")
        t0 = now() - dt.timedelta(seconds=20)
        old = "".join(
            f"<14>1 {z(t0 + dt.timedelta(microseconds=i))} h a - - - m{i}\n" for i in range(3000)
        )
        await send_tcp(addr, old.encode())
        await wait_for(lambda: count_is(d, "/logs?limit=10000", 3000))
        host, port = d.http_address
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"GET /tail?start=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            body = _ResponseSink()
            parser = httptools.HttpResponseParser(body)  # de-chunks the stream
            new = "".join(f"<14>1 - h a - - - m{i}\n" for i in range(3000, 4000))
            sender = asyncio.ensure_future(send_tcp(addr, new.encode()))
            seen: list[str] = []
            buf = b""
            while len(seen) < 4000:
                parser.feed_data(await asyncio.wait_for(reader.read(1 << 16), 5))
                buf += bytes(body.body)
                body.body.clear()
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    line = line.strip()
                    if line.startswith(b"{"):
                        seen.append(json.loads(line)["message"])
            await sender
        finally:
            writer.close()
            await writer.wait_closed()
    assert len(seen) == len(set(seen)) == 4000
    assert set(seen) == {f"m{i}" for i in range(4000)}
