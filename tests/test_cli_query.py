"""`collector query`, `tail` and `stats` against a live daemon on 127.0.0.1:
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
from collector.client import RECENT_IDS, RESUME_MARGIN, Resume
from collector.config import HttpConfig, StoreConfig
from collector.running import Daemon
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


def test_a_negative_relative_start_is_not_taken_for_an_option() -> None:
    args = cli.build_parser().parse_args(
        cli._join_negative_times(["query", "--start", "-15m", "--end", "-1m"])
    )
    assert (args.start, args.end) == ("-15m", "-1m")


def test_negated_terms_are_query_terms_and_short_options_still_work() -> None:
    argv = ["query", "-s", "15m", "-n", "5", "disk", "-service:cron", "level>=err", "-f", "-n7"]
    args = cli.build_parser().parse_args(cli._split_query_terms(cli._join_negative_times(argv)))
    assert cli._filters(args) == {"start": "-15m", "query": "disk -service:cron level>=err"}
    assert (args.limit, args.follow) == (7, True)
    args = cli.build_parser().parse_args(
        cli._split_query_terms(cli._join_negative_times(["stats", "-s", "-2h", "--by", "level"]))
    )
    assert (args.since, args.by) == ("-2h", "level")


def test_resume_skips_what_was_printed_and_replays_from_just_before_the_newest() -> None:
    r = Resume(since="-15m")
    assert r.start() == "-15m"  # nothing printed yet: what the stream began with
    a = {"timestamp": "2026-01-30T12:00:00.000000Z", "id": "a"}
    b = {"timestamp": "2026-01-30T12:00:01.000000Z", "id": "b"}
    late = {"timestamp": "2026-01-30T11:59:30.000000Z", "id": "late"}
    assert [r.seen(x) for x in (a, b, late)] == [False, False, False]
    assert [r.seen(x) for x in (a, b, late)] == [True, True, True]
    # A minute before the newest printed: late arrivals still come, printed ones are skipped.
    assert float(r.start() or 0) == 1_769_774_401 - RESUME_MARGIN
    for i in range(RECENT_IDS + 5):
        r.seen({"timestamp": "2026-01-30T12:00:02.000000Z", "id": f"x{i}"})
    assert len(r.recent) == RECENT_IDS  # bounded


# --- against a live daemon -------------------------------------------------------------


async def test_query_prints_one_line_per_record_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_daemon() as d:
        await post(d, items(3))
        assert await run_cli("query", "--url", url(d), "--start", "-1h", "--service", "sshd") == 0
        out = capsys.readouterr()
        assert out.err == ""  # everything printed: nothing more matched
        lines = out.out.splitlines()
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
        out = capsys.readouterr()
        recs = [json.loads(line) for line in out.out.splitlines()]
        # Like tail -n: the newest 12, oldest first, and how many more matched.
        assert [r["message"] for r in recs] == [f"event {i}" for i in range(13, 25)]
        assert len({r["id"] for r in recs}) == 12
        assert out.err.startswith("13 more matched")
        assert d.app is not None
        assert d.app.stats.requests[("/logs", 200)] == 3
        assert await run_cli("query", "--url", url(d), "-n", "1000", "--order", "desc") == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 25
        assert lines[0].endswith("event 24")
        assert await run_cli("query", "--url", url(d), "-n3", "--order", "asc", "--json") == 0
        recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["message"] for r in recs] == ["event 0", "event 1", "event 2"]


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


async def test_query_takes_the_search_language_and_prints_fields_and_multi_line_messages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_daemon() as d:
        await post(
            d,
            [
                {
                    "message": "disk full\n  on /var",
                    "service": "api",
                    "level": "err",
                    "user_id": 42,
                },
                {"message": "disk full", "service": "cron", "level": "err"},
                {"message": "all good", "service": "api", "level": "info"},
            ],
        )
        argv = ["query", "--url", url(d), "--utc", "-s", "15m", '"disk full"', "-service:cron"]
        assert await run_cli(*argv) == 0
        out = capsys.readouterr()
        lines = out.out.splitlines()
        assert lines[0].endswith(" api err: disk full user_id=42"), lines
        assert lines[0][:27].endswith("Z")  # --utc: the API's own time spelling
        assert lines[1:] == ["      on /var"]
        assert out.err == ""
        assert await run_cli("query", "--url", url(d), "level>=err", "-n", "1") == 0
        out = capsys.readouterr()
        assert out.out.count("\n") == 1
        assert out.err.startswith("1 more matched")
        assert await run_cli("query", "--url", url(d), "nope:x") == 2
        assert "query: unknown field 'nope'" in capsys.readouterr().err


async def test_stats_prints_a_table_of_counts(capsys: pytest.CaptureFixture[str]) -> None:
    async with running_daemon() as d:
        await post(d, [*items(3), {"message": "x", "service": "cron", "level": "err"}])
        argv = ["stats", "--url", url(d), "--by", "service", "--step", "1h", "--utc", "-s", "1h"]
        assert await run_cli(*argv) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "total 4"
        assert "sshd         3  75.0%" in lines
        assert lines[-1].endswith("Z  4")
        assert await run_cli("stats", "--url", url(d), "--json", "service:cron") == 0
        assert json.loads(capsys.readouterr().out)["total"] == 1
        assert await run_cli("stats", "--url", url(d), "--by", "colour") == 2


async def test_tail_survives_a_daemon_restart_without_gap_or_duplicate(tmp_path: Any) -> None:
    first = local_config(store=StoreConfig(persist_dir=str(tmp_path)))
    async with running_daemon(first) as d:
        host, port = d.http_address
        await post(d, items(2))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector", "tail", "--url", f"http://{host}:{port}",
            "--start", "-1h", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stderr is not None
        got = []
        for _ in range(2):
            got.append(json.loads(await asyncio.wait_for(proc.stdout.readline(), 15))["message"])
    try:
        assert got == ["event 0", "event 1"]
        line = await asyncio.wait_for(proc.stderr.readline(), 15)
        assert b"lost" in line, line
        assert b"reconnecting" in line, line
        again = local_config(
            store=StoreConfig(persist_dir=str(tmp_path)),
            http=HttpConfig(bind=f"{host}:{port}"),
        )
        async with running_daemon(again) as d2:
            # Stored while the tail was away: it must come, once, after the old ones.
            await post(d2, [{"message": "while away", "level": "warn"}])
            line = await asyncio.wait_for(proc.stderr.readline(), 15)
            assert b"reconnected" in line, line
            await post(d2, [{"message": "after", "level": "warn"}])
            more = []
            for _ in range(2):
                more.append(
                    json.loads(await asyncio.wait_for(proc.stdout.readline(), 15))["message"]
                )
            assert more == ["while away", "after"]
            proc.send_signal(signal.SIGINT)
            out, _ = await asyncio.wait_for(proc.communicate(), 10)
            assert out == b""  # nothing printed twice
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
