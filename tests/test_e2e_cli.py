"""The command line from outside: `collector run`, `check-config`, `query`, `tail`."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import (
    cli,
    now,
    z,
)
from tests.faults_support import REPO, DaemonProcess, poll

# == Command line ================================================================


def test_the_console_script_and_python_m_collector_are_the_same_program() -> None:
    script = Path(sys.executable).parent / "collector"
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable} (package not installed)")
    for args in (["--version"], ["check-config", str(REPO / "config" / "collector.yaml")]):
        by_module = cli(*args)
        by_script = subprocess.run(
            [str(script), *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert (by_script.returncode, by_script.stdout) == (by_module.returncode, by_module.stdout)
        assert by_module.returncode == 0


def test_collector_run_on_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("store:\n  ttl: soon\n  bogus: 1\nhttp: {auth_token: 5}\n")
    result = cli("run", "--config", str(path))
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
        result = cli("run", "--config", str(path))
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
    result = cli("run", "--config", str(path))
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
    result = cli("check-config", str(path))
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == len(expected), lines
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(want), (line, want)


def test_check_config_reports_an_invalid_value_once_not_also_as_required(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("listeners:\n  - {name: a, transport: udpx, bind: '127.0.0.1:1'}\n")
    result = cli("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "listeners[0].transport: expected one of udp, tcp, unix, redis, kafka; got 'udpx'"
    ]


@pytest.mark.parametrize("text", ["", "# nothing\n", "{}\n"])
def test_an_empty_file_is_a_valid_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = cli("check-config", str(path))
    assert (result.returncode, result.stdout) == (0, "ok\n")


def test_the_shipped_config_is_the_built_in_default() -> None:
    from collector.config import Config, load_config

    assert load_config(REPO / "config" / "collector.yaml") == Config()
    assert cli("check-config", str(REPO / "config" / "collector.yaml")).stdout == "ok\n"


def test_collector_query_and_tail_talk_to_the_http_port_with_get_logs_filters(
    tmp_path: Path,
) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start()
    try:
        token = uuid.uuid4().hex
        ts = z(now())
        with socket.create_connection(("127.0.0.1", daemon.tcp_port)) as s:
            s.sendall(
                f"<11>1 {ts} web-1 sshd 1 - - bad {token}\n"
                f"<14>1 {ts} web-2 cron 2 - - fine {token}\n".encode()
            )
        poll(lambda: daemon.records() == 2, 10, "two records")
        url = f"http://127.0.0.1:{daemon.http_port}"
        out = cli("query", "--url", url, "--min-level", "warning", "--q", token, "--json")
        assert out.returncode == 0, out.stderr
        recs = [json.loads(line) for line in out.stdout.splitlines()]
        assert [r["host"] for r in recs] == ["web-1"]
        out = cli("query", "--url", url, "--min_level", "err", "--q", token)
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.splitlines()) == 1
        out = cli("query", "--url", url, "--service", "sshd,cron", "--start", "0")
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
