"""Datagram reception in batches: what a UDP or unix listener's readiness
callback reads, shaped for the parser in one piece.

`receiver(sock, bufsize, cap)` gives the native receiver (collector/_netio.c:
recvmmsg, the GIL released during the call) when it was built, else
`PureReceiver` (a recvfrom loop), which is its specification: the same
datagrams give the same `DatagramBatch`. I/O only: no parsing, no clock.
"""

from __future__ import annotations

import socket
from typing import NamedTuple, Protocol

from collector.framing import STRIP, Frame

try:
    import collector._netio as _netio
except ImportError as e:
    _netio = None  # type: ignore[assignment]
    _MISSING = (
        "native module not built" if isinstance(e, ModuleNotFoundError) else f"native module: {e}"
    )
else:
    _MISSING = ""

NATIVE = _netio is not None
# How datagrams are read in this process, for --version and the start-up line.
DETAIL = "recvmmsg (C)" if NATIVE else f"recvfrom (pure Python: {_MISSING})"


# The native receiver's ring, in bytes per byte of a listener's recv_buffer.
# A 250-byte datagram takes 280 bytes there against ~1,280 of the kernel's
# accounting (its skb), so the default 8 MiB buffer (~13,000 datagrams) gets
# a 32 MiB ring behind it (~120,000, 0.6 s at 200k msg/s): a backlog of the
# interpreter's rides on it while the kernel's buffer stays nearly empty.
# Pages are touched only as far as a backlog reaches (an empty ring starts
# over at its beginning).
RING_PER_RECV_BUFFER = 4


class DatagramBatch(NamedTuple):
    """What one read gave.

    frames: each datagram with its trailing LF/CR/NUL removed, cut to `cap`
    (flag True, stripped again) when longer; datagrams with nothing else are
    left out and counted in `empty`. runs: (index, ip): frames[index:] up to
    the next run came from `ip` (no port; None for a source without an IP
    address, such as a unix socket). nbytes: bytes received before
    stripping. truncated: frames cut. errno: the error that ended the read
    (0: none; running out of datagrams is none)."""

    frames: list[Frame]
    runs: list[tuple[int, str | None]]
    nbytes: int
    empty: int
    truncated: int
    errno: int


class Receiver(Protocol):
    def recv(self, budget: int, cap: int) -> DatagramBatch: ...

    def start(self, ring_bytes: int) -> int:
        """Begin reading; the descriptor to wait on for `recv` (add_reader)."""

    def stop(self) -> None:
        """End reading beside the loop; `recv` then reads what is left."""


class PureReceiver:
    """`recvfrom` until the kernel has nothing (EAGAIN) or `budget` is read."""

    def __init__(self, sock: socket.socket, bufsize: int) -> None:
        self.sock = sock
        self.bufsize = bufsize

    def start(self, ring_bytes: int) -> int:
        return self.sock.fileno()  # read in the loop's thread, when the socket is readable

    def stop(self) -> None:
        pass

    def recv(self, budget: int, cap: int) -> DatagramBatch:
        recvfrom = self.sock.recvfrom
        bufsize = self.bufsize
        frames: list[Frame] = []
        runs: list[tuple[int, str | None]] = []
        append = frames.append
        nbytes = empty = truncated = err = 0
        last: object = runs  # no address equals it: the first frame starts a run
        for _ in range(budget):
            try:
                data, addr = recvfrom(bufsize)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # e.g. an ICMP error reported on the socket
                err = e.errno or 0
                break
            nbytes += len(data)
            data = data.rstrip(STRIP)
            if not data:
                empty += 1
                continue
            cut = len(data) > cap
            if cut:
                data = data[:cap].rstrip(STRIP)
                truncated += 1
            ip = addr[0] if isinstance(addr, tuple) else None
            if ip != last:
                runs.append((len(frames), ip))
                last = ip
            append((data, cut))
        return DatagramBatch(frames, runs, nbytes, empty, truncated, err)


class NativeReceiver:
    """collector._netio's Receiver behind the `Receiver` protocol.

    Before `start` and after `stop`, `recv` reads the socket in the caller's
    thread (recvmmsg, the GIL released). `start(ring_bytes)` hands the
    socket to a thread of the module's own that reads it into a ring of
    `ring_bytes` beside the interpreter; `recv` then takes from the ring,
    and the returned eventfd is readable while datagrams wait there."""

    def __init__(self, sock: socket.socket, bufsize: int, vlen: int = 64) -> None:
        self.sock = sock  # the fd stays open while we read it
        self._native = _netio.Receiver(sock.fileno(), bufsize, vlen)

    def recv(self, budget: int, cap: int) -> DatagramBatch:
        return DatagramBatch._make(self._native.recv(budget, cap))

    def start(self, ring_bytes: int) -> int:
        return self._native.start(ring_bytes)

    def stop(self) -> None:
        self._native.stop()

    @property
    def ring_full(self) -> int:
        """Times the reading thread found the ring full (the kernel buffered meanwhile)."""
        return self._native.ring_full


def receiver(sock: socket.socket, bufsize: int, native: bool | None = None) -> Receiver:
    """The native receiver when built (or `native` asks), else the pure one."""
    use = NATIVE if native is None else native
    if use and _netio is None:
        raise ImportError("collector._netio is not built")
    return NativeReceiver(sock, bufsize) if use else PureReceiver(sock, bufsize)
