"""Datagram reception in batches (collector/netio.py, collector/_netio.c) on
real sockets: the recvmmsg receiver must give exactly what the pure recvfrom
receiver gives for the same datagrams (frames, cut flags, sender runs,
counts), and the records made from them must be the same."""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import netio
from collector.config import ListenerConfig
from collector.ingest import READ_BATCH, Ingest
from collector.netio import DatagramBatch, PureReceiver, Receiver
from collector.record import Record
from collector.settings import Settings

NATIVE = netio.NATIVE
KINDS = ["pure", "native"] if NATIVE else ["pure"]
FAST = os.environ.get("COLLECTOR_FUZZ_EXAMPLES")  # `make fuzz` asks for more examples
EXAMPLES = int(FAST) if FAST else 100
BUFSIZE = 65537
# Loopback: every 127.x.y.z is this machine, so a test can send from several IPs.
SENDERS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


def _udp_pair() -> tuple[socket.socket, tuple[str, int]]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    return rx, rx.getsockname()


def _receiver(kind: str, sock: socket.socket, bufsize: int = BUFSIZE) -> Receiver:
    return netio.receiver(sock, bufsize, native=kind == "native")


def _read_all(recv: Receiver, budget: int = 1 << 20, cap: int = 65536) -> DatagramBatch:
    return recv.recv(budget, cap)


class _Senders:
    """One UDP socket per source IP, bound to it."""

    def __init__(self) -> None:
        self.socks: dict[str, socket.socket] = {}

    def send(self, ip: str, data: bytes, to: tuple[str, int]) -> None:
        s = self.socks.get(ip)
        if s is None:
            s = self.socks[ip] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.bind((ip, 0))
        s.sendto(data, to)

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


@pytest.fixture
def senders() -> Iterator[_Senders]:
    s = _Senders()
    yield s
    s.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_burst_larger_than_a_read_budget_comes_whole_and_in_order_over_several_reads(
    kind: str,
) -> None:
    rx, addr = _udp_pair()
    with rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        n = 2 * READ_BATCH + 300
        for i in range(n):
            tx.sendto(b"<13>burst %05d" % i, addr)  # loopback: queued before sendto returns
        recv = _receiver(kind, rx)
        sizes: list[int] = []
        got: list[bytes] = []
        while (batch := recv.recv(READ_BATCH, 1024)).frames:
            sizes.append(len(batch.frames))
            got += [data for data, _ in batch.frames]
    assert sizes == [READ_BATCH, READ_BATCH, 300]
    assert got == [b"<13>burst %05d" % i for i in range(n)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_datagram_of_the_largest_udp_size_is_read_whole_or_cut_to_the_cap(kind: str) -> None:
    big = b"<13>" + bytes(random.Random(1).randrange(32, 127) for _ in range(65507 - 4))
    rx, addr = _udp_pair()
    with rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        tx.sendto(big, addr)
        tx.sendto(big, addr)
        recv = _receiver(kind, rx)
        whole = recv.recv(1, 65536)
        cut = recv.recv(1, 1000)
    assert whole.frames == [(big, False)]
    assert (whole.nbytes, whole.truncated) == (65507, 0)
    assert cut.frames == [(big[:1000], True)]
    assert (cut.nbytes, cut.truncated) == (65507, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_and_lf_cr_nul_only_datagrams_are_counted_not_framed(kind: str) -> None:
    rx, addr = _udp_pair()
    with rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for d in (b"", b"\n", b"<13>a\r\n\x00", b"\x00\x00", b"\r\n", b"<13>b"):
            tx.sendto(d, addr)
        batch = _read_all(_receiver(kind, rx))
    assert batch.frames == [(b"<13>a", False), (b"<13>b", False)]
    assert batch.empty == 4
    assert batch.nbytes == 0 + 1 + 8 + 2 + 2 + 5
    assert batch.runs == [(0, "127.0.0.1")]


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_utf8_is_passed_on_as_bytes_and_stored_with_replacement_characters(
    kind: str,
) -> None:
    data = b"<13>1 - h app - - - bad \xff\xfe\xc3( end"
    rx, addr = _udp_pair()
    with rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(data, addr)
        records = _ingest_records(_receiver(kind, rx))
    (rec,) = records
    assert rec.message == "bad \ufffd\ufffd\ufffd( end"
    assert rec.host == "h"


@pytest.mark.parametrize("kind", KINDS)
def test_runs_follow_the_sender_ip_and_each_run_gets_its_own_host(
    kind: str, senders: _Senders
) -> None:
    rx, addr = _udp_pair()
    order = ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.2", "127.0.0.2"]
    with rx:
        for i, ip in enumerate(order):
            senders.send(ip, b"no header %d" % i, addr)
        recv = _receiver(kind, rx)
        batch = recv.recv(1000, 1024)
    assert batch.runs == [(0, "127.0.0.2"), (2, "127.0.0.3"), (3, "127.0.0.2")]
    rx2, addr2 = _udp_pair()
    with rx2:
        for i, ip in enumerate(order):
            senders.send(ip, b"no header %d" % i, addr2)
        records = _ingest_records(_receiver(kind, rx2))
    assert [(r.host, r.message) for r in records] == [
        (ip, f"no header {i}") for i, ip in enumerate(order)
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_the_budget_bounds_one_read_and_the_rest_waits_in_the_kernel(kind: str) -> None:
    rx, addr = _udp_pair()
    with rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for i in range(100):
            tx.sendto(b"m%d" % i, addr)
        recv = _receiver(kind, rx)
        first = recv.recv(7, 1024)
        rest = recv.recv(1000, 1024)
        none = recv.recv(1000, 1024)
    assert [d for d, _ in first.frames] == [b"m%d" % i for i in range(7)]
    assert [d for d, _ in rest.frames] == [b"m%d" % i for i in range(7, 100)]
    assert none == DatagramBatch([], [], 0, 0, 0, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_an_error_reported_on_the_socket_ends_the_read_and_is_returned_not_raised(
    kind: str,
) -> None:
    # A connected UDP socket sending to a closed port gets the ICMP "port
    # unreachable" back as ECONNREFUSED on its next receive.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx:
        rx.bind(("127.0.0.1", 0))
        rx.connect(dead)
        rx.setblocking(False)
        rx.send(b"to nobody")
        batch = _receiver(kind, rx).recv(10, 1024)
    assert batch.errno == errno.ECONNREFUSED
    assert batch.frames == []


@pytest.mark.parametrize("kind", KINDS)
def test_unix_datagrams_come_with_no_sender_ip_and_over_bufsize_is_cut(
    kind: str, tmp_path: Path
) -> None:
    path = str(tmp_path / "n.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with rx, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
        rx.bind(path)
        rx.setblocking(False)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        tx.sendto(b"<13>hello from a unix socket\n", path)
        tx.sendto(b"<13>" + b"u" * 100_000, path)
        batch = _receiver(kind, rx, bufsize=65537).recv(10, 65536)
    assert batch.runs == [(0, None)]
    assert batch.frames[0] == (b"<13>hello from a unix socket", False)
    assert batch.frames[1] == ((b"<13>" + b"u" * 100_000)[:65536], True)
    assert batch.nbytes == len(b"<13>hello from a unix socket\n") + 65537  # kernel cut at bufsize
    assert batch.truncated == 1


def _ingest_records(recv: Receiver, max_bytes: int = 1024, transport: str = "udp") -> list[Record]:
    """What a listener stores from what `recv` reads now (one batch)."""
    import asyncio

    records: list[Record] = []
    cfg = ListenerConfig(name="n", transport=transport, bind="127.0.0.1:0")
    loop = asyncio.new_event_loop()
    try:
        ingest = Ingest(cfg, records.extend, Settings(), max_bytes, loop)
        while ingest.read_datagrams(recv):
            pass
        ingest.flush_all()
    finally:
        loop.close()
    return records


_datagram = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"\n", b"\r\n\x00", b"<13>1 - h a - - - x\n"]),
    st.builds(
        lambda body, tail: b'<34>1 2026-01-02T03:04:05Z h app 1 ID [a b="c"] ' + body + tail,
        st.binary(max_size=200),
        st.sampled_from([b"", b"\n", b"\r\n", b"\x00", b"\n\n\x00"]),
    ),
    st.binary(min_size=1000, max_size=3000),
)


@pytest.mark.skipif(not NATIVE, reason="collector._netio not loaded")
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    dgrams=st.lists(st.tuples(st.sampled_from(SENDERS), _datagram), max_size=60),
    cap=st.sampled_from([16, 100, 1024, 2500]),
    budget=st.integers(1, 80),
)
def test_native_and_pure_receivers_give_the_same_batches_and_records(
    dgrams: list[tuple[str, bytes]], cap: int, budget: int, senders: _Senders
) -> None:
    rx_n, addr_n = _udp_pair()
    rx_p, addr_p = _udp_pair()
    with rx_n, rx_p:
        for ip, data in dgrams:
            senders.send(ip, data, addr_n)
            senders.send(ip, data, addr_p)
        native = _receiver("native", rx_n)
        pure = PureReceiver(rx_p, BUFSIZE)
        while True:
            got, want = native.recv(budget, cap), pure.recv(budget, cap)
            assert got == want
            if not got.frames and not got.empty:
                break
        for ip, data in dgrams:
            senders.send(ip, data, addr_n)
            senders.send(ip, data, addr_p)
        got_recs = _ingest_records(native, max_bytes=cap)
        want_recs = _ingest_records(pure, max_bytes=cap)
    assert len(got_recs) == len(want_recs) == sum(1 for _, d in dgrams if d.rstrip(b"\n\r\0"))
    assert [_timeless(r) for r in got_recs] == [_timeless(r) for r in want_recs]


def _timeless(rec: Record) -> str:
    """repr of a record with the receipt time (and times taken from it) zeroed."""
    now = rec.received_at
    ts = 0 if rec.timestamp == now else rec.timestamp
    return repr(dataclasses.replace(rec, received_at=0, timestamp=ts))


# -- the reading thread (native only) -------------------------------------------------


def _drain_started(
    recv: netio.NativeReceiver, fd: int, want: int, cap: int = 65536, budget: int = 100
) -> list[tuple[bytes, bool]]:
    """Wait on the receiver's eventfd and read until `want` frames came."""
    import select

    got: list[tuple[bytes, bool]] = []
    deadline = 50  # waits of 0.1 s without anything at most
    while len(got) < want and deadline > 0:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            deadline -= 1
            continue
        got += recv.recv(budget, cap).frames
    return got


@pytest.mark.skipif(not NATIVE, reason="collector._netio not loaded")
def test_a_started_receiver_hands_a_burst_over_through_its_eventfd_whole_and_in_order() -> None:
    rx, addr = _udp_pair()
    with rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        recv = netio.NativeReceiver(rx, BUFSIZE)
        fd = recv.start(1 << 20)
        assert fd != rx.fileno()
        try:
            for i in range(3000):
                tx.sendto(b"<13>threaded %05d\n" % i, addr)
            got = _drain_started(recv, fd, 3000)
        finally:
            recv.stop()
    assert got == [(b"<13>threaded %05d" % i, False) for i in range(3000)]


@pytest.mark.skipif(not NATIVE, reason="collector._netio not loaded")
def test_a_full_ring_makes_the_thread_wait_and_nothing_is_lost_or_reordered() -> None:
    rx, addr = _udp_pair()
    with rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        # The smallest ring: two of the largest datagrams (2 KiB each here),
        # so a few hundred 300-byte datagrams wrap it many times over.
        recv = netio.NativeReceiver(rx, 2048)
        fd = recv.start(0)
        try:
            sizes = [random.Random(i).randrange(0, 1500) for i in range(600)]
            for i, n in enumerate(sizes):
                tx.sendto(b"<13>%04d " % i + b"r" * n, addr)
            got = _drain_started(recv, fd, 600, budget=7)
        finally:
            recv.stop()
        assert recv.ring_full > 0
    assert got == [(b"<13>%04d " % i + b"r" * n, False) for i, n in enumerate(sizes)]


@pytest.mark.skipif(not NATIVE, reason="collector._netio not loaded")
def test_after_stop_the_ring_is_read_first_then_the_socket_in_arrival_order() -> None:
    rx, addr = _udp_pair()
    with rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        recv = netio.NativeReceiver(rx, 2048)
        fd = recv.start(0)  # a small ring: most of the burst waits in the kernel
        for i in range(500):
            tx.sendto(b"s%d" % i, addr)
        recv.stop()
        got: list[bytes] = []
        while (batch := recv.recv(64, 1024)).frames:
            got += [d for d, _ in batch.frames]
        tx.sendto(b"after", addr)
        late = recv.recv(64, 1024).frames
        assert fd != rx.fileno()
    assert got == [b"s%d" % i for i in range(500)]
    assert late == [(b"after", False)]


@pytest.mark.skipif(not NATIVE, reason="collector._netio not loaded")
@settings(
    max_examples=max(10, EXAMPLES // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    dgrams=st.lists(st.tuples(st.sampled_from(SENDERS), _datagram), min_size=1, max_size=60),
    cap=st.sampled_from([16, 1024, 2500]),
)
def test_a_started_receiver_gives_what_the_pure_one_gives(
    dgrams: list[tuple[str, bytes]], cap: int, senders: _Senders
) -> None:
    rx_n, addr_n = _udp_pair()
    rx_p, addr_p = _udp_pair()
    with rx_n, rx_p:
        native = netio.NativeReceiver(rx_n, BUFSIZE)
        fd = native.start(1 << 16)
        try:
            for ip, data in dgrams:
                senders.send(ip, data, addr_n)
                senders.send(ip, data, addr_p)
            want = PureReceiver(rx_p, BUFSIZE).recv(1000, cap)
            got = _drain_started(native, fd, len(want.frames), cap=cap, budget=1000)
        finally:
            native.stop()
        assert native.recv(1000, cap).frames == []  # nothing more came
    assert got == want.frames
