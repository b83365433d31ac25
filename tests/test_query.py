"""Query parameters -> Query, without sockets: every parameter, its errors,
and the JSON the API renders."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.query import (
    MAX_LIMIT,
    Query,
    QueryError,
    logs_json,
    matches,
    parse_logs_query,
    parse_stats_query,
    parse_tail_query,
    parse_time,
    record_json,
    record_line,
)
from collector.record import FACILITIES, Record, record_to_dict
from collector.times import datetime_to_us, format_timestamp

T0 = 1_769_774_400_000_000  # 2026-01-30T12:00:00Z


def p(**kw: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in kw.items()}


def err(fn: Any, params: dict[str, list[str]]) -> str:
    with pytest.raises(QueryError) as e:
        fn(params)
    return str(e.value)


def rec(**kw: Any) -> Record:
    base: dict[str, Any] = dict(
        timestamp=T0, received_at=T0, host="web-1", service="sshd", procid=None, msgid=None,
        facility=4, level=3, message="Failed password", structured_data=None, fields=None,
        format="rfc5424",
    )  # fmt: skip
    base.update(kw)
    return Record(**base)


# --- times -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-30T12:00:00Z", T0),
        ("2026-01-30T12:00:00", T0),
        ("2026-01-30t12:00:00z", T0),
        ("2026-01-30 12:00:00", T0),
        ("2026-01-30T14:00:00+02:00", T0),
        ("2026-01-30T07:00:00-0500", T0),
        ("2026-01-30T14:00:00 02:00", T0),
        ("2026-01-30T12:00:00.5Z", T0 + 500_000),
        ("2026-01-30T12:00:00.123456789Z", T0 + 123_456),
        ("2026-01-30T12:00Z", T0),
        ("2026-01-30", T0 - 12 * 3600 * 1_000_000),
        ("2016-12-31T23:59:60Z", 1_483_228_799_999_999),
        ("1769774400", T0),
        ("1769774400.25", T0 + 250_000),
        ("1769774400.", T0),
        ("0", 0),
        ("-1.5", -1_500_000),
    ],
)
def test_times_are_rfc3339_or_unix_seconds(text: str, expected: int) -> None:
    assert parse_time("start", text) == expected


@pytest.mark.parametrize(
    "text",
    ["yesterday", "", "nan", "inf", "1e9", "2026-13-01T00:00:00Z", "2026-02-30",
     "2026-01-30T25:00:00Z", "2026-01-30T12:00:00+2", "12:00", "99999999999999999"],
)  # fmt: skip
def test_bad_times_are_400_naming_the_parameter(text: str) -> None:
    with pytest.raises(QueryError, match=r"^end: "):
        parse_time("end", text)


@given(st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)))
def test_every_time_the_api_prints_parses_back_to_itself(t: Any) -> None:
    us = datetime_to_us(t)
    assert parse_time("start", format_timestamp(us)) == us


# --- /logs parameters -----------------------------------------------------------------


def test_no_parameters_is_the_default_query() -> None:
    assert parse_logs_query({}) == Query()


def test_every_logs_parameter_reaches_the_query() -> None:
    q = parse_logs_query(
        p(start="1769774400", end="2026-01-30T13:00:00Z", service="sshd,cron", host="web-1",
          level="ERROR,warn", facility="AUTH,local7", q="Failed PASSWORD", limit="5",
          order="desc", cursor="abc")
    )  # fmt: skip
    assert q == Query(
        start=T0, end=T0 + 3600 * 1_000_000, services=frozenset({"sshd", "cron"}),
        hosts=frozenset({"web-1"}), levels=frozenset({3, 4}), facilities=frozenset({4, 23}),
        q="failed password", limit=5, order="desc", cursor="abc",
    )  # fmt: skip


def test_min_level_means_this_or_more_severe_and_folds_with_level() -> None:
    assert parse_logs_query(p(min_level="warning")).levels == frozenset(range(5))
    assert parse_logs_query(p(min_level="crit", level="err,alert")).levels == frozenset({1})
    assert parse_logs_query(p(min_level="emerg", level="debug")).levels == frozenset()


@pytest.mark.parametrize(
    ("params", "name"),
    [
        (p(level="loud"), "level"),
        (p(min_level="loud"), "min_level"),
        (p(facility="kitchen"), "facility"),
        (p(service=""), "service"),
        (p(host="a,,b"), "host"),
        (p(limit="0"), "limit"),
        (p(limit=str(MAX_LIMIT + 1)), "limit"),
        (p(limit="ten"), "limit"),
        (p(limit="1_0"), "limit"),
        (p(order="sideways"), "order"),
        (p(cursor=""), "cursor"),
        (p(start="2026-01-30T12:00:01Z", end="2026-01-30T12:00:00Z"), "end"),
        (p(colour="blue"), "colour"),
        (p(level=["err", "crit"]), "level"),
        (p(by="level"), "by"),
        (p(step="1m"), "step"),
    ],
)
def test_bad_logs_parameters_are_400_naming_the_parameter(
    params: dict[str, list[str]], name: str
) -> None:
    assert err(parse_logs_query, params).startswith(f"{name}: ")


def test_an_unknown_level_lists_the_known_ones() -> None:
    assert "emerg alert crit err warning notice info debug" in err(parse_logs_query, p(level="x"))


def test_a_repeated_parameter_is_refused_not_last_wins() -> None:
    assert "given 2 times" in err(parse_logs_query, p(service=["a", "b"]))


def test_equal_start_and_end_is_one_instant_not_an_error() -> None:
    assert parse_logs_query(p(start="5", end="5")) == Query(start=5_000_000, end=5_000_000)


# --- /stats and /tail -------------------------------------------------------------------


def test_stats_takes_filters_by_and_step() -> None:
    sq = parse_stats_query(p(level="err", by="service,level,service", step="1m"))
    assert sq.query == Query(levels=frozenset({3}))
    assert sq.by == ("service", "level")
    assert sq.step_us == 60_000_000


@pytest.mark.parametrize(
    ("params", "name"),
    [
        (p(by="colour"), "by"),
        (p(by=""), "by"),
        (p(step="soon"), "step"),
        (p(step="0"), "step"),
        (p(step="1ms", start="0", end="3600"), "step"),
        (p(limit="10"), "limit"),
        (p(order="asc"), "order"),
        (p(cursor="x"), "cursor"),
    ],
)
def test_bad_stats_parameters_are_400_naming_the_parameter(
    params: dict[str, list[str]], name: str
) -> None:
    assert err(parse_stats_query, params).startswith(f"{name}: ")


def test_tail_takes_the_filters_but_not_paging() -> None:
    assert parse_tail_query(p(start="0", service="a")) == Query(start=0, services=frozenset({"a"}))
    assert err(parse_tail_query, p(limit="5")).startswith("limit: ")


# --- matching and rendering -------------------------------------------------------------


def test_matches_applies_every_filter() -> None:
    r = rec()
    assert matches(r, Query())
    assert matches(r, parse_logs_query(p(service="sshd", host="web-1", level="err", q="PASS")))
    assert matches(r, Query(start=T0, end=T0))
    for q in (
        Query(start=T0 + 1), Query(end=T0 - 1), Query(services=frozenset({"cron"})),
        Query(hosts=frozenset({"web-2"})), Query(levels=frozenset({6})),
        Query(facilities=frozenset({1})), Query(q="accepted"),
    ):  # fmt: skip
        assert not matches(r, q), q


def test_a_record_without_a_service_matches_no_service_filter() -> None:
    assert not matches(rec(service=None), parse_logs_query(p(service="sshd")))


def test_logs_json_is_the_contract_shape() -> None:
    body = json.loads(logs_json([("a-1", rec())], "a-1"))
    assert body["count"] == 1
    assert body["next_cursor"] == "a-1"
    assert body["logs"][0]["level"] == "err"
    assert body["logs"][0]["facility"] == "auth"
    assert body["logs"][0]["fields"] == {}


def test_a_lone_surrogate_in_a_message_still_renders() -> None:
    line = record_line(rec(message="bad \ud800 half"), "x-1")
    assert line.endswith(b"\n")
    assert json.loads(line)["message"] == "bad \ud800 half"


_text = st.text(st.characters(blacklist_categories=()), max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_records = st.builds(
    Record,
    timestamp=st.integers(0, 253_402_300_799_999_999),
    received_at=st.integers(0, 253_402_300_799_999_999),
    host=st.none() | _text,
    service=st.none() | _text,
    procid=st.none() | _text,
    msgid=st.none() | _text,
    facility=st.none() | st.integers(0, len(FACILITIES) - 1),
    level=st.integers(0, 7),
    message=_text,
    structured_data=st.none()
    | st.dictionaries(_text, st.dictionaries(_text, _text | st.lists(_text, max_size=2))),
    fields=st.none() | st.dictionaries(_text, _json, max_size=4),
    format=st.sampled_from(["rfc5424", "rfc3164", "json", "raw"]),
)


@given(_records, _text)
def test_the_fast_renderer_writes_exactly_record_to_dict(r: Record, rid: str) -> None:
    assert json.loads(record_json(r, rid)) == record_to_dict(r, rid)
    assert json.loads(logs_json([(rid, r)], None))["logs"] == [record_to_dict(r, rid)]


_names = st.sampled_from(
    ["start", "end", "service", "host", "level", "min_level", "facility", "q", "limit",
     "order", "cursor", "by", "step", "x"]
)  # fmt: skip


@given(st.dictionaries(_names, st.lists(_text, min_size=1, max_size=2), max_size=5))
def test_any_parameters_give_a_query_or_a_query_error_naming_one(
    params: dict[str, list[str]],
) -> None:
    for parse in (parse_logs_query, parse_stats_query, parse_tail_query):
        problem = None
        try:
            parse(params)
        except QueryError as e:
            problem = str(e)
        assert problem is None or problem.split(":")[0] in params
