"""Hostile clients against the daemon as a real process: memory read from
/proc, stalls measured as /health latency on a second connection. Each test
reproduces a way one client could stall the loop or grow the process."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults_support import REPO, DaemonProcess, free_ports, poll

pytestmark = pytest.mark.slow
MiB = 1024 * 1024
STALL = 1.0  # seconds: a /health slower than this means the loop was blocked


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path)
    d.start()
    try:
        yield d
    finally:
        d.kill()


def post_ndjson(d: DaemonProcess, objs: list[dict[str, object]]) -> None:
    body = b"\n".join(json.dumps(o).encode() for o in objs)
    with socket.create_connection(("127.0.0.1", d.http_port), timeout=60) as s:
        s.sendall(
            b"POST /logs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Type: application/x-ndjson\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]


def test_pipelined_requests_from_a_client_that_does_not_read_neither_stall_nor_grow_it(
    daemon: DaemonProcess,
) -> None:
    post_ndjson(daemon, [{"message": f"record {i} " + "x" * 200, "host": "h"} for i in range(5000)])
    rss0 = daemon.rss_bytes()
    latencies = [daemon.health_latency()]
    hostile = socket.create_connection(("127.0.0.1", daemon.http_port))
    hostile.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        # 200 pipelined pages of ~1.3 MB each, never read: ~260 MB of answers.
        hostile.sendall(b"GET /logs?limit=10000 HTTP/1.1\r\nHost: t\r\n\r\n" * 200)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            latencies.append(daemon.health_latency())
        rss = daemon.rss_bytes()
    finally:
        hostile.close()
    assert max(latencies) < STALL, f"/health took {max(latencies):.2f}s"
    assert rss - rss0 < 40 * MiB, f"RSS grew {(rss - rss0) / MiB:.0f} MiB"


def test_abandoned_request_bodies_are_freed_when_their_clients_leave(
    daemon: DaemonProcess,
) -> None:
    rss0 = daemon.rss_bytes()
    head = b"POST /logs HTTP/1.1\r\nHost: t\r\nContent-Length: 16000000\r\n\r\n"
    piece = b"x" * MiB
    for _ in range(3):
        conns = [socket.create_connection(("127.0.0.1", daemon.http_port)) for _ in range(10)]
        for c in conns:
            c.sendall(head)
            for _ in range(8):
                c.sendall(piece)
        # Everything sent has been read (the daemon keeps up), then they vanish.
        poll(lambda: daemon.health_latency() < STALL, 30, "daemon answering")
        for c in conns:
            c.close()
    poll(
        lambda: daemon.rss_bytes() - rss0 < 60 * MiB,
        20,
        "memory back after 240 MiB of abandoned bodies",
    )


def test_an_unauthenticated_body_is_refused_at_its_head_with_no_continue(
    tmp_path: Path,
) -> None:
    d = DaemonProcess(tmp_path, http={"auth_token": "s3cret", "max_body": 1000})
    d.start()
    try:
        with socket.create_connection(("127.0.0.1", d.http_port), timeout=10) as s:
            s.sendall(
                b"POST /logs HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                b"Content-Length: 16000000\r\n\r\n"
            )
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        # 401 before 413: the client can fix its token, not its body size.
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:100]
        assert b"100 Continue" not in answer
        assert b"Connection: close" in answer
    finally:
        d.kill()


def run_config(tmp_path: Path, cfg: dict[str, object]) -> tuple[int, str]:
    """`collector run` on `cfg` until it exits (expected quickly): code and stderr."""
    path = tmp_path / f"cfg-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(json.dumps(cfg))
    path.chmod(0o644)
    done = subprocess.run(
        [sys.executable, "-m", "collector", "run", "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode, done.stderr.decode(errors="replace")


def test_a_second_daemon_on_one_persist_dir_exits_2_naming_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = DaemonProcess(tmp_path, {"persist_dir": str(state)})
    first.start()
    try:
        port = free_ports(1)[0]
        cfg = {"listeners": [], "http": {"bind": f"127.0.0.1:{port}"}}
        code, err = run_config(tmp_path, {**cfg, "store": {"persist_dir": str(state)}})
        assert code == 2, err
        assert f"store.persist_dir: {state} is in use by another collector" in err
        assert first.health_latency() < STALL  # the first one is untouched
    finally:
        assert first.stop() == 0


def test_state_files_are_private_and_an_open_directory_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    d = DaemonProcess(tmp_path, {"persist_dir": str(state)})
    d.start()
    try:
        post_ndjson(d, [{"message": "kept"}])
    finally:
        assert d.stop() == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir()}
    assert "snapshot.bin" in files
    assert set(files.values()) == {0o600}, files


def can_mount_in_a_namespace() -> bool:
    probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o ro tmpfs /mnt"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not can_mount_in_a_namespace(), reason="needs unshare -rm (user namespaces)")
def test_a_read_only_persist_dir_exits_2_naming_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = tmp_path / "ro.yaml"
    cfg = {"listeners": [], "http": {"bind": "127.0.0.1:0"}, "store": {"persist_dir": str(state)}}
    path.write_text(json.dumps(cfg))
    # A read-only file system at the path, in a private mount namespace.
    script = (
        f'mount -t tmpfs -o ro tmpfs "{state}" && '
        f'exec "{sys.executable}" -m collector run --config "{path}"'
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    )
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 2, err
    assert f"store.persist_dir: cannot use {state}" in err


def test_an_oversized_octet_counted_frame_is_skipped_exactly_and_the_connection_goes_on(
    daemon: DaemonProcess,
) -> None:
    big = b"<14>1 - big app - - - " + b"x" * (2 * MiB)
    normal = b"".join(
        b"%d %s" % (len(m), m) for m in (b"<14>1 - h app - - - after %04d" % i for i in range(1000))
    )
    with socket.create_connection(("127.0.0.1", daemon.tcp_port), timeout=30) as s:
        s.sendall(b"%d %s" % (len(big), big) + normal)  # no LF anywhere
        poll(lambda: daemon.records() == 1001, 30, "the big frame (cut) and the 1000 after it")
    page = daemon.get("/logs?host=big")["logs"]
    assert len(page) == 1
    assert page[0]["fields"] == {"truncated": True}
    assert len(page[0]["message"]) < 70_000


def test_a_live_stream_socket_at_a_unix_listener_path_is_a_start_up_error(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(path))
    live.listen()
    try:
        port = free_ports(1)[0]
        cfg = {
            "listeners": [{"name": "devlog", "transport": "unix", "bind": str(path)}],
            "http": {"bind": f"127.0.0.1:{port}"},
        }
        code, err = run_config(tmp_path, cfg)
        assert code == 2, err
        assert "listener devlog" in err
        assert f"{path} is a live stream socket" in err
        assert path.exists()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))  # still the other program's socket
    finally:
        live.close()


def get_raw(d: DaemonProcess, target: str) -> bytes:
    """The body of a GET, however it is framed (urllib undoes chunking)."""
    url = f"http://127.0.0.1:{d.http_port}{target}"
    with urllib.request.urlopen(url, timeout=60) as resp:
        return bytes(resp.read())


def test_a_page_of_large_records_is_cut_by_bytes_and_its_cursor_continues_it(
    daemon: DaemonProcess,
) -> None:
    big = "y" * 60_000
    for part in range(4):  # 400 records of 60 kB: 24 MB of JSON in one page before
        post_ndjson(daemon, [{"message": f"{part * 100 + i:04d} {big}"} for i in range(100)])
    seen: list[str] = []
    target = "/logs?limit=10000"
    pages = 0
    while True:
        body = get_raw(daemon, target)
        assert len(body) <= 16 * MiB + 70_000
        page = json.loads(body)
        assert page["count"] == len(page["logs"])
        seen += [r["message"][:4] for r in page["logs"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        target = f"/logs?limit=10000&cursor={page['next_cursor']}"
    assert pages >= 2
    assert seen == [f"{i:04d}" for i in range(400)]  # every record once, in order


def test_tail_replays_to_clients_that_do_not_read_stay_bounded(daemon: DaemonProcess) -> None:
    big = "z" * 60_000
    for part in range(4):  # 400 records of 60 kB
        post_ndjson(daemon, [{"message": f"{part * 100 + i} {big}"} for i in range(100)])
    rss0 = daemon.rss_bytes()
    clients = []
    for _ in range(10):
        c = socket.create_connection(("127.0.0.1", daemon.http_port))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.sendall(b"GET /tail?start=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        clients.append(c)
    try:
        # The replays run until each client's socket is full, then wait.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            assert daemon.health_latency() < STALL
        grown = daemon.rss_bytes() - rss0
    finally:
        for c in clients:
            c.close()
    assert grown < 40 * MiB, f"RSS grew {grown / MiB:.0f} MiB for 10 replays"


def test_stats_by_a_field_of_many_values_is_bounded(daemon: DaemonProcess) -> None:
    post_ndjson(daemon, [{"message": "m", "host": f"h{i:05d}"} for i in range(5000)])
    post_ndjson(daemon, [{"message": "m", "host": "busy"} for _ in range(10)])
    answer = daemon.get("/stats?by=host")
    assert len(answer["by"]["host"]) == 1001  # the 1000 most frequent, then "others"
    assert next(iter(answer["by"]["host"])) == "busy"
    assert answer["by"]["host"]["others"] == 4001
    assert answer["total"] == 5010


def post_watching_health(d: DaemonProcess, body: bytes) -> tuple[bytes, list[float]]:
    """POST NDJSON `body`; the answer, and /health latencies measured meanwhile."""
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", d.http_port), timeout=120) as s:
        s.sendall(
            b"POST /logs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Type: application/x-ndjson\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        s.settimeout(0.05)
        answer = b""
        while True:
            latencies.append(d.health_latency())
            try:
                chunk = s.recv(1 << 20)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
    return answer, latencies


def test_a_post_of_many_small_objects_is_sliced_and_a_million_is_413(
    daemon: DaemonProcess,
) -> None:
    answer, latencies = post_watching_health(daemon, b'{"m":1}\n' * 100_000)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    assert daemon.records() == 100_000
    assert max(latencies) < STALL, f"/health took {max(latencies):.2f}s during the POST"
    print(f"POST of 100k objects: worst /health {max(latencies) * 1000:.0f} ms")
    rss0 = daemon.rss_bytes()
    answer, latencies = post_watching_health(daemon, b"{}\n" * 1_000_000)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"body: more than 100000 items per request" in answer
    assert max(latencies) < STALL
    assert daemon.records() == 100_000
    assert daemon.rss_bytes() - rss0 < 64 * MiB


def exchange(d: DaemonProcess, raw: bytes) -> bytes:
    """Send raw bytes on a fresh connection; everything the daemon answers
    until it closes (or 3 s pass)."""
    with socket.create_connection(("127.0.0.1", d.http_port), timeout=3) as s:
        s.sendall(raw)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /health HTTP/2.0\r\nHost: t\r\n\r\n", b"400"),
        (b"GET /health\r\n\r\n", b"400"),
        (b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: t\r\n\r\n", b"405"),
        (
            b"POST /logs HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n",
            b"400",
        ),
    ],
    ids=["HTTP/2.0", "no version", "CONNECT", "TE gzip, chunked"],
)
def test_requests_outside_http_1_are_refused_as_json_and_closed(
    daemon: DaemonProcess, raw: bytes, status: bytes
) -> None:
    answer = exchange(daemon, raw)
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert json.loads(body)["error"]
    assert daemon.records() == 0


def test_head_tail_answers_the_headers_get_would(daemon: DaemonProcess) -> None:
    def headers(method: bytes) -> set[bytes]:
        answer = exchange(
            daemon, method + b" /tail HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        head = answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
        return {h for h in head[1:] if not h.startswith((b"Date:", b"Connection:"))} | {head[0]}

    assert headers(b"HEAD") == headers(b"GET")
