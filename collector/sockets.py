"""Socket setup for the listeners and the HTTP port: bind, buffer sizes,
what the kernel still holds. I/O only, no data: the listeners' protocols
and the daemon's wiring call it; `bind_error` words a failed bind once.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import stat
import sys
import termios

# Linux: SO_RCVBUFFORCE lets root go past net.core.rmem_max (not in `socket`).
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def bind_error(e: OSError) -> str:
    """The reason a bind failed, said once: asyncio words it as "error while
    attempting to bind on address (...): address already in use", which
    repeats the address the caller already names."""
    reason = e.strerror or str(e)
    if e.errno and "while attempting to bind" in reason:
        return os.strerror(e.errno)
    return reason


def set_recv_buffer(sock: socket.socket, want: int) -> int:
    """Ask for a `want`-byte receive buffer; return what the kernel granted."""
    if sys.platform.startswith("linux"):
        try:  # root (CAP_NET_ADMIN) may exceed net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, want)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, want)
    else:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, want)
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # Linux reports twice the usable size (socket(7): the doubling is bookkeeping).
    return got // 2 if sys.platform.startswith("linux") else got


RMEM_MAX = "/proc/sys/net/core/rmem_max"


def recv_buffer_capped(name: str, asked: int, granted: int, rmem_max_path: str = RMEM_MAX) -> str:
    """The warning for a receive buffer the kernel granted smaller than
    asked: without CAP_NET_ADMIN, SO_RCVBUF is capped at net.core.rmem_max."""
    try:
        with open(rmem_max_path) as f:
            cap = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        cap = None
    why = (
        f"the kernel caps it at net.core.rmem_max ({cap}) for a process without CAP_NET_ADMIN"
        if cap is not None and granted <= cap
        else "the kernel granted less"
    )
    return (
        f"listener {name}: receive buffer {granted} bytes, asked {asked}: {why}; "
        f"bursts beyond it are dropped by the kernel (collector_udp_receive_buffer_drops_total). "
        f"Raise it: sysctl -w net.core.rmem_max={asked}"
    )


def dual_stack_tcp_socket(port: int) -> socket.socket:
    """A TCP socket bound to [::]:port that takes IPv4 too (Linux's dual
    stack); asyncio's create_server sets IPV6_V6ONLY, so "[::]" alone would
    refuse IPv4 clients."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):  # a v6-only kernel keeps its default
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    except OSError:
        sock.close()
        raise
    return sock


async def udp_socket(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    family, _, proto, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    try:
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


def unix_socket(path: str, mode: int) -> socket.socket:
    """A datagram socket at `path`; a stale socket file there is replaced, a
    live one (someone receives on it) or a non-socket file is an error."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # nobody bound to it: a leftover of a dead process
        except OSError as e:
            if e.errno == errno.EPROTOTYPE:  # alive, but a stream socket: not ours to remove
                raise OSError(errno.EADDRINUSE, f"{path} is a live stream socket") from None
            raise
        else:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
    except OSError:
        sock.close()
        raise
    return sock


def unread_bytes(transport: asyncio.Transport | None) -> int:
    """Bytes the kernel holds for this connection that we have not read."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return 0
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    except (OSError, ValueError):
        return 0
    return buf[0]
