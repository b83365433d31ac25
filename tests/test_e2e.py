"""End to end: real sockets in, HTTP out, and the daemon as a real process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collector.netio import DETAIL as NETIO_DETAIL
from collector.parse import IMPLEMENTATION_DETAIL
from collector.query import RENDER_DETAIL
from tests.support import get_json, http_request, listener_addr, running_daemon, wait_for


async def test_a_udp_and_a_tcp_message_come_back_from_get_logs() -> None:
    async with running_daemon() as d:
        host, port = listener_addr(d, "udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"<34>1 2026-01-01T10:00:00Z web-1 sshd 42 ID1 - over udp", (host, port))
        host, port = listener_addr(d, "tcp")
        _, writer = await asyncio.open_connection(host, port)
        writer.write(b"<13>Jan  1 10:00:01 web-2 cron[7]: over tcp\n")
        await writer.drain()
        writer.close()

        async def two() -> list[dict[str, object]] | None:
            logs = (await get_json(d, "/logs?start=0"))["logs"]
            return logs if len(logs) == 2 else None

        logs = await wait_for(two)
        messages = sorted(str(r["message"]) for r in logs)
        assert messages[0].endswith("over tcp")
        assert messages[1] == "over udp"
        for rec in logs:
            assert set(rec) == {
                "id", "timestamp", "received_at", "host", "service", "procid", "msgid",
                "facility", "level", "message", "structured_data", "fields", "format",
            }  # fmt: skip
            assert str(rec["timestamp"]).endswith("Z")


async def test_health_names_the_listeners_and_counts_records() -> None:
    async with running_daemon() as d:
        health = await get_json(d, "/health")
        assert health["status"] == "ok"
        assert health["records"] == 0
        assert health["listeners"] == ["udp", "tcp", "json"]
        assert health["ttl_seconds"] == 3600


async def test_a_bad_time_parameter_is_400_naming_it() -> None:
    async with running_daemon() as d:
        answer = await http_request(d.http_address, "GET", "/logs?start=yesterday")
        assert answer.status == 400
        assert answer.json()["error"].startswith("start:")


def _write_config(tmp_path: Path, http_port: int, syslog_port: int) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            listeners:
              - {{name: tcp, transport: tcp, bind: "127.0.0.1:{syslog_port}"}}
            http: {{bind: "127.0.0.1:{http_port}"}}
            """
        )
    )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"daemon did not listen on {port} within {timeout}s")


def test_sigterm_stops_a_subprocess_daemon_with_exit_0(tmp_path: Path) -> None:
    http_port = _free_port()
    cfg = _write_config(tmp_path, http_port, _free_port())
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "run", "--config", str(cfg)],
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(http_port, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert b"stopping" in err
        # One start-up line says which parser runs (native, or pure and why),
        # and how datagrams are read (recvmmsg in C, or recvfrom and why).
        started = [line for line in err.decode().splitlines() if "collector started" in line]
        assert len(started) == 1
        assert (
            f"parser {IMPLEMENTATION_DETAIL}, datagrams {NETIO_DETAIL}, pages {RENDER_DETAIL}"
            in started[0]
        )
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_second_daemon_on_a_taken_port_exits_2_naming_listener_and_address(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = _write_config(tmp_path, _free_port(), port)
        result = subprocess.run(
            [sys.executable, "-m", "collector", "run", "--config", str(cfg)],
            capture_output=True,
            timeout=30,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
    assert result.returncode == 2
    last = result.stderr.decode().strip().splitlines()[-1]
    assert "listener tcp" in last
    assert f"127.0.0.1:{port}" in last


def test_the_status_line_is_silent_when_nothing_changed_and_reports_rate_and_drops() -> None:
    from collector.running import Snapshot, status_line

    before = Snapshot(records=10, received=10, dropped=1, at=100.0)
    assert status_line(before, Snapshot(10, 10, 1, 110.0)) is None
    assert status_line(before, Snapshot(60, 60, 3, 110.0)) == (
        "status: 60 records held, 5.0 msg/s received, 3 dropped (2 new)"
    )


async def test_the_foreground_daemon_logs_a_status_line_once_records_arrive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from collector.running import stderr_status

    with caplog.at_level(logging.INFO, logger="collector.daemon"):
        async with running_daemon() as d:
            d.spawn(stderr_status(d, interval=0.05))
            host, port = listener_addr(d, "udp")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"<13>1 - h app - - - counted", (host, port))

            def status_lines() -> list[str]:
                return [r.getMessage() for r in caplog.records if "status:" in r.getMessage()]

            await wait_for(status_lines)
    assert status_lines()[0].startswith("status: 1 record held, ")
