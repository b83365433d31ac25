"""systemd: sd_notify to a real datagram socket, the watchdog interval,
socket activation of a daemon subprocess with inherited fds, and the unit
files checked by systemd-analyze."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from collector.config import ListenerConfig, load_config
from collector.systemd import bound_at, listen_fds, match_sockets, notify, watchdog_interval

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"


# --- sd_notify and the watchdog interval -------------------------------------


@contextmanager
def _notify_socket(abstract: bool = False) -> Iterator[tuple[socket.socket, str]]:
    """A unix datagram socket standing in for systemd's notify socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        if abstract:
            name = f"collector-test-{uuid.uuid4().hex}"
            s.bind("\0" + name)
            s.settimeout(10)
            yield s, "@" + name
        else:
            with tempfile.TemporaryDirectory(dir="/tmp") as d:  # short: sun_path is 108 bytes
                path = os.path.join(d, "notify")
                s.bind(path)
                s.settimeout(10)
                yield s, path


def test_notify_sends_one_datagram_of_newline_separated_states_to_a_path() -> None:
    with _notify_socket() as (s, path):
        assert notify("READY=1", "STATUS=ok", env={"NOTIFY_SOCKET": path}) is True
        assert s.recv(4096) == b"READY=1\nSTATUS=ok"


def test_notify_reaches_an_abstract_namespace_socket() -> None:
    with _notify_socket(abstract=True) as (s, name):
        assert name.startswith("@")
        assert notify("WATCHDOG=1", env={"NOTIFY_SOCKET": name}) is True
        assert s.recv(4096) == b"WATCHDOG=1"


def test_notify_without_notify_socket_does_nothing() -> None:
    assert notify("READY=1", env={}) is False
    assert notify("READY=1", env={"NOTIFY_SOCKET": "relative/path"}) is False


def test_notify_to_a_vanished_socket_fails_quietly() -> None:
    assert notify("READY=1", env={"NOTIFY_SOCKET": "/nonexistent/collector/notify"}) is False


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert (
        watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    )
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None


# --- socket activation: environment and matching -----------------------------


def test_listen_fds_for_another_pid_are_ignored_and_unset() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b", "OTHER": "x"}
    assert listen_fds(env) == []
    assert env == {"OTHER": "x"}


def test_listen_fds_with_a_bad_count_are_ignored() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "many"}
    assert listen_fds(env) == []
    assert env == {}


def test_no_listen_fds_means_no_sockets() -> None:
    assert listen_fds({}) == []


@contextmanager
def _bound(kind: int, host: str = "127.0.0.1") -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        if kind == socket.SOCK_STREAM:
            s.listen()
        yield s


def _port(s: socket.socket) -> int:
    return int(s.getsockname()[1])


def test_sockets_match_listeners_by_name_then_by_transport_and_address() -> None:
    with (
        _bound(socket.SOCK_DGRAM) as udp,
        _bound(socket.SOCK_STREAM) as tcp,
        _bound(socket.SOCK_STREAM) as stray,
    ):
        configs = [
            ListenerConfig(name="syslog-udp", transport="udp", bind="127.0.0.1:9"),
            ListenerConfig(name="syslog-tcp", transport="tcp", bind=f"127.0.0.1:{_port(tcp)}"),
            ListenerConfig(name="json-tcp", transport="tcp", bind="127.0.0.1:0"),
        ]
        assigned, unmatched = match_sockets(
            configs, [("syslog-udp", udp), ("collector.socket", tcp), ("collector.socket", stray)]
        )
        assert assigned == {"syslog-udp": udp, "syslog-tcp": tcp}
        assert unmatched == [("collector.socket", stray)]


def test_a_name_on_a_socket_of_the_wrong_transport_falls_back_to_the_address() -> None:
    with _bound(socket.SOCK_STREAM) as tcp:
        configs = [
            ListenerConfig(name="syslog-udp", transport="udp", bind="127.0.0.1:5514"),
            ListenerConfig(name="syslog-tcp", transport="tcp", bind=f"127.0.0.1:{_port(tcp)}"),
        ]
        assigned, unmatched = match_sockets(configs, [("syslog-udp", tcp)])
        assert assigned == {"syslog-tcp": tcp}
        assert unmatched == []


def test_address_matching_compares_transport_port_and_host() -> None:
    with _bound(socket.SOCK_DGRAM) as udp:
        port = _port(udp)
        assert bound_at(udp, ListenerConfig(name="a", transport="udp", bind=f"127.0.0.1:{port}"))
        assert not bound_at(
            udp, ListenerConfig(name="a", transport="tcp", bind=f"127.0.0.1:{port}")
        )
        assert not bound_at(
            udp, ListenerConfig(name="a", transport="udp", bind=f"127.0.0.1:{port + 1}")
        )
        # A specific address is not the wildcard, and the other way round.
        assert not bound_at(udp, ListenerConfig(name="a", transport="udp", bind=f"0.0.0.0:{port}"))
        assert not bound_at(udp, ListenerConfig(name="a", transport="unix", bind="/run/x"))


def test_address_matching_reads_ipv6_binds() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python build")
    try:
        ctx = _bound(socket.SOCK_STREAM, "::1")
        tcp6 = ctx.__enter__()
    except OSError as e:
        pytest.skip(f"cannot bind ::1 here: {e}")
    try:
        port = _port(tcp6)
        assert bound_at(tcp6, ListenerConfig(name="a", transport="tcp", bind=f"[::1]:{port}"))
        assert not bound_at(
            tcp6, ListenerConfig(name="a", transport="tcp", bind=f"127.0.0.1:{port}")
        )
    finally:
        ctx.__exit__(None, None, None)


def test_a_unix_datagram_socket_matches_its_path() -> None:
    with (
        tempfile.TemporaryDirectory(dir="/tmp") as d,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s,
    ):
        path = os.path.join(d, "log")
        s.bind(path)
        assert bound_at(s, ListenerConfig(name="devlog", transport="unix", bind=path))
        assert not bound_at(s, ListenerConfig(name="devlog", transport="unix", bind=path + "2"))
        assert not bound_at(s, ListenerConfig(name="devlog", transport="udp", bind="127.0.0.1:514"))


# --- the daemon as a subprocess -------------------------------------------------


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Notifications:
    """Reads the datagrams a daemon sends to the fake NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        self.sock = sock
        self.proc = proc
        self.seen: list[list[str]] = []

    def wait_for(self, state: str, timeout: float = 15.0) -> list[str]:
        """The next datagram holding `state` (e.g. "READY=1"); earlier ones are kept in `seen`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {state} within {timeout}s; saw {self.seen}")
            self.sock.settimeout(min(left, 0.5))
            try:
                lines = self.sock.recv(65536).decode().split("\n")
            except TimeoutError:
                assert self.proc.poll() is None, (
                    self.proc.stderr.read() if self.proc.stderr else b""
                )
                continue
            self.seen.append(lines)
            if state in lines:
                return lines


def _http_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.load(r)


def _wait_http(port: int, path: str, cond: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = _http_json(port, path)
        if cond(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: condition not met within {timeout}s; last {body}")
        time.sleep(0.02)  # polling an HTTP answer, not synchronising on time


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def _stop(proc: subprocess.Popen[bytes], *, signalled: bool = False) -> bytes:
    """SIGTERM (unless sent already: a second one during shutdown would
    kill the process by the default action) and collect stderr."""
    if not signalled and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err


def test_daemon_notifies_ready_when_bound_pings_the_watchdog_reloads_and_stops(
    tmp_path: Path,
) -> None:
    tcp_port, udp_port, http_port = _free_port(), _free_port(socket.SOCK_DGRAM), _free_port()
    cfg = _write(
        tmp_path / "c.yaml",
        f"""\
        listeners:
          - {{name: tcp, transport: tcp, bind: "127.0.0.1:{tcp_port}"}}
        http: {{bind: "127.0.0.1:{http_port}"}}
        """,
    )
    with _notify_socket(abstract=True) as (ns, name):
        env = {**os.environ, "NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "run", "--config", str(cfg)],
            env=env,
            stderr=subprocess.PIPE,
        )
        stopping = False
        try:
            notes = _Notifications(ns, proc)
            ready = notes.wait_for("READY=1")
            # READY=1 means bound: both ports accept at this moment, no retry.
            socket.create_connection(("127.0.0.1", tcp_port), timeout=5).close()
            socket.create_connection(("127.0.0.1", http_port), timeout=5).close()
            assert any(re.fullmatch(r"STATUS=0 records, 1 listeners", line) for line in ready), (
                ready
            )
            notes.wait_for("WATCHDOG=1")
            notes.wait_for("WATCHDOG=1")

            # Reload: add a UDP listener, switch the TCP one to JSON on the same port.
            _write(
                cfg,
                f"""\
                listeners:
                  - {{name: tcp, transport: tcp, format: json, bind: "127.0.0.1:{tcp_port}"}}
                  - {{name: udp, transport: udp, bind: "127.0.0.1:{udp_port}"}}
                http: {{bind: "127.0.0.1:{http_port}"}}
                store: {{ttl: 2h}}
                """,
            )
            proc.send_signal(signal.SIGHUP)
            reloading = notes.wait_for("RELOADING=1")
            assert any(line.startswith("MONOTONIC_USEC=") for line in reloading)
            notes.wait_for("READY=1")
            health = _http_json(http_port, "/health")
            assert health["listeners"] == ["tcp", "udp"]
            assert health["ttl_seconds"] == 7200
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"<13>1 - h app - - - via the reloaded udp", ("127.0.0.1", udp_port))
            with socket.create_connection(("127.0.0.1", tcp_port), timeout=5) as c:
                c.sendall(b'{"message": "via the rebound tcp"}\n')
            logs = _wait_http(http_port, "/logs?start=0", lambda b: b["count"] == 2)["logs"]
            formats = {r["message"]: r["format"] for r in logs}
            assert formats == {"via the reloaded udp": "rfc5424", "via the rebound tcp": "json"}
            metrics = urllib.request.urlopen(
                f"http://127.0.0.1:{http_port}/metrics", timeout=5
            ).read()
            assert b"collector_config_reloads_total 1.0" in metrics
            assert b"collector_config_reload_failures_total 0.0" in metrics
            info = f'collector_listener_info{{bind="127.0.0.1:{tcp_port}",format="json",listener="tcp",transport="tcp"}} 1.0'
            assert info.encode() in metrics

            proc.send_signal(signal.SIGTERM)
            stopping = True
            notes.wait_for("STOPPING=1")
        finally:
            err = _stop(proc, signalled=stopping)
    assert proc.returncode == 0, err.decode()


_WRAPPER = """\
import fcntl, os, sys
# Put the passed sockets at fds 3, 4, ... as systemd does (sd_listen_fds(3)).
fds = [int(x) for x in sys.argv[1].split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for i, h in enumerate(high):
    os.dup2(h, 3 + i)
    os.close(h)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_FDNAMES"] = sys.argv[2]
os.execv(sys.executable, [sys.executable, "-m", "collector", *sys.argv[3:]])
"""


def test_socket_activation_adopts_inherited_sockets_by_name_and_by_address(tmp_path: Path) -> None:
    http_port, own_port = _free_port(), _free_port(socket.SOCK_DGRAM)
    with (
        _bound(socket.SOCK_DGRAM) as udp,
        _bound(socket.SOCK_STREAM) as tcp,
        _bound(socket.SOCK_STREAM) as stray,
        _notify_socket(abstract=True) as (ns, name),
    ):
        cfg = _write(
            tmp_path / "c.yaml",
            f"""\
            listeners:
              # matched by LISTEN_FDNAMES: the configured bind does not matter
              - {{name: syslog-udp, transport: udp, bind: "127.0.0.1:9"}}
              # matched by transport and address
              - {{name: syslog-tcp, transport: tcp, bind: "127.0.0.1:{_port(tcp)}"}}
              # no inherited socket: binds its own
              - {{name: own-udp, transport: udp, bind: "127.0.0.1:{own_port}"}}
            http: {{bind: "127.0.0.1:{http_port}"}}
            """,
        )
        fds = [udp.fileno(), tcp.fileno(), stray.fileno()]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRAPPER,
                ",".join(map(str, fds)),
                "syslog-udp:collector.socket:collector.socket",
                "run",
                "--config",
                str(cfg),
            ],
            pass_fds=fds,
            env={**os.environ, "NOTIFY_SOCKET": name},
            stderr=subprocess.PIPE,
        )
        try:
            _Notifications(ns, proc).wait_for("READY=1")
            udp_addr, tcp_addr, stray_addr = (
                udp.getsockname(),
                tcp.getsockname(),
                stray.getsockname(),
            )
            # The daemon holds its own copies; ours go, so only the daemon can answer.
            for s in (udp, tcp, stray):
                s.close()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"<13>1 - h app - - - via inherited udp", udp_addr)
                s.sendto(b"<13>1 - h app - - - via own udp", ("127.0.0.1", own_port))
            with socket.create_connection(tcp_addr, timeout=5) as c:
                c.sendall(b"<13>1 - h app - - - via inherited tcp\n")
            logs = _wait_http(http_port, "/logs?start=0", lambda b: b["count"] == 3)["logs"]
            assert sorted(r["message"] for r in logs) == [
                "via inherited tcp",
                "via inherited udp",
                "via own udp",
            ]
            # The stray socket was closed by the daemon: nobody listens there now.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(stray_addr, timeout=5).close()
        finally:
            err = _stop(proc).decode()
    assert proc.returncode == 0, err
    assert f"listener syslog-udp: using inherited socket udp 127.0.0.1:{udp_addr[1]}" in err
    assert f"listener syslog-tcp: using inherited socket tcp 127.0.0.1:{tcp_addr[1]}" in err
    assert "matches no listener by name or address; closed" in err


# --- unit files -------------------------------------------------------------------


def test_unit_files_declare_notify_watchdog_reload_and_hardening() -> None:
    service = (UNITS / "collector.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=30s",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "StateDirectory=collector",
        "RuntimeDirectory=collector",
        "ExecStart=/opt/collector/bin/collector run --config /etc/collector/collector.yaml",
    ):
        assert re.search(rf"^{re.escape(line)}$", service, re.M), line
    assert re.search(r"^MemoryMax=", service, re.M)
    sock = (UNITS / "collector.socket").read_text()
    for line in ("ListenDatagram=514", "ListenStream=514", "ListenStream=5515"):
        assert re.search(rf"^{line}$", sock, re.M), line


def test_the_shipped_systemd_config_binds_what_the_socket_unit_passes() -> None:
    config = load_config(UNITS / "collector.yaml")
    sock = (UNITS / "collector.socket").read_text()
    passed = sorted(
        ("udp" if kind == "Datagram" else "tcp", int(port))
        for kind, port in re.findall(r"^Listen(Datagram|Stream)=(\d+)$", sock, re.M)
    )
    binds = sorted((lc.transport, int(lc.bind.rsplit(":", 1)[1])) for lc in config.listeners)
    assert binds == passed
    assert config.store.persist_dir == "/var/lib/collector"


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (Debian: apt-get install systemd)")
    with tempfile.TemporaryDirectory() as d:
        probe = Path(d) / "probe.service"
        probe.write_text("[Service]\nExecStart=/bin/true\n")
        r = subprocess.run([tool, "verify", str(probe)], capture_output=True, timeout=60)
        if r.returncode != 0 or r.stderr.strip():
            pytest.skip(
                f"systemd-analyze verify does not work here: {r.stderr.decode().strip()[:200]}"
            )
    return tool


def test_unit_files_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    collector = shutil.which("collector", path=str(Path(sys.executable).parent)) or shutil.which(
        "collector"
    )
    if collector is None:
        pytest.skip("the collector console script is not installed")
    # verify checks that ExecStart= exists: point it at this checkout's script.
    for name in ("collector.service", "collector.socket"):
        text = (UNITS / name).read_text().replace("/opt/collector/bin/collector", collector)
        (tmp_path / name).write_text(text)
    r = subprocess.run(
        [tool, "verify", str(tmp_path / "collector.service"), str(tmp_path / "collector.socket")],
        capture_output=True,
        timeout=60,
    )
    # verify exits 0 even for settings it ignores; any output is a problem.
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr.decode().strip() == "", r.stderr.decode()
    assert r.stdout.decode().strip() == "", r.stdout.decode()


def test_systemd_analyze_verify_catches_a_bad_setting(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    (tmp_path / "bad.service").write_text("[Service]\nType=notfy\nExecStart=/bin/true\n")
    r = subprocess.run(
        [tool, "verify", str(tmp_path / "bad.service")], capture_output=True, timeout=60
    )
    assert b"Failed to parse service type" in r.stderr


# --- watchdog and status from the event loop (in-process) -----------------------


def _drain(s: socket.socket) -> list[bytes]:
    s.setblocking(False)
    out = []
    try:
        while True:
            out.append(s.recv(4096))
    except BlockingIOError:
        return out
    finally:
        s.setblocking(True)


async def test_watchdog_pings_come_from_the_event_loop_and_stop_while_it_is_stuck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collector.running import watchdog
    from tests.support import running_daemon, wait_for

    with _notify_socket(abstract=True) as (ns, name):
        monkeypatch.setenv("NOTIFY_SOCKET", name)
        async with running_daemon() as d:
            d.spawn(watchdog(d, 0.02))
            got: list[bytes] = []
            await wait_for(lambda: got.extend(_drain(ns)) or got.count(b"WATCHDOG=1") >= 3)
            _drain(ns)
            # A stuck loop: the blocking call is the point of this test.
            time.sleep(0.3)  # noqa: ASYNC251
            assert _drain(ns) == []
            got.clear()
            await wait_for(lambda: got.extend(_drain(ns)) or b"WATCHDOG=1" in got)


async def test_status_lines_report_records_rate_and_listeners(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import collector.running
    from tests.support import listener_addr, running_daemon, wait_for

    monkeypatch.setattr(collector.running, "STATUS_INTERVAL", 0.05)
    with _notify_socket(abstract=True) as (ns, name):
        monkeypatch.setenv("NOTIFY_SOCKET", name)
        async with running_daemon() as d:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(3):
                    s.sendto(b"<13>1 - h app - - - m%d" % i, listener_addr(d, "udp"))
            await wait_for(lambda: len(d.store) == 3)
            d.spawn(collector.running.status_reporter(d))
            seen: list[bytes] = []
            await wait_for(lambda: seen.extend(_drain(ns)) or seen)
            line = seen[0].decode()
            m = re.fullmatch(r"STATUS=3 records, (\d+\.\d) msg/s, 3 listeners", line)
            assert m is not None, line
