"""Block files: each sealed shard's blocks written once, the snapshot a
manifest naming them plus the open shards' records, restore loading blocks
straight into sealed shards. Against the real Store and real files; the
daemon-process cases (restart, kill -9, damaged files) are in
test_faults_blocks.py."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from collector.block import FORMAT_VERSION
from collector.blockfile import BLOCKS_MAGIC, read_block_file
from collector.diskformat import encode_chunk, header
from collector.persist import Persistence
from collector.query import Query
from collector.record import Record
from collector.sealing import sealed_columns
from collector.snapshot import MANIFEST_VERSION, SNAPSHOT_NAME, read_snapshot, write_snapshot
from collector.store import Store
from tests.test_snapshot import NOW, rec

MINUTE = 60_000_000
HOUR = 60 * MINUTE


def store(ttl_us: int = HOUR) -> Store:
    return Store(ttl_us=ttl_us, max_records=10_000_000, max_memory=1 << 30)


def spread(n: int, minutes: int = 10, start: int = 0) -> list[Record]:
    """`n` records over the `minutes` before NOW (one shard per minute)."""
    step = minutes * MINUTE // n
    return [rec(start + i, ts=NOW - minutes * MINUTE + i * step) for i in range(n)]


def items(s: Store) -> list[tuple[int, Record]]:
    return list(s.snapshot_items())


def block_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("blocks-*.bin"))


def filled(d: Path, n: int = 6000, minutes: int = 10) -> tuple[Store, Persistence]:
    s = store()
    p = Persistence(str(d), s, snapshot_every=0)
    p.open(NOW)
    recs = spread(n, minutes)
    for a in range(0, n, 500):
        p.log(s.add_many(recs[a : a + 500]), recs[a : a + 500])
    s.seal()
    return s, p


def test_sealed_shards_come_back_from_their_block_files_with_the_same_ids(
    tmp_path: Path,
) -> None:
    s1, p1 = filled(tmp_path)
    assert s1.sealed_records > 0
    asyncio.run(p1.close())
    sealed_shards = sum(1 for sh in s1.shards() if sh.run is not None)
    assert len(block_files(tmp_path)) == sealed_shards == p1.stats.block_files
    snap = read_snapshot(str(tmp_path / SNAPSHOT_NAME))
    assert snap.version == MANIFEST_VERSION
    assert len(snap.items) == len(s1) - s1.sealed_records  # only the open shards' records

    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    assert items(s2) == items(s1)
    assert s2.sealed_records == s1.sealed_records  # loaded sealed, not re-added and re-sealed
    by = ("host", "service", "level", "facility")
    assert s2.stats(Query(), by=by) == s1.stats(Query(), by=by)  # the shards' counts too
    assert p2.stats.replayed_records == 0
    asyncio.run(p2.close())
    assert p2.stats.block_files_written == 0  # written once, by the first run


def test_a_shard_trimmed_from_the_front_comes_back_trimmed(tmp_path: Path) -> None:
    s1, p1 = filled(tmp_path)
    first = s1.shards()[0]
    assert first.run is not None
    s1.expire(NOW + HOUR - 10 * MINUTE + MINUTE // 3)  # TTL cuts into the oldest shard
    assert 0 < len(s1.shards()[0]) < 600
    asyncio.run(p1.close())
    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    assert items(s2) == items(s1)
    asyncio.run(p2.close())


async def test_block_files_of_expired_and_reopened_shards_are_deleted_after_the_next_snapshot(
    tmp_path: Path,
) -> None:
    s, p = filled(tmp_path)
    await p.flush()  # writes the block files
    if p._blocks_task is not None:
        await p._blocks_task
    assert await p.snapshot()
    before = block_files(tmp_path)
    assert len(before) == 8
    s.expire(NOW + HOUR - 7 * MINUTE)  # the three oldest shards go
    late = [rec(99_999, ts=NOW - 5 * MINUTE + 7)]  # reopens a sealed shard
    p.log(s.add_many(late), late)
    await p.flush()
    assert await p.snapshot()
    after = block_files(tmp_path)
    assert len(after) == 4
    assert set(after) < set(before)
    assert p.stats.block_files_deleted == 4
    await p.close()
    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    assert items(s2) == items(s)
    await p2.close()


def test_block_files_past_ttl_are_not_read_and_go_with_the_first_snapshot(
    tmp_path: Path,
) -> None:
    s1, p1 = filled(tmp_path)
    asyncio.run(p1.close())
    files = block_files(tmp_path)
    s2 = store(ttl_us=5 * MINUTE)  # shorter TTL on restart: the older shards expired
    p2 = Persistence(str(tmp_path), s2, snapshot_every=0)
    p2.open(NOW)
    assert len(s2) == sum(1 for _, r in items(s1) if r.timestamp >= NOW - 5 * MINUTE)
    assert p2.snapshot_due
    asyncio.run(p2.close())
    left = block_files(tmp_path)
    assert len(left) < len(files)
    for name in left:
        got = read_block_file(str(tmp_path / name))
        assert got.blocks[-1].last[0] >= NOW - 5 * MINUTE


def test_clear_columns_that_do_not_fit_the_blocks_are_refused_and_decoded_from_them() -> None:
    s1 = store()
    s1.add_many(spread(3000))
    s1.seal()
    a, b = [sh for sh in s1.shards() if sh.run is not None][:2]
    assert a.run is not None
    assert b.run is not None
    s2 = store()
    with pytest.raises(ValueError, match="columns"):
        s2.restore_sealed(a.key, a.run.live_blocks(), columns=sealed_columns(b))
    assert len(s2) == 0
    s2.restore_sealed(a.key, a.run.live_blocks(), columns=sealed_columns(a))
    s2.restore_sealed(b.key, b.run.live_blocks())  # decoded from the blocks
    assert items(s2) == [it for it in items(s1) if it[1].timestamp // MINUTE in (a.key, b.key)]


def test_a_truncated_block_file_is_named_with_the_records_it_lost_and_the_rest_comes_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s1, p1 = filled(tmp_path, n=30_000)
    asyncio.run(p1.close())
    victim = tmp_path / block_files(tmp_path)[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    with caplog.at_level(logging.ERROR):
        p2.open(NOW)
    lost = len(s1) - len(s2)
    assert 0 < lost <= 3000  # at most that shard's records
    assert p2.stats.lost_records == lost
    assert p2.stats.corrupt_files == 1
    assert f"block file {victim}" in caplog.text
    assert f"{lost} of its 3000 live records lost" in caplog.text
    assert list(tmp_path.glob(victim.name + ".corrupt-*"))
    kept = dict(items(s1))
    assert all(kept[seq] == r for seq, r in items(s2))  # what came back is intact
    asyncio.run(p2.close())
    # What was read from the damaged file went to a new file: the next start
    # has it all, and names no damage.
    s3 = store()
    p3 = Persistence(str(tmp_path), s3)
    p3.open(NOW)
    assert items(s3) == items(s2)
    assert p3.stats.corrupt_files == 0
    assert p3.stats.lost_records == 0
    asyncio.run(p3.close())


def test_a_missing_block_file_is_named_and_counted_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s1, p1 = filled(tmp_path)
    asyncio.run(p1.close())
    (tmp_path / block_files(tmp_path)[0]).unlink()
    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    with caplog.at_level(logging.ERROR):
        p2.open(NOW)
    assert p2.stats.lost_records == 600 == len(s1) - len(s2)
    assert "cannot read" in caplog.text
    asyncio.run(p2.close())


def test_a_block_file_of_another_block_format_is_refused_naming_both_versions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s1, p1 = filled(tmp_path)
    asyncio.run(p1.close())
    victim = tmp_path / block_files(tmp_path)[1]
    other = {"key": 0, "blocks": 0, "records": 0, "block_format": FORMAT_VERSION + 1}
    victim.write_bytes(header(BLOCKS_MAGIC) + encode_chunk(other))
    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    with caplog.at_level(logging.ERROR):
        p2.open(NOW)
    assert f"written with block format {FORMAT_VERSION + 1}" in caplog.text
    assert f"reads format {FORMAT_VERSION}" in caplog.text
    assert len(s2) == len(s1) - 600
    asyncio.run(p2.close())


def test_block_files_no_snapshot_names_are_removed_at_start(tmp_path: Path) -> None:
    """Written after the last snapshot, then a crash: the log has their records."""
    s1, p1 = filled(tmp_path)
    asyncio.run(p1.close())
    (tmp_path / "blocks-00000099.bin").write_bytes(b"orphan")
    (tmp_path / "blocks-00000100.bin.tmp").write_bytes(b"cut short")
    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    assert not (tmp_path / "blocks-00000099.bin").exists()
    assert not (tmp_path / "blocks-00000100.bin.tmp").exists()
    assert items(s2) == items(s1)
    asyncio.run(p2.close())


def test_a_manifest_whose_file_list_is_damaged_reads_every_block_file(
    tmp_path: Path,
) -> None:
    s1, p1 = filled(tmp_path)
    asyncio.run(p1.close())
    snap = tmp_path / SNAPSHOT_NAME
    data = bytearray(snap.read_bytes())
    data[30] ^= 0xFF  # inside the manifest chunk: its CRC fails
    snap.write_bytes(bytes(data))
    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    sealed = {seq for sh in s1.shards() if sh.run is not None for seq in sh.seqs}
    assert {seq for seq, _ in items(s2)} == sealed  # the open shards' records went with it
    asyncio.run(p2.close())


def test_a_format_1_snapshot_of_every_record_is_still_read(tmp_path: Path) -> None:
    """A daemon upgraded in place restarts with its data, then writes format 2."""
    old = [(i + 1, r) for i, r in enumerate(spread(3000))]
    write_snapshot(str(tmp_path / SNAPSHOT_NAME), old, 3000, 0)
    s = store()
    p = Persistence(str(tmp_path), s)
    p.open(NOW)
    assert items(s) == sorted(old, key=lambda it: (it[1].timestamp, it[0]))
    asyncio.run(p.close())
    assert read_snapshot(str(tmp_path / SNAPSHOT_NAME)).version == MANIFEST_VERSION
    assert s.add_many([rec(5)]) == 3001


async def test_a_snapshot_taken_while_records_arrive_holds_each_once_with_the_log(
    tmp_path: Path,
) -> None:
    """The loop serialises open shards in slices while records (late ones
    too) arrive: after a crash, manifest + log give exactly the store."""
    s = store()
    p = Persistence(str(tmp_path), s)
    p.open(NOW)
    first = [rec(i, ts=NOW + i * 10) for i in range(20_000)]
    p.log(s.add_many(first), first)
    stop = False

    async def writer() -> None:
        i = 20_000
        while not stop:
            batch = [rec(i + k, ts=NOW + (i + k) * 7 % 200_000) for k in range(50)]
            p.log(s.add_many(batch), batch)
            i += 50
            await asyncio.sleep(0)

    task = asyncio.ensure_future(writer())
    ok, _, written = await p._take_snapshot(reopen=True)
    stop = True
    await task
    assert ok
    assert written >= 20_000
    p.wal.write_pending()
    p.wal.close()
    p.unlock()  # "kill -9": the manifest is in place, the log not truncated
    s2 = store()
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    assert items(s2) == items(s)
    await p2.close()


def test_files_are_private(tmp_path: Path) -> None:
    _, p1 = filled(tmp_path)
    asyncio.run(p1.close())
    for name in [*block_files(tmp_path), SNAPSHOT_NAME]:
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o600


def test_after_a_change_of_shard_span_the_blocks_records_come_back_one_by_one(
    tmp_path: Path,
) -> None:
    s1, p1 = filled(tmp_path)
    asyncio.run(p1.close())
    s2 = Store(ttl_us=HOUR, max_records=10_000_000, max_memory=1 << 30, shard_span_us=MINUTE // 2)
    p2 = Persistence(str(tmp_path), s2)
    p2.open(NOW)
    assert items(s2) == items(s1)
    assert s2.shard_count == 2 * s1.shard_count
    asyncio.run(p2.close())
    s3 = Store(ttl_us=HOUR, max_records=10_000_000, max_memory=1 << 30, shard_span_us=MINUTE // 2)
    p3 = Persistence(str(tmp_path), s3)
    p3.open(NOW)
    assert items(s3) == items(s1)
    asyncio.run(p3.close())
