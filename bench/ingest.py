"""Ingest benchmark: a real daemon subprocess fed over loopback.

Reports end-to-end accepted messages/s (counted through the HTTP API's
/health `records`, i.e. parsed and queryable), loss %, daemon CPU us/msg and
peak RSS. TCP load is octet-counted ~250 B RFC 5424 (syslog-ng's `loggen`
when found, else a Python sender); UDP load is paced. `--vs-peers` runs the
same TCP load against syslog-ng and rsyslog, interleaved, and prints ratios.

    .venv/bin/python bench/ingest.py [--quick] [--vs-peers] [--vs-pure] [--tcp-only] [--noop-parse]
    .venv/bin/python bench/ingest.py --pauses   # GC: CPU us/msg, worst loop stall
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PEERS = OUT / "peers"  # syslog-ng-core unpacked here (see find_loggen)
MSG_SIZE = 250
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- tools ------------------------------------------------------------------------


def _peer_root() -> Path | None:
    """A directory holding an unpacked syslog-ng-core (usr/bin/loggen)."""
    root = PEERS / "root"
    return root if (root / "usr/bin/loggen").exists() else None


def _peer_env(root: Path) -> dict[str, str]:
    libs = [
        root / "usr/lib/syslog-ng",
        root / "usr/lib/x86_64-linux-gnu",
        root / "lib/x86_64-linux-gnu",
    ]
    return {
        **os.environ,
        "LD_LIBRARY_PATH": ":".join(str(p) for p in libs),
        "SYSLOGNG_PREFIX": str(root / "usr"),
    }


PEER_DEBS = ["syslog-ng-core", "libivykis0", "libpcre3", "libnet1", "libwrap0"]


def fetch_peers() -> None:
    """Unpack syslog-ng-core (for loggen and syslog-ng) into bench/out/peers
    without installing it: it conflicts with rsyslog as a Debian package."""
    PEERS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *PEER_DEBS], cwd=PEERS, check=True)
    for deb in PEERS.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(PEERS / "root")], check=True)


def find_loggen() -> tuple[list[str], dict[str, str]] | None:
    """loggen on PATH, or from a syslog-ng-core .deb unpacked into bench/out/peers:
    apt-get download syslog-ng-core libivykis0 libpcre3; dpkg -x each into bench/out/peers/root."""
    path = shutil.which("loggen")
    if path:
        return [path], dict(os.environ)
    root = _peer_root()
    if root is None:
        return None
    return [str(root / "usr/bin/loggen")], _peer_env(root)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- targets: something that receives and a way to count what it accepted ----


class Target:
    name = "?"
    proc: subprocess.Popen[bytes]
    tcp_port: int
    udp_port: int

    def start(self, work: Path) -> None:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def final_count(self) -> int | None:
        """After stop(): what the target holds in the end (None: unknown)."""
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Collector(Target):
    def __init__(
        self,
        noop_parse: bool = False,
        untuned_gc: bool = False,
        pure: bool = False,
        recv_buffer: str | None = None,
    ) -> None:
        self.recv_buffer = recv_buffer  # None: the default config's
        self.noop = noop_parse
        self.untuned = untuned_gc
        self.pure = pure
        self.name = "collector(noop-parse)" if noop_parse else "collector"
        if untuned_gc:
            self.name = "collector(CPython GC)"
        if pure:
            self.name = "collector(pure)"

    def start(self, work: Path) -> None:
        self.tcp_port, self.udp_port, self.http_port = (
            free_port(),
            free_port(socket.SOCK_DGRAM),
            free_port(),
        )
        cfg = work / "collector.yaml"
        rcvbuf = f", recv_buffer: {self.recv_buffer}" if self.recv_buffer else ""
        cfg.write_text(
            textwrap.dedent(
                f"""\
                listeners:
                  - {{name: tcp, transport: tcp, bind: "127.0.0.1:{self.tcp_port}"}}
                  - {{name: udp, transport: udp, bind: "127.0.0.1:{self.udp_port}"{rcvbuf}}}
                http: {{bind: "127.0.0.1:{self.http_port}"}}
                store: {{ttl: 1h, max_records: 50000000, max_memory: 16GiB}}
                """
            )
        )
        if self.noop:
            cmd = [sys.executable, __file__, "--serve-noop", str(cfg)]
        elif self.untuned:
            cmd = [sys.executable, __file__, "--serve-untuned", str(cfg)]
        else:
            cmd = [sys.executable, "-m", "collector", "run", "--config", str(cfg)]
        self.log = open(work / "collector.log", "wb")  # noqa: SIM115
        env = {**os.environ, "COLLECTOR_PURE": "1"} if self.pure else None
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=self.log, stdout=self.log, env=env)
        wait_port(self.http_port, self.proc)

    def count(self) -> int:
        url = f"http://127.0.0.1:{self.http_port}/health"
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(json.load(r)["records"])

    def stop(self) -> None:
        super().stop()
        self.log.close()

    def final_count(self) -> int | None:
        # The daemon's last line: "stopped with N records in store".
        text = Path(self.log.name).read_text(errors="replace")
        found = [ln for ln in text.splitlines() if "stopped with" in ln]
        return int(found[-1].split("stopped with ")[1].split()[0]) if found else None


class _FileCounter:
    """Counts lines appended to a file, reading only what is new."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def count(self) -> int:
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as f:
            f.seek(self.offset)
            while chunk := f.read(1 << 20):
                self.lines += chunk.count(b"\n")
                self.offset += len(chunk)
        return self.lines


class SyslogNg(Target):
    name = "syslog-ng"

    def start(self, work: Path) -> None:
        root = _peer_root()
        assert root is not None
        self.tcp_port, self.udp_port = free_port(), free_port(socket.SOCK_DGRAM)
        out = work / "syslog-ng.out"
        out.unlink(missing_ok=True)
        cfg = work / "syslog-ng.conf"
        cfg.write_text(
            textwrap.dedent(
                f"""\
                @version: 3.38
                options {{ threaded(yes); use-dns(no); stats-freq(0); keep-hostname(yes); }};
                source s_net {{
                  syslog(ip(127.0.0.1) port({self.tcp_port}) transport("tcp") max-connections(100) log-iw-size(100000));
                  syslog(ip(127.0.0.1) port({self.udp_port}) transport("udp") so-rcvbuf(33554432));
                }};
                destination d_file {{ file("{out}"); }};
                log {{ source(s_net); destination(d_file); }};
                """
            )
        )
        binary = root / "usr/sbin/syslog-ng"
        cmd = [
            str(binary), "-F", "--no-caps", "-f", str(cfg),
            f"--module-path={root}/usr/lib/syslog-ng/3.38",
            "-p", str(work / "sng.pid"), "-R", str(work / "sng.persist"),
            "-c", str(work / "sng.ctl"),
        ]  # fmt: skip
        self.log = open(work / "syslog-ng.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=_peer_env(root), stderr=self.log, stdout=self.log)
        wait_port(self.tcp_port, self.proc)
        self.counter = _FileCounter(out)

    def count(self) -> int:
        return self.counter.count()

    def stop(self) -> None:
        super().stop()
        self.log.close()


class Rsyslog(Target):
    name = "rsyslog"

    def start(self, work: Path) -> None:
        self.tcp_port, self.udp_port = free_port(), free_port(socket.SOCK_DGRAM)
        out = work / "rsyslog.out"
        out.unlink(missing_ok=True)
        state = work / "rsyslog-state"
        state.mkdir(exist_ok=True)
        cfg = work / "rsyslog.conf"
        cfg.write_text(
            textwrap.dedent(
                f"""\
                global(workDirectory="{state}")
                module(load="imtcp")
                module(load="imudp")
                input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}")
                input(type="imudp" address="127.0.0.1" port="{self.udp_port}" rcvbufSize="32m")
                *.* action(type="omfile" file="{out}")
                """
            )
        )
        cmd = [
            shutil.which("rsyslogd") or "rsyslogd",
            "-n",
            "-f",
            str(cfg),
            "-i",
            str(work / "rs.pid"),
        ]
        self.log = open(work / "rsyslog.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stderr=self.log, stdout=self.log)
        wait_port(self.tcp_port, self.proc)
        self.counter = _FileCounter(out)

    def count(self) -> int:
        return self.counter.count()

    def final_count(self) -> int | None:
        return self.counter.count()  # omfile flushed at stop

    def stop(self) -> None:
        super().stop()
        self.log.close()


# -- loads ------------------------------------------------------------------------


def _message(i: int) -> bytes:
    # Stamped now: a fixed date would age out of the 1 h TTL and send every
    # record through the clock-skew rule (restamped, original time kept).
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()).encode()
    head = b"<38>1 " + now + b".000000Z bench-host benchapp 1234 ID47 - "
    body = b"seq %010d " % i
    return head + body + b"x" * (MSG_SIZE - len(head) - len(body))


def tcp_load(
    port: int, n: int, loggen: tuple[list[str], dict[str, str]] | None
) -> subprocess.Popen[bytes]:
    """n octet-counted ~250 B RFC 5424 messages on one connection, as fast as possible."""
    if loggen is not None:
        cmd, env = loggen
        # -I: loggen stops after 10 s by default, whatever -n says: a receiver
        # slower than n/10 msg/s was offered less than n (it showed as loss).
        args = ["-i", "-S", "-P", "-s", str(MSG_SIZE), "-r", "100000000", "-n", str(n), "-Q"]
        args += ["-I", "3600"]
        return subprocess.Popen(
            [*cmd, *args, "127.0.0.1", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return subprocess.Popen([sys.executable, __file__, "--send-tcp", str(port), str(n)])


def c_udp_sender() -> Path | None:
    """bench/udp_sender.c built into bench/out (gcc), or None without gcc."""
    src = ROOT / "bench" / "udp_sender.c"
    exe = OUT / "udp_sender"
    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return exe
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return None
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run([gcc, "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def udp_load(
    port: int, rate: int, seconds: float, loggen: tuple[list[str], dict[str, str]] | None
) -> subprocess.Popen[bytes]:
    """A paced stream of ~250 B RFC 5424 datagrams; the sender prints how many
    it sent. bench/udp_sender.c (sendmmsg, paced in ~1 ms slices) when gcc is
    there, else loggen, else a Python sender."""
    exe = c_udp_sender()
    if exe is not None:
        args = ["127.0.0.1", str(port), str(rate), str(seconds), str(MSG_SIZE)]
        return subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE)
    if loggen is not None:
        cmd, env = loggen
        n = int(rate * seconds)
        args = ["-i", "-D", "-P", "-F", "-s", str(MSG_SIZE), "-r", str(rate), "-n", str(n)]
        return subprocess.Popen(
            [*cmd, *args, "127.0.0.1", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    return subprocess.Popen(
        [sys.executable, __file__, "--send-udp", str(port), str(rate), str(seconds)],
        stdout=subprocess.PIPE,
    )


def send_tcp(port: int, n: int) -> None:
    """Python fallback sender: pre-built octet-counted frames, sendall in chunks."""
    frames = [b"%d %s" % (len(m), m) for m in (_message(i) for i in range(min(n, 10000)))]
    block = b"".join(frames)
    with socket.create_connection(("127.0.0.1", port)) as s:
        sent = 0
        while sent < n:
            k = min(len(frames), n - sent)
            s.sendall(block if k == len(frames) else b"".join(frames[:k]))
            sent += k
    print(f"count={n}")


async def send_udp(port: int, rate: int, seconds: float) -> None:
    """Python fallback sender: asyncio-dgram, paced in 1 ms slices."""
    import asyncio_dgram

    stream = await asyncio_dgram.connect(("127.0.0.1", port))
    msgs = [_message(i) for i in range(1000)]
    total = int(rate * seconds)
    t0 = time.perf_counter()
    sent = 0
    try:
        while sent < total:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            while sent < due:
                await stream.send(msgs[sent % 1000])
                sent += 1
            await asyncio.sleep(0.001)
    finally:
        stream.close()
    print(f"count={sent}")


# -- measuring ----------------------------------------------------------------------


@dataclass
class Result:
    target: str
    load: str
    offered: int
    accepted: int
    seconds: float
    cpu_us_per_msg: float
    rss_mib: float

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    @property
    def loss(self) -> float:
        return 100.0 * (self.offered - self.accepted) / self.offered if self.offered else 0.0


def _drain_count(
    target: Target, sender: subprocess.Popen[bytes], expected: int, settle: float
) -> tuple[int, float]:
    """Poll the target's count until the sender is done and the count has
    stopped moving for `settle` s (or reached `expected`); returns the count
    and the time of its last change."""
    last, last_change = 0, time.perf_counter()
    while True:
        time.sleep(0.05)
        n = target.count()
        now = time.perf_counter()
        if n != last:
            last, last_change = n, now
        if sender.poll() is not None and (n >= expected or now - last_change > settle):
            return last, last_change


def _sent_count(sender: subprocess.Popen[bytes], default: int) -> int:
    if sender.stdout is None:
        return default
    text = sender.stdout.read().decode(errors="replace")
    counts = [t for t in text.replace(",", " ").split() if t.startswith("count=")]
    return int(counts[-1].split("=")[1]) if counts else default  # the last is the total


def run_one(
    target: Target, kind: str, work: Path, *, n: int = 0, rate: int = 0, seconds: float = 0.0
) -> Result:
    loggen = find_loggen()
    target.start(work)
    try:
        pid = target.proc.pid
        cpu0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        if kind == "tcp":
            sender = tcp_load(target.tcp_port, n, loggen)
            expected = n
            label = f"tcp {n // 1000}k x{MSG_SIZE}B"
        else:
            sender = udp_load(target.udp_port, rate, seconds, loggen)
            expected = int(rate * seconds)
            label = f"udp {rate // 1000}k/s x{seconds:g}s"
        # TCP loses nothing in flight: a receiver still working through its
        # backlog on a loaded machine may show no progress for a while, which
        # a short settle would misreport as loss (the rate uses the last
        # change, so waiting longer does not lower it).
        settle = 6.0 if kind == "tcp" else 1.5
        accepted, t_end = _drain_count(target, sender, expected, settle=settle)
        offered = _sent_count(sender, expected) if kind == "udp" else n
        cpu = cpu_seconds(pid) - cpu0
        rss = peak_rss_mib(pid)
        # For a paced load the rate is the offered one; the clock starts at send.
        elapsed = max(t_end - t0, 1e-9) if kind == "tcp" else seconds
        result = Result(
            target.name, label, offered, accepted, elapsed, 1e6 * cpu / max(accepted, 1), rss
        )
    finally:
        target.stop()
    if kind == "udp":
        # UDP loss is what never got stored: a target still catching up when
        # its count stood still for `settle` (a stalled loop, a starved
        # process) stores the rest before it stops. The late ones are said.
        final = target.final_count()
        if final is not None and final > result.accepted:
            print(f"  ({target.name}: {final - result.accepted:,} stored after the count settled)")
            result.accepted = min(final, result.offered)
    return result


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summarise(results: list[Result]) -> dict[tuple[str, str], dict[str, float]]:
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.target, r.load), []).append(r)
    out = {}
    rows = [["target", "load", "runs", "msg/s (median)", "loss %", "CPU us/msg", "peak RSS MiB"]]
    for (target, load), rs in groups.items():
        med = {
            "rate": statistics.median(r.rate for r in rs),
            "loss": statistics.median(r.loss for r in rs),
            "cpu": statistics.median(r.cpu_us_per_msg for r in rs),
            "rss": max(r.rss_mib for r in rs),
        }
        out[(target, load)] = med
        rows.append(
            [
                target,
                load,
                str(len(rs)),
                f"{med['rate']:,.0f}",
                f"{med['loss']:.3f}",
                f"{med['cpu']:.1f}",
                f"{med['rss']:.0f}",
            ]
        )
    print(_table(rows))
    return out


def udp_ramp(
    rates: list[int], rounds: int, seconds: float, makers: list[Callable[[], Target]]
) -> None:
    """Every target at every offered rate, `rounds` interleaved rounds; the
    medians, and each target's highest rate with a median loss < 0.1 %."""
    sender = c_udp_sender()
    print(f"UDP sender: {'bench/udp_sender.c (sendmmsg, paced)' if sender else 'loggen/python'}")
    print("load average at start:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    results: dict[tuple[str, int], list[Result]] = {}
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        work = Path(tmp)
        for i in range(rounds):
            for rate in rates:
                for make in makers:
                    r = run_one(make(), "udp", work, rate=rate, seconds=seconds)
                    results.setdefault((r.target, rate), []).append(r)
                    print(
                        f"  round {i + 1}: {r.target:18s} {rate:>7,}/s: accepted "
                        f"{r.accepted:,}/{r.offered:,}, loss {r.loss:.3f}%, "
                        f"{r.cpu_us_per_msg:.2f} us/msg, load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
    print("load average at end:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    rows = [["target", "offered msg/s", "runs", "loss % (median)", "CPU us/msg", "peak RSS MiB"]]
    ceilings: dict[str, int] = {}
    for (target, rate), rs in results.items():
        loss = statistics.median(r.loss for r in rs)
        if loss < 0.1:
            ceilings[target] = max(ceilings.get(target, 0), rate)
        else:
            ceilings.setdefault(target, 0)
        rows.append(
            [
                target,
                f"{rate:,}",
                str(len(rs)),
                f"{loss:.3f}",
                f"{statistics.median(r.cpu_us_per_msg for r in rs):.2f}",
                f"{max(r.rss_mib for r in rs):.0f}",
            ]
        )
    print(f"UDP, {MSG_SIZE} B datagrams, {seconds:g} s per run:")
    print(_table(rows))
    for target, ceiling in ceilings.items():
        said = f"{ceiling:,} msg/s" if ceiling else "none"
        print(f"{target}: highest offered rate with < 0.1% loss (median): {said}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="~10 s smoke run")
    ap.add_argument(
        "--vs-peers",
        action="store_true",
        help="same TCP load against syslog-ng and rsyslog, interleaved",
    )
    ap.add_argument(
        "--noop-parse",
        action="store_true",
        help="also run the daemon with a no-op parser (listener path cost)",
    )
    ap.add_argument(
        "--untuned-gc",
        action="store_true",
        help="also run the daemon without daemon.tune_gc (CPython's GC settings)",
    )
    ap.add_argument(
        "--fetch-peers",
        action="store_true",
        help="apt-get download + dpkg -x syslog-ng-core into bench/out/peers first",
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="only the in-process CPU breakdown: listener, parse, store, GC",
    )
    ap.add_argument(
        "--udp-paths",
        action="store_true",
        help="only compare UDP receive paths (transport, add_reader, asyncio-dgram) under uvloop and asyncio",
    )
    ap.add_argument(
        "--pauses",
        action="store_true",
        help="only the GC comparison: CPU us/msg and worst event-loop stall",
    )
    ap.add_argument(
        "--vs-pure",
        action="store_true",
        help="also run the daemon with COLLECTOR_PURE=1 (the pure-Python parser), interleaved",
    )
    ap.add_argument("--tcp-only", action="store_true", help="skip the UDP loads")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--tcp-messages", type=int, default=None)
    ap.add_argument("--udp-rate", type=int, default=100_000)
    ap.add_argument("--udp-seconds", type=float, default=None)
    ap.add_argument(
        "--udp-recv-buffer",
        default=None,
        help="the collector's recv_buffer for its UDP listener (default: the default config's)",
    )
    ap.add_argument(
        "--udp-ramp",
        default=None,
        help="comma list of rates (msg/s): only UDP, each rate against the collector "
        "(+ --vs-pure, + --vs-peers: rsyslog), --runs interleaved rounds; the <0.1%% loss ceiling",
    )
    args = ap.parse_args(argv)
    if args.fetch_peers:
        fetch_peers()
    runs = args.runs or (1 if args.quick else 3)
    n_tcp = args.tcp_messages or (50_000 if args.quick else 300_000)
    udp_s = args.udp_seconds or (1.0 if args.quick else 3.0)
    ramp = [int(x) for x in (args.udp_ramp or "").split(",") if x]

    if args.udp_paths:
        udp_paths(args.udp_rate, udp_s, runs)
        return 0
    if args.pauses:
        pauses(args.tcp_messages or (100_000 if args.quick else 1_000_000), runs)
        return 0
    if args.breakdown:
        breakdown(args.tcp_messages or (50_000 if args.quick else 200_000), runs)
        return 0
    loggen = find_loggen()
    if not ramp:
        print(f"load generator: {'loggen' if loggen else 'python sender (loggen not found)'}")
    rcvbuf = args.udp_recv_buffer
    targets: list[Callable[[], Target]] = [lambda: Collector(recv_buffer=rcvbuf)]
    if args.noop_parse:
        targets.append(lambda: Collector(noop_parse=True))
    if args.untuned_gc:
        targets.append(lambda: Collector(untuned_gc=True))
    if args.vs_pure:
        targets.append(lambda: Collector(pure=True, recv_buffer=rcvbuf))
    if args.vs_peers:
        if _peer_root() is not None:
            targets.append(SyslogNg)
        else:
            print("syslog-ng: not found (unpack syslog-ng-core into bench/out/peers/root)")
        if shutil.which("rsyslogd"):
            targets.append(Rsyslog)
        else:
            print("rsyslog: not found (apt-get install rsyslog)")
    if ramp:  # the UDP ramp alone: every target at every rate, interleaved
        if args.vs_peers and _peer_root() is not None:
            targets.remove(SyslogNg)  # its UDP source is not the comparison asked for
        udp_ramp(ramp, runs, udp_s, targets)
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        work = Path(tmp)
        for i in range(runs):  # interleaved: every target once per round
            for make in targets:
                r = run_one(make(), "tcp", work, n=n_tcp)
                results.append(r)
                print(
                    f"  round {i + 1}: {r.target:22s} {r.load}: {r.rate:,.0f} msg/s, loss {r.loss:.2f}%, {r.cpu_us_per_msg:.1f} us/msg",
                    flush=True,
                )
        ceiling = 0
        if args.tcp_only:
            targets, ramp = [], []
        for make in targets:
            r = run_one(make(), "udp", work, rate=args.udp_rate, seconds=udp_s)
            results.append(r)
            print(
                f"  {r.target:22s} {r.load}: accepted {r.accepted:,}/{r.offered:,}, loss {r.loss:.3f}%",
                flush=True,
            )
            if r.target == "collector" and r.loss < 0.1:
                ceiling = args.udp_rate
        if (
            not ramp and not args.quick and not args.tcp_only
        ):  # up from the target rate if it held, else down
            ramp = [150_000, 200_000, 300_000] if ceiling else [75_000, 50_000, 25_000]
        for rate in ramp:
            r = run_one(Collector(), "udp", work, rate=rate, seconds=udp_s)
            results.append(r)
            print(
                f"  collector {r.load}: accepted {r.accepted:,}/{r.offered:,}, loss {r.loss:.3f}%",
                flush=True,
            )
            if r.loss < 0.1:
                ceiling = max(ceiling, rate)
                if rate < args.udp_rate:
                    break  # going down: the first rate that holds is the answer
            elif rate > args.udp_rate:
                break
    print()
    med = summarise(results)
    tcp_load_name = f"tcp {n_tcp // 1000}k x{MSG_SIZE}B"
    ours = med.get(("collector", tcp_load_name))
    for peer in ("collector(pure)", "syslog-ng", "rsyslog"):
        theirs = med.get((peer, tcp_load_name))
        if ours and theirs:
            print(
                f"collector vs {peer} (TCP): {ours['rate'] / theirs['rate']:.2f}x msg/s, "
                f"{ours['cpu'] / theirs['cpu']:.2f}x CPU per message"
            )
    tried = sorted({args.udp_rate, *ramp})
    if args.tcp_only:
        pass
    elif ceiling:
        print(f"UDP: highest offered rate with < 0.1% loss: {ceiling:,} msg/s (tried {tried})")
    else:
        print(f"UDP: none of the offered rates {tried} held < 0.1% loss")
    return 0


BREAKDOWN = [
    "full",
    "full,pure",  # COLLECTOR_PURE=1: the pure-Python framer and parser
    "full,nogc",
    "full,gcfreeze",
    "noparse",
    "noparse,nogc",
    "noparse,nostore",
    "noparse,nostore,nogc",
]


def breakdown_one(mode: str, n: int) -> None:
    """In-process (uvloop): one TCP listener fed by loggen/Python, with the
    parser and/or store replaced and the cyclic GC on (the daemon's settings)
    or off; prints CPU us/msg.
    Each mode runs in its own process: GC and patching are process-wide."""
    import gc

    import uvloop

    from collector import ingest, listeners
    from collector.config import ListenerConfig
    from collector.record import Record
    from collector.settings import Settings
    from collector.store import Store

    if "noparse" in mode:

        def noop(
            data: bytes, now: int, sender: str | None, opts: object, cut: bool = False
        ) -> Record:
            return Record(now, now, sender, None, None, None, 1, 5, "", None, None, "rfc5424")

        ingest.parse_syslog = noop  # type: ignore[assignment]
        # ... and the native batch (one ready record per frame, none parsed).
        one = noop(b"", 0, None, None)

        def noop_batch(
            frames: list[tuple[bytes, bool]], now: int, sender: str | None, opts: object
        ) -> tuple[list[Record | None], int, int]:
            return [one] * len(frames), 0, 0

        ingest.parse_batch = noop_batch  # type: ignore[assignment]
    from collector.daemon import tune_gc

    tune_gc()  # the daemon's GC settings (`collector run` applies them)
    if "nogc" in mode:
        gc.disable()

    async def run() -> None:
        if "gcfreeze" in mode:
            # What a daemon could do on every sweep: move every live object
            # to the permanent generation. Records hold no cycles, so
            # refcounting still frees them; the GC just stops rescanning them.
            def freeze() -> None:
                gc.freeze()
                asyncio.get_running_loop().call_later(1.0, freeze)

            freeze()
        store = Store(ttl_us=3600 * 10**6, max_records=10**8, max_memory=1 << 36)
        store_sink = (lambda recs: None) if "nostore" in mode else store.add_many
        done = asyncio.Event()
        seen = 0

        def sink(recs: list[Record]) -> None:
            nonlocal seen
            store_sink(recs)
            seen += len(recs)
            if seen >= n:
                done.set()

        cfg = ListenerConfig(name="t", transport="tcp", bind="127.0.0.1:0")
        lst = await listeners.start_listener(cfg, sink, Settings(), 65536)
        assert isinstance(lst.address, tuple)
        c0 = time.process_time()
        sender = tcp_load(lst.address[1], n, find_loggen())
        await done.wait()
        cpu = time.process_time() - c0
        sender.wait()
        await lst.aclose()
        print(f"{mode}\t{1e6 * cpu / n:.2f}", flush=True)

    uvloop.run(run())


def breakdown(n: int, rounds: int) -> None:
    """Where a message's CPU goes: the listener path alone vs parse, store, GC."""
    times: dict[str, list[float]] = {m: [] for m in BREAKDOWN}
    for _ in range(rounds):
        for mode in BREAKDOWN:
            env = {**os.environ, "COLLECTOR_PURE": "1"} if "pure" in mode else None
            out = subprocess.run(
                [sys.executable, __file__, "--breakdown-one", mode, str(n)],
                capture_output=True, text=True, check=True, cwd=ROOT, env=env,
            ).stdout  # fmt: skip
            times[mode].append(float(out.strip().split("\t")[1]))
    rows = [["in-process TCP, uvloop", "CPU us/msg (median)", "runs"]]
    for mode, ts in times.items():
        rows.append([mode, f"{statistics.median(ts):.2f}", str(len(ts))])
    print(_table(rows))


UDP_PATHS = ["transport", "add_reader", "asyncio-dgram"]


def udp_path_one(variant: str, loop_kind: str, rate: int, seconds: float) -> None:
    """One UDP receive path in-process, no-op sink, fed a paced load; prints
    received %, CPU us/datagram and datagrams per flush."""
    import uvloop

    n = int(rate * seconds)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        pending: list[tuple[bytes, object]] = []
        got = flushes = 0
        scheduled = False

        def flush() -> None:
            nonlocal got, flushes, scheduled
            scheduled = False
            got += len(pending)
            flushes += 1
            pending.clear()

        def schedule() -> None:
            nonlocal scheduled
            if not scheduled:
                scheduled = True
                loop.call_soon(flush)

        closers: list[Callable[[], None]] = []
        if variant == "transport":

            class Proto(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: object) -> None:
                    pending.append((data, addr))
                    schedule()

            transport, _ = await loop.create_datagram_endpoint(Proto, sock=sock)
            closers.append(transport.close)
        elif variant == "add_reader":

            def ready() -> None:
                recvfrom = sock.recvfrom
                for _ in range(256):
                    try:
                        pending.append(recvfrom(65536))
                    except BlockingIOError:
                        break
                schedule()

            loop.add_reader(sock.fileno(), ready)
            closers.append(lambda: loop.remove_reader(sock.fileno()))
        else:
            import asyncio_dgram

            stream = await asyncio_dgram.from_socket(sock)

            async def rx() -> None:
                while True:
                    pending.append(await stream.recv())
                    schedule()

            task = loop.create_task(rx())
            closers.append(task.cancel)
            closers.append(stream.close)
        c0 = time.process_time()
        sender = udp_load(sock.getsockname()[1], rate, seconds, find_loggen())
        await asyncio.to_thread(sender.wait)
        await asyncio.sleep(0.5)  # drain
        cpu = time.process_time() - c0
        sent = _sent_count(sender, n)
        for close in closers:
            close()
        await asyncio.sleep(0)
        sock.close()
        print(
            f"{100 * got / max(sent, 1):.2f}\t{1e6 * cpu / max(got, 1):.2f}\t{got / max(flushes, 1):.1f}",
            flush=True,
        )

    if loop_kind == "uvloop":
        uvloop.run(run())
    else:
        asyncio.run(run())


def udp_paths(rate: int, seconds: float, rounds: int) -> None:
    """Compare UDP receive paths under uvloop and plain asyncio."""
    rows = [
        ["receive path", "loop", "received % (median)", "CPU us/dgram", "dgrams per flush", "runs"]
    ]
    for variant in UDP_PATHS:
        for loop_kind in ("uvloop", "asyncio"):
            runs = []
            for _ in range(rounds):
                out = subprocess.run(
                    [sys.executable, __file__, "--udp-path-one", variant, loop_kind, str(rate), str(seconds)],
                    capture_output=True, text=True, check=True, cwd=ROOT,
                ).stdout  # fmt: skip
                runs.append([float(x) for x in out.strip().split("\t")])
            med = [statistics.median(r[i] for r in runs) for i in range(3)]
            rows.append(
                [variant, loop_kind, f"{med[0]:.2f}", f"{med[1]:.2f}", f"{med[2]:.1f}", str(rounds)]
            )
    print(f"UDP receive paths, {rate:,} msg/s offered for {seconds:g} s, no-op sink:")
    print(_table(rows))


PAUSE_MODES = ["default", "tuned"]


def send_mixed(port: int, n: int) -> None:
    """Realistic traffic (RFC 5424 with structured data and RFC 3164, about
    40/60), octet-counted on one connection, event times moving forward
    (0-2 ms apart, as bench/messages makes them) from ~20 min ago."""
    from messages import mixed, octet_counted

    start = time.time() - 1200
    with socket.create_connection(("127.0.0.1", port)) as s:
        sent = 0
        while sent < n:
            k = min(10_000, n - sent)
            s.sendall(octet_counted(mixed(k, seed=sent, start=start + sent * 0.001)))
            sent += k


def pause_one(mode: str, n: int) -> None:
    """The whole daemon in-process (uvloop), `n` realistic messages over TCP,
    and a 10 ms call_later probe: prints CPU us/msg, the probe's worst and
    p99 lateness (ms), and GC collections per generation. `tuned` applies
    the daemon's GC setting (daemon.tune_gc), `default` leaves CPython's."""
    import gc

    import uvloop

    from collector import daemon as daemon_mod
    from collector.config import HttpConfig, ListenerConfig, StoreConfig, config_from_dict

    async def run() -> None:
        cfg = config_from_dict({})
        cfg = dataclasses.replace(
            cfg,
            listeners=(ListenerConfig(name="tcp", transport="tcp", bind="127.0.0.1:0"),),
            http=HttpConfig(bind="127.0.0.1:0"),
            store=dataclasses.replace(cfg.store, ttl=3600.0, max_records=10**8, max_memory=1 << 36),
        )
        assert isinstance(cfg.store, StoreConfig)
        d = await daemon_mod.start(cfg)
        if mode.startswith("tuned"):
            daemon_mod.tune_gc()
        loop = asyncio.get_running_loop()
        late: list[float] = []
        done = asyncio.Event()

        def probe(due: float) -> None:
            now = loop.time()
            late.append(now - due)
            if len(d.store) >= n:
                done.set()
                return
            loop.call_later(0.01, probe, now + 0.01)

        port = d.listeners["tcp"].sockets[0].getsockname()[1]
        before = [s["collections"] for s in gc.get_stats()]
        c0, t0 = time.process_time(), time.perf_counter()
        sender = subprocess.Popen(  # noqa: ASYNC220 (started once, before the measured part)
            [sys.executable, __file__, "--send-mixed", str(port), str(n)], cwd=ROOT
        )
        loop.call_later(0.01, probe, loop.time() + 0.01)
        await done.wait()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        await asyncio.to_thread(sender.wait)
        gcs = [s["collections"] - b for s, b in zip(gc.get_stats(), before, strict=True)]
        late.sort()
        p99 = late[int(0.99 * (len(late) - 1))]
        await daemon_mod.stop(d)
        print(
            f"{1e6 * cpu / n:.2f}\t{1e3 * late[-1]:.1f}\t{1e3 * p99:.1f}\t"
            f"{n / wall:.0f}\t{'/'.join(map(str, gcs))}",
            flush=True,
        )

    if os.environ.get("PAUSE_PROFILE"):  # cProfile the run into this file
        import cProfile

        cProfile.runctx("uvloop.run(run())", globals(), locals(), os.environ["PAUSE_PROFILE"])
    else:
        uvloop.run(run())


def pauses(n: int, rounds: int) -> None:
    """Ingest CPU and the worst event-loop stall, CPython's GC vs the daemon's setting."""
    runs: dict[str, list[list[str]]] = {m: [] for m in PAUSE_MODES}
    for _ in range(rounds):
        for mode in PAUSE_MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--pause-one", mode, str(n)],
                capture_output=True, text=True, check=True, cwd=ROOT,
            ).stdout  # fmt: skip
            runs[mode].append(out.strip().split("\t"))
    rows = [
        ["GC", "CPU us/msg", "worst stall ms", "p99 stall ms", "msg/s", "GC runs g0/g1/g2", "runs"]
    ]
    for mode, rs in runs.items():
        med = [statistics.median(float(r[i]) for r in rs) for i in range(4)]
        rows.append(
            [
                mode,
                f"{med[0]:.2f}",
                f"{med[1]:.1f}",
                f"{med[2]:.1f}",
                f"{med[3]:,.0f}",
                " ".join(r[4] for r in rs),
                str(len(rs)),
            ]
        )
    print(f"{n:,} realistic messages over TCP, whole daemon in-process, 10 ms probe (medians):")
    print(_table(rows))


def serve_noop(config: str) -> int:
    """The daemon with parsing replaced by a constant-cost record builder:
    what remains is the listener path (framing, batching) and the store."""
    from collector import cli, ingest
    from collector.record import Record

    def noop_parse(
        data: bytes, received_at: int, sender: str | None, opts: object, truncated: bool = False
    ) -> Record:
        return Record(
            received_at, received_at, sender, None, None, None, 1, 5, "", None, None, "rfc5424"
        )

    ingest.parse_syslog = noop_parse  # type: ignore[assignment]
    ingest.parse_batch = lambda *args: None  # type: ignore[assignment]  # (no native batch)
    return cli.main(["run", "--config", config])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-untuned":
        from collector import cli, daemon

        daemon.tune_gc = lambda: None
        sys.exit(cli.main(["run", "--config", sys.argv[2]]))
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-noop":
        sys.exit(serve_noop(sys.argv[2]))
    if len(sys.argv) > 1 and sys.argv[1] == "--udp-path-one":
        udp_path_one(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--pause-one":
        pause_one(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--send-mixed":
        send_mixed(int(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--breakdown-one":
        breakdown_one(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--send-tcp":
        send_tcp(int(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--send-udp":
        asyncio.run(send_udp(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
        sys.exit(0)
    sys.exit(main())
