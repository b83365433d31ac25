"""The daemon as a process: signals, reload, a bad request never stopping it."""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.faults_support import DaemonProcess, free_ports, poll

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
