"""JSON lines: the contract's key aliases in precedence order, times and
levels in every common shape, and everything else kept in `fields`."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.jsonlines import (
    FACILITY_KEYS,
    HOST_KEYS,
    LEVEL_KEYS,
    MESSAGE_KEYS,
    SERVICE_KEYS,
    TIME_KEYS,
    parse_json_line,
    record_from_object,
)
from collector.record import ParseOptions, apply_clock_skew, record_to_dict

NOW = 1767323045_500000  # 2026-01-02T03:04:05.5Z
OPTS = ParseOptions(ttl_us=100 * 365 * 86400 * 1_000_000)
SENDER = "192.0.2.7"


def parsed(line: bytes | str | dict[str, Any], opts: ParseOptions = OPTS) -> dict[str, Any]:
    if isinstance(line, dict):
        line = json.dumps(line)
    if isinstance(line, str):
        line = line.encode()
    out = record_to_dict(parse_json_line(line, NOW, SENDER, opts), "x")
    del out["id"], out["received_at"]
    return out


def test_the_alias_lists_are_the_contracts() -> None:
    assert TIME_KEYS == ("timestamp", "time", "ts", "@timestamp")
    assert LEVEL_KEYS == ("level", "severity", "lvl")
    assert MESSAGE_KEYS == ("message", "msg", "log")
    assert SERVICE_KEYS == ("service", "app", "app_name", "program", "logger")
    assert HOST_KEYS == ("host", "hostname")
    assert FACILITY_KEYS == ("facility",)


# (record key, aliases in order, a distinct usable value per alias, how the
# record shows each value)
_ALIAS_GROUPS = [
    pytest.param(
        "timestamp",
        TIME_KEYS,
        [
            "2026-01-01T00:00:01Z",
            "2026-01-01T00:00:02Z",
            "2026-01-01T00:00:03Z",
            "2026-01-01T00:00:04Z",
        ],
        [
            "2026-01-01T00:00:01.000000Z",
            "2026-01-01T00:00:02.000000Z",
            "2026-01-01T00:00:03.000000Z",
            "2026-01-01T00:00:04.000000Z",
        ],
        id="time",
    ),
    pytest.param(
        "level", LEVEL_KEYS, ["err", "warning", "debug"], ["err", "warning", "debug"], id="level"
    ),
    pytest.param("message", MESSAGE_KEYS, ["m1", "m2", "m3"], ["m1", "m2", "m3"], id="message"),
    pytest.param(
        "service",
        SERVICE_KEYS,
        ["s1", "s2", "s3", "s4", "s5"],
        ["s1", "s2", "s3", "s4", "s5"],
        id="service",
    ),
    pytest.param("host", HOST_KEYS, ["h1", "h2"], ["h1", "h2"], id="host"),
]


@pytest.mark.parametrize(("field", "keys", "values", "shown"), _ALIAS_GROUPS)
def test_each_alias_is_used_alone_and_the_first_present_wins(
    field: str, keys: tuple[str, ...], values: list[str], shown: list[str]
) -> None:
    for i, key in enumerate(keys):
        # Alone: the alias is used and does not appear in fields.
        got = parsed({key: values[i], "other": 1})
        assert got[field] == shown[i], key
        assert got["fields"] == {"other": 1}
        # With every later alias present: it wins, the later ones stay in fields.
        obj = {k: values[j] for j, k in enumerate(keys) if j >= i}
        obj = dict(reversed(list(obj.items())))  # key order in the object does not matter
        got = parsed(obj)
        assert got[field] == shown[i], key
        assert got["fields"] == {k: values[j] for j, k in enumerate(keys) if j > i}


def test_a_plain_line_with_every_key() -> None:
    got = parsed(
        {
            "timestamp": "2026-01-02T03:04:00.25Z",
            "level": "warn",
            "message": "disk almost full",
            "service": "api",
            "host": "web-1",
            "facility": "local3",
            "request_id": "abc",
        }
    )
    assert got == {
        "timestamp": "2026-01-02T03:04:00.250000Z",
        "host": "web-1",
        "service": "api",
        "procid": None,
        "msgid": None,
        "facility": "local3",
        "level": "warning",
        "message": "disk almost full",
        "structured_data": {},
        "fields": {"request_id": "abc"},
        "format": "json",
    }


def test_missing_keys_take_the_contract_defaults() -> None:
    got = parsed("{}")
    assert got["timestamp"] == "2026-01-02T03:04:05.500000Z"
    assert (got["level"], got["facility"], got["host"], got["service"]) == (
        "info",
        None,
        SENDER,
        None,
    )
    assert (got["message"], got["fields"], got["format"]) == ("", {}, "json")


TIME_CASES = [
    pytest.param(1767323040, "2026-01-02T03:04:00.000000Z", id="epoch-seconds-int"),
    pytest.param(1767323040.123456, "2026-01-02T03:04:00.123456Z", id="epoch-seconds-float"),
    pytest.param(1767323040123, "2026-01-02T03:04:00.123000Z", id="epoch-milliseconds"),
    pytest.param(1767323040123.5, "2026-01-02T03:04:00.123500Z", id="epoch-milliseconds-float"),
    pytest.param(1767323040123456, "2026-01-02T03:04:00.123456Z", id="epoch-microseconds"),
    pytest.param(1767323040123456789, "2026-01-02T03:04:00.123456Z", id="epoch-nanoseconds"),
    pytest.param("1767323040.5", "2026-01-02T03:04:00.500000Z", id="epoch-as-string"),
    pytest.param(
        "2026-01-02T03:04:00.123456789Z", "2026-01-02T03:04:00.123456Z", id="rfc3339-nanoseconds"
    ),
    pytest.param("2026-01-02T04:04:00+01:00", "2026-01-02T03:04:00.000000Z", id="rfc3339-offset"),
    pytest.param(
        "2026-01-02 03:04:00", "2026-01-02T03:04:00.000000Z", id="space-no-offset-default-tz"
    ),
    pytest.param("2026-01-02T03:04:00.5", "2026-01-02T03:04:00.500000Z", id="no-offset-default-tz"),
]


@pytest.mark.parametrize(("value", "want"), TIME_CASES)
def test_times_in_every_common_shape(value: Any, want: str) -> None:
    got = parsed({"time": value})
    assert got["timestamp"] == want
    assert got["fields"] == {}


def test_offsetless_json_times_are_read_in_the_default_timezone() -> None:
    opts = ParseOptions(tz=ZoneInfo("America/New_York"), ttl_us=OPTS.ttl_us)
    got = parsed({"ts": "2026-01-01T22:04:00"}, opts)
    assert got["timestamp"] == "2026-01-02T03:04:00.000000Z"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("yesterday", id="words"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
        pytest.param({"sec": 1}, id="object"),
        pytest.param(1e300, id="absurd-number"),
        pytest.param("NaN", id="nan-string"),
    ],
)
def test_an_unusable_time_stays_in_fields_and_the_next_alias_is_tried(value: Any) -> None:
    got = parsed({"timestamp": value, "ts": 1767323040})
    assert got["timestamp"] == "2026-01-02T03:04:00.000000Z"
    assert got["fields"] == {"timestamp": value}


LEVEL_CASES = [
    *[
        pytest.param(n, name, id=f"syslog-{n}")
        for n, name in enumerate(
            ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
        )
    ],
    pytest.param(10, "debug", id="pino-10-trace"),
    pytest.param(20, "debug", id="pino-20-debug"),
    pytest.param(30, "info", id="pino-30-info"),
    pytest.param(40, "warning", id="pino-40-warn"),
    pytest.param(50, "err", id="pino-50-error"),
    pytest.param(60, "crit", id="pino-60-fatal"),
    pytest.param(30.0, "info", id="integral-float"),
    pytest.param("3", "err", id="digit-string"),
    pytest.param("WARN", "warning", id="upper-warn"),
    pytest.param("Error", "err", id="mixed-case-error"),
    pytest.param("fatal", "crit", id="fatal"),
    pytest.param("panic", "emerg", id="panic"),
    pytest.param("critical", "crit", id="critical"),
    pytest.param("information", "info", id="information"),
    pytest.param("trace", "debug", id="trace"),
    pytest.param("emergency", "emerg", id="emergency"),
]


@pytest.mark.parametrize(("value", "want"), LEVEL_CASES)
def test_levels_by_name_and_number(value: Any, want: str) -> None:
    got = parsed({"level": value})
    assert got["level"] == want
    assert got["fields"] == {}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("verbose", id="unknown-word"),
        pytest.param(35, id="unknown-number"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
        pytest.param(8, id="eight"),
    ],
)
def test_an_unknown_level_is_info_and_kept_in_fields(value: Any) -> None:
    got = parsed({"level": value})
    assert got["level"] == "info"
    assert got["fields"] == {"level": value}
    # ... and the next alias gets its chance.
    assert parsed({"level": value, "severity": "err"})["level"] == "err"


@pytest.mark.parametrize(
    ("value", "want"),
    [
        pytest.param("auth", "auth", id="name"),
        pytest.param("LOCAL7", "local7", id="upper-name"),
        pytest.param(3, "daemon", id="number"),
        pytest.param("16", "local0", id="digit-string"),
        pytest.param("solaris-cron", "solaris-cron", id="dashed-name"),
    ],
)
def test_facility_by_name_or_number(value: Any, want: str) -> None:
    got = parsed({"facility": value})
    assert got["facility"] == want
    assert got["fields"] == {}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(24, id="24"),
        pytest.param("mars", id="unknown"),
        pytest.param(-1, id="negative"),
    ],
)
def test_an_unknown_facility_is_null_and_kept_in_fields(value: Any) -> None:
    got = parsed({"facility": value})
    assert got["facility"] is None
    assert got["fields"] == {"facility": value}


def test_nested_and_typed_values_land_in_fields_unchanged() -> None:
    extra = {
        "req": {"method": "GET", "headers": {"a": [1, 2]}},
        "tags": ["a", "b", {"c": None}],
        "ok": True,
        "bad": False,
        "none": None,
        "ratio": 0.25,
        "big": 12345678901234567890,
    }
    got = parsed({"msg": "hi", **extra})
    assert got["fields"] == extra
    assert got["message"] == "hi"


def test_an_object_host_like_ecs_stays_in_fields_and_hostname_is_used() -> None:
    got = parsed(
        {"host": {"name": "ecs-1"}, "hostname": "h2", "message": {"text": "x"}, "msg": "m"}
    )
    assert got["host"] == "h2"
    assert got["message"] == "m"
    assert got["fields"] == {"host": {"name": "ecs-1"}, "message": {"text": "x"}}


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"[1, 2, 3]", id="array"),
        pytest.param(b'"just a string"', id="string"),
        pytest.param(b"42", id="number"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"a": 1', id="broken-object"),
        pytest.param(b'{"a": 1} trailing', id="trailing-garbage"),
        pytest.param(b"plain text line", id="plain-text"),
        pytest.param(b"", id="empty"),
        pytest.param(b"{" * 100_000, id="many-open-braces"),
        pytest.param(
            b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="nesting-deeper-than-the-stack"
        ),
        pytest.param(b'{"a": 1}{"b": 2}', id="two-objects-on-one-line"),
        pytest.param(b"\xff\xfe{garbage", id="invalid-utf8"),
    ],
)
def test_lines_that_are_not_json_objects_are_kept_raw(line: bytes) -> None:
    got = parsed(line)
    assert got["format"] == "raw"
    assert got["message"] == line.decode("utf-8", "replace")
    assert (got["level"], got["facility"], got["host"]) == ("notice", "user", SENDER)
    assert got["timestamp"] == "2026-01-02T03:04:05.500000Z"


def test_deep_nesting_that_parses_is_still_a_record() -> None:
    line = '{"a": ' + "[" * 99 + "]" * 99 + ', "msg": "deep"}'
    assert parsed(line)["message"] == "deep"
    brackets = '{"s": "' + "[" * 500 + '", "msg": "many brackets in a string"}'
    assert parsed(brackets)["format"] == "json"


def test_objects_nested_deeper_than_the_api_can_print_are_kept_raw() -> None:
    line = '{"msg": "deep", "a": ' + "[" * 101 + "]" * 101 + "}"
    got = parsed(line)
    assert (got["format"], got["message"]) == ("raw", line)


def test_unicode_escapes_and_surrogate_pairs_decode() -> None:
    got = parsed(rb'{"msg": "caf\u00e9 \ud83d\ude00 \u65e5", "k\u00e9y": "v"}')
    assert got["message"] == "caf\u00e9 \U0001f600 \u65e5"
    assert got["fields"] == {"k\u00e9y": "v"}


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    got = parsed(rb'{"msg": "bad \ud800 here", "x": ["\udc00"], "\udbff": 1}')
    assert got["message"] == "bad \ufffd here"
    assert got["fields"] == {"x": ["\ufffd"], "\ufffd": 1}
    json.dumps(got, ensure_ascii=False).encode()  # the API can encode it


def test_invalid_utf8_inside_a_json_string_is_replaced() -> None:
    assert parsed(b'{"msg": "caf\xe9"}')["message"] == "caf\ufffd"


def test_nan_and_infinity_are_kept_as_text() -> None:
    got = parsed(
        b'{"msg": "m", "a": NaN, "b": -Infinity, "c": 1e999, "d": -1'
        + b"0" * 400
        + b'.5, "e": 2.5}'
    )
    assert got["fields"] == {
        "a": "NaN",
        "b": "-Infinity",
        "c": "1e999",
        "d": "-1" + "0" * 400 + ".5",
        "e": 2.5,
    }
    json.dumps(got, allow_nan=False)
    assert (
        parsed(b'{"ts": 1e999, "time": 1767323040}')["timestamp"] == "2026-01-02T03:04:00.000000Z"
    )


def test_a_bom_and_leading_blanks_before_the_object_are_ignored() -> None:
    assert parsed(b'\xef\xbb\xbf {"msg": "m"}')["message"] == "m"


def test_clock_skew_restamps_and_keeps_the_original_time() -> None:
    opts = ParseOptions(ttl_us=3600 * 1_000_000)
    old = parsed({"ts": "2025-01-01T00:00:00Z", "msg": "old"}, opts)
    assert old["timestamp"] == "2026-01-02T03:04:05.500000Z"
    assert old["fields"] == {"original_timestamp": "2025-01-01T00:00:00.000000Z"}
    future = parsed({"ts": "2026-01-02T03:10:00Z"}, opts)
    assert future["fields"] == {"original_timestamp": "2026-01-02T03:10:00.000000Z"}
    near = parsed({"ts": "2026-01-02T03:08:00Z"}, opts)  # 4 minutes ahead: trusted
    assert near["timestamp"] == "2026-01-02T03:08:00.000000Z"
    assert near["fields"] == {}


def test_truncated_lines_say_so() -> None:
    rec = parse_json_line(b'{"msg": "cut', NOW, SENDER, OPTS, truncated=True)
    assert rec.format == "raw"
    assert rec.fields == {"truncated": True}
    rec = parse_json_line(b'{"msg": "m", "a": 1}', NOW, SENDER, OPTS, truncated=True)
    assert rec.fields == {"a": 1, "truncated": True}


def test_record_from_object_leaves_its_argument_alone_and_skew_to_the_caller() -> None:
    obj = {"ts": "2020-01-01T00:00:00Z", "msg": "m", "level": "err", "x": [1]}
    before = json.loads(json.dumps(obj))
    opts = ParseOptions(ttl_us=3600 * 1_000_000)
    rec = record_from_object(obj, NOW, SENDER, opts)
    assert obj == before
    assert record_to_dict(rec, "x")["timestamp"] == "2020-01-01T00:00:00.000000Z"
    apply_clock_skew(rec, opts)
    assert rec.timestamp == NOW
    assert rec.fields == {"x": [1], "original_timestamp": "2020-01-01T00:00:00.000000Z"}


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    rec = parse_json_line(data, NOW, SENDER, OPTS)
    assert rec.format in ("json", "raw")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_KEYS = st.sampled_from(
    [*TIME_KEYS, *LEVEL_KEYS, *MESSAGE_KEYS, *SERVICE_KEYS, *HOST_KEYS, "facility", "x"]
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEYS | st.text(max_size=8), _JSON, max_size=8))
def test_any_object_becomes_a_json_record_and_loses_no_key(obj: dict[str, Any]) -> None:
    rec = parse_json_line(json.dumps(obj).encode(), NOW, SENDER, OPTS)
    assert rec.format == "json"
    used = set(obj) - set(rec.fields or {})
    # Every key that left `fields` was consumed by exactly one record field.
    assert len(used) <= 6
    json.dumps(record_to_dict(rec, "x"), allow_nan=False)  # the API can print it


def test_record_from_object_copies_nested_values_and_fixes_lone_surrogates() -> None:
    nested = {"a": [1, {"b": "\ud800"}]}
    obj: dict[str, Any] = {"msg": "m\udfff", "x": nested}
    rec = record_from_object(obj, NOW, SENDER, OPTS)
    assert rec.message == "m\ufffd"
    assert rec.fields == {"x": {"a": [1, {"b": "\ufffd"}]}}
    assert rec.fields is not None
    rec.fields["x"]["a"].append(2)
    assert nested == {"a": [1, {"b": "\ud800"}]}  # the caller's object is untouched


def test_record_from_object_turns_non_finite_floats_into_text() -> None:
    obj = {"msg": "m", "a": float("nan"), "b": [float("inf"), float("-inf")], "c": 1.5}
    rec = record_from_object(obj, NOW, SENDER, OPTS)
    assert rec.fields == {"a": "NaN", "b": ["Infinity", "-Infinity"], "c": 1.5}
    rec = record_from_object({"ts": float("inf"), "time": 1767323040}, NOW, SENDER, OPTS)
    assert rec.timestamp == 1767323040_000000


def test_record_from_object_survives_nesting_deeper_than_the_stack() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    rec = record_from_object({"msg": "deep", "d": deep}, NOW, SENDER, OPTS)
    assert rec.message == "deep"


def test_a_lone_surrogate_in_a_line_nested_to_the_decoders_limit_does_not_raise() -> None:
    for depth in (500, 900, 990, 2000):
        line = b'{"msg": "\\ud800", "d": ' + b"[" * depth + b"]" * depth + b"}"
        rec = parse_json_line(line, NOW, SENDER, OPTS)
        assert rec.format in ("json", "raw")
        json.dumps(record_to_dict(rec, "x"), ensure_ascii=False).encode()
