"""parse_syslog: choosing RFC 5424 / RFC 3164 / raw per message, the contract's
raw and application-log rules, clock skew, truncation, and the bytes real
clients (util-linux logger, Python's SysLogHandler) put on a socket."""

from __future__ import annotations

import logging
import logging.handlers
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.parse import parse_syslog
from collector.record import ParseOptions, record_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.messages import json_lines, malformed, mixed, rfc3164_messages, rfc5424_messages

NOW = 1767323045_500000  # 2026-01-02T03:04:05.5Z
OPTS = ParseOptions(ttl_us=100 * 365 * 86400 * 1_000_000)
SENDER = "192.0.2.7"
RECEIPT = "2026-01-02T03:04:05.500000Z"


def parsed(data: bytes, opts: ParseOptions = OPTS, now: int = NOW) -> dict[str, Any]:
    out = record_to_dict(parse_syslog(data, now, SENDER, opts), "x")
    del out["id"], out["received_at"]
    return out


RAW = {
    "timestamp": RECEIPT,
    "host": SENDER,
    "service": None,
    "facility": "user",
    "level": "notice",
    "format": "raw",
}

RAW_CASES = [
    pytest.param(b"<999>too big", id="pri-999"),
    pytest.param(b"<192>one past local7.debug", id="pri-192"),
    pytest.param(b"<abc>letters", id="pri-letters"),
    pytest.param(b"<>empty", id="pri-empty"),
    pytest.param(b"<1234>four digits", id="pri-four-digits"),
    pytest.param(b"<13", id="pri-unclosed"),
    pytest.param(b"<-1>negative", id="pri-negative"),
    pytest.param(b"< 13>space", id="pri-space"),
    pytest.param(b"hello world", id="plain-text"),
    pytest.param(b"", id="empty"),
    pytest.param(b"   leading spaces", id="leading-spaces"),
    pytest.param(b"\xff\xfe\x00garbage", id="binary-garbage"),
    pytest.param(b"12:00:00 not a date", id="time-without-date"),
    pytest.param(b"7662: %SYS-5-CONFIG_I: no pri", id="cisco-without-pri"),
    pytest.param(b"Foo 12 12:00:00 host app: month-like word", id="unknown-month"),
    pytest.param(b"2026-01-30 12:01:05 NOTALEVEL text", id="app-log-without-level-word"),
]


@pytest.mark.parametrize("data", RAW_CASES)
def test_what_parses_as_nothing_is_kept_raw_with_the_whole_text(data: bytes) -> None:
    got = parsed(data)
    assert {k: got[k] for k in RAW} == RAW
    assert got["message"] == data.decode("utf-8", "replace")
    assert got["fields"] == {}


APP_NOW = 1769774700_000000  # 2026-01-30T12:05:00Z, just after the lines below

APP_LOG_CASES = [
    pytest.param(
        b"2026-01-30 12:01:05 INFO User logged in",
        "2026-01-30T12:01:05.000000Z",
        "info",
        "User logged in",
        id="contract-example",
    ),
    pytest.param(
        b"2026-01-30T12:01:05.123+01:00 WARN disk almost full",
        "2026-01-30T11:01:05.123000Z",
        "warning",
        "disk almost full",
        id="t-fraction-offset",
    ),
    pytest.param(
        b"2026-01-30 12:01:05,123 ERROR [main] boom",
        "2026-01-30T12:01:05.123000Z",
        "err",
        "[main] boom",
        id="python-logging-comma-fraction",
    ),
    pytest.param(
        b"2026-01-30 12:01:05 [debug] details",
        "2026-01-30T12:01:05.000000Z",
        "debug",
        "details",
        id="bracketed-level",
    ),
    pytest.param(
        b"2026-01-30 12:01:05Z fatal: gone",
        "2026-01-30T12:01:05.000000Z",
        "crit",
        "gone",
        id="level-with-colon",
    ),
    pytest.param(
        b"2026-01-30 12:01:05 critical", "2026-01-30T12:01:05.000000Z", "crit", "", id="level-only"
    ),
]


@pytest.mark.parametrize(("data", "ts", "level", "message"), APP_LOG_CASES)
def test_application_log_lines_take_their_time_and_level_and_stay_raw(
    data: bytes, ts: str, level: str, message: str
) -> None:
    got = parsed(data, now=APP_NOW)
    assert (got["timestamp"], got["level"], got["message"]) == (ts, level, message)
    assert (got["format"], got["facility"], got["host"], got["service"]) == (
        "raw",
        "user",
        SENDER,
        None,
    )


def test_application_log_times_without_offset_use_the_default_timezone() -> None:
    opts = ParseOptions(tz=ZoneInfo("Asia/Kolkata"), ttl_us=OPTS.ttl_us)
    got = parsed(b"2026-01-30 17:31:05 INFO x", opts, APP_NOW)
    assert got["timestamp"] == "2026-01-30T12:01:05.000000Z"


def test_a_bom_before_the_line_is_dropped_before_pri() -> None:
    got = parsed(b"\xef\xbb\xbf<13>1 2026-01-02T03:04:00Z h a - - - m")
    assert (got["format"], got["host"], got["message"]) == ("rfc5424", "h", "m")


def test_truncated_frames_are_flagged_whatever_the_format() -> None:
    for data in (b"<13>1 - h a - - - cut", b"<13>Jan  2 03:04:00 h a: cut", b"<99", b"plain"):
        rec = parse_syslog(data, NOW, SENDER, OPTS, truncated=True)
        assert rec.fields is not None
        assert rec.fields["truncated"] is True
    rec = parse_syslog(b"<13>1 bad h a - - - m", NOW, SENDER, OPTS, truncated=True)
    assert rec.fields == {"invalid_timestamp": "bad", "truncated": True}


def test_a_frame_cut_inside_a_utf8_character_ends_in_a_replacement_character() -> None:
    rec = parse_syslog(b"<13>1 - h a - - - caf\xc3", NOW, SENDER, OPTS, truncated=True)
    assert (rec.message, rec.fields) == ("caf\ufffd", {"truncated": True})


SKEW_CASES = [
    pytest.param(
        b"<13>1 2026-01-02T01:04:05Z h a - - - old",
        "2026-01-02T01:04:05.000000Z",
        id="older-than-ttl",
    ),
    pytest.param(
        b"<13>1 2026-01-02T03:09:06Z h a - - - ahead",
        "2026-01-02T03:09:06.000000Z",
        id="over-5-min-ahead",
    ),
    pytest.param(b"<13>Jan  2 01:04:05 h a: old", "2026-01-02T01:04:05.000000Z", id="rfc3164-old"),
    pytest.param(
        b"2020-01-30 12:01:05 INFO old app line", "2020-01-30T12:01:05.000000Z", id="app-log-old"
    ),
]


@pytest.mark.parametrize(("data", "original"), SKEW_CASES)
def test_clock_skew_restamps_with_receipt_time_and_keeps_the_original(
    data: bytes, original: str
) -> None:
    got = parsed(data, ParseOptions(ttl_us=3600 * 1_000_000))
    assert got["timestamp"] == RECEIPT
    assert got["fields"] == {"original_timestamp": original}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"<13>1 2026-01-02T02:04:06Z h a - - - m", id="just-inside-ttl"),
        pytest.param(b"<13>1 2026-01-02T03:09:05Z h a - - - m", id="4-min-59-ahead"),
    ],
)
def test_times_inside_the_window_are_trusted(data: bytes) -> None:
    got = parsed(data, ParseOptions(ttl_us=3600 * 1_000_000))
    assert got["timestamp"] != RECEIPT
    assert got["fields"] == {}


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_and_always_give_a_record(data: bytes) -> None:
    rec = parse_syslog(data, NOW, SENDER, OPTS)
    assert rec.format in ("rfc5424", "rfc3164", "raw")
    assert isinstance(rec.message, str)
    record_to_dict(rec, "x")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('<>1234567890 -:T.Z+[]"=\\%*JanDecab')), max_size=60))
def test_syslog_lookalike_text_never_raises(text: str) -> None:
    assert parse_syslog(text.encode(), NOW, SENDER, OPTS).format in ("rfc5424", "rfc3164", "raw")


def test_every_benchmark_message_parses_as_its_format() -> None:
    start = (NOW - 60_000_000) / 1e6
    for data in rfc5424_messages(300, seed=3, start=start):
        rec = parse_syslog(data, NOW, SENDER, ParseOptions())
        assert (rec.format, rec.fields) == ("rfc5424", None), data
        assert rec.structured_data, data
    for data in rfc3164_messages(300, seed=3, start=start):
        rec = parse_syslog(data, NOW, SENDER, ParseOptions())
        assert (rec.format, rec.fields) == ("rfc3164", None), data
        assert rec.service, data
    assert {parse_syslog(m, NOW, SENDER, OPTS).format for m in mixed(200, seed=3, start=start)} == {
        "rfc5424",
        "rfc3164",
    }
    assert all(m.startswith(b"{") for m in json_lines(50, seed=3, start=start))


def test_every_malformed_benchmark_message_is_still_a_record() -> None:
    from collector.jsonlines import parse_json_line

    formats = set()
    for data in malformed(500, seed=5, start=(NOW - 60_000_000) / 1e6):
        formats.add(parse_syslog(data, NOW, SENDER, OPTS).format)
        assert parse_json_line(data, NOW, SENDER, OPTS).format in ("json", "raw")
    assert {"raw", "rfc3164", "rfc5424"} <= formats


# --- real clients -------------------------------------------------------------


@pytest.fixture
def unix_dgram(tmp_path: Path) -> Any:
    path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()


def _received(sock: socket.socket) -> bytes:
    return sock.recv(65536).rstrip(b"\n\r\x00")  # what the transport hands the parser


@pytest.mark.parametrize(
    ("flags", "fmt"),
    [
        pytest.param([], "rfc3164", id="logger-unix-default-without-hostname"),
        pytest.param(["--rfc3164"], "rfc3164", id="logger-rfc3164"),
        pytest.param(
            ["--rfc5424", "--msgid", "ID9", "--sd-id", "zoo@123", "--sd-param", 'tiger="hungry"'],
            "rfc5424",
            id="logger-rfc5424",
        ),
    ],
)
def test_util_linux_logger_lines_parse(unix_dgram: Any, flags: list[str], fmt: str) -> None:
    logger = shutil.which("logger")
    if logger is None:
        pytest.skip("util-linux logger is not installed")
    sock, path = unix_dgram
    subprocess.run(
        [
            logger,
            "-u",
            path,
            "-t",
            "mytag",
            "-i",
            "-p",
            "local3.warning",
            *flags,
            "caf\u00e9 message",
        ],
        check=True,
        timeout=10,
    )
    data = _received(sock)

    rec = parse_syslog(data, time.time_ns() // 1000, "this-host", ParseOptions())
    got = record_to_dict(rec, "x")
    assert got["format"] == fmt, data
    assert (got["service"], got["facility"], got["level"]) == ("mytag", "local3", "warning"), data
    assert got["message"] == "caf\u00e9 message", data
    assert str(got["procid"]).isdigit(), data
    assert got["fields"] == {}, data  # a current time: no skew, nothing invalid
    # Without a format flag logger leaves HOSTNAME out on a unix socket.
    assert (got["host"] == "this-host") == (not flags), data
    if fmt == "rfc5424":
        assert got["msgid"] == "ID9"
        assert got["structured_data"]["zoo@123"] == {"tiger": "hungry"}
        assert "timeQuality" in got["structured_data"]


def test_python_sysloghandler_lines_parse(unix_dgram: Any) -> None:
    sock, path = unix_dgram
    handler = logging.handlers.SysLogHandler(address=path, facility="local5")
    handler.setFormatter(logging.Formatter("myapp[%(process)d]: %(message)s"))
    log = logging.Logger("t")
    log.addHandler(handler)
    try:
        log.error("disk full on /var")
    finally:
        handler.close()
    data = _received(sock)
    rec = parse_syslog(data, NOW, "this-host", OPTS)
    got = record_to_dict(rec, "x")
    assert (got["format"], got["host"], got["service"]) == ("rfc3164", "this-host", "myapp"), data
    assert (got["facility"], got["level"], got["message"]) == ("local5", "err", "disk full on /var")
    assert str(got["procid"]).isdigit()
    assert got["timestamp"] == RECEIPT  # SysLogHandler sends no date
