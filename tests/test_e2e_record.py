"""The record from outside: device-shaped lines and JSON sent over real sockets, read back over HTTP field by field; truncation."""

from __future__ import annotations

import datetime as dt
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from collector.config import ListenerConfig, ParsingConfig, StoreConfig
from tests.e2e import (
    RECORD_KEYS,
    b3164,
    find,
    first,
    ios,
    metric,
    now,
    send_tcp,
    send_udp,
    z,
)
from tests.support import (
    get_json,
    http_request,
    listener_addr,
    local_config,
    running_daemon,
    wait_for,
)

# == The record ==================================================================


# (name, bytes from the event time, expected fields; "SENDER" = the sender's IP,
# "T" = the event time (second precision unless the line has a fraction)).
DEVICES: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "cisco-ios",
        ios,
        {"host": "SENDER", "level": "notice", "facility": "local7", "timestamp": "T.123"},
    ),
    (
        "cisco-asa",
        lambda t: f"<166>{t:%b %d %Y %H:%M:%S}: %ASA-6-302013: Built outbound TCP".encode(),
        {"host": "SENDER", "level": "info", "facility": "local4", "timestamp": "T"},
    ),
    (
        "fortigate",
        lambda t: (
            f'<189>date={t:%Y-%m-%d} time={t:%H:%M:%S} devname="FG100E" logid="0000000013" '
            'type="traffic" subtype="forward" level="notice"'
        ).encode(),
        {"host": "SENDER", "level": "notice", "facility": "local7"},
    ),
    (
        "juniper-5424",
        lambda t: (
            f"<28>1 {t.isoformat(timespec='milliseconds')} junos-r1 mgd 3456 UI_COMMIT "
            '[junos@2636.1.1.1.2.18 username="root"] User root committed'
        ).encode(),
        {
            "host": "junos-r1", "service": "mgd", "procid": "3456", "msgid": "UI_COMMIT",
            "level": "warning", "facility": "daemon", "timestamp": "T.ms", "format": "rfc5424",
            "structured_data": {"junos@2636.1.1.1.2.18": {"username": "root"}},
        },
    ),
    (
        "juniper-3164",
        lambda t: f"<28>{b3164(t)} r1 mgd[3456]: UI_COMMIT: User root committed".encode(),
        {
            "host": "r1", "service": "mgd", "procid": "3456", "level": "warning",
            "facility": "daemon", "timestamp": "T", "format": "rfc3164",
        },
    ),
    (
        "esxi",
        lambda t: (
            f"<166>{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z esxi-1 Hostd: info "
            "hostd[2099587] [Originator@6876 sub=Vimsvc] Task completed"
        ).encode(),
        {"host": "esxi-1", "service": "Hostd", "level": "info", "facility": "local4",
         "timestamp": "T.ms"},
    ),
    (
        "busybox-no-host",
        lambda t: f"<30>{b3164(t)} dnsmasq[1234]: query[A] example.com".encode(),
        {"host": "SENDER", "service": "dnsmasq", "procid": "1234", "level": "info",
         "facility": "daemon", "timestamp": "T", "message": "query[A] example.com"},
    ),
    (
        "nxlog-5424-bom",
        lambda t: (
            f"<14>1 {t.astimezone(dt.timezone(dt.timedelta(hours=1))).isoformat()} WIN-PC "
            'Service_Control_Manager 1234 - [NXLOG@14506 EventID="7036"] '
            "\ufeffThe service entered the running state."
        ).encode(),
        {"host": "WIN-PC", "service": "Service_Control_Manager", "procid": "1234",
         "msgid": None, "level": "info", "facility": "user", "timestamp": "T.us",
         "message": "The service entered the running state.",
         "structured_data": {"NXLOG@14506": {"EventID": "7036"}}},
    ),
    (
        "journald-forwarded",
        lambda t: f"<30>{b3164(t)} systemd[1]: Started Session 4 of user root.".encode(),
        {"host": "SENDER", "service": "systemd", "procid": "1", "level": "info",
         "facility": "daemon", "message": "Started Session 4 of user root."},
    ),
    (
        "docker-rfc5424",
        lambda t: f"<30>1 {t:%Y-%m-%dT%H:%M:%S}Z dockerhost web 999 web - hello".encode(),
        {"host": "dockerhost", "service": "web", "procid": "999", "msgid": "web",
         "level": "info", "facility": "daemon", "timestamp": "T", "message": "hello"},
    ),
    (
        "docker-rfc5424micro",
        # Go's .999999 layout trims trailing zeros: fewer than six digits.
        lambda t: (
            f"<30>1 {t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 10:05d}+00:00 dockerhost web 999 web - hi"
        ).encode(),
        {"host": "dockerhost", "service": "web", "level": "info", "timestamp": "T.10us"},
    ),
    (
        "docker-rfc3164",
        lambda t: f"<30>{b3164(t)} dockerhost web[999]: hello 3164".encode(),
        {"host": "dockerhost", "service": "web", "procid": "999", "level": "info",
         "timestamp": "T", "format": "rfc3164"},
    ),
    (
        "ubiquiti-busybox",
        lambda t: f"<13>{b3164(t)} kernel: [  123.456] br0: port 2(eth1) entered".encode(),
        {"host": "SENDER", "service": "kernel", "level": "notice", "facility": "user"},
    ),
]  # fmt: skip


def _expected_time(kind: str, t: dt.datetime) -> str:
    if kind == "T":
        return z(t.replace(microsecond=0))
    if kind == "T.123":
        return z(t.replace(microsecond=123000))
    if kind == "T.ms":
        return z(t.replace(microsecond=t.microsecond // 1000 * 1000))
    if kind == "T.10us":
        return z(t.replace(microsecond=t.microsecond // 10 * 10))
    return z(t)


@pytest.mark.parametrize("transport", ["udp", "tcp-lf", "tcp-octet"])
@pytest.mark.parametrize(("name", "line", "expected"), DEVICES, ids=[d[0] for d in DEVICES])
async def test_device_lines_come_back_with_the_contract_fields(
    transport: str, name: str, line: Any, expected: dict[str, Any]
) -> None:
    t = now() - dt.timedelta(seconds=30)
    token = uuid.uuid4().hex
    payload: bytes = line(t) + b" " + token.encode()
    async with running_daemon() as d:
        if transport == "udp":
            await send_udp(listener_addr(d, "udp"), payload)
        elif transport == "tcp-lf":
            await send_tcp(listener_addr(d, "tcp"), payload + b"\n")
        else:
            framed = payload + b"\n"
            await send_tcp(listener_addr(d, "tcp"), b"%d %s" % (len(framed), framed))
        (rec,) = await find(d, token)
    assert set(rec) == RECORD_KEYS
    assert rec["fields"].get("original_timestamp") is None, rec  # no skew: time is recent
    for key, want in expected.items():
        got = rec[key]
        if key == "host" and want == "SENDER":
            want = "127.0.0.1"
        elif key == "timestamp":
            want = _expected_time(want, t)
        elif key == "message":
            want = f"{want} {token}"
        assert got == want, (key, rec)
    assert rec["timestamp"].endswith("Z")
    assert len(rec["timestamp"]) == len("2025-04-01T12:00:00.123456Z")
    assert len(rec["received_at"]) == len("2025-04-01T12:00:00.123456Z")


async def test_a_journald_line_over_the_unix_socket_gets_this_machines_hostname(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dev-log"
    cfg = local_config(ListenerConfig(name="local", transport="unix", bind=str(path)))
    token = uuid.uuid4().hex
    async with running_daemon(cfg) as d:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(f"<30>{b3164(now())} systemd[1]: Started {token}".encode(), str(path))
        (rec,) = await find(d, token)
    assert rec["host"] == socket.gethostname()
    assert (rec["service"], rec["procid"]) == ("systemd", "1")


FACILITIES = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
]
LEVELS = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]


async def test_every_pri_maps_to_the_rfc_5424_facility_and_severity_keywords() -> None:
    token = uuid.uuid4().hex
    async with running_daemon() as d:
        data = b"".join(
            b"<%d>1 - h a - - - %d %s\n" % (pri, pri, token.encode()) for pri in range(192)
        )
        await send_tcp(listener_addr(d, "tcp"), data)
        recs = await find(d, token, 192, "&limit=1000")
    got = {int(r["message"].split()[0]): (r["facility"], r["level"]) for r in recs}
    assert got == {pri: (FACILITIES[pri >> 3], LEVELS[pri & 7]) for pri in range(192)}


LEVEL_ALIASES = [
    ("emergency", "emerg"), ("PANIC", "emerg"), ("critical", "crit"), ("Fatal", "crit"),
    ("error", "err"), ("WARN", "warning"), ("information", "info"), ("trace", "debug"),
    ("notice", "notice"), ("alert", "alert"), (0, "emerg"), (7, "debug"), (10, "debug"),
    (20, "debug"), (30, "info"), (40, "warning"), (50, "err"), (60, "crit"),
]  # fmt: skip


async def test_level_aliases_are_accepted_in_inputs_and_in_query_parameters() -> None:
    async with running_daemon() as d:
        token = uuid.uuid4().hex
        items = [{"msg": f"{token} {i}", "level": lvl} for i, (lvl, _) in enumerate(LEVEL_ALIASES)]
        answer = await http_request(d.http_address, "POST", "/logs", json.dumps(items).encode())
        assert answer.status == 201, answer.body
        recs = await find(d, token, len(items), "&limit=100")
        by_index = {int(r["message"].split()[1]): r["level"] for r in recs}
        assert by_index == {i: want for i, (_, want) in enumerate(LEVEL_ALIASES)}
        for alias, want in LEVEL_ALIASES:
            if isinstance(alias, int):
                continue
            page = await get_json(d, f"/logs?q={token}&level={alias}&limit=100")
            assert page["count"] > 0
            assert {r["level"] for r in page["logs"]} == {want}, alias
        page = await get_json(d, f"/logs?q={token}&min_level=ERROR&limit=100")
        assert {r["level"] for r in page["logs"]} == {"emerg", "alert", "crit", "err"}


async def test_a_json_line_takes_the_first_key_of_each_list_and_keeps_the_rest_in_fields() -> None:
    async with running_daemon() as d:
        token = uuid.uuid4().hex
        t = now().replace(microsecond=250000) - dt.timedelta(seconds=5)
        line = {
            "ts": t.timestamp() * 1000, "@timestamp": "1999-01-01T00:00:00Z",
            "severity": "warn", "lvl": "debug", "msg": f"hello {token}", "log": "other",
            "app": "billing", "program": "p", "hostname": "h9", "facility": "local3",
            "user": {"id": 7},
        }  # fmt: skip
        await send_tcp(listener_addr(d, "json"), json.dumps(line).encode() + b"\r\n")
        (rec,) = await find(d, token)
    assert rec["format"] == "json"
    assert rec["timestamp"] == z(t)
    assert (rec["level"], rec["service"], rec["host"], rec["facility"]) == (
        "warning", "billing", "h9", "local3"
    )  # fmt: skip
    assert rec["fields"] == {
        "@timestamp": "1999-01-01T00:00:00Z", "lvl": "debug", "log": "other",
        "program": "p", "user": {"id": 7},
    }  # fmt: skip
    assert rec["procid"] is None
    assert rec["structured_data"] == {}


async def test_a_json_line_without_level_is_info_and_without_facility_is_null() -> None:
    async with running_daemon() as d:
        token = uuid.uuid4().hex
        await send_tcp(listener_addr(d, "json"), b'{"message": "%s"}\n[1,2]\n' % token.encode())
        (rec,) = await find(d, token)
        (raw,) = await find(d, "[1,2]")
    assert (rec["level"], rec["facility"], rec["host"]) == ("info", None, "127.0.0.1")
    assert raw["format"] == "raw"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"just some text TOKEN", {"format": "raw", "level": "notice", "facility": "user",
                                    "message": "just some text TOKEN", "service": None}),
        (b"2026-01-30 12:01:05 INFO User logged in TOKEN",
         {"format": "raw", "level": "info", "message": "User logged in TOKEN"}),
        (b"2026-01-30T12:01:05.250+02:00 error disk full TOKEN",
         {"format": "raw", "level": "err", "message": "disk full TOKEN"}),
        (b"<13>1 - h app - - - \xff\xfe bad TOKEN",
         {"format": "rfc5424", "message": "\ufffd\ufffd bad TOKEN"}),
        (b"<14>1 - h app - - - with crlf nul TOKEN\r\n\x00\n",
         {"message": "with crlf nul TOKEN", "timestamp": "RECEIVED"}),
        (b"<14>1 - h - - - - ",
         {"message": "", "service": None, "structured_data": {}, "fields": {}}),
        (b'<14>1 - h a - - [x@1 p="a\\"b\\\\c\\]d" p="2"] TOKEN',
         {"structured_data": {"x@1": {"p": ['a"b\\c]d', "2"]}}}),
    ],
)  # fmt: skip
async def test_lines_that_parse_as_nothing_or_partly_are_kept_per_the_record_rules(
    payload: bytes, expected: dict[str, Any]
) -> None:
    token = uuid.uuid4().hex
    payload = payload.replace(b"TOKEN", token.encode())
    expected = {
        k: v.replace("TOKEN", token) if isinstance(v, str) else v for k, v in expected.items()
    }
    async with running_daemon() as d:
        await send_udp(listener_addr(d, "udp"), payload)
        if token.encode() in payload:
            (rec,) = await find(d, token)
        else:
            rec = await wait_for(lambda: first(d))
    for key, want in expected.items():
        if want == "RECEIVED":
            assert rec[key] == rec["received_at"]
        else:
            assert rec[key] == want, (key, rec)


async def test_the_app_log_line_rule_keeps_its_time_and_level() -> None:
    t = (now() - dt.timedelta(seconds=20)).replace(microsecond=0)
    token = uuid.uuid4().hex
    async with running_daemon() as d:
        line = f"{t:%Y-%m-%d %H:%M:%S} WARN cache miss {token}"
        await send_udp(listener_addr(d, "udp"), line.encode())
        (rec,) = await find(d, token)
    assert (rec["format"], rec["level"], rec["timestamp"]) == ("raw", "warning", z(t))
    assert rec["message"] == f"cache miss {token}"


@pytest.mark.parametrize(
    ("word", "level"),
    [("FATAL", "crit"), ("Trace", "debug"), ("ERROR", "err"), ("warning", "warning"),
     ("panic", "emerg"), ("DEBUG", "debug"), ("information", "info"), ("CRITICAL", "crit")],
)  # fmt: skip
@pytest.mark.parametrize("sep", ["T", " "])
async def test_an_app_log_line_takes_level_aliases_case_insensitively(
    word: str, level: str, sep: str
) -> None:
    t = (now() - dt.timedelta(seconds=20)).replace(microsecond=123000)
    token = uuid.uuid4().hex
    line = f"{t:%Y-%m-%d}{sep}{t:%H:%M:%S}.123Z {word} {token}"
    async with running_daemon() as d:
        await send_tcp(listener_addr(d, "tcp"), line.encode() + b"\n")
        (rec,) = await find(d, token)
    assert (rec["format"], rec["level"], rec["message"]) == ("raw", level, token)
    assert rec["timestamp"] == z(t)


@pytest.mark.parametrize(
    ("offset", "expected_in_fields"),
    [(dt.timedelta(hours=-2), True), (dt.timedelta(minutes=10), True),
     (dt.timedelta(minutes=3), False), (dt.timedelta(minutes=-50), False)],
)  # fmt: skip
async def test_clock_skew_beyond_ttl_or_5_minutes_ahead_keeps_the_time_in_fields(
    offset: dt.timedelta, expected_in_fields: bool
) -> None:
    t = now() + offset
    token = uuid.uuid4().hex
    async with running_daemon() as d:
        await send_udp(listener_addr(d, "udp"), f"<14>1 {z(t)} h a - - - {token}".encode())
        (rec,) = await find(d, token)
    if expected_in_fields:
        assert rec["timestamp"] == rec["received_at"]
        assert rec["fields"]["original_timestamp"] == z(t)
    else:
        assert rec["timestamp"] == z(t)
        assert "original_timestamp" not in rec["fields"]


async def test_default_timezone_applies_to_offset_less_times_only() -> None:
    cfg = local_config(parsing=ParsingConfig(default_timezone="America/New_York"))
    ny = dt.datetime.now(tz=__import__("zoneinfo").ZoneInfo("America/New_York"))
    t = (ny - dt.timedelta(seconds=40)).replace(microsecond=0)
    token = uuid.uuid4().hex
    async with running_daemon(cfg) as d:
        await send_udp(listener_addr(d, "udp"), f"<14>{b3164(t)} h app: a {token}".encode())
        await send_udp(listener_addr(d, "udp"), f"<14>1 {z(t)} h app - - - b {token}".encode())
        await send_tcp(
            listener_addr(d, "json"),
            json.dumps({"time": f"{t:%Y-%m-%dT%H:%M:%S}", "msg": f"c {token}"}).encode() + b"\n",
        )
        recs = await find(d, token, 3)
    got = {r["message"].split()[0].removeprefix("app: "): r["timestamp"] for r in recs}
    assert got == {"a": z(t), "b": z(t), "c": z(t)}


async def test_an_rfc3164_date_without_year_takes_the_year_nearest_to_now() -> None:
    # A date 11 months ahead is nearer last year; it must not land in the future.
    t = now() - dt.timedelta(days=1)
    token = uuid.uuid4().hex
    cfg = local_config(store=StoreConfig(ttl=400 * 86400))
    async with running_daemon(cfg) as d:
        await send_udp(listener_addr(d, "udp"), f"<14>{b3164(t)} h app: {token}".encode())
        (rec,) = await find(d, token)
    assert rec["timestamp"] == z(t.replace(microsecond=0))


# == Truncation ==================================================================


@pytest.mark.parametrize("transport", ["udp", "tcp-lf", "tcp-octet"])
async def test_a_frame_longer_than_max_message_bytes_is_cut_flagged_counted_and_the_rest_discarded(
    transport: str,
) -> None:
    cfg = local_config(parsing=ParsingConfig(max_message_bytes=100))
    token = uuid.uuid4().hex[:8]
    body = f"<14>1 - h app - - - {token} ".encode() + b"x" * 300
    async with running_daemon(cfg) as d:
        if transport == "udp":
            await send_udp(listener_addr(d, "udp"), body)
        elif transport == "tcp-lf":
            await send_tcp(listener_addr(d, "tcp"), body + b"\n<14>1 - h app - - - after\n")
        else:
            await send_tcp(
                listener_addr(d, "tcp"), b"%d %s<14>1 - h app - - - after\n" % (len(body), body)
            )
        (rec,) = await find(d, token)
        assert rec["fields"]["truncated"] is True
        assert len(f"<14>1 - h app - - - {rec['message']}".encode()) == 100
        if transport != "udp":
            await find(d, "after")
        logs = (await get_json(d, "/logs?start=0"))["logs"]
        assert len(logs) == (1 if transport == "udp" else 2)  # no record from the cut-off rest
        assert await metric(d, "collector_messages_truncated_total") == 1
