"""The search language and the routes built on it, end to end over real
sockets: every row of the language table through `GET /logs?query=`, errors
with columns, cursors that carry their filters, relative times, context,
fields, and stats by fields with `others` and `by_level`."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from collector.running import Daemon
from tests.support import get_json, http_request, running_daemon

NOW = "2026-01-30T12:00:00Z"


async def post(d: Daemon, items: list[dict[str, Any]]) -> list[str]:
    a = await http_request(
        d.http_address,
        "POST",
        "/logs",
        json.dumps(items).encode(),
        {"Content-Type": "application/json"},
    )
    assert a.status == 201, a.body
    ids: list[str] = a.json()["ids"]
    return ids


def item(msg: str, **kw: Any) -> dict[str, Any]:
    return {"message": msg, "host": "web-1", "service": "api", "level": "info", **kw}


CORPUS = [
    item("connection_timeout: 5s", level="err"),  # 0
    item("timeouts: 3 retries"),  # 1
    item("error: Disk full on /var", host="db-1", service="cron", level="crit"),  # 2
    item("it timed out", service="sshd", level="warning", user_id=42),  # 3
    item("bad user_id=7 from 10.0.0.1", host="web-2", http={"status": 500}),  # 4
    item("all good", host="web-2", level="debug", user_id="u1"),  # 5
]

TABLE = [
    ("timeout", [0]),
    ("time*", [0, 1, 3]),
    ("*outs", [1]),
    ("*meou*", [0, 1]),
    ('"disk full"', [2]),
    ("/time(d )?out/", [0, 1, 3]),
    ("host:web-1", [0, 1, 3]),
    ("service:sshd,cron", [2, 3]),
    ("level>=warning", [0, 2, 3]),
    ("level<=info", [1, 4, 5]),
    ("fields.user_id:42", [3]),
    ("fields.http.status:500", [4]),
    ("host:web-*", [0, 1, 3, 4, 5]),
    ("fields.user_id:*", [3, 5]),
    ("-fields.user_id:*", [0, 1, 2, 4]),
    ("-host:web-1", [2, 4, 5]),
    ("user_id", [4]),
    ("10.0.0.1", [4]),
    ("timeout OR good", [0, 5]),
    ("(host:db-1 OR level:debug) -disk", [5]),
    ('-service:cron level>=err "disk full"', []),
    ('level>=err "disk full"', [2]),
]


@pytest.fixture
async def corpus() -> Any:
    async with running_daemon() as d:
        ids = await post(d, CORPUS)
        yield d, ids


async def test_every_row_of_the_language_table_answers_over_http(corpus: Any) -> None:
    d, ids = corpus
    for text, want in TABLE:
        page = await get_json(d, f"/logs?query={quote(text)}&limit=100")
        assert [r["id"] for r in page["logs"]] == [ids[i] for i in want], text
        stats = await get_json(d, f"/stats?query={quote(text)}")
        assert stats["total"] == len(want), text


async def test_query_is_anded_with_the_other_parameters(corpus: Any) -> None:
    d, ids = corpus
    page = await get_json(d, f"/logs?query={quote('time*')}&level=err")
    assert [r["id"] for r in page["logs"]] == [ids[0]]


@pytest.mark.parametrize(
    ("text", "column"),
    [('"disk full', 1), ("host:", 6), ("a b)", 4), ("/(a/", 1), ("nope:1", 1), ("level>=x", 8)],
)
async def test_a_query_that_does_not_parse_is_400_naming_the_column(text: str, column: int) -> None:
    async with running_daemon() as d:
        for route in ("/logs", "/stats", "/fields", "/tail"):
            a = await http_request(d.http_address, "GET", f"{route}?query={quote(text)}")
            assert a.status == 400, (route, a.body)
            error = a.json()["error"]
            assert error.startswith("query: "), error
            assert error.endswith(f"column {column}"), error


async def test_a_pathological_regex_over_a_65_kb_message_does_not_stall_the_daemon() -> None:
    import time

    async with running_daemon() as d:
        await post(d, [item("a" * 65_000 + "b") for _ in range(20)])
        t0 = time.perf_counter()
        page = await get_json(d, f"/logs?query={quote('/(a+)+$/ OR /(a|aa)*c/')}")
        assert page["logs"] == []
        assert time.perf_counter() - t0 < 2.0
        assert (await get_json(d, "/health"))["records"] == 20


async def test_a_cursor_carries_its_filters_and_refuses_others(corpus: Any) -> None:
    d, ids = corpus
    target = f"/logs?query={quote('host:web-*')}&limit=2"
    seen: list[str] = []
    page = await get_json(d, target)
    while True:
        seen += [r["id"] for r in page["logs"]]
        if page["next_cursor"] is None:
            break
        a = await http_request(d.http_address, "GET", f"/logs?cursor={page['next_cursor']}")
        assert a.status == 400
        assert a.json()["error"].startswith("cursor: made for other filters")
        page = await get_json(d, f"{target}&cursor={page['next_cursor']}")
    assert seen == [ids[i] for i in (0, 1, 3, 4, 5)]
    a = await http_request(d.http_address, "GET", "/logs?cursor=garbage")
    assert a.status == 400


async def test_start_and_end_take_now_and_times_relative_to_it(corpus: Any) -> None:
    d, ids = corpus
    assert len((await get_json(d, "/logs?start=-15m&end=now"))["logs"]) == len(ids)
    assert (await get_json(d, "/logs?start=%2B1h"))["logs"] == []
    assert (await get_json(d, "/stats?start=now-1h"))["total"] == len(ids)
    # A relative start resolves once: the cursor keeps the instant it meant.
    page = await get_json(d, "/logs?start=-1h&limit=2")
    rest = await get_json(d, f"/logs?start=-1h&limit=10&cursor={page['next_cursor']}")
    assert len(page["logs"]) + len(rest["logs"]) == len(ids)
    a = await http_request(d.http_address, "GET", "/logs?start=-15x")
    assert a.status == 400
    assert a.json()["error"].startswith("start: ")


async def test_unknown_parameters_are_400_on_every_route(corpus: Any) -> None:
    d, ids = corpus
    for target in (
        "/logs?colour=red",
        "/stats?limit=3",
        "/fields?order=asc",
        f"/logs/{ids[0]}/context?x=1",
    ):
        a = await http_request(d.http_address, "GET", target)
        assert a.status == 400, target
        assert a.json()["error"].split(":")[0] in ("colour", "limit", "order", "x")


async def test_context_returns_exact_neighbours_in_scope() -> None:
    async with running_daemon() as d:
        items = [
            item(f"line {i}", host="a" if i % 2 else "b", service="x" if i % 3 else "y",
                 timestamp=f"2026-01-30T12:00:{i:02d}Z")
            for i in range(20)
        ]  # fmt: skip
        ids = await post(d, items)
        anchor = ids[9]  # host a, service y
        ctx = await get_json(d, f"/logs/{anchor}/context?before=2&after=3")
        assert [r["message"] for r in ctx["logs"]] == [f"line {i}" for i in (5, 7, 9, 11, 13, 15)]
        assert ctx["logs"][ctx["anchor"]]["id"] == anchor
        ctx = await get_json(d, f"/logs/{anchor}/context?before=2&after=1&scope=all")
        assert [r["message"] for r in ctx["logs"]] == [f"line {i}" for i in (7, 8, 9, 10)]
        ctx = await get_json(d, f"/logs/{anchor}/context?before=1&after=1&scope=host,service")
        assert [r["message"] for r in ctx["logs"]] == [f"line {i}" for i in (3, 9, 15)]
        assert ctx["anchor"] == 1
        ctx = await get_json(d, f"/logs/{ids[0]}/context")
        assert ctx["anchor"] == 0
        assert len(ctx["logs"]) == 10  # itself and the 9 other records of host b
        a = await http_request(d.http_address, "GET", "/logs/ffff-1/context")
        assert a.status == 404
        for bad in ("before=1001", "after=-1", "scope=planet"):
            a = await http_request(d.http_address, "GET", f"/logs/{anchor}/context?{bad}")
            assert a.status == 400, bad


async def test_fields_name_what_matching_records_carry_most_frequent_first(corpus: Any) -> None:
    d, _ = corpus
    got = await get_json(d, "/fields")
    assert got["fields"] == [
        {"name": "fields.user_id", "count": 2},
        {"name": "fields.http.status", "count": 1},
    ]
    got = await get_json(d, f"/fields?query={quote('host:web-2')}")
    assert {f["name"] for f in got["fields"]} == {"fields.user_id", "fields.http.status"}
    assert (await get_json(d, "/fields?host=db-1"))["fields"] == []


async def test_stats_by_fields_and_sd_with_others_and_by_level() -> None:
    async with running_daemon() as d:
        await post(
            d, [item(f"m{i}", req=f"r{i}", level="err" if i % 2 else "info") for i in range(1100)]
        )
        got = await get_json(d, "/stats?by=fields.req,level,sd.origin.ip&step=1h")
        assert len(got["by"]["fields.req"]) == 1001
        assert got["by"]["fields.req"]["others"] == 100
        assert got["by"]["sd.origin.ip"] == {"-": 1100}
        assert got["by"]["level"] == {"err": 550, "info": 550}
        assert sum(sum(b["by_level"].values()) for b in got["histogram"]) == 1100
        a = await http_request(d.http_address, "GET", "/stats?by=fields.")
        assert a.status == 400
