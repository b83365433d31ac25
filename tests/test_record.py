"""The record's own rules: the raw fallback, the rules every parser applies
last (truncation flag, clock skew) and the id spelling."""

from __future__ import annotations

import pytest

from collector.record import (
    ParseOptions,
    apply_clock_skew,
    finish_record,
    make_id,
    parse_id,
    raw_record,
    record_to_dict,
)

NOW = 1767323045_500000  # 2026-01-02T03:04:05.5Z
RECEIPT = "2026-01-02T03:04:05.500000Z"
HOUR = 3600 * 1_000_000
OPTS = ParseOptions(ttl_us=HOUR)


def test_raw_record_is_the_contract_fallback() -> None:
    rec = raw_record("text", NOW, "h")
    assert record_to_dict(rec, "i") == {
        "id": "i",
        "timestamp": RECEIPT,
        "received_at": RECEIPT,
        "host": "h",
        "service": None,
        "procid": None,
        "msgid": None,
        "facility": "user",
        "level": "notice",
        "message": "text",
        "structured_data": {},
        "fields": {},
        "format": "raw",
    }


def test_finishing_flags_truncation_and_restamps_skew_keeping_other_fields() -> None:
    rec = raw_record("cut", NOW, "h")
    rec.timestamp = NOW - HOUR - 1
    rec.fields = {"a": 1}
    assert finish_record(rec, OPTS, truncated=True) is rec
    assert rec.timestamp == NOW
    assert rec.fields == {
        "a": 1,
        "truncated": True,
        "original_timestamp": "2026-01-02T02:04:05.499999Z",
    }


@pytest.mark.parametrize(
    ("offset_us", "restamped"),
    [
        pytest.param(-HOUR, False, id="exactly-the-ttl-old"),
        pytest.param(-HOUR - 1, True, id="older-than-the-ttl"),
        pytest.param(300_000_000, False, id="exactly-5-min-ahead"),
        pytest.param(300_000_001, True, id="more-than-5-min-ahead"),
    ],
)
def test_clock_skew_window_edges(offset_us: int, restamped: bool) -> None:
    rec = raw_record("m", NOW, "h")
    rec.timestamp = NOW + offset_us
    apply_clock_skew(rec, OPTS)
    assert (rec.timestamp == NOW) is restamped
    assert (rec.fields is not None) is restamped


def test_an_id_is_hex_time_and_seq_and_reads_back() -> None:
    assert make_id(0x19B7D5E2B6C, 0x2A) == "19b7d5e2b6c-2a"
    assert parse_id(make_id(NOW, 7)) == (NOW, 7)
    assert parse_id(make_id(-5, 1)) == (-5, 1)


@pytest.mark.parametrize(
    "bad", ["", "zz", "1-", "-1", "1", "0x1-1", "1_0-1", " 1-1", "1-1-1", "g-1", "A-1"]
)
def test_only_the_canonical_spelling_is_an_id(bad: str) -> None:
    assert parse_id(bad) is None
