"""Syslog transports from outside: framing rules, real clients (`logger`, SysLogHandler) and real forwarders (rsyslog, syslog-ng), IPv6."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from collector.config import HttpConfig, ListenerConfig
from tests.e2e import (
    b3164,
    count_is,
    find,
    metric,
    need,
    now,
    send_tcp,
    send_udp,
    z,
)
from tests.faults_support import REPO, free_ports
from tests.support import (
    get_json,
    http_request,
    listener_addr,
    local_config,
    running_daemon,
    wait_for,
)

# == Syslog transports ===========================================================


async def test_tcp_octet_counted_and_delimited_frames_mix_on_one_connection() -> None:
    token = uuid.uuid4().hex[:10]
    oc = f"<14>1 - h a - - - {token} oc\n".encode()
    data = (
        b"%d %s" % (len(oc), oc)
        + f"<14>1 - h a - - - {token} lf\n<14>1 - h a - - - {token} crlf\r\n".encode()
        # After a NUL-ended frame, LF is part of messages on this connection
        # (SysLogHandler's tracebacks): so NUL comes last but for an unterminated line.
        + f"<14>1 - h a - - - {token} nul\x00<14>1 - h a - - - {token} last".encode()
    )
    async with running_daemon() as d:
        await send_tcp(listener_addr(d, "tcp"), data)
        recs = await find(d, token, 5)
        assert sorted(r["message"].split()[1] for r in recs) == ["crlf", "last", "lf", "nul", "oc"]
        await asyncio.sleep(0)
        assert len((await get_json(d, f"/logs?q={token}"))["logs"]) == 5


async def test_a_bad_length_prefix_loses_that_frame_only() -> None:
    async with running_daemon() as d:
        data = b"99999999999 <14>1 - h a - - - lost\n<14>1 - h a - - - kept after\n"
        await send_tcp(listener_addr(d, "tcp"), data)
        await find(d, "kept")
        logs = (await get_json(d, "/logs?start=0"))["logs"]
        assert [r["message"] for r in logs] == ["kept after"]
        assert await metric(d, 'collector_messages_dropped_total{listener="tcp",reason="bad') == 1


async def test_an_incomplete_octet_frame_at_close_is_dropped_and_counted() -> None:
    async with running_daemon() as d:
        data = b"<14>1 - h a - - - whole\n200 <14>1 - h a - - - cut short"
        await send_tcp(listener_addr(d, "tcp"), data)
        await find(d, "whole")
        await wait_for(
            lambda: metric(d, 'collector_messages_dropped_total{listener="tcp",reason="incomplete')
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
        await send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - u" + tail)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"<14>1 - h a - - - x" + tail, str(path))
        await wait_for(lambda: count_is(d, "/logs?start=0", 2))
        logs = (await get_json(d, "/logs?start=0"))["logs"]
        assert sorted(r["message"] for r in logs) == ["u", "x"]


# == Real clients ================================================================


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
    logger = need("logger")
    token = uuid.uuid4().hex
    async with running_daemon() as d:
        host, port = listener_addr(d, transport)
        proc = await asyncio.create_subprocess_exec(
            logger, *args, "-n", host, "-P", str(port), "-t", "lt", f"hello {token}",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, err
        (rec,) = await find(d, token)
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
    logger = need("logger")
    path = tmp_path / "dev-log"
    token = uuid.uuid4().hex
    cfg = local_config(ListenerConfig(name="local", transport="unix", bind=str(path)))
    async with running_daemon(cfg) as d:
        proc = await asyncio.create_subprocess_exec(
            logger, "-u", str(path), "--socket-errors=on", "-t", "lu", f"m {token}"
        )
        await asyncio.wait_for(proc.wait(), 10)
        (rec,) = await find(d, token)
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
    rsyslogd = need("rsyslogd")
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
            t = now().replace(microsecond=0) - dt.timedelta(seconds=5)
            line = f"<35>{b3164(t)} web-7 sshd[42]: Failed password {token}".encode()

            async def forwarded() -> list[dict[str, Any]] | None:
                await send_udp(("127.0.0.1", inport), line)  # until rsyslog is up
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
        assert rec["timestamp"] == z(t)
    assert {r["format"] for r in recs} == {"rfc5424", "rfc3164"}


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
            t = now().replace(microsecond=0) - dt.timedelta(seconds=5)
            line = f"<35>{b3164(t)} web-8 sshd[43]: Accepted key {token}".encode()

            async def forwarded() -> list[dict[str, Any]] | None:
                if proc.returncode is not None:
                    raise AssertionError(f"syslog-ng exited {proc.returncode}")
                await send_udp(("127.0.0.1", inport), line)  # until syslog-ng is up
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
        assert rec["timestamp"] == z(t)
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
        await send_udp(("127.0.0.1", udp_port), b"<14>1 - - a - - - udp4")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.sendto(b"<14>1 - - a - - - udp6", ("::1", udp_port))
        await send_tcp(("127.0.0.1", tcp_port), b"<14>1 - - a - - - tcp4\n")
        await send_tcp(("::1", tcp_port), b"<14>1 - - a - - - tcp6\n")
        await wait_for(lambda: count_is(d, "/logs", 4))
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
