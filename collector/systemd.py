"""systemd integration: sd_notify, the watchdog interval and socket activation.

The protocols are a few lines each (sd_notify(3), sd_listen_fds(3),
sd_watchdog_enabled(3)), so they are written here instead of linking
libsystemd. Without the environment variables systemd sets, every function
here is a no-op, so the daemon behaves the same outside systemd.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Iterable, MutableMapping, Sequence

from collector.config import ListenerConfig
from collector.configvalues import parse_host_port

log = logging.getLogger("collector.systemd")

# sd_listen_fds(3): passed descriptors start right after stdin/stdout/stderr.
LISTEN_FDS_START = 3

Env = MutableMapping[str, str]


def notify(*states: str, env: Env | None = None) -> bool:
    """Send `STATE=value` lines to the service manager (sd_notify(3)).

    Returns False when there is no NOTIFY_SOCKET (not run by systemd with
    Type=notify) or the send fails; a failed notification is never fatal."""
    path = (os.environ if env is None else env).get("NOTIFY_SOCKET")
    if not path or not states:
        return False
    if path[0] == "@":  # abstract namespace (unix(7)): a leading NUL byte
        path = "\0" + path[1:]
    elif path[0] != "/":
        log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract name; ignored", path)
        return False
    message = "\n".join(states).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            s.sendall(message)
    except OSError as e:
        log.warning("sd_notify to %s failed: %s", path.replace("\0", "@"), e)
        return False
    return True


def status(records: int, listeners: int, rate: float | None = None) -> str:
    """The STATUS= line `systemctl status` shows: records held, msg/s, listeners."""
    per_s = f", {rate:.1f} msg/s" if rate is not None else ""
    return f"STATUS={records} records{per_s}, {listeners} listeners"


def watchdog_interval(env: Env | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, as
    sd_watchdog_enabled(3) advises; None when no watchdog is asked of us
    (or WATCHDOG_PID names another process)."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


def listen_fds(
    env: Env | None = None, unset_environment: bool = True
) -> list[tuple[str, socket.socket]]:
    """Sockets passed by socket activation (sd_listen_fds_with_names(3)), as
    (name, socket) pairs; names are "unknown" when LISTEN_FDNAMES is absent.

    LISTEN_PID must be this process, otherwise the variables were meant for a
    parent and are ignored. Like sd_listen_fds(unset_environment=1) the
    variables are removed, so children do not try to adopt the sockets."""
    env = os.environ if env is None else env
    pid, count, names = env.get("LISTEN_PID"), env.get("LISTEN_FDS"), env.get("LISTEN_FDNAMES")
    if unset_environment:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    if pid is None or count is None:
        return []
    if pid != str(os.getpid()):
        log.warning(
            "LISTEN_PID=%s is not this process (%d); inherited sockets ignored", pid, os.getpid()
        )
        return []
    if not count.isdigit():
        log.warning("LISTEN_FDS=%r is not a number; inherited sockets ignored", count)
        return []
    n = int(count)
    labels = names.split(":") if names else []
    if len(labels) != n:
        labels = ["unknown"] * n
    out: list[tuple[str, socket.socket]] = []
    for i, name in enumerate(labels):
        fd = LISTEN_FDS_START + i
        os.set_inheritable(fd, False)  # sd_listen_fds sets FD_CLOEXEC too
        try:
            out.append((name, socket.socket(fileno=fd)))
        except OSError as e:
            log.warning("inherited fd %d (%s) is not a socket: %s; ignored", fd, name, e)
    return out


def describe(sock: socket.socket) -> str:
    """`udp [::]:514`, `tcp 0.0.0.0:5515`, `unix /run/collector/log`: for logs."""
    kind = {socket.SOCK_DGRAM: "udp", socket.SOCK_STREAM: "tcp"}.get(sock.type, str(sock.type))
    try:
        addr = sock.getsockname()
    except OSError:
        addr = "?"
    if sock.family == socket.AF_UNIX:
        kind = "unix" if sock.type == socket.SOCK_DGRAM else f"unix-{kind}"
        return f"{kind} {addr!r}" if not isinstance(addr, str) else f"{kind} {addr or '(unnamed)'}"
    host, port = addr[0], addr[1]
    return f"{kind} [{host}]:{port}" if ":" in host else f"{kind} {host}:{port}"


def fits(sock: socket.socket, transport: str) -> bool:
    """Whether a socket can serve a listener of this transport at all."""
    if transport == "unix":
        return sock.family == socket.AF_UNIX and sock.type == socket.SOCK_DGRAM
    wanted = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    return sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == wanted


def _wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "*")


def _same_ip(a: str, b: str) -> bool:
    try:
        ia, ib = ipaddress.ip_address(a.split("%")[0]), ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return a == b
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d (RFC 4291 §2.5.5.2).
    ia = getattr(ia, "ipv4_mapped", None) or ia
    ib = getattr(ib, "ipv4_mapped", None) or ib
    return ia == ib


def bound_at(sock: socket.socket, cfg: ListenerConfig) -> bool:
    """Whether `sock` is of `cfg`'s transport and bound where `cfg` binds.

    Any wildcard matches any wildcard: systemd's `ListenDatagram=514` is a
    dual-stack socket on [::]:514, which is what "0.0.0.0:514" asks for."""
    if not fits(sock, cfg.transport):
        return False
    try:
        addr = sock.getsockname()
    except OSError:
        return False
    if cfg.transport == "unix":
        return isinstance(addr, str) and addr == cfg.bind
    try:
        host, port = parse_host_port(cfg.bind)
    except ValueError:
        return False
    if port != addr[1]:
        return False
    if _wildcard(host) or _wildcard(addr[0]):
        return _wildcard(host) and _wildcard(addr[0])
    return _same_ip(host, addr[0])


def match_sockets(
    configs: Sequence[ListenerConfig], inherited: Iterable[tuple[str, socket.socket]]
) -> tuple[dict[str, socket.socket], list[tuple[str, socket.socket]]]:
    """Assign inherited sockets to listeners: by name first (a socket unit's
    `FileDescriptorName=` equal to a listener's name), then by transport and
    bound address. Returns ({listener name: socket}, unmatched pairs)."""
    by_name = {c.name: c for c in configs}
    assigned: dict[str, socket.socket] = {}
    rest: list[tuple[str, socket.socket]] = []
    for name, sock in inherited:
        cfg = by_name.get(name)
        if cfg is not None and name not in assigned:
            if fits(sock, cfg.transport):
                assigned[name] = sock
                continue
            log.warning(
                "inherited socket %r is %s, which a %s listener cannot use; matching by address",
                name,
                describe(sock),
                cfg.transport,
            )
        rest.append((name, sock))
    unmatched: list[tuple[str, socket.socket]] = []
    for name, sock in rest:
        for cfg in configs:
            if cfg.name not in assigned and bound_at(sock, cfg):
                assigned[cfg.name] = sock
                break
        else:
            unmatched.append((name, sock))
    return assigned, unmatched


class Inherited:
    """The sockets systemd passed, adopted by listener name and kept open
    for the daemon's life, so a reload can rebind on the same socket.

    A listener serves from a duplicate (`for_listener`), which it closes when
    it stops; the original closes here (`release`, `close`)."""

    def __init__(self) -> None:
        # listener name -> (LISTEN_FDNAMES name, inherited socket)
        self._by_listener: dict[str, tuple[str, socket.socket]] = {}

    def adopt(
        self, listeners: Sequence[ListenerConfig], inherited: list[tuple[str, socket.socket]]
    ) -> None:
        """Match systemd's sockets to listeners; close (and say so) what no
        listener wants, so a port does not stay open with nobody reading it."""
        if not inherited:
            return
        names = {id(sock): name for name, sock in inherited}
        assigned, unmatched = match_sockets(listeners, inherited)
        for lname, sock in assigned.items():
            self._by_listener[lname] = (names[id(sock)], sock)
            log.info("listener %s: using inherited socket %s", lname, describe(sock))
        for fdname, sock in unmatched:
            log.warning(
                "inherited socket %s (%s) matches no listener by name or address; closed",
                fdname,
                describe(sock),
            )
            sock.close()

    def usable(self, lc: ListenerConfig) -> bool:
        """Whether this listener serves from its inherited socket: one matched
        by name follows its name; one matched by address only while the
        listener's transport and bind still say that address."""
        entry = self._by_listener.get(lc.name)
        if entry is None:
            return False
        fdname, sock = entry
        return bound_at(sock, lc) or (fdname == lc.name and fits(sock, lc.transport))

    def for_listener(self, lc: ListenerConfig) -> socket.socket | None:
        """A duplicate of the inherited socket this listener may serve from."""
        if not self.usable(lc):
            return None
        return self._by_listener[lc.name][1].dup()

    def release(self, name: str) -> None:
        """Close an inherited socket its listener no longer serves from."""
        entry = self._by_listener.pop(name, None)
        if entry is not None:
            log.info("listener %s: inherited socket %s closed", name, describe(entry[1]))
            entry[1].close()

    def close(self) -> None:
        """Shutdown: close every original."""
        for _, sock in self._by_listener.values():
            sock.close()
        self._by_listener.clear()
