"""RFC 3339 times (RFC 5424 TIMESTAMP, §6.2.3): what is read, what is refused,
and how a time without an offset meets the default timezone."""

from __future__ import annotations

import datetime as dt

import pytest

from collector.times import format_timestamp, parse_timestamp


def stamped(ts: str) -> dict[str, str | None]:
    """The time as a record prints it (None: refused)."""
    us = parse_timestamp(ts, dt.timezone.utc)
    return {"timestamp": None if us is None else format_timestamp(us)}


TIMESTAMP_CASES = [
    pytest.param("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000000Z", id="no-fraction-z"),
    pytest.param("2026-01-02T03:04:05.1Z", "2026-01-02T03:04:05.100000Z", id="fraction-1-digit"),
    pytest.param("2026-01-02T03:04:05.12Z", "2026-01-02T03:04:05.120000Z", id="fraction-2-digits"),
    pytest.param("2026-01-02T03:04:05.123Z", "2026-01-02T03:04:05.123000Z", id="fraction-3-digits"),
    pytest.param("2026-01-02T03:04:05.123456Z", "2026-01-02T03:04:05.123456Z", id="fraction-6"),
    pytest.param("2026-01-02T03:04:05.1234567Z", "2026-01-02T03:04:05.123456Z", id="fraction-7"),
    pytest.param(
        "2026-01-02T03:04:05.123456789Z", "2026-01-02T03:04:05.123456Z", id="fraction-9-digits"
    ),
    pytest.param("2026-01-02T08:34:05+05:30", "2026-01-02T03:04:05.000000Z", id="offset-plus-0530"),
    pytest.param(
        "2026-01-01T19:04:05-08:00", "2026-01-02T03:04:05.000000Z", id="offset-minus-0800"
    ),
    pytest.param(
        "2026-01-02T08:49:05.5+05:45", "2026-01-02T03:04:05.500000Z", id="offset-plus-0545-nepal"
    ),
    pytest.param(
        "2026-01-02T03:04:05-00:00", "2026-01-02T03:04:05.000000Z", id="offset-minus-zero"
    ),
    pytest.param("2026-01-02T03:04:05+00:00", "2026-01-02T03:04:05.000000Z", id="offset-plus-zero"),
    pytest.param(
        "2026-01-02T05:04:05.000001+0200", "2026-01-02T03:04:05.000001Z", id="offset-without-colon"
    ),
    pytest.param("2026-01-02t03:04:05z", "2026-01-02T03:04:05.000000Z", id="lowercase-t-and-z"),
    pytest.param("2025-12-31T23:59:59.999999Z", "2025-12-31T23:59:59.999999Z", id="year-end"),
    pytest.param("2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000000Z", id="leap-day"),
    pytest.param(
        "2016-12-31T23:59:60Z", "2017-01-01T00:00:00.000000Z", id="leap-second-rolls-over"
    ),
    pytest.param(
        "2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00.000000Z", id="offset-crosses-year"
    ),
]


@pytest.mark.parametrize(("ts", "want"), TIMESTAMP_CASES)
def test_timestamps_keep_microseconds_and_honour_offsets(ts: str, want: str) -> None:
    got = stamped(ts)
    assert got["timestamp"] == want
    # The same time twice: the second comes from the seconds cache.
    assert stamped(ts)["timestamp"] == want


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param("2025-02-29T00:00:00Z", id="no-leap-day-in-2025"),
        pytest.param("2026-13-01T00:00:00Z", id="month-13"),
        pytest.param("2026-01-01T24:00:00Z", id="hour-24"),
        pytest.param("2026-01-01T00:00:00.Z", id="empty-fraction"),
        pytest.param("2026-01-01T00:00:00.12a4Z", id="letters-in-fraction"),
        pytest.param("2026-01-01T00:00:00+25:00", id="offset-hour-25"),
        pytest.param("2026-01-01 00:00:00+01:0", id="short-offset"),
        pytest.param("2026-01-01T00:00", id="no-seconds"),
        pytest.param("\u0662026-01-01T00:00:00Z", id="non-ascii-digit"),
        pytest.param("2026-01-01T00:00:00.\u00b2Z", id="superscript-in-fraction"),
    ],
)
def test_timestamps_that_are_not_rfc3339_are_refused(ts: str) -> None:
    assert parse_timestamp(ts, dt.timezone.utc) is None


def test_offsetless_timestamp_is_read_in_the_default_timezone() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    assert parse_timestamp("2026-07-01T12:00:00", berlin) == parse_timestamp(
        "2026-07-01T10:00:00Z", berlin
    )
    assert parse_timestamp("2026-01-01T12:00:00", berlin) == parse_timestamp(
        "2026-01-01T11:00:00Z", berlin
    )
    # The cache is per timezone: UTC reads the same text differently.
    assert parse_timestamp("2026-07-01T12:00:00", dt.timezone.utc) == parse_timestamp(
        "2026-07-01T12:00:00Z", berlin
    )
