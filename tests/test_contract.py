"""The external surface as README.md and docs/ promise it (command line,
configuration, the record, the HTTP API, transports, systemd), sentence by
sentence, from the outside: a real daemon on ephemeral ports, real bytes from
real clients and device-shaped lines, answers read back through HTTP or the
CLI. Grouped by surface; tables where a sentence covers many inputs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import httptools
import pytest

from collector.config import HttpConfig, ListenerConfig, ParsingConfig, StoreConfig
from tests.faults_support import REPO, DaemonProcess, free_ports, poll
from tests.support import (
    _ResponseSink,
    get_json,
    http_request,
    listener_addr,
    local_config,
    running_daemon,
    wait_for,
)

UTC = dt.timezone.utc
RECORD_KEYS = {
    "id", "timestamp", "received_at", "host", "service", "procid", "msgid",
    "facility", "level", "message", "structured_data", "fields", "format",
}  # fmt: skip


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _z(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


async def _send_udp(addr: tuple[str, int], payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(payload, addr)


async def _send_tcp(addr: tuple[str, int], payload: bytes) -> None:
    _, writer = await asyncio.open_connection(addr[0], addr[1])
    writer.write(payload)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def _find(d: Any, token: str, n: int = 1, extra: str = "") -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]] | None:
        logs: list[dict[str, Any]] = (await get_json(d, f"/logs?q={token}&start=0{extra}"))["logs"]
        return logs if len(logs) >= n else None

    return list(await wait_for(found))


async def _metric(d: Any, prefix: str) -> float:
    answer = await http_request(d.http_address, "GET", "/metrics")
    total = 0.0
    for line in answer.body.decode().splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


# == Command line ================================================================


def test_the_console_script_and_python_m_collector_are_the_same_program() -> None:
    script = Path(sys.executable).parent / "collector"
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable} (package not installed)")
    for args in (["--version"], ["check-config", str(REPO / "config" / "collector.yaml")]):
        by_module = _cli(*args)
        by_script = subprocess.run(
            [str(script), *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert (by_script.returncode, by_script.stdout) == (by_module.returncode, by_module.stdout)
        assert by_module.returncode == 0


def test_collector_run_on_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("store:\n  ttl: soon\n  bogus: 1\nhttp: {auth_token: 5}\n")
    result = _cli("run", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "store.ttl" in lines[0]
    assert "store.bogus" in lines[0]


@pytest.mark.parametrize("taken_by", ["listener", "http"])
def test_collector_run_on_a_port_in_use_exits_2_with_one_line(
    tmp_path: Path, taken_by: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = f"127.0.0.1:{port}"
        where = (busy, "127.0.0.1:0") if taken_by == "listener" else ("127.0.0.1:0", busy)
        path = tmp_path / "c.yaml"
        path.write_text(
            json.dumps(
                {
                    "listeners": [
                        {"name": "u", "transport": "udp", "bind": "127.0.0.1:0"},
                        {"name": "t", "transport": "tcp", "bind": where[0]},
                    ],
                    "http": {"bind": where[1]},
                }
            )
        )
        result = _cli("run", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("collector: ")
    assert str(port) in lines[0]


@pytest.mark.parametrize(
    ("section", "names"),
    [
        ({"store": {"persist_dir": "/proc/nope/x"}}, "store.persist_dir"),
        ({"listeners": [{"name": "a", "transport": "unix", "bind": "/nonexistent/d/s"}]}, "a"),
        ({"listeners": [{"name": "b", "transport": "tcp", "bind": "no.such.host.invalid:1"}]}, "b"),
    ],
    ids=["persist-dir", "unix-path", "unresolvable-host"],
)
def test_collector_run_that_cannot_start_exits_2_with_one_line(
    tmp_path: Path, section: dict[str, Any], names: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"listeners": [], "http": {"bind": "127.0.0.1:0"}, **section}))
    result = _cli("run", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("store:\n  ttl: soon\n", ['store.ttl: expected a duration like 90s, 15m, 1h; got "soon"']),
        ("store: {max_memory: lots}\n", ["store.max_memory"]),
        ("nonsense: 1\n", ["nonsense"]),
        ("listeners:\n  - {name: a, transport: carrier-pigeon}\n", ["listeners[0].transport"]),
        ("parsing: {default_timezone: Mars/Base}\n", ["parsing.default_timezone"]),
        ("store: {fsync: sometimes}\n", ["store.fsync"]),
    ],
)
def test_check_config_names_each_bad_key_on_its_own_line_and_exits_2(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = _cli("check-config", str(path))
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == len(expected), lines
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(want), (line, want)


def test_check_config_reports_an_invalid_value_once_not_also_as_required(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("listeners:\n  - {name: a, transport: udpx, bind: '127.0.0.1:1'}\n")
    result = _cli("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "listeners[0].transport: expected one of udp, tcp, unix; got 'udpx'"
    ]


@pytest.mark.parametrize("text", ["", "# nothing\n", "{}\n"])
def test_an_empty_file_is_a_valid_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = _cli("check-config", str(path))
    assert (result.returncode, result.stdout) == (0, "ok\n")


def test_the_shipped_config_is_the_built_in_default() -> None:
    from collector.config import Config, load_config

    assert load_config(REPO / "config" / "collector.yaml") == Config()
    assert _cli("check-config", str(REPO / "config" / "collector.yaml")).stdout == "ok\n"


def test_collector_query_and_tail_talk_to_the_http_port_with_get_logs_filters(
    tmp_path: Path,
) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    try:
        token = uuid.uuid4().hex
        ts = _z(_now())
        with socket.create_connection(("127.0.0.1", daemon.tcp_port)) as s:
            s.sendall(
                f"<11>1 {ts} web-1 sshd 1 - - bad {token}\n"
                f"<14>1 {ts} web-2 cron 2 - - fine {token}\n".encode()
            )
        poll(lambda: daemon.records() == 2, 10, "two records")
        url = f"http://127.0.0.1:{daemon.http_port}"
        out = _cli("query", "--url", url, "--min-level", "warning", "--q", token, "--json")
        assert out.returncode == 0, out.stderr
        recs = [json.loads(line) for line in out.stdout.splitlines()]
        assert [r["host"] for r in recs] == ["web-1"]
        out = _cli("query", "--url", url, "--min_level", "err", "--q", token)
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.splitlines()) == 1
        out = _cli("query", "--url", url, "--service", "sshd,cron", "--start", "0")
        assert out.returncode == 0
        assert len(out.stdout.splitlines()) == 2
        assert token in out.stdout
        # tail with --start replays stored records first.
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "tail", "--url", url, "--start", "0", "--json"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())
            assert token in first["message"]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=10)
    finally:
        daemon.kill()


# == The record ==================================================================


def _ios(t: dt.datetime) -> bytes:
    return f"<189>123: *{t:%b} {t.day:2d} {t:%H:%M:%S}.123: %SYS-5-CONFIG_I: Configured from console".encode()


def _b3164(t: dt.datetime) -> str:
    return f"{t:%b} {t.day:2d} {t:%H:%M:%S}"


# (name, bytes from the event time, expected fields; "SENDER" = the sender's IP,
# "T" = the event time (second precision unless the line has a fraction)).
DEVICES: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "cisco-ios",
        _ios,
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
        lambda t: f"<28>{_b3164(t)} r1 mgd[3456]: UI_COMMIT: User root committed".encode(),
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
        lambda t: f"<30>{_b3164(t)} dnsmasq[1234]: query[A] example.com".encode(),
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
        lambda t: f"<30>{_b3164(t)} systemd[1]: Started Session 4 of user root.".encode(),
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
        lambda t: f"<30>{_b3164(t)} dockerhost web[999]: hello 3164".encode(),
        {"host": "dockerhost", "service": "web", "procid": "999", "level": "info",
         "timestamp": "T", "format": "rfc3164"},
    ),
    (
        "ubiquiti-busybox",
        lambda t: f"<13>{_b3164(t)} kernel: [  123.456] br0: port 2(eth1) entered".encode(),
        {"host": "SENDER", "service": "kernel", "level": "notice", "facility": "user"},
    ),
]  # fmt: skip


def _expected_time(kind: str, t: dt.datetime) -> str:
    if kind == "T":
        return _z(t.replace(microsecond=0))
    if kind == "T.123":
        return _z(t.replace(microsecond=123000))
    if kind == "T.ms":
        return _z(t.replace(microsecond=t.microsecond // 1000 * 1000))
    if kind == "T.10us":
        return _z(t.replace(microsecond=t.microsecond // 10 * 10))
    return _z(t)


@pytest.mark.parametrize("transport", ["udp", "tcp-lf", "tcp-octet"])
@pytest.mark.parametrize(("name", "line", "expected"), DEVICES, ids=[d[0] for d in DEVICES])
async def test_device_lines_come_back_with_the_contract_fields(
    transport: str, name: str, line: Any, expected: dict[str, Any]
) -> None:
    t = _now() - dt.timedelta(seconds=30)
    token = uuid.uuid4().hex
    payload: bytes = line(t) + b" " + token.encode()
    async with running_daemon() as d:
        if transport == "udp":
            await _send_udp(listener_addr(d, "udp"), payload)
        elif transport == "tcp-lf":
            await _send_tcp(listener_addr(d, "tcp"), payload + b"\n")
        else:
            framed = payload + b"\n"
            await _send_tcp(listener_addr(d, "tcp"), b"%d %s" % (len(framed), framed))
        (rec,) = await _find(d, token)
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
            s.sendto(f"<30>{_b3164(_now())} systemd[1]: Started {token}".encode(), str(path))
        (rec,) = await _find(d, token)
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
        await _send_tcp(listener_addr(d, "tcp"), data)
        recs = await _find(d, token, 192, "&limit=1000")
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
        recs = await _find(d, token, len(items), "&limit=100")
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
        t = _now().replace(microsecond=250000) - dt.timedelta(seconds=5)
        line = {
            "ts": t.timestamp() * 1000, "@timestamp": "1999-01-01T00:00:00Z",
            "severity": "warn", "lvl": "debug", "msg": f"hello {token}", "log": "other",
            "app": "billing", "program": "p", "hostname": "h9", "facility": "local3",
            "user": {"id": 7},
        }  # fmt: skip
        await _send_tcp(listener_addr(d, "json"), json.dumps(line).encode() + b"\r\n")
        (rec,) = await _find(d, token)
    assert rec["format"] == "json"
    assert rec["timestamp"] == _z(t)
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
        await _send_tcp(listener_addr(d, "json"), b'{"message": "%s"}\n[1,2]\n' % token.encode())
        (rec,) = await _find(d, token)
        (raw,) = await _find(d, "[1,2]")
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
        await _send_udp(listener_addr(d, "udp"), payload)
        if token.encode() in payload:
            (rec,) = await _find(d, token)
        else:
            rec = await wait_for(lambda: _first(d))
    for key, want in expected.items():
        if want == "RECEIVED":
            assert rec[key] == rec["received_at"]
        else:
            assert rec[key] == want, (key, rec)


async def _first(d: Any) -> dict[str, Any] | None:
    logs = (await get_json(d, "/logs?start=0"))["logs"]
    return logs[0] if logs else None


async def test_the_app_log_line_rule_keeps_its_time_and_level() -> None:
    t = (_now() - dt.timedelta(seconds=20)).replace(microsecond=0)
    token = uuid.uuid4().hex
    async with running_daemon() as d:
        line = f"{t:%Y-%m-%d %H:%M:%S} WARN cache miss {token}"
        await _send_udp(listener_addr(d, "udp"), line.encode())
        (rec,) = await _find(d, token)
    assert (rec["format"], rec["level"], rec["timestamp"]) == ("raw", "warning", _z(t))
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
    t = (_now() - dt.timedelta(seconds=20)).replace(microsecond=123000)
    token = uuid.uuid4().hex
    line = f"{t:%Y-%m-%d}{sep}{t:%H:%M:%S}.123Z {word} {token}"
    async with running_daemon() as d:
        await _send_tcp(listener_addr(d, "tcp"), line.encode() + b"\n")
        (rec,) = await _find(d, token)
    assert (rec["format"], rec["level"], rec["message"]) == ("raw", level, token)
    assert rec["timestamp"] == _z(t)


@pytest.mark.parametrize(
    ("offset", "expected_in_fields"),
    [(dt.timedelta(hours=-2), True), (dt.timedelta(minutes=10), True),
     (dt.timedelta(minutes=3), False), (dt.timedelta(minutes=-50), False)],
)  # fmt: skip
async def test_clock_skew_beyond_ttl_or_5_minutes_ahead_keeps_the_time_in_fields(
    offset: dt.timedelta, expected_in_fields: bool
) -> None:
    t = _now() + offset
    token = uuid.uuid4().hex
    async with running_daemon() as d:
        await _send_udp(listener_addr(d, "udp"), f"<14>1 {_z(t)} h a - - - {token}".encode())
        (rec,) = await _find(d, token)
    if expected_in_fields:
        assert rec["timestamp"] == rec["received_at"]
        assert rec["fields"]["original_timestamp"] == _z(t)
    else:
        assert rec["timestamp"] == _z(t)
        assert "original_timestamp" not in rec["fields"]


async def test_default_timezone_applies_to_offset_less_times_only() -> None:
    cfg = local_config(parsing=ParsingConfig(default_timezone="America/New_York"))
    ny = dt.datetime.now(tz=__import__("zoneinfo").ZoneInfo("America/New_York"))
    t = (ny - dt.timedelta(seconds=40)).replace(microsecond=0)
    token = uuid.uuid4().hex
    async with running_daemon(cfg) as d:
        await _send_udp(listener_addr(d, "udp"), f"<14>{_b3164(t)} h app: a {token}".encode())
        await _send_udp(listener_addr(d, "udp"), f"<14>1 {_z(t)} h app - - - b {token}".encode())
        await _send_tcp(
            listener_addr(d, "json"),
            json.dumps({"time": f"{t:%Y-%m-%dT%H:%M:%S}", "msg": f"c {token}"}).encode() + b"\n",
        )
        recs = await _find(d, token, 3)
    got = {r["message"].split()[0].removeprefix("app: "): r["timestamp"] for r in recs}
    assert got == {"a": _z(t), "b": _z(t), "c": _z(t)}


async def test_an_rfc3164_date_without_year_takes_the_year_nearest_to_now() -> None:
    # A date 11 months ahead is nearer last year; it must not land in the future.
    t = _now() - dt.timedelta(days=1)
    token = uuid.uuid4().hex
    cfg = local_config(store=StoreConfig(ttl=400 * 86400))
    async with running_daemon(cfg) as d:
        await _send_udp(listener_addr(d, "udp"), f"<14>{_b3164(t)} h app: {token}".encode())
        (rec,) = await _find(d, token)
    assert rec["timestamp"] == _z(t.replace(microsecond=0))


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
            await _send_udp(listener_addr(d, "udp"), body)
        elif transport == "tcp-lf":
            await _send_tcp(listener_addr(d, "tcp"), body + b"\n<14>1 - h app - - - after\n")
        else:
            await _send_tcp(
                listener_addr(d, "tcp"), b"%d %s<14>1 - h app - - - after\n" % (len(body), body)
            )
        (rec,) = await _find(d, token)
        assert rec["fields"]["truncated"] is True
        assert len(f"<14>1 - h app - - - {rec['message']}".encode()) == 100
        if transport != "udp":
            await _find(d, "after")
        logs = (await get_json(d, "/logs?start=0"))["logs"]
        assert len(logs) == (1 if transport == "udp" else 2)  # no record from the cut-off rest
        assert await _metric(d, "collector_messages_truncated_total") == 1


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
        t0 = _now().replace(microsecond=0) - dt.timedelta(seconds=10)
        lines = [
            f"<{8 * 3 + 3}>1 {_z(t0)} h1 svcA - - - one",
            f"<{8 * 4 + 4}>1 {_z(t0 + dt.timedelta(seconds=1))} h2 svcB - - - two",
            f"<{8 * 1 + 6}>1 {_z(t0 + dt.timedelta(seconds=2))} h3 svcC - - - three",
        ]
        await _send_tcp(listener_addr(d, "tcp"), "".join(x + "\n" for x in lines).encode())
        await wait_for(lambda: _count_is(d, "/logs?start=0", 3))

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


async def _count(d: Any, target: str) -> int:
    return int((await get_json(d, target))["count"])


async def _count_is(d: Any, target: str, n: int) -> bool:
    return await _count(d, target) == n


async def test_limit_defaults_to_100_and_order_to_ascending_timestamp() -> None:
    async with running_daemon() as d:
        t0 = _now() - dt.timedelta(seconds=60)
        # sent newest first: the answer is ordered by timestamp, not arrival
        data = "".join(
            f"<14>1 {_z(t0 + dt.timedelta(milliseconds=i))} h a - - - n{i}\n"
            for i in reversed(range(150))
        )
        await _send_tcp(listener_addr(d, "tcp"), data.encode())
        await wait_for(lambda: _count_is(d, "/logs?limit=1000", 150))
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
        await _send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - by id")
        rec = await wait_for(lambda: _first(d))
        answer = await get_json(d, f"/logs/{rec['id']}")
        assert answer == {"log": rec}
        missing = await http_request(d.http_address, "GET", f"/logs/{rec['id']}x")
        assert missing.status == 404
        assert "error" in missing.json()


async def test_paging_with_next_cursor_visits_every_match_once_while_records_arrive() -> None:
    async with running_daemon() as d:
        addr = listener_addr(d, "tcp")
        t0 = _now() - dt.timedelta(seconds=30)
        first = "".join(
            f"<14>1 {_z(t0 + dt.timedelta(microseconds=i))} h a - - - old {i}\n" for i in range(500)
        )
        await _send_tcp(addr, first.encode())
        await wait_for(lambda: _count_is(d, "/logs?limit=10000", 500))
        sent = [0]

        async def keep_sending() -> None:
            # Paced and bounded, so that paging to the newest end terminates.
            _, writer = await asyncio.open_connection(*addr)
            try:
                for i in range(4000):
                    # late times inside the window already paged, and new times after it
                    ts = t0 + dt.timedelta(microseconds=(i * 7919) % 500 if i % 2 else 10**6 + i)
                    writer.write(f"<14>1 {_z(ts)} h a - - - new {i}\n".encode())
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
        t0 = (_now() - dt.timedelta(minutes=3)).replace(second=0, microsecond=0)
        lines = [
            f"<11>1 {_z(t0)} h1 sshd - - - a",
            f"<11>1 {_z(t0 + dt.timedelta(seconds=61))} h1 - - - - b",
            f"<14>1 {_z(t0 + dt.timedelta(seconds=62))} - cron - - - c",
        ]
        await _send_tcp(listener_addr(d, "tcp"), "".join(x + "\n" for x in lines).encode())
        await wait_for(lambda: _count_is(d, "/logs?start=0", 3))
        stats = await get_json(d, "/stats?by=level,service,host,facility&step=1m&start=0")
        assert stats["total"] == 3
        assert stats["by"]["level"] == {"err": 2, "info": 1}
        assert stats["by"]["service"] == {"sshd": 1, "cron": 1, "-": 1}
        assert stats["by"]["host"] == {"h1": 2, "127.0.0.1": 1}
        hist = {b["start"]: b["count"] for b in stats["histogram"]}
        assert hist[_z(t0)] == 1
        assert hist[_z(t0 + dt.timedelta(minutes=1))] == 2
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
        await _send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - stored one")
        await wait_for(lambda: _count_is(d, "/logs?start=0", 1))
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
            await _send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - live two")
            await _send_udp(listener_addr(d, "udp"), b"<14>1 - h other - - - filtered out")
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
        await _send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - m")
        await _send_tcp(listener_addr(d, "tcp"), b"<14>1 - h a - - - m\n12 <14>1 - h")
        await wait_for(lambda: _count_is(d, "/logs?start=0", 2))
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


# == Syslog transports ===========================================================


async def test_tcp_octet_counted_and_delimited_frames_mix_on_one_connection() -> None:
    token = uuid.uuid4().hex[:10]
    oc = f"<14>1 - h a - - - {token} oc\n".encode()
    data = (
        b"%d %s" % (len(oc), oc)
        + f"<14>1 - h a - - - {token} lf\n<14>1 - h a - - - {token} nul\x00".encode()
        + f"<14>1 - h a - - - {token} crlf\r\n<14>1 - h a - - - {token} last".encode()
    )
    async with running_daemon() as d:
        await _send_tcp(listener_addr(d, "tcp"), data)
        recs = await _find(d, token, 5)
        assert sorted(r["message"].split()[1] for r in recs) == ["crlf", "last", "lf", "nul", "oc"]
        await asyncio.sleep(0)
        assert len((await get_json(d, f"/logs?q={token}"))["logs"]) == 5


async def test_a_bad_length_prefix_loses_that_frame_only() -> None:
    async with running_daemon() as d:
        data = b"99999999999 <14>1 - h a - - - lost\n<14>1 - h a - - - kept after\n"
        await _send_tcp(listener_addr(d, "tcp"), data)
        await _find(d, "kept")
        logs = (await get_json(d, "/logs?start=0"))["logs"]
        assert [r["message"] for r in logs] == ["kept after"]
        assert await _metric(d, 'collector_messages_dropped_total{listener="tcp",reason="bad') == 1


async def test_an_incomplete_octet_frame_at_close_is_dropped_and_counted() -> None:
    async with running_daemon() as d:
        data = b"<14>1 - h a - - - whole\n200 <14>1 - h a - - - cut short"
        await _send_tcp(listener_addr(d, "tcp"), data)
        await _find(d, "whole")
        await wait_for(
            lambda: _metric(d, 'collector_messages_dropped_total{listener="tcp",reason="incomplete')
        )
        assert [r["message"] for r in (await get_json(d, "/logs?start=0"))["logs"]] == ["whole"]


@pytest.mark.parametrize("tail", [b"\n", b"\r\n", b"\x00", b"\r\n\x00", b"\n\n"])
async def test_every_transport_strips_trailing_lf_cr_nul(tail: bytes, tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    cfg = local_config(
        ListenerConfig(name="udp", transport="udp", bind="127.0.0.1:0"),
        ListenerConfig(name="unix", transport="unix", bind=str(path)),
    )
    async with running_daemon(cfg) as d:
        await _send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - u" + tail)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"<14>1 - h a - - - x" + tail, str(path))
        await wait_for(lambda: _count_is(d, "/logs?start=0", 2))
        logs = (await get_json(d, "/logs?start=0"))["logs"]
        assert sorted(r["message"] for r in logs) == ["u", "x"]


# == Real clients ================================================================


def _need(tool: str) -> str:
    path = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None
    )
    if path is None:
        pytest.skip(f"{tool} is not installed here")
    return path


LOGGER_VARIANTS = [
    (["-d", "--rfc3164"], "udp", {"format": "rfc3164", "service": "lt"}),
    (["-d", "--rfc5424"], "udp", {"format": "rfc5424", "service": "lt"}),
    (["-T", "--rfc5424", "--octet-count"], "tcp", {"format": "rfc5424"}),
    (["-T", "--rfc3164"], "tcp", {"format": "rfc3164", "service": "lt"}),
    (["-d", "--rfc5424", "--msgid", "MID9"], "udp", {"msgid": "MID9"}),
    (["-d", "--rfc5424", "--sd-id", "ex@32473", "--sd-param", 'k="v\\"q"'], "udp",
     {"structured_data": {"ex@32473": {"k": 'v"q'}}}),
    (["-d", "-p", "auth.crit", "-i"], "udp", {"facility": "auth", "level": "crit"}),
]  # fmt: skip


@pytest.mark.parametrize(("args", "transport", "expected"), LOGGER_VARIANTS)
async def test_logger_variants_come_back_with_their_fields(
    args: list[str], transport: str, expected: dict[str, Any]
) -> None:
    logger = _need("logger")
    token = uuid.uuid4().hex
    async with running_daemon() as d:
        host, port = listener_addr(d, transport)
        proc = await asyncio.create_subprocess_exec(
            logger, *args, "-n", host, "-P", str(port), "-t", "lt", f"hello {token}",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, err
        (rec,) = await _find(d, token)
    for key, want in expected.items():
        if key == "structured_data":
            assert rec[key]["ex@32473"] == want["ex@32473"]
        else:
            assert rec[key] == want, (key, rec)
    assert rec["message"].endswith(f"hello {token}")
    assert rec["host"] not in (None, "")
    if "-i" in args:
        assert rec["procid"] is not None


async def test_logger_over_a_unix_socket_gets_this_machines_hostname(tmp_path: Path) -> None:
    logger = _need("logger")
    path = tmp_path / "dev-log"
    token = uuid.uuid4().hex
    cfg = local_config(ListenerConfig(name="local", transport="unix", bind=str(path)))
    async with running_daemon(cfg) as d:
        proc = await asyncio.create_subprocess_exec(
            logger, "-u", str(path), "--socket-errors=on", "-t", "lu", f"m {token}"
        )
        await asyncio.wait_for(proc.wait(), 10)
        (rec,) = await _find(d, token)
    assert rec["service"] == "lu"
    assert rec["host"] == socket.gethostname()


# -- rsyslog ---------------------------------------------------------------------

RSYSLOG_CONF = """
global(workDirectory="{work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{inport}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
  action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp"
         template="RSYSLOG_ForwardFormat")
  action(type="omfwd" target="127.0.0.1" port="{tcp2}" protocol="tcp"
         template="RSYSLOG_ForwardFormat")
}}
"""


async def test_rsyslog_forwards_rfc5424_octet_counted_and_legacy_over_udp_and_lf_tcp(
    tmp_path: Path,
) -> None:
    rsyslogd = _need("rsyslogd")
    cfg = local_config(
        ListenerConfig(name="udp", transport="udp", bind="127.0.0.1:0"),
        ListenerConfig(name="tcp", transport="tcp", bind="127.0.0.1:0"),
        ListenerConfig(name="tcp2", transport="tcp", bind="127.0.0.1:0"),
    )
    async with running_daemon(cfg) as d:
        (inport,) = free_ports(1)
        conf = tmp_path / "rsyslog.conf"
        conf.write_text(
            RSYSLOG_CONF.format(
                work=tmp_path, inport=inport,
                tcp=listener_addr(d, "tcp")[1], udp=listener_addr(d, "udp")[1],
                tcp2=listener_addr(d, "tcp2")[1],
            )
        )  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "TZ": "UTC"},  # the year-less input is read in local time
        )  # fmt: skip
        try:
            token = uuid.uuid4().hex
            t = _now().replace(microsecond=0) - dt.timedelta(seconds=5)
            line = f"<35>{_b3164(t)} web-7 sshd[42]: Failed password {token}".encode()

            async def forwarded() -> list[dict[str, Any]] | None:
                await _send_udp(("127.0.0.1", inport), line)  # until rsyslog is up
                logs = (await get_json(d, f"/logs?q={token}&limit=100"))["logs"]
                every = all(d.listeners[n].stats.received for n in ("udp", "tcp", "tcp2"))
                formats = {r["format"] for r in logs}
                return logs if every and formats == {"rfc5424", "rfc3164"} else None

            recs = await wait_for(forwarded, timeout=20, interval=0.2)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.communicate(), 10)
    for rec in recs:
        assert (rec["host"], rec["service"], rec["procid"]) == ("web-7", "sshd", "42"), rec
        assert (rec["facility"], rec["level"]) == ("auth", "err")
        assert rec["message"] == f"Failed password {token}"  # the LF inside the frame stripped
        assert rec["timestamp"] == _z(t)
    assert {r["format"] for r in recs} == {"rfc5424", "rfc3164"}


# == Process lifecycle ===========================================================


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_exit_0_after_draining_what_was_received(
    tmp_path: Path, sig: int
) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    try:
        with socket.create_connection(("127.0.0.1", daemon.tcp_port)) as s:
            s.sendall(b"".join(b"<14>1 - h a - - - drain %d\n" % i for i in range(1000)))
        poll(lambda: daemon.records() == 1000, 10, "1000 records")
        assert daemon.stop(sig) == 0
        assert "Traceback" not in daemon.log()
    finally:
        daemon.kill()


def test_sighup_reloads_ttl_and_listeners_and_ignores_an_invalid_file(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, store={"ttl": "1h"})
    daemon.start()
    kept: socket.socket | None = None
    try:
        kept = socket.create_connection(("127.0.0.1", daemon.tcp_port))
        kept.sendall(b"<14>1 - h a - - - before reload\n")
        poll(lambda: daemon.records() == 1, 10, "one record")
        path = tmp_path / "collector.yaml"
        cfg = json.loads(path.read_text())
        cfg["store"] = {"ttl": "2h"}
        (udp_port,) = free_ports(1)
        cfg["listeners"].append(
            {"name": "added", "transport": "udp", "bind": f"127.0.0.1:{udp_port}"}
        )
        path.write_text(json.dumps(cfg))
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        poll(lambda: daemon.get("/health")["ttl_seconds"] == 7200, 10, "ttl reloaded")
        assert daemon.get("/health")["listeners"] == ["tcp", "added"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"<14>1 - h a - - - via the added listener", ("127.0.0.1", udp_port))
        poll(lambda: daemon.records() == 2, 10, "a record through the added listener")
        kept.sendall(b"<14>1 - h a - - - same connection after reload\n")
        poll(lambda: daemon.records() == 3, 10, "the unchanged listener's connection stayed")
        records = 3
        path.write_text("store: {ttl: soon}\n")
        daemon.proc.send_signal(signal.SIGHUP)
        poll(lambda: "soon" in daemon.log(), 10, "invalid file logged")
        assert daemon.get("/health")["ttl_seconds"] == 7200
        assert daemon.records() == records
    finally:
        if kept is not None:
            kept.close()
        daemon.kill()


def test_a_bad_request_never_stops_the_server(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    try:
        for raw in [b"GARBAGE\r\n\r\n", b"GET /logs HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 10000]:
            with socket.create_connection(("127.0.0.1", daemon.http_port)) as s:
                s.settimeout(5)
                try:
                    s.sendall(raw + b"\r\n")
                    s.recv(65536)
                except OSError:
                    pass
        with pytest.raises(urllib.error.HTTPError) as err:
            daemon.get("/logs?limit=99999")
        assert err.value.code == 400
        err.value.close()
        assert daemon.get("/health")["status"] == "ok"
    finally:
        daemon.kill()


# -- syslog-ng (unpacked from its .deb into bench/out/peers: it conflicts with rsyslog) --

SYSLOG_NG_CONF = """@version: 3.38
options {{ use-dns(no); keep-hostname(yes); stats-freq(0); }};
source s_in {{ network(ip(127.0.0.1) port({inport}) transport("udp")); }};
destination d_5424 {{ syslog("127.0.0.1" port({tcp}) transport("tcp")); }};
destination d_3164 {{ network("127.0.0.1" port({udp}) transport("udp")); }};
log {{ source(s_in); destination(d_5424); destination(d_3164); }};
"""


async def test_syslog_ng_forwards_rfc5424_over_tcp_and_legacy_over_udp(tmp_path: Path) -> None:
    root = REPO / "bench" / "out" / "peers" / "root"
    binary = root / "usr" / "sbin" / "syslog-ng"
    if not binary.exists():
        pytest.skip(
            "syslog-ng not unpacked (bench/ingest.py --fetch-peers puts it in bench/out/peers)"
        )
    libs = [
        root / "usr/lib/syslog-ng",
        root / "usr/lib/x86_64-linux-gnu",
        root / "lib/x86_64-linux-gnu",
    ]
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": ":".join(map(str, libs)),
        "SYSLOGNG_PREFIX": str(root / "usr"),
        "TZ": "UTC",  # its legacy output is local time; the daemon reads it as UTC
    }
    async with running_daemon() as d:
        (inport,) = free_ports(1)
        conf = tmp_path / "syslog-ng.conf"
        conf.write_text(
            SYSLOG_NG_CONF.format(
                inport=inport, tcp=listener_addr(d, "tcp")[1], udp=listener_addr(d, "udp")[1]
            )
        )
        proc = await asyncio.create_subprocess_exec(
            str(binary), "-F", "--no-caps", "-f", str(conf),
            f"--module-path={root}/usr/lib/syslog-ng/3.38",
            "-p", str(tmp_path / "sng.pid"), "-R", str(tmp_path / "sng.persist"),
            "-c", str(tmp_path / "sng.ctl"),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            token = uuid.uuid4().hex
            t = _now().replace(microsecond=0) - dt.timedelta(seconds=5)
            line = f"<35>{_b3164(t)} web-8 sshd[43]: Accepted key {token}".encode()

            async def forwarded() -> list[dict[str, Any]] | None:
                if proc.returncode is not None:
                    raise AssertionError(f"syslog-ng exited {proc.returncode}")
                await _send_udp(("127.0.0.1", inport), line)  # until syslog-ng is up
                logs = (await get_json(d, f"/logs?q={token}&limit=100"))["logs"]
                return logs if len({r["format"] for r in logs}) == 2 else None

            recs = await wait_for(forwarded, timeout=20, interval=0.2)
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.communicate(), 10)
    for rec in recs:
        assert (rec["host"], rec["service"], rec["procid"]) == ("web-8", "sshd", "43"), rec
        assert (rec["facility"], rec["level"]) == ("auth", "err")
        assert rec["message"] == f"Accepted key {token}"
        assert rec["timestamp"] == _z(t)
    assert {r["format"] for r in recs} == {"rfc5424", "rfc3164"}


async def test_a_listener_on_v6_any_takes_ipv4_and_ipv6_and_names_ipv4_senders_plainly() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    cfg = local_config(
        ListenerConfig(name="udp", transport="udp", bind="[::]:0"),
        ListenerConfig(name="tcp", transport="tcp", bind="[::]:0"),
    )
    try:
        daemon_cm = running_daemon(cfg)
        d = await daemon_cm.__aenter__()
    except OSError as e:
        pytest.skip(f"cannot bind [::] here: {e}")
    try:
        udp_port, tcp_port = listener_addr(d, "udp")[1], listener_addr(d, "tcp")[1]
        await _send_udp(("127.0.0.1", udp_port), b"<14>1 - - a - - - udp4")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.sendto(b"<14>1 - - a - - - udp6", ("::1", udp_port))
        await _send_tcp(("127.0.0.1", tcp_port), b"<14>1 - - a - - - tcp4\n")
        await _send_tcp(("::1", tcp_port), b"<14>1 - - a - - - tcp6\n")
        await wait_for(lambda: _count_is(d, "/logs", 4))
        logs = (await get_json(d, "/logs"))["logs"]
        hosts = {r["message"]: r["host"] for r in logs}
        assert hosts == {"udp4": "127.0.0.1", "udp6": "::1", "tcp4": "127.0.0.1", "tcp6": "::1"}
    finally:
        await daemon_cm.__aexit__(None, None, None)


async def test_http_on_v6_any_answers_ipv4_and_ipv6_clients() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    cfg = local_config(http=HttpConfig(bind="[::]:0"))
    try:
        daemon_cm = running_daemon(cfg)
        d = await daemon_cm.__aenter__()
    except OSError as e:
        pytest.skip(f"cannot bind [::] here: {e}")
    try:
        port = d.http_address[1]
        for host in ("127.0.0.1", "::1"):
            answer = await http_request((host, port), "GET", "/health")
            assert answer.status == 200, host
    finally:
        await daemon_cm.__aexit__(None, None, None)


# == Configuration: store ========================================================


async def test_records_older_than_ttl_expire_and_are_counted() -> None:
    cfg = local_config(store=StoreConfig(ttl=1.0, sweep_interval=0.1, shard_span=0.5))
    async with running_daemon(cfg) as d:
        await _send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - short-lived")
        await wait_for(lambda: _count_is(d, "/logs", 1))
        await wait_for(lambda: _count_is(d, "/logs", 0), timeout=10)
        assert (await get_json(d, "/health"))["records"] == 0
        assert await _metric(d, "collector_store_expired_records_total") == 1


async def test_beyond_max_records_the_oldest_are_evicted_and_counted() -> None:
    cfg = local_config(store=StoreConfig(max_records=10))
    async with running_daemon(cfg) as d:
        t0 = _now() - dt.timedelta(seconds=30)
        data = "".join(
            f"<14>1 {_z(t0 + dt.timedelta(seconds=i))} h a - - - n{i}\n" for i in range(25)
        )
        await _send_tcp(listener_addr(d, "tcp"), data.encode())
        await wait_for(lambda: _metric_is(d, "collector_store_evicted_records_total", 15))
        logs = (await get_json(d, "/logs"))["logs"]
        assert [r["message"] for r in logs] == [f"n{i}" for i in range(15, 25)]
        assert (await get_json(d, "/health"))["records"] == 10


async def _metric_is(d: Any, prefix: str, value: float) -> bool:
    return await _metric(d, prefix) == value


def test_an_id_stays_valid_across_a_restart_with_persist_dir(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, store={"persist_dir": str(tmp_path / "state")})
    daemon.start()
    try:
        with socket.create_connection(("127.0.0.1", daemon.tcp_port)) as s:
            s.sendall(b"<14>1 - h a - - - kept over restart\n")
        poll(lambda: daemon.records() == 1, 10, "one record")
        before = daemon.get("/logs")["logs"][0]
        assert daemon.stop() == 0
        daemon.start()
        assert daemon.get(f"/logs/{before['id']}") == {"log": before}
        with socket.create_connection(("127.0.0.1", daemon.tcp_port)) as s:
            s.sendall(b"<14>1 - h a - - - after restart\n")
        poll(lambda: daemon.records() == 2, 10, "two records")
        ids = [r["id"] for r in daemon.get("/logs")["logs"]]
        assert len(set(ids)) == 2
    finally:
        daemon.kill()


async def test_truncation_applies_to_unix_datagrams_and_json_lines_too(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    cfg = local_config(
        ListenerConfig(name="unix", transport="unix", bind=str(path)),
        ListenerConfig(name="json", transport="tcp", format="json", bind="127.0.0.1:0"),
        parsing=ParsingConfig(max_message_bytes=64),
    )
    async with running_daemon(cfg) as d:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"<14>1 - h a - - - unix " + b"u" * 200, str(path))
        line = json.dumps({"msg": "json " + "j" * 200}).encode()
        await _send_tcp(listener_addr(d, "json"), line + b'\n{"msg": "next"}\n')
        await wait_for(lambda: _count_is(d, "/logs", 3))
        logs = (await get_json(d, "/logs"))["logs"]
        cut = [r for r in logs if r["fields"].get("truncated")]
        assert len(cut) == 2, logs
        assert {r["message"] for r in logs} >= {"next"}
        assert await _metric(d, "collector_messages_truncated_total") == 2


async def test_tail_with_start_replays_then_goes_live_without_gaps_or_repeats_under_load() -> None:
    async with running_daemon() as d:
        addr = listener_addr(d, "tcp")
        t0 = _now() - dt.timedelta(seconds=20)
        old = "".join(
            f"<14>1 {_z(t0 + dt.timedelta(microseconds=i))} h a - - - m{i}\n" for i in range(3000)
        )
        await _send_tcp(addr, old.encode())
        await wait_for(lambda: _count_is(d, "/logs?limit=10000", 3000))
        host, port = d.http_address
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"GET /tail?start=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            body = _ResponseSink()
            parser = httptools.HttpResponseParser(body)  # de-chunks the stream
            new = "".join(f"<14>1 - h a - - - m{i}\n" for i in range(3000, 4000))
            sender = asyncio.ensure_future(_send_tcp(addr, new.encode()))
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
