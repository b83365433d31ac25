"""`collector query` and `collector tail` against a live daemon on 127.0.0.1:
the CLI runs in a thread (or as a real subprocess) while the daemon serves
in the test's event loop."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from typing import Any

import pytest

from collector import cli, client
from collector.client import absolute_time, format_record
from collector.config import HttpConfig
from collector.daemon import Daemon
from tests.support import http_request, local_config, running_daemon, wait_for


def url(d: Daemon) -> str:
    host, port = d.http_address
    return f"http://{host}:{port}"


async def post(d: Daemon, items: list[dict[str, Any]], token: str | None = None) -> None:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    answer = await http_request(
        d.http_address, "POST", "/logs", json.dumps(items).encode(), headers
    )
    assert answer.status == 201, answer.body


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


def items(n: int) -> list[dict[str, Any]]:
    return [
        {"message": f"event {i}", "service": "sshd", "host": "web-1", "level": "warn"}
        for i in range(n)
    ]


# --- pure parts ---------------------------------------------------------------------


def test_relative_times_become_unix_seconds() -> None:
    assert absolute_time("-15m", now=1000.0) == "100.000000"
    assert absolute_time("+1h", now=0.0) == "3600.000000"
    assert absolute_time("- 30s", now=100.0) == "70.000000"
    assert absolute_time("now", now=5.5) == "5.500000"
    assert absolute_time("2026-01-30T12:00:00Z") == "2026-01-30T12:00:00Z"
    assert absolute_time("1769774400") == "1769774400"


def test_a_negative_relative_start_is_not_taken_for_an_option() -> None:
    args = cli.build_parser().parse_args(
        cli._join_negative_times(["query", "--start", "-15m", "--end", "-1m"])
    )
    assert (args.start, args.end) == ("-15m", "-1m")


def test_a_record_reads_as_time_host_service_pid_level_message() -> None:
    rec = {
        "timestamp": "2026-01-30T12:00:00.000000Z", "host": "web-1", "service": "sshd",
        "procid": "42", "level": "err", "message": "Failed password\nfor root",
    }  # fmt: skip
    line = "2026-01-30T12:00:00.000000Z web-1 sshd[42] err: Failed password\\nfor root"
    assert format_record(rec) == line
    coloured = format_record(rec, colour=True)
    assert "\x1b[" in coloured
    assert coloured.replace("\x1b[91m", "").replace("\x1b[0m", "") == line
    hostile = format_record({**rec, "message": "a\x1b[2Jb\rc\td"})
    assert hostile.endswith("err: a\\x1b[2Jb\\rc\td")
    assert format_record({**rec, "service": None, "procid": None, "host": None}).startswith(
        "2026-01-30T12:00:00.000000Z - - err: "
    )


# --- against a live daemon -------------------------------------------------------------


async def test_query_prints_one_line_per_record_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_daemon() as d:
        await post(d, items(3))
        assert await run_cli("query", "--url", url(d), "--start", "-1h", "--service", "sshd") == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split(": ", 1)[1] for line in lines] == ["event 0", "event 1", "event 2"]
        assert all(" web-1 sshd warning: " in line for line in lines)
        assert "\x1b[" not in capsys.readouterr().out  # not a terminal: no colour


async def test_query_follows_the_cursor_up_to_the_limit(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "PAGE_MAX", 5)
    async with running_daemon() as d:
        await post(d, items(25))
        assert await run_cli("query", "--url", url(d), "--limit", "12", "--json") == 0
        recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["message"] for r in recs] == [f"event {i}" for i in range(12)]
        assert len({r["id"] for r in recs}) == 12
        assert d.app is not None
        assert d.app.stats.requests[("/logs", 200)] == 3
        assert await run_cli("query", "--url", url(d), "--limit", "1000", "--order", "desc") == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 25
        assert lines[0].endswith("event 24")


async def test_a_bad_filter_exits_2_with_the_servers_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_daemon() as d:
        assert await run_cli("query", "--url", url(d), "--level", "loud") == 2
        err = capsys.readouterr().err
        assert err.startswith("collector: level: unknown level 'loud'")
        assert "HTTP 400" in err


async def test_an_unreachable_daemon_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        assert await run_cli("query", "--url", f"http://127.0.0.1:{port}") == 1
    err = capsys.readouterr().err
    assert "cannot reach the daemon at http://127.0.0.1:" in err
    assert "refused" in err.lower()


async def test_query_sends_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    config = local_config(http=HttpConfig(bind="127.0.0.1:0", auth_token="tok"))
    async with running_daemon(config) as d:
        await post(d, items(1), token="tok")
        assert await run_cli("query", "--url", url(d)) == 1
        assert "authorization:" in capsys.readouterr().err
        assert await run_cli("query", "--url", url(d), "--token", "tok") == 0
        assert capsys.readouterr().out.endswith("event 0\n")


async def test_tail_as_a_subprocess_prints_arrivals_and_stops_on_sigint() -> None:
    async with running_daemon() as d:
        assert d.app is not None
        app = d.app
        await post(d, items(2))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector", "tail", "--url", url(d), "--start", "-1h",
            "--level", "warning", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await wait_for(lambda: app.stats.active_tails == 1, timeout=15)
            await post(d, [*items(1), {"message": "quiet", "level": "debug"}])
            got = []
            for _ in range(3):
                assert proc.stdout is not None
                line = await asyncio.wait_for(proc.stdout.readline(), 10)
                got.append(json.loads(line)["message"])
            assert sorted(got) == ["event 0", "event 0", "event 1"]
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), 10)
            assert proc.returncode == 0, err
            await wait_for(lambda: app.stats.active_tails == 0)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
