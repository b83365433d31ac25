"""Fuzzing across the edges: arbitrary bytes to every listener and to the HTTP
port of one real daemon process; after each example it still answers
/health, and whatever had content was counted (received or dropped), never
lost silently. Parsers and framers have their own property tests."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults_support import DaemonProcess, poll

pytestmark = pytest.mark.slow
LISTENERS = (("tcp", "tcp", "syslog"), ("json", "tcp", "json"), ("udp", "udp", "syslog"))
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    d = DaemonProcess(workdir, listeners=LISTENERS)
    d.start()
    yield d
    assert d.stop() == 0, d.log()
    assert "Traceback" not in d.log()


def has_content(data: bytes) -> bool:
    return bool(data.strip(b"\n\r\x00"))


def send_tcp(port: int, data: bytes, how: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if how == "reset":  # RST instead of FIN: an abrupt disconnect
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.sendall(data)
        if how == "half-close":
            s.shutdown(socket.SHUT_WR)


def assert_healthy(daemon: DaemonProcess) -> None:
    assert daemon.proc is not None
    assert daemon.proc.poll() is None, daemon.log()
    assert daemon.get("/health")["status"] == "ok"


line_ish = st.lists(
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from([b"\n", b"\r\n", b"\x00", b"<13>", b"<999>1 ", b"12 ", b"99999999999 "]),
        st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.builds(lambda n: b"{" * n + b'"a":' + b"[" * n, st.integers(0, 2000)),
    ),
    max_size=12,
).map(b"".join)


@FUZZ
@given(
    data=line_ish,
    listener=st.sampled_from(["tcp", "json"]),
    how=st.sampled_from(["close", "half-close", "reset"]),
)
def test_arbitrary_bytes_to_a_tcp_listener_are_counted_and_the_daemon_answers(
    daemon: DaemonProcess, data: bytes, listener: str, how: str
) -> None:
    before = daemon.counted(listener)
    send_tcp(daemon.ports[listener], data, how)
    if has_content(data) and how != "reset":
        poll(lambda: daemon.counted(listener) > before, 5, f"{listener} counted {data[:60]!r}")
    assert_healthy(daemon)


@FUZZ
@given(data=st.binary(min_size=1, max_size=2000))
def test_an_arbitrary_datagram_is_one_message_and_the_daemon_answers(
    daemon: DaemonProcess, data: bytes
) -> None:
    before = daemon.counted("udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, ("127.0.0.1", daemon.ports["udp"]))
    if has_content(data):
        poll(lambda: daemon.counted("udp") == before + 1, 5, f"udp counted {data[:60]!r}")
    assert_healthy(daemon)


def read_answer(s: socket.socket) -> bytes:
    s.settimeout(5)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


@FUZZ
@given(data=st.binary(max_size=3000))
def test_arbitrary_bytes_to_the_http_port_never_stop_it(daemon: DaemonProcess, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", daemon.http_port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        answer = read_answer(s)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
    assert b"Traceback" not in answer
    assert_healthy(daemon)


token = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="?&#% "), max_size=20
)
request = st.builds(
    lambda method, path, params, headers, body: (
        (
            f"{method} {path}{'?' if params else ''}{'&'.join(params)} HTTP/1.1\r\n"
            f"Host: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers)
            + "\r\n"
        ).encode("utf-8", "surrogatepass")
        + body
    ),
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "BREW"]),
    path=st.sampled_from(["/", "/logs", "/logs/1-1", "/health", "/metrics", "/stats", "/tail"])
    | token.map(lambda t: "/" + t),
    params=st.lists(
        st.builds(
            "{}={}".format,
            st.sampled_from(["start", "end", "limit", "q", "level", "cursor", "order", "x"]),
            token,
        ),
        max_size=4,
    ),
    headers=st.lists(st.tuples(token.filter(bool), token), max_size=4),
    body=st.binary(max_size=500),
)


@FUZZ
@given(req=request)
def test_arbitrary_requests_get_a_json_or_http_answer_and_the_daemon_answers(
    daemon: DaemonProcess, req: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", daemon.http_port), timeout=5) as s:
        s.sendall(req)
        answer = read_answer(s)
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    status = int(answer[9:12])
    assert status < 500, answer[:500]
    assert b"Traceback" not in answer
    assert_healthy(daemon)
