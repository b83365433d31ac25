"""What several benchmarks share: the daemon as a real process on free ports
(`python -m collector run` with a generated config), a blocking HTTP client
for it, and `poll`. Only collector's public API and the standard library:
benchmarks do not lean on the test suite's helpers.

Benchmark scripts import it as `from common import ...` (a script's own
directory is first on sys.path).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_ports(n: int) -> list[int]:
    """`n` distinct ports the kernel just handed out (closed again; used at once)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def poll(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until truthy; RuntimeError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout}s")
        time.sleep(0.01)


class DaemonProcess:
    """`python -m collector run` with one TCP syslog listener named `tcp` and
    the given `store:` section; stderr kept in `workdir/daemon-<n>.log`."""

    def __init__(self, workdir: Path, store: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.store = store or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.tcp_port = 0
        self.http_port = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"daemon-{self.runs}.log"

    def start(self, timeout: float = 15.0) -> None:
        """Start on fresh free ports (again, up to 3 times, if one was taken
        meanwhile: clients on a shared machine draw from the same range)."""
        for attempt in range(3):
            self.runs += 1
            self.tcp_port, self.http_port = free_ports(2)
            cfg = {
                "listeners": [
                    {"name": "tcp", "transport": "tcp", "bind": f"127.0.0.1:{self.tcp_port}"}
                ],
                "http": {"bind": f"127.0.0.1:{self.http_port}"},
                "store": self.store,
            }
            path = self.workdir / "collector.yaml"
            path.write_text(json.dumps(cfg))  # JSON is YAML
            with open(self.log_path, "wb") as err:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "collector", "run", "--config", str(path)],
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            if poll(self._ready, timeout, f"daemon up (log: {self.log_path})") != "taken":
                return
            if attempt == 2:
                raise RuntimeError(f"ports taken three times: {self.log()}")

    def _ready(self) -> bool | str:
        assert self.proc is not None
        if self.proc.poll() is not None:
            if self.proc.returncode == 2 and "address already in use" in self.log().lower():
                return "taken"
            raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log()}")
        try:
            return bool(self.get("/health"))
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get_text(self, target: str) -> str:
        url = f"http://127.0.0.1:{self.http_port}{target}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            return str(resp.read().decode())

    def get(self, target: str) -> Any:
        return json.loads(self.get_text(target))

    def records(self) -> int:
        """The `records` count of GET /health."""
        return int(self.get("/health")["records"])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` and wait for the exit; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code
