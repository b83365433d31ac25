"""RFC 3164 and the variants real devices send: tags, dates without a year,
missing hostnames, Cisco IOS and ASA, RFC 3339 in the 3164 position."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.parse import parse_syslog
from collector.record import ParseOptions, record_to_dict

NOW = 1767323045_500000  # 2026-01-02T03:04:05.5Z
OPTS = ParseOptions(ttl_us=100 * 365 * 86400 * 1_000_000)
SENDER = "192.0.2.7"


def _us(text: str) -> int:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def parsed(data: bytes, now: int = NOW, opts: ParseOptions = OPTS) -> dict[str, Any]:
    out = record_to_dict(parse_syslog(data, now, SENDER, opts), "x")
    del out["id"], out["received_at"]
    return out


def subset(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    return {k: got[k] for k in want}


TAG_CASES = [
    pytest.param(
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        {
            "timestamp": "2025-10-11T22:14:15.000000Z",
            "host": "mymachine",
            "service": "su",
            "procid": None,
            "msgid": None,
            "facility": "auth",
            "level": "crit",
            "message": "'su root' failed for lonvick on /dev/pts/8",
            "structured_data": {},
            "fields": {},
            "format": "rfc3164",
        },
        id="rfc3164-example-1-app-colon",
    ),
    pytest.param(
        b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
        {"host": "10.0.0.99", "service": None, "message": "Use the BFG!"},
        id="rfc3164-example-2-no-tag",
    ),
    pytest.param(
        b"<38>Jan  2 03:00:01 web-1 sshd[4242]: Accepted publickey for deploy",
        {
            "host": "web-1",
            "service": "sshd",
            "procid": "4242",
            "message": "Accepted publickey for deploy",
        },
        id="app-pid-colon",
    ),
    pytest.param(
        b"<38>Jan  2 03:00:01 web-1 sshd[4242] Accepted publickey",
        {"host": "web-1", "service": "sshd", "procid": "4242", "message": "Accepted publickey"},
        id="tag-with-pid-without-colon",
    ),
    pytest.param(
        b"<78>Jan  2 03:00:01 web-1 /usr/sbin/cron[123]: (root) CMD (run-parts /etc/cron.hourly)",
        {
            "service": "/usr/sbin/cron",
            "procid": "123",
            "message": "(root) CMD (run-parts /etc/cron.hourly)",
        },
        id="path-as-tag",
    ),
    pytest.param(
        b"<22>Jan  2 03:00:01 mx postfix/smtpd[77]: connect from unknown[10.0.0.1]",
        {"service": "postfix/smtpd", "procid": "77", "message": "connect from unknown[10.0.0.1]"},
        id="slash-in-tag-and-brackets-in-msg",
    ),
    pytest.param(
        b"<13>Jan  2 03:00:01 host : message with empty tag",
        {"host": "host", "service": None, "procid": None, "message": "message with empty tag"},
        id="empty-tag",
    ),
    pytest.param(
        b"<13>Jan  2 03:00:01 host app:",
        {"host": "host", "service": "app", "message": ""},
        id="tag-and-empty-message",
    ),
    pytest.param(
        b"<13>Jan  2 03:00:01 host",
        {"host": SENDER, "message": "host"},
        id="lone-token-is-message",
    ),
    pytest.param(
        b"<13>Jan  2 03:00:01 % sshd[12]: x",
        {"host": SENDER, "service": None, "message": "% sshd[12]: x"},
        id="percent-token-is-not-a-hostname",
    ),
    pytest.param(
        b"<13>Jan  2 03:00:01 fe80::1 app: v6 host",
        {"host": "fe80::1", "service": "app", "message": "v6 host"},
        id="ipv6-hostname",
    ),
    pytest.param(
        b"<30>Jun 23 13:17:42 chronyd[1119]: Selected source 192.0.2.1",
        {
            "host": SENDER,
            "service": "chronyd",
            "procid": "1119",
            "message": "Selected source 192.0.2.1",
        },
        id="no-hostname-glibc",
    ),
    pytest.param(
        b"<13>Jan  2 03:00:01 root: hello from logger -u",
        {"host": SENDER, "service": "root", "message": "hello from logger -u"},
        id="no-hostname-tag-colon",
    ),
    pytest.param(
        b"<13>Jan  2 03:00:01 host app[12]: caf\xe9 \xff",
        {"service": "app", "message": "caf\ufffd \ufffd"},
        id="invalid-utf8-replaced",
    ),
]


@pytest.mark.parametrize(("data", "want"), TAG_CASES)
def test_rfc3164_hostname_and_tag_are_read_like_syslogd_does(
    data: bytes, want: dict[str, Any]
) -> None:
    assert subset(parsed(data), want) == want


DATE_CASES = [
    pytest.param(
        b"<13>Nov  3 10:11:12 h a: m", NOW, "2025-11-03T10:11:12.000000Z", id="space-padded-day"
    ),
    pytest.param(
        b"<13>Nov 3 10:11:12 h a: m", NOW, "2025-11-03T10:11:12.000000Z", id="unpadded-day"
    ),
    pytest.param(
        b"<13>Nov 03 10:11:12 h a: m", NOW, "2025-11-03T10:11:12.000000Z", id="zero-padded-day"
    ),
    pytest.param(
        b"<13>NOV 03 10:11:12 h a: m", NOW, "2025-11-03T10:11:12.000000Z", id="upper-case-month"
    ),
    pytest.param(
        b"<13>Dec 31 23:59:59 h a: m",
        _us("2026-01-01T00:00:30Z"),
        "2025-12-31T23:59:59.000000Z",
        id="december-line-in-january-is-last-year",
    ),
    pytest.param(
        b"<13>Jan  1 00:00:10 h a: m",
        _us("2025-12-31T23:59:50Z"),
        "2026-01-01T00:00:10.000000Z",
        id="january-line-on-new-years-eve-is-next-year",
    ),
    pytest.param(
        b"<13>Feb 29 12:00:00 h a: m",
        _us("2028-03-01T00:00:00Z"),
        "2028-02-29T12:00:00.000000Z",
        id="feb-29-in-a-leap-year",
    ),
    pytest.param(
        b"<13>Feb 29 12:00:00 h a: m",
        _us("2029-01-10T00:00:00Z"),
        "2028-02-29T12:00:00.000000Z",
        id="feb-29-received-the-year-after",
    ),
    pytest.param(
        b"<13>Feb 29 12:00:00 h a: m",
        NOW,
        "2024-02-29T12:00:00.000000Z",
        id="feb-29-nearest-leap-year",
    ),
    pytest.param(
        b"<13>Jan  2 03:04:05.678 h a: m",
        NOW,
        "2026-01-02T03:04:05.678000Z",
        id="milliseconds",
    ),
    pytest.param(
        b"<13>2026-01-02T04:04:05.123456+01:00 h a[1]: m",
        NOW,
        "2026-01-02T03:04:05.123456Z",
        id="rfc3339-rsyslog-forward-format",
    ),
    pytest.param(
        b"<166>2026-01-02T03:04:05.123Z esxi-01.lab Hostd[2099]: info hostd[2099] [Originator@6876 sub=Vimsvc]",
        NOW,
        "2026-01-02T03:04:05.123000Z",
        id="rfc3339-vmware-esxi",
    ),
]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"<13>Feb 30 12:00:00 h a: m", id="feb-30"),
        pytest.param(b"<13>Jan  2 25:00:00 h a: m", id="hour-25"),
        pytest.param(b"<13>Jan 32 12:00:00 h a: m", id="day-32"),
        pytest.param(b"<13>Jan 02 2026 12:61:00: %ASA-6-1: x", id="asa-minute-61"),
        pytest.param(b"<13>2026-13-02T03:04:00Z h a: m", id="rfc3339-month-13"),
    ],
)
def test_impossible_dates_get_receipt_time_and_say_so(data: bytes) -> None:
    got = parsed(data)
    assert got["format"] == "rfc3164"
    assert got["timestamp"] == "2026-01-02T03:04:05.500000Z"
    assert set(got["fields"]) == {"invalid_timestamp"}
    assert got["fields"]["invalid_timestamp"] in data.decode()


@pytest.mark.parametrize(("data", "now", "want"), DATE_CASES)
def test_dates_without_year_get_the_year_nearest_to_receipt(
    data: bytes, now: int, want: str
) -> None:
    got = parsed(data, now)
    assert got["timestamp"] == want
    assert got["format"] == "rfc3164"
    assert got["message"] != "" or data.endswith(b": ")


def test_the_year_cache_follows_the_receipt_time_across_new_year() -> None:
    line = b"<13>Dec 31 23:00:00 h a: m"
    assert parsed(line, _us("2025-12-31T23:30:00Z"))["timestamp"].startswith("2025-12-31")
    # Eleven months on, the same text must not reuse 2025 from the cache:
    # 2026-12-31 is nearer (and, being a month ahead, re-stamped as skewed).
    got = parsed(line, _us("2026-11-30T00:00:00Z"))
    assert got["fields"]["original_timestamp"] == "2026-12-31T23:00:00.000000Z"


def test_rfc3164_times_are_read_in_the_default_timezone() -> None:
    opts = ParseOptions(tz=ZoneInfo("Europe/Berlin"), ttl_us=OPTS.ttl_us)
    assert (
        parsed(b"<13>Jan  2 04:04:05 h a: m", opts=opts)["timestamp"]
        == "2026-01-02T03:04:05.000000Z"
    )
    summer = _us("2026-07-01T12:00:00Z")
    assert (
        parsed(b"<13>Jul  1 14:00:00 h a: m", summer, opts)["timestamp"]
        == "2026-07-01T12:00:00.000000Z"
    )
    # RFC 3339 with an offset ignores the default timezone.
    got = parsed(b"<13>2026-01-02T03:04:05Z h a: m", opts=opts)
    assert got["timestamp"] == "2026-01-02T03:04:05.000000Z"


CISCO_CASES = [
    pytest.param(
        b"<189>7662: Jan  2 03:04:00.921 UTC: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to up",
        {
            "timestamp": "2026-01-02T03:04:00.921000Z",
            "host": SENDER,
            "service": "LINK",
            "facility": "local7",
            "level": "notice",
            "message": "%LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to up",
        },
        id="ios-sequence-msec-zone",
    ),
    pytest.param(
        b"<187>12: *Jan  2 03:04:00.123: %SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.1)",
        {
            "timestamp": "2026-01-02T03:04:00.123000Z",
            "service": "SYS",
            "message": "%SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.1)",
        },
        id="ios-star-unsynchronised-clock",
    ),
    pytest.param(
        b"<187>13: .Jan  2 03:04:00: %LINEPROTO-5-UPDOWN: Line protocol on Interface Vlan1, changed state to down",
        {"timestamp": "2026-01-02T03:04:00.000000Z", "service": "LINEPROTO"},
        id="ios-dot-lost-sync",
    ),
    pytest.param(
        b"<189>36: 2y10w: %SYS-5-CONFIG_I: Configured from console",
        {
            "timestamp": "2026-01-02T03:04:05.500000Z",
            "service": "SYS",
            "message": "%SYS-5-CONFIG_I: Configured from console",
        },
        id="ios-uptime-years-weeks",
    ),
    pytest.param(
        b"<189>37: 1d02h: %DUAL-5-NBRCHANGE: EIGRP-IPv4 1: Neighbor 10.1.1.2 (Vlan10) is up",
        {"timestamp": "2026-01-02T03:04:05.500000Z", "service": "DUAL"},
        id="ios-uptime-days-hours",
    ),
    pytest.param(
        b"<189>38: 00:00:46: %SYS-5-RESTART: System restarted",
        {
            "timestamp": "2026-01-02T03:04:05.500000Z",
            "service": "SYS",
            "message": "%SYS-5-RESTART: System restarted",
        },
        id="ios-uptime-clock-form",
    ),
    pytest.param(
        b"<189>39: %SYS-5-CONFIG_I: Configured from console",
        {
            "timestamp": "2026-01-02T03:04:05.500000Z",
            "service": "SYS",
            "message": "%SYS-5-CONFIG_I: Configured from console",
        },
        id="ios-no-timestamp",
    ),
    pytest.param(
        b"<189>40: Jan  2 03:04:00 CET: %SYS-5-CONFIG_I: Configured",
        {"timestamp": "2026-01-02T03:04:00.000000Z", "service": "SYS"},
        id="ios-ambiguous-zone-word-uses-default-timezone",
    ),
    pytest.param(
        b"<189>41: Jan  2 03:04:00: %C4K_EBM-4-HOSTFLAPPING: Host 00:11:22:33:44:55 in vlan 1 is flapping",
        {"service": "C4K_EBM"},
        id="ios-underscore-facility",
    ),
    pytest.param(
        b"<189>101: R1: *Jan  2 03:04:00.263: %SYS-5-CONFIG_I: Configured from console by console",
        {
            "timestamp": "2026-01-02T03:04:00.263000Z",
            "host": "R1",
            "service": "SYS",
            "message": "%SYS-5-CONFIG_I: Configured from console by console",
        },
        id="ios-origin-id-hostname",
    ),
    pytest.param(
        b"<189>102: R1: not a date after all",
        {"host": SENDER, "service": "R1", "message": "not a date after all"},
        id="ios-sequence-then-tag-without-date",
    ),
    pytest.param(
        b'<164>%ASA-4-106023: Deny tcp src outside:192.0.2.1/1234 dst inside:10.0.0.1/22 by access-group "outside_in"',
        {
            "timestamp": "2026-01-02T03:04:05.500000Z",
            "host": SENDER,
            "service": "ASA",
            "facility": "local4",
            "level": "warning",
            "message": '%ASA-4-106023: Deny tcp src outside:192.0.2.1/1234 dst inside:10.0.0.1/22 by access-group "outside_in"',
        },
        id="asa-without-timestamp",
    ),
    pytest.param(
        b"<166>Jan 02 2026 03:04:00: %ASA-6-302013: Built inbound TCP connection 1 for outside:192.0.2.1/443",
        {"timestamp": "2026-01-02T03:04:00.000000Z", "host": SENDER, "service": "ASA"},
        id="asa-date-with-year",
    ),
    pytest.param(
        b"<166>Jan 02 2026 03:04:00 fw-01 : %ASA-6-302013: Built inbound TCP connection",
        {
            "timestamp": "2026-01-02T03:04:00.000000Z",
            "host": "fw-01",
            "service": "ASA",
            "message": "%ASA-6-302013: Built inbound TCP connection",
        },
        id="asa-year-and-device-id",
    ),
    pytest.param(
        b"<166>Dec 31 2019 23:59:59: %ASA-6-302013: Built",
        {"timestamp": "2019-12-31T23:59:59.000000Z"},
        id="asa-explicit-year-is-kept",
    ),
    pytest.param(
        b"<166>Jan  2 03:04:00 fw-01 %FTD-6-430003: EventPriority: Low",
        {"host": "fw-01", "service": "FTD", "message": "%FTD-6-430003: EventPriority: Low"},
        id="firepower-after-hostname",
    ),
]


@pytest.mark.parametrize(("data", "want"), CISCO_CASES)
def test_cisco_ios_and_asa_lines_keep_the_mnemonic_in_the_message(
    data: bytes, want: dict[str, Any]
) -> None:
    got = parsed(data)
    assert got["format"] == "rfc3164"
    assert subset(got, want) == want


OTHER_CASES = [
    pytest.param(
        b"<14>plain text after pri",
        {
            "format": "rfc3164",
            "timestamp": "2026-01-02T03:04:05.500000Z",
            "host": SENDER,
            "service": None,
            "facility": "user",
            "level": "info",
            "message": "plain text after pri",
        },
        id="pri-then-plain-text",
    ),
    pytest.param(
        b"<14>myapp: message from python logging",
        {"format": "rfc3164", "service": "myapp", "message": "message from python logging"},
        id="pri-then-tag-python-sysloghandler",
    ),
    pytest.param(
        b'<189>date=2026-01-02 time=03:04:00 devname="FGT60F" devid="FGT60FTK00000000" logid="0000000013" type="traffic" subtype="forward" srcip=10.0.0.1',
        {
            "format": "rfc3164",
            "service": None,
            "host": SENDER,
            "message": 'date=2026-01-02 time=03:04:00 devname="FGT60F" devid="FGT60FTK00000000" logid="0000000013" type="traffic" subtype="forward" srcip=10.0.0.1',
        },
        id="fortigate-key-value-body-intact",
    ),
    pytest.param(
        b'<189>Jan  2 03:04:00 date=2026-01-02 time=03:04:00 devname="FGT60F" type="traffic"',
        {
            "host": SENDER,
            "message": 'date=2026-01-02 time=03:04:00 devname="FGT60F" type="traffic"',
        },
        id="fortigate-after-a-date-is-not-a-hostname",
    ),
    pytest.param(
        b"Jan  2 03:04:00 web-1 sshd[1]: no pri",
        {
            "format": "rfc3164",
            "facility": "user",
            "level": "notice",
            "host": "web-1",
            "service": "sshd",
            "procid": "1",
            "timestamp": "2026-01-02T03:04:00.000000Z",
            "message": "no pri",
        },
        id="no-pri-header-still-parsed",
    ),
    pytest.param(
        b"2026-01-02T03:04:00Z web-1 app: no pri, rfc3339",
        {
            "format": "rfc3164",
            "facility": "user",
            "level": "notice",
            "host": "web-1",
            "service": "app",
            "message": "no pri, rfc3339",
        },
        id="no-pri-rfc3339-header",
    ),
]


@pytest.mark.parametrize(("data", "want"), OTHER_CASES)
def test_pri_without_header_and_header_without_pri(data: bytes, want: dict[str, Any]) -> None:
    assert subset(parsed(data), want) == want


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_3164_header_never_raise(tail: bytes) -> None:
    for head in (
        b"<13>Jan  2 03:04:00 ",
        b"<13>",
        b"<189>12: *Jan  2 03:04:00.1 UTC: ",
        b"Jan  2 03:04:00 ",
    ):
        rec = parse_syslog(head + tail, NOW, SENDER, OPTS)
        assert rec.format in ("rfc3164", "raw")
        assert isinstance(rec.message, str)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("JanFebDec0123456789 :*.[]%-ASYUTC")), max_size=40))
def test_header_lookalikes_never_raise(tail: str) -> None:
    rec = parse_syslog(b"<13>" + tail.encode(), NOW, SENDER, OPTS)
    assert rec.format == "rfc3164"
