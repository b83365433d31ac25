"""Support for fault tests and the soak: the daemon as a real process on free
ports, a blocking HTTP client, and a TCP sender that knows how many of its
bytes the receiving kernel has taken (sent minus the send queue, TIOCOUTQ)."""

from __future__ import annotations

import array
import fcntl
import json
import resource
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.times import format_timestamp

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
    """Poll `condition` until truthy; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.01)


class PortTaken(Exception):
    """Another process bound one of our free ports before the daemon did."""


class DaemonProcess:
    """`python -m collector run` with a generated config; stderr kept in a file."""

    def __init__(
        self,
        workdir: Path,
        store: dict[str, Any] | None = None,
        listeners: tuple[tuple[str, str, str], ...] = (("tcp", "tcp", "syslog"),),
        max_file_bytes: int | None = None,
        http: dict[str, Any] | None = None,
        streams: list[dict[str, Any]] | None = None,
        outputs: list[dict[str, Any]] | None = None,
        parsing: dict[str, Any] | None = None,
    ) -> None:
        self.parsing = parsing or {}
        self.streams = streams or []  # stream listeners (transport redis | kafka), as in YAML
        self.outputs = outputs or []
        self.http = http or {}  # http.* keys beside bind
        self.max_file_bytes = max_file_bytes  # RLIMIT_FSIZE: writes past it fail, like a full disk
        self.workdir = workdir
        self.store = store or {}
        self.listeners = listeners  # (name, transport, format)
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.http_port = 0

    @property
    def tcp_port(self) -> int:
        """The port of the listener named `tcp`."""
        return self.ports["tcp"]

    @property
    def log_path(self) -> Path:
        return self.workdir / f"daemon-{self.runs}.log"

    def start(self, timeout: float = 15.0) -> None:
        """Start on fresh free ports; again (3 tries) if one was taken meanwhile
        (a shared machine's clients draw local ports from the same range)."""
        for attempt in range(3):
            try:
                self._start_once(timeout)
                return
            except PortTaken:
                if attempt == 2:
                    raise

    def _start_once(self, timeout: float) -> None:
        self.runs += 1
        *ports, self.http_port = free_ports(len(self.listeners) + 1)
        self.ports = {name: port for (name, _, _), port in zip(self.listeners, ports, strict=True)}
        cfg = {
            "listeners": [
                {"name": name, "transport": transport, "format": fmt, "bind": f"127.0.0.1:{port}"}
                for (name, transport, fmt), port in zip(self.listeners, ports, strict=True)
            ]
            + self.streams,
            "http": {**self.http, "bind": f"127.0.0.1:{self.http_port}"},
            "store": self.store,
            "outputs": self.outputs,
            "parsing": self.parsing,
        }
        path = self.workdir / "collector.yaml"
        path.write_text(json.dumps(cfg))  # JSON is YAML
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collector", "run", "--config", str(path)],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=err,
                preexec_fn=self._limit_files if self.max_file_bytes is not None else None,
            )
        poll(self._ready, timeout, f"daemon up (log: {self.log_path})")

    def _limit_files(self) -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        limit = self.max_file_bytes or 0
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            if self.proc.returncode == 2 and "address already in use" in self.log():
                raise PortTaken(self.log())
            raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log()}")
        try:
            return bool(self.get("/health"))
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_bytes(self) -> int:
        """The daemon's resident memory now, from /proc."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kib) * 1024

    def health_latency(self) -> float:
        """Seconds a GET /health takes on a fresh connection (the loop's stall)."""
        t0 = time.perf_counter()
        self.get("/health")
        return time.perf_counter() - t0

    def get_text(self, target: str) -> str:
        url = f"http://127.0.0.1:{self.http_port}{target}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            return str(resp.read().decode())

    def get(self, target: str) -> Any:
        return json.loads(self.get_text(target))

    def counted(self, listener: str) -> int:
        """Messages received plus dropped for `listener`, from /metrics."""
        total = 0.0
        for line in self.get_text("/metrics").splitlines():
            if (
                line.startswith(
                    ("collector_messages_received_total{", "collector_messages_dropped_total{")
                )
                and f'listener="{listener}"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def records(self) -> int:
        return int(self.get("/health")["records"])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig` and wait for the exit; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def message(i: int, base_us: int) -> bytes:
    """Message number i: fixed length, event time base + i µs (unique, ordered)."""
    ts = format_timestamp(base_us + i)
    return f"<14>1 {ts} fault-host fault - - - msg {i:010d}\n".encode()


MESSAGE_LEN = len(message(0, 1_700_000_000_000_000))


class Sender(threading.Thread):
    """Writes numbered messages over one TCP connection as fast as the kernel
    takes them, until `limit`, `stop_sending` or an error from the peer."""

    def __init__(self, port: int, base_us: int, limit: int, batch: int = 200) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        # A small send buffer keeps the unsent backlog (and the test) small.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.base_us = base_us
        self.limit = limit
        self.batch = batch
        self.sent_bytes = 0  # bytes the sending kernel accepted (send() returned)
        self.stop_sending = threading.Event()
        self.error: OSError | None = None

    def run(self) -> None:
        i = 0
        try:
            while i < self.limit and not self.stop_sending.is_set():
                n = min(self.batch, self.limit - i)
                view = memoryview(b"".join(message(j, self.base_us) for j in range(i, i + n)))
                while view:
                    sent = self.sock.send(view)
                    self.sent_bytes += sent
                    view = view[sent:]
                i += n
        except OSError as e:
            self.error = e

    def delivered_messages(self) -> int:
        """Messages whole in the bytes the receiving kernel has (lower bound):
        accepted minus what still waits in our send queue."""
        sent = self.sent_bytes
        outq = array.array("i", [0])
        fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, outq)
        return max(0, sent - outq[0]) // MESSAGE_LEN

    def close(self) -> None:
        self.stop_sending.set()
        if self.ident is not None:  # started
            self.join(15)
        self.sock.close()


def stored_numbers(daemon: DaemonProcess, base_us: int) -> list[int]:
    """Every stored message number, in time order, paging GET /logs by start."""
    out: list[int] = []
    start = base_us
    while True:
        page = daemon.get(f"/logs?start={format_timestamp(start)}&limit=10000")["logs"]
        for rec in page:
            if rec["fields"].get("truncated"):
                continue  # a frame cut at the drain point: kept, flagged, not a number
            out.append(int(rec["message"].rsplit(" ", 1)[1]))
        if len(page) < 10000:
            return out
        start = base_us + out[-1] + 1


def now_us() -> int:
    return time.time_ns() // 1000


def wal_bytes(persist_dir: Path) -> int:
    return sum(p.stat().st_size for p in persist_dir.glob("wal-*.log"))
