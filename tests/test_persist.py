"""The persistence life cycle (open, log, close, reopen) against the real
Store and real files in a temp directory; the snapshot file alone is in
test_snapshot.py."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from collector.config import ConfigError, config_from_dict
from collector.persist import DirectoryInUse, Persistence
from collector.record import Record
from collector.store import Store
from tests.support import get_json, listener_addr, local_config, running_daemon, wait_for
from tests.test_snapshot import NOW, rec

HOUR = 3_600_000_000


def store(ttl_us: int = HOUR, max_records: int = 1_000_000) -> Store:
    return Store(ttl_us=ttl_us, max_records=max_records, max_memory=1 << 30)


def ids(s: Store) -> list[tuple[int, Record]]:
    return list(s.snapshot_items())


def test_close_then_open_restores_records_with_their_ids(tmp_path: Path) -> None:
    s1 = store()
    p1 = Persistence(str(tmp_path), s1)
    p1.open(NOW)
    for start in range(0, 300, 100):
        batch = [rec(i) for i in range(start, start + 100)]
        p1.log(s1.add_many(batch), batch)
    asyncio.run(p1.close())
    assert sorted(os.listdir(tmp_path)) == ["lock", "snapshot.bin"]  # the log is truncated

    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    assert ids(s2) == ids(s1)
    assert p2.stats.restored_records == 300
    asyncio.run(p2.close())


def test_a_second_open_of_a_locked_directory_is_refused_naming_it(tmp_path: Path) -> None:
    p1 = Persistence(str(tmp_path), store())
    p1.open(NOW)
    with pytest.raises(DirectoryInUse, match="is in use by another collector"):
        Persistence(str(tmp_path), store()).open(NOW)
    asyncio.run(p1.close())
    p2 = Persistence(str(tmp_path), store())
    p2.open(NOW)  # released by close()
    asyncio.run(p2.close())


def test_records_that_expired_while_down_are_dropped_and_new_ids_stay_unique(
    tmp_path: Path,
) -> None:
    s1 = store()
    p1 = Persistence(str(tmp_path), s1)
    p1.open(NOW)
    old = [rec(i, ts=NOW - 2 * HOUR + i) for i in range(10)]
    new = [rec(i) for i in range(10, 20)]
    p1.log(s1.add_many(old), old)
    p1.log(s1.add_many(new), new)
    asyncio.run(p1.close())

    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    assert len(s2) == 10
    more = [rec(i) for i in range(20, 25)]
    first = s2.add_many(more)
    assert first > max(seq for seq, _ in ids(s2) if seq < first)
    assert first > 20  # above every seq ever logged, expired ones included
    asyncio.run(p2.close())


def test_after_a_crash_the_log_is_replayed_on_top_of_the_snapshot(tmp_path: Path) -> None:
    s1 = store()
    p1 = Persistence(str(tmp_path), s1)
    p1.open(NOW)
    a = [rec(i) for i in range(50)]
    p1.log(s1.add_many(a), a)
    asyncio.run(p1.close())  # snapshot holds a
    s1b = store()
    p1b = Persistence(str(tmp_path), s1b)
    p1b.open(NOW)
    b = [rec(i) for i in range(50, 80)]
    p1b.log(s1b.add_many(b), b)
    p1b.wal.write_pending()  # a flush, then "kill -9": no close()
    p1b.wal.close()
    p1b.unlock()  # the dead process's lock goes with it

    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    assert ids(s2) == ids(s1b)
    assert p2.stats.replayed_records == 30
    asyncio.run(p2.close())


def test_a_crash_between_snapshot_and_log_truncation_doubles_nothing(tmp_path: Path) -> None:
    s1 = store()
    p1 = Persistence(str(tmp_path), s1)
    p1.open(NOW)
    a = [rec(i) for i in range(40)]
    p1.log(s1.add_many(a), a)
    ok, _, _ = asyncio.run(p1._take_snapshot(reopen=False))
    assert ok
    # crash here: the snapshot is renamed into place, the log is not removed
    assert any(name.startswith("wal-") for name in os.listdir(tmp_path))
    p1.unlock()  # the dead process's lock goes with it

    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    restored = ids(s2)
    assert len(restored) == 40
    assert len({seq for seq, _ in restored}) == 40
    assert p2.stats.replay_skipped == 1  # the segment the snapshot covers
    asyncio.run(p2.close())


async def test_an_early_snapshot_truncates_a_log_past_half_its_bound(tmp_path: Path) -> None:
    s = store()
    p = Persistence(str(tmp_path), s, wal_max_bytes=1024 * 1024)
    p.open(NOW)
    for start in range(0, 6000, 500):
        batch = [rec(i) for i in range(start, start + 500)]
        p.log(s.add_many(batch), batch)
        p.wal.write_pending()
    assert p.wants_snapshot
    await p.flush()
    await wait_for(lambda: p.stats.snapshots == 1)
    await wait_for(lambda: p._snapshot_task is None)
    assert p.wal.size < 1024
    assert p.stats.wal_bytes == p.wal.size
    await p.close()
    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    assert ids(s2) == ids(s)
    await p2.close()


async def test_the_daemon_restarts_with_the_same_records_and_ids(tmp_path: Path) -> None:
    from dataclasses import replace

    from collector.config import StoreConfig

    config = local_config(store=StoreConfig(persist_dir=str(tmp_path / "state")))
    async with running_daemon(config) as d:
        host, port = listener_addr(d, "tcp")
        _, writer = await asyncio.open_connection(host, port)
        writer.write(b"".join(b"<14>1 - h app - - - restart %d\n" % i for i in range(100)))
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await wait_for(lambda: len(d.store) == 100)
        before = (await get_json(d, "/logs?limit=1000"))["logs"]
    async with running_daemon(replace(config)) as d:
        after = (await get_json(d, "/logs?limit=1000"))["logs"]
        assert (await get_json(d, "/health"))["records"] == 100
    assert after == before


def test_the_log_keys_are_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict(
            {"store": {"wal_max_bytes": "10KiB", "wal_flush_interval": "2m", "fsync": "often"}}
        )
    problems = "\n".join(e.value.problems)
    assert "store.wal_max_bytes: expected a size >= 1MiB" in problems
    assert "store.wal_flush_interval: expected a duration between 1ms and 60s" in problems
    assert "store.fsync: expected one of never, batch, always" in problems
    cfg = config_from_dict({"store": {"wal_max_bytes": "64MiB", "wal_flush_interval": "50ms"}})
    assert (cfg.store.wal_max_bytes, cfg.store.wal_flush_interval) == (64 * 1024 * 1024, 0.05)


async def test_stop_reads_what_the_kernel_already_holds_before_snapshotting(
    tmp_path: Path,
) -> None:
    from collector.config import StoreConfig
    from collector.daemon import start, stop

    d = await start(local_config(store=StoreConfig(persist_dir=str(tmp_path))))
    tcp = socket.create_connection(listener_addr(d, "tcp"))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        await wait_for(lambda: d.listeners["tcp"].stats.connections_open == 1)
        # Blocking sends with no await after them: the daemon has read none of it.
        tcp.sendall(b"".join(b"<14>1 - h app - - - tcp %d\n" % i for i in range(1000)))
        for i in range(50):
            udp.sendto(b"<14>1 - h app - - - udp %d" % i, listener_addr(d, "udp"))
        assert len(d.store) == 0
        await stop(d)
    finally:
        tcp.close()
        udp.close()
    assert len(d.store) == 1050
    s = store()
    p = Persistence(str(tmp_path), s)
    p.open(NOW)
    assert len(list(s.snapshot_items())) == 1050
    assert p.stats.replayed_records == 0  # all of it came from the snapshot
    await p.close()


async def test_an_unusable_persist_dir_is_a_one_line_startup_error(tmp_path: Path) -> None:
    from collector.config import StoreConfig
    from collector.daemon import StartupError, start

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StartupError, match=r"^store.persist_dir: cannot use .*file/state"):
        await start(local_config(store=StoreConfig(persist_dir=str(blocker / "state"))))


def test_a_damaged_snapshot_and_a_leftover_log_segment_double_no_id(tmp_path: Path) -> None:
    s1 = store()
    p1 = Persistence(str(tmp_path), s1)
    p1.open(NOW)
    a = [rec(i) for i in range(5000)]
    p1.log(s1.add_many(a), a)
    ok, _, _ = asyncio.run(p1._take_snapshot(reopen=False))
    assert ok
    # crash before the log is removed, and the snapshot's end is damaged later
    snap = tmp_path / "snapshot.bin"
    snap.write_bytes(snap.read_bytes()[:-10])
    p1.unlock()  # the dead process's lock goes with it

    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    seqs = [seq for seq, _ in s2.snapshot_items()]
    assert sorted(seqs) == list(range(1, 5001))  # from snapshot + log, each once
    assert p2.stats.replay_skipped == 5000
    asyncio.run(p2.close())


@pytest.mark.parametrize(("fsync", "on_disk"), [("always", 500), ("batch", 0)])
async def test_with_fsync_always_whatever_a_query_sees_is_already_in_the_log(
    tmp_path: Path, fsync: str, on_disk: int
) -> None:
    """With the flush timer out of the way (60 s), `always` has logged every
    visible record by the time it is visible; `batch` still buffers them."""
    import shutil

    from collector.config import StoreConfig
    from collector.wal import PersistenceStats, WriteAheadLog

    state = tmp_path / "state"
    cfg = StoreConfig(persist_dir=str(state), fsync=fsync, wal_flush_interval=60.0)
    async with running_daemon(local_config(store=cfg)) as d:
        _, writer = await asyncio.open_connection(*listener_addr(d, "tcp"))
        for i in range(50):  # 50 writes: many reads, many log batches
            writer.write(b"".join(b"<14>1 - h app - - - m %d\n" % (i * 10 + j) for j in range(10)))
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        await wait_for(lambda: len(d.store) == 500)
        assert (await get_json(d, "/health"))["records"] == 500
        copy = tmp_path / "copy"
        copy.mkdir()
        for p in state.glob("wal-*.log"):
            shutil.copy(p, copy / p.name)  # what a kill -9 right now would leave
        assert len(WriteAheadLog(str(copy), PersistenceStats()).replay(after_segment=0)) == on_disk


def test_a_snapshot_cut_short_by_a_crash_leaves_no_temp_file_behind(tmp_path: Path) -> None:
    (tmp_path / "snapshot.bin.tmp").write_bytes(b"half")
    (tmp_path / "snapshot.bin.tmp-4242").write_bytes(b"half")
    p = Persistence(str(tmp_path), store())
    p.open(NOW)
    assert not list(tmp_path.glob("snapshot.bin.tmp*"))
    asyncio.run(p.close())
