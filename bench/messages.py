"""Realistic log messages for benchmarks: seeded, dependency-free, stdlib only.

Every generator takes `n` and `seed` (same arguments -> same bytes, apart from
the time base) and returns a list of `bytes` without trailing LF, 150-400
bytes each, as the senders named below put them on the wire:

    rfc5424_messages(n, seed=0)   RFC 5424 with structured data (rsyslog,
                                  syslog-ng, journald forwarders, apps)
    rfc3164_messages(n, seed=0)   RFC 3164 and its variants: sshd, kernel,
                                  nginx, cron, postfix, systemd, Cisco IOS/ASA
    json_lines(n, seed=0)         JSON application logs (structlog, pino,
                                  bunyan, logrus, ECS-ish), one object a line
    mixed(n, seed=0)              what one syslog port sees: 5424 and 3164
                                  interleaved (about 40/60)
    malformed(n, seed=0)          bad input a collector must survive: cut
                                  frames, invalid UTF-8, bad PRI, binary junk,
                                  broken JSON (every one still a record)

`start` (Unix seconds, default: now) is the time of the first message; each
next one is 0-2 ms later, so the records land inside any sensible TTL.
`tz_offset_minutes` is the offset RFC 5424 and JSON times are printed with;
RFC 3164 times are wall-clock UTC (the collector's default timezone).

Framing helpers for stream benchmarks: `lf_framed(msgs)` and
`octet_counted(msgs)` (RFC 6587 §3.4.1) join messages into one bytes blob.

Example:
    from messages import mixed, octet_counted   # from a script in bench/
    payload = octet_counted(mixed(10_000, seed=1))
"""

from __future__ import annotations

import json
import random
import time

__all__ = [
    "json_lines",
    "lf_framed",
    "malformed",
    "mixed",
    "octet_counted",
    "rfc3164_messages",
    "rfc5424_messages",
]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HOSTS = [f"web-{i}" for i in range(1, 9)] + [
    "db-primary",
    "db-replica-2",
    "lb-edge-1",
    "cache-3.prod.example.net",
    "build-agent-07",
    "k8s-node-a1b2c3",
]
_USERS = ("root", "deploy", "alice", "bob", "postgres", "admin", "ubuntu", "git", "backup")
_PATHS = (
    "/api/v1/orders",
    "/api/v1/orders/8812/items",
    "/static/app.9f3c1e.js",
    "/login",
    "/healthz",
    "/api/v2/search?q=red+shoes&page=2",
    "/images/products/4411-large.webp",
    "/wp-login.php",
)
_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "curl/8.5.0",
    "Go-http-client/1.1",
    "kube-probe/1.30",
)
_SERVICES = ("api", "billing", "checkout", "search", "auth-service", "worker", "notifier")
_MESSAGES = (
    "request completed",
    "user logged in",
    "cache miss for key user:profile",
    "payment authorised",
    "retrying upstream call after timeout",
    "slow query detected",
    "order state changed",
    "token refresh failed: token expired",
)


def _ip(r: random.Random) -> str:
    return f"{r.choice((10, 172, 192, 203))}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"


class _Clock:
    """Advancing event time; formats it the ways senders do."""

    def __init__(self, start: float | None, r: random.Random, tz_offset_minutes: int) -> None:
        self.t = float(int(time.time())) if start is None else start
        self.r = r
        self.off = tz_offset_minutes

    def tick(self) -> float:
        self.t += self.r.random() * 0.002
        return self.t

    def rfc3339(self, digits: int = 6) -> str:
        t = self.tick() + self.off * 60
        tm = time.gmtime(t)
        frac = f"{t % 1:.{digits}f}"[1:] if digits else ""
        if self.off == 0:
            zone = "Z"
        else:
            sign = "+" if self.off > 0 else "-"
            zone = f"{sign}{abs(self.off) // 60:02d}:{abs(self.off) % 60:02d}"
        return time.strftime("%Y-%m-%dT%H:%M:%S", tm) + frac + zone

    def bsd(self) -> str:
        tm = time.gmtime(self.tick())
        return f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"

    def cisco(self) -> str:
        t = self.tick()
        tm = time.gmtime(t)
        return f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{int(t % 1 * 1000):03d}"

    def asa(self) -> str:
        tm = time.gmtime(self.tick())
        return f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:02d} {tm.tm_year} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"

    def nginx(self) -> str:
        return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(self.t))


def _pri(facility: int, severity: int) -> str:
    return f"<{facility * 8 + severity}>"


# --- RFC 5424 ---------------------------------------------------------------


def _sd_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


_CMDLINE = '/usr/bin/python3 -c print("hi") [x]'


def _one_5424(r: random.Random, c: _Clock) -> str:
    host = r.choice(_HOSTS)
    kind = r.randrange(5)
    if kind == 0:
        sd = (
            f'[timeQuality tzKnown="1" isSynced="1" syncAccuracy="{r.randrange(1000, 900000)}"]'
            f'[origin ip="{_ip(r)}" software="rsyslogd" swVersion="8.2312.0"]'
        )
        user = r.choice(_USERS)
        return (
            f"{_pri(10, r.choice((4, 5, 6)))}1 {c.rfc3339()} {host} sshd {r.randrange(300, 65000)} - {sd} "
            f"pam_unix(sshd:session): session opened for user {user}(uid={r.randrange(1000, 1100)}) by {user}(uid=0)"
        )
    if kind == 1:
        sd = (
            f'[exampleSDID@32473 iut="{r.randrange(10)}" eventSource="Application" eventID="{r.randrange(1000, 1100)}"]'
            f'[examplePriority@32473 class="{r.choice(("high", "low", "medium"))}"]'
        )
        return (
            f"{_pri(20, r.randrange(8))}1 {c.rfc3339(3)} {host} evntslog - ID{r.randrange(100)} {sd} "
            f"\ufeffAn application event log entry with id {r.randrange(10**6)} for tenant {r.choice(_USERS)}"
        )
    if kind == 2:
        req = f"{r.getrandbits(64):016x}"
        sd = f'[request@41058 id="{req}" method="{r.choice(("GET", "POST", "PUT"))}" path="{_sd_escape(r.choice(_PATHS))}" status="{r.choice((200, 201, 404, 500))}" duration_ms="{r.random() * 300:.2f}"]'
        return (
            f"{_pri(16, r.choice((3, 4, 6, 7)))}1 {c.rfc3339()} {host} {r.choice(_SERVICES)} {r.randrange(1, 9999)} ACCESS {sd} "
            f"{r.choice(_MESSAGES)} (user={r.choice(_USERS)}, region=eu-west-1)"
        )
    if kind == 3:
        # journald forwarded: one element, several params, a value with escapes.
        unit = r.choice(("nginx.service", "postgresql@16-main.service", "cron.service"))
        sd = (
            f'[meta@41058 unit="{unit}" boot_id="{r.getrandbits(128):032x}" '
            f'cmdline="{_sd_escape(_CMDLINE)}"]'
        )
        return (
            f"{_pri(3, r.choice((3, 5, 6)))}1 {c.rfc3339()} {host} systemd 1 - {sd} "
            f"Started {unit} - {r.choice(('A high performance web server', 'Regular background program processing daemon'))}."
        )
    sd = f'[k8s@41058 namespace="{r.choice(("prod", "staging"))}" pod="{r.choice(_SERVICES)}-{r.getrandbits(32):08x}-{r.getrandbits(20):05x}" container="app" ip="{_ip(r)}" ip="{_ip(r)}"]'
    return (
        f"{_pri(16, r.choice((4, 6)))}1 {c.rfc3339(9 if r.random() < 0.3 else 6)} {host} {r.choice(_SERVICES)} - - {sd} "
        f"level=info msg={json.dumps(r.choice(_MESSAGES))} took={r.randrange(1, 900)}ms"
    )


def rfc5424_messages(
    n: int, seed: int = 0, start: float | None = None, tz_offset_minutes: int = 0
) -> list[bytes]:
    """`n` RFC 5424 messages, each with one or two SD-ELEMENTs."""
    r = random.Random(seed)
    c = _Clock(start, r, tz_offset_minutes)
    return [_one_5424(r, c).encode() for _ in range(n)]


# --- RFC 3164 and friends ----------------------------------------------------


def _one_3164(r: random.Random, c: _Clock) -> str:
    host = r.choice(_HOSTS)
    kind = r.randrange(9)
    if kind == 0:
        ip = _ip(r)
        line = r.choice(
            (
                f"Failed password for invalid user {r.choice(_USERS)} from {ip} port {r.randrange(1024, 65535)} ssh2",
                f"Accepted publickey for {r.choice(_USERS)} from {ip} port {r.randrange(1024, 65535)} ssh2: ED25519 SHA256:{r.getrandbits(256):064x}"[
                    :150
                ],
                f"Connection closed by authenticating user {r.choice(_USERS)} {ip} port {r.randrange(1024, 65535)} [preauth]",
            )
        )
        return (
            f"{_pri(4, r.choice((5, 6)))}{c.bsd()} {host} sshd[{r.randrange(300, 65000)}]: {line}"
        )
    if kind == 1:
        return (
            f"{_pri(0, r.choice((4, 6)))}{c.bsd()} {host} kernel: [{r.random() * 1e6:12.6f}] [UFW BLOCK] IN=eth0 OUT= "
            f"MAC=52:54:00:{r.randrange(256):02x}:{r.randrange(256):02x}:{r.randrange(256):02x}:08:00 SRC={_ip(r)} DST={_ip(r)} LEN=60 TOS=0x00 PREC=0x00 TTL=52 "
            f"ID={r.randrange(65536)} DF PROTO=TCP SPT={r.randrange(1024, 65535)} DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0"
        )
    if kind == 2:
        return (
            f"{_pri(23, 6)}{c.bsd()} {host} nginx: {_ip(r)} - - [{c.nginx()}] "
            f'"GET {r.choice(_PATHS)} HTTP/1.1" {r.choice((200, 200, 200, 304, 404, 502))} {r.randrange(100, 90000)} '
            f'"-" "{r.choice(_AGENTS)}"'
        )
    if kind == 3:
        return (
            f"{_pri(9, 6)}{c.bsd()} {host} CRON[{r.randrange(1000, 99999)}]: ({r.choice(_USERS)}) CMD "
            f"(test -x /usr/sbin/anacron || {{ cd / && run-parts --report /etc/cron.daily; }} >/dev/null 2>&1)"
        )
    if kind == 4:
        return (
            f"{_pri(2, 6)}{c.bsd()} {host} postfix/smtpd[{r.randrange(1000, 99999)}]: {r.getrandbits(40):010X}: "
            f"client=mail-{r.randrange(100)}.example.org[{_ip(r)}], sasl_method=PLAIN, sasl_username={r.choice(_USERS)}@example.org"
        )
    if kind == 5:
        # glibc syslog() over /dev/log: no HOSTNAME.
        return (
            f"{_pri(3, 6)}{c.bsd()} systemd[1]: Started session-{r.randrange(1, 9999)}.scope - Session {r.randrange(1, 9999)} "
            f"of User {r.choice(_USERS)}; unit took {r.random():.3f}s to start, memory peak {r.randrange(1, 512)}M."
        )
    if kind == 6:
        # Cisco IOS with sequence numbers, msec and zone word.
        iface = f"GigabitEthernet{r.randrange(3)}/{r.randrange(48)}"
        return (
            f"{_pri(23, r.choice((3, 5)))}{r.randrange(1, 99999)}: {'*' if r.random() < 0.2 else ''}{c.cisco()} UTC: "
            f"%LINEPROTO-5-UPDOWN: Line protocol on Interface {iface}, changed state to {r.choice(('up', 'down'))} "
            f"(neighbor {_ip(r)}, vlan {r.randrange(1, 4094)}, reason: keepalive timeout)"
        )
    if kind == 7:
        # Cisco ASA with year, device-id hostname and the ` : ` empty tag.
        return (
            f"{_pri(20, 4)}{c.asa()} fw-{r.randrange(1, 4):02d} : %ASA-4-106023: Deny tcp src outside:{_ip(r)}/{r.randrange(1024, 65535)} "
            f'dst inside:{_ip(r)}/{r.choice((22, 443, 3389))} by access-group "outside_access_in" [0x{r.getrandbits(32):08x}, 0x0]'
        )
    # RFC 3339 in the 3164 position (rsyslog forward format).
    return (
        f"{_pri(1, r.choice((3, 4, 6)))}{c.rfc3339()} {host} {r.choice(_SERVICES)}[{r.randrange(100, 99999)}]: "
        f"{r.choice(_MESSAGES)}; attempt={r.randrange(1, 5)} upstream={_ip(r)}:8080 trace_id={r.getrandbits(128):032x}"
    )


def rfc3164_messages(n: int, seed: int = 0, start: float | None = None) -> list[bytes]:
    """`n` RFC 3164-style messages over a mix of real senders' variants."""
    r = random.Random(seed)
    c = _Clock(start, r, 0)
    return [_one_3164(r, c).encode() for _ in range(n)]


# --- JSON lines ----------------------------------------------------------------


def _one_json(r: random.Random, c: _Clock) -> str:
    kind = r.randrange(4)
    if kind == 0:  # structlog / python-json-logger
        obj: dict[str, object] = {
            "timestamp": c.rfc3339(),
            "level": r.choice(("info", "info", "warning", "error", "debug")),
            "service": r.choice(_SERVICES),
            "host": r.choice(_HOSTS),
            "message": r.choice(_MESSAGES),
            "request_id": f"{r.getrandbits(64):016x}",
            "user_id": r.randrange(10**6),
            "duration_ms": round(r.random() * 500, 3),
        }
    elif kind == 1:  # pino / bunyan
        obj = {
            "level": r.choice((30, 30, 40, 50, 20)),
            "time": int(c.tick() * 1000),
            "pid": r.randrange(1, 65535),
            "hostname": r.choice(_HOSTS),
            "name": r.choice(_SERVICES),
            "req": {"method": r.choice(("GET", "POST")), "url": r.choice(_PATHS)},
            "msg": r.choice(_MESSAGES),
        }
    elif kind == 2:  # logrus / zap style
        obj = {
            "ts": round(c.tick(), 6),
            "lvl": r.choice(("INFO", "WARN", "ERROR")),
            "app": r.choice(_SERVICES),
            "msg": r.choice(_MESSAGES),
            "caller": f"handlers/orders.go:{r.randrange(10, 900)}",
            "tags": ["orders", r.choice(("eu", "us"))],
            "ok": r.random() < 0.8,
            "error": None,
        }
    else:  # ECS-ish with nested objects
        obj = {
            "@timestamp": c.rfc3339(3),
            "log.level": "info",
            "severity": r.choice(("notice", "info", "err")),
            "message": f"{r.choice(_MESSAGES)} for order {r.randrange(10**7)}",
            "program": r.choice(_SERVICES),
            "hostname": r.choice(_HOSTS),
            "http": {"status": r.choice((200, 404, 500)), "bytes": r.randrange(10**5)},
            "client_ip": _ip(r),
        }
    return json.dumps(obj, separators=(",", ":"))


def json_lines(n: int, seed: int = 0, start: float | None = None) -> list[bytes]:
    """`n` JSON objects (without LF) in the shapes common loggers emit."""
    r = random.Random(seed)
    c = _Clock(start, r, 0)
    return [_one_json(r, c).encode() for _ in range(n)]


def mixed(n: int, seed: int = 0, start: float | None = None) -> list[bytes]:
    """`n` syslog messages as one port sees them: ~40% RFC 5424, ~60% RFC 3164."""
    r = random.Random(seed)
    c = _Clock(start, r, 0)
    return [(_one_5424(r, c) if r.random() < 0.4 else _one_3164(r, c)).encode() for _ in range(n)]


def malformed(n: int, seed: int = 0, start: float | None = None) -> list[bytes]:
    """`n` messages that are wrong in the ways real traffic is wrong."""
    r = random.Random(seed)
    good = mixed(64, seed=seed, start=start) + json_lines(16, seed=seed, start=start)
    out = []
    for i in range(n):
        m = good[i % len(good)]
        kind = r.randrange(7)
        if kind == 0:
            m = m[: r.randrange(1, len(m))]  # cut anywhere, even inside a character
        elif kind == 1:
            i = r.randrange(len(m))
            m = m[:i] + b"\xff\xfe\xc3" + m[i:]  # invalid UTF-8
        elif kind == 2:
            m = r.choice((b"<999>", b"<abc>", b"<192>", b"<", b"<13")) + m.partition(b">")[2]
        elif kind == 3:
            m = bytes(r.randrange(256) for _ in range(r.randrange(1, 200)))  # junk
        elif kind == 4:
            m = m.replace(b'"', b"", 1)  # a quote lost: broken SD or JSON
        elif kind == 5:
            m = m.partition(b">")[2]  # PRI lost
        else:
            m = b"x" * r.randrange(1000, 5000)  # one long token
        out.append(m.rstrip(b"\n\r\x00") or b"-")
    return out


def lf_framed(msgs: list[bytes]) -> bytes:
    """Non-transparent framing (RFC 6587 §3.4.2): each message + LF."""
    return b"".join(m + b"\n" for m in msgs)


def octet_counted(msgs: list[bytes]) -> bytes:
    """Octet counting (RFC 6587 §3.4.1): `LEN SP MSG` for each message."""
    return b"".join(b"%d %s" % (len(m), m) for m in msgs)


if __name__ == "__main__":
    for gen in (rfc5424_messages, rfc3164_messages, json_lines):
        sample = gen(2000)
        sizes = sorted(len(m) for m in sample)
        print(f"{gen.__name__}: {sizes[0]}-{sizes[-1]} bytes, median {sizes[len(sizes) // 2]}")
        for m in sample[:3]:
            print("  ", m.decode())
