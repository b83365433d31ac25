"""Block files against the daemon as a real process: sealed shards written
to disk come back after a restart with the same ids; kill -9 while block
files are being written; a damaged block file; block files of expired
shards deleted. Shards of 1 s and a 0.2 s sweep make many sealed shards
from a few seconds of event time."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from collector.times import format_timestamp
from tests.faults_support import DaemonProcess, now_us, poll

pytestmark = pytest.mark.slow
N = 12_000
STEP_US = 2_000  # 12,000 messages over 24 s of event time: 24 shards of 1 s


def store_config(state: Path, **more: Any) -> dict[str, Any]:
    return {"persist_dir": str(state), "shard_span": "1s", "sweep_interval": "200ms", **more}


def send(daemon: DaemonProcess, base_us: int, n: int = N) -> None:
    lines = b"".join(
        f"<14>1 {format_timestamp(base_us + i * STEP_US)} blk-host blk - - - blk {i:06d}\n".encode()
        for i in range(n)
    )
    with socket.create_connection(("127.0.0.1", daemon.tcp_port)) as s:
        s.sendall(lines)
    poll(lambda: daemon.records() == n, 30, "every message stored")


def all_records(daemon: DaemonProcess) -> list[tuple[str, str]]:
    """(id, message) of every stored record, paging with next_cursor."""
    out: list[tuple[str, str]] = []
    target = "/logs?order=asc&limit=5000"
    while True:
        page = daemon.get(target)
        out.extend((r["id"], r["message"]) for r in page["logs"])
        if page["next_cursor"] is None:
            return out
        target = f"/logs?order=asc&limit=5000&cursor={page['next_cursor']}"


def block_files(state: Path) -> list[Path]:
    return sorted(state.glob("blocks-*.bin"))


def metric(daemon: DaemonProcess, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in daemon.get_text("/metrics").splitlines()
        if line.startswith((name + " ", name + "{"))
    )


def sealed_and_on_disk(daemon: DaemonProcess, state: Path) -> bool:
    """Every shard but the two newest is sealed and has its block file."""
    return len(block_files(state)) >= 20 and metric(daemon, "collector_persist_block_files") >= 20


def test_a_restart_with_sealed_blocks_on_disk_returns_every_record_with_its_id(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    daemon = DaemonProcess(tmp_path, store_config(state))
    daemon.start()
    try:
        send(daemon, now_us() - 60_000_000)
        poll(lambda: sealed_and_on_disk(daemon, state), 30, "sealed shards written")
        before = all_records(daemon)
    finally:
        assert daemon.stop() == 0
    files = {p.name: p.stat().st_mtime_ns for p in block_files(state)}
    daemon.start()
    try:
        after = all_records(daemon)
    finally:
        assert daemon.stop() == 0
    assert len(before) == N
    assert after == before
    log = daemon.log()
    assert "from block files" in log
    # Written once: the second run rewrote none of them.
    assert {p.name: p.stat().st_mtime_ns for p in block_files(state)} == files


def test_kill_9_while_block_files_are_written_loses_nothing_that_was_logged(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    daemon = DaemonProcess(tmp_path, store_config(state))
    daemon.start()
    try:
        send(daemon, now_us() - 60_000_000)
        poll(
            lambda: metric(daemon, "collector_persist_wal_records_total") >= N,
            30,
            "every record written to the log",
        )
        poll(lambda: block_files(state), 30, "the first block file")
    finally:
        daemon.kill()  # kill -9 as the block files are being written
    # A block file cut short by the kill, as it would be left mid-write.
    (state / "blocks-00009999.bin.tmp").write_bytes(b"CLBLOCKS" + b"\0" * 100)
    daemon.start()
    try:
        after = all_records(daemon)
    finally:
        assert daemon.stop() == 0
    assert sorted(int(m.rsplit(" ", 1)[1]) for _, m in after) == list(range(N))
    assert not list(state.glob("*.tmp"))


def test_a_truncated_block_file_is_named_counted_and_the_daemon_serves_the_rest(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    daemon = DaemonProcess(tmp_path, store_config(state))
    daemon.start()
    try:
        send(daemon, now_us() - 60_000_000)
        poll(lambda: sealed_and_on_disk(daemon, state), 30, "sealed shards written")
    finally:
        assert daemon.stop() == 0
    victim = block_files(state)[3]
    victim.write_bytes(victim.read_bytes()[:200])
    daemon.start()
    try:
        after = all_records(daemon)
        lost = metric(daemon, "collector_persist_lost_records_total")
        assert metric(daemon, "collector_persist_corrupt_files_total") == 1
    finally:
        assert daemon.stop() == 0
    assert 0 < lost <= 500  # one shard of 1 s holds 500 messages
    assert len(after) == N - lost
    numbers = [int(m.rsplit(" ", 1)[1]) for _, m in after]
    assert len(set(numbers)) == len(numbers)
    log = daemon.log()
    assert f"block file {victim}" in log
    assert f"{int(lost)} of its" in log
    assert list(state.glob(victim.name + ".corrupt-*"))


def test_block_files_of_expired_shards_are_deleted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    daemon = DaemonProcess(tmp_path, store_config(state))
    daemon.start()
    try:
        send(daemon, now_us() - 60_000_000)
        poll(lambda: sealed_and_on_disk(daemon, state), 30, "sealed shards written")
    finally:
        assert daemon.stop() == 0
    assert len(block_files(state)) >= 20
    # Restarted with a TTL that all of them are past: none is read, and the
    # first snapshot lets their files go.
    daemon.store = store_config(state, ttl="20s")
    daemon.start()
    try:
        assert daemon.records() == 0
        poll(lambda: not block_files(state), 30, "expired block files deleted")
        assert metric(daemon, "collector_persist_block_files") == 0
    finally:
        assert daemon.stop() == 0
