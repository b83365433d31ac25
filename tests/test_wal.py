"""The write-ahead log: batched appends, fsync modes, replay, torn tails, the
size bound and write errors, on real files (a real file-size limit for the
disk-full case, in a child process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from collector.diskformat import HEADER
from collector.record import Record
from collector.wal import PersistenceStats, WriteAheadLog, segment_name
from tests.faults_support import REPO

NOW = 1_767_225_600_000_000


def rec(i: int, size: int = 40) -> Record:
    return Record(
        NOW + i, NOW + i, "h", "s", None, None, 1, 6, f"{i:08d}".ljust(size, "x"), None, None, "raw"
    )


def batch(start: int, n: int, size: int = 40) -> list[Record]:
    return [rec(i, size) for i in range(start, start + n)]


def new_wal(d: Path, **kw: object) -> WriteAheadLog:
    wal = WriteAheadLog(str(d), PersistenceStats(), **kw)  # type: ignore[arg-type]
    wal.replay(after_segment=0)
    wal.open_segment()
    return wal


def replay(d: Path, after_segment: int = 0) -> tuple[list[tuple[int, Record]], PersistenceStats]:
    stats = PersistenceStats()
    return WriteAheadLog(str(d), stats).replay(after_segment=after_segment), stats


def test_appends_are_buffered_until_a_flush_writes_them_as_one_chunk(tmp_path: Path) -> None:
    wal = new_wal(tmp_path)
    wal.append(1, batch(0, 10))
    wal.append(11, batch(10, 5))
    seg = tmp_path / segment_name(1)
    assert seg.stat().st_size == HEADER.size  # nothing written per message
    wal.write_pending()
    assert wal.needs_fsync
    items, _ = replay(tmp_path)
    assert [seq for seq, _ in items] == list(range(1, 16))
    assert items[3][1] == rec(3)
    assert wal.stats.wal_records == 15
    wal.close()


def test_flush_bytes_of_buffered_records_are_written_without_waiting_for_the_timer(
    tmp_path: Path,
) -> None:
    wal = new_wal(tmp_path, flush_bytes=64 * 1024)
    seq = 1
    while wal.stats.wal_records == 0 and seq < 100_000:
        wal.append(seq, batch(seq, 100, size=200))
        seq += 100
    assert 0 < wal.stats.wal_records < 2000
    wal.close()


def test_fsync_always_writes_and_syncs_each_batch_before_append_returns(tmp_path: Path) -> None:
    wal = new_wal(tmp_path, fsync="always")
    wal.append(1, batch(0, 3))
    assert wal.stats.wal_fsyncs == 1
    assert len(replay(tmp_path)[0]) == 3
    wal.append(4, batch(3, 3))
    assert wal.stats.wal_fsyncs == 2
    wal.close()


def test_fsync_never_writes_but_never_syncs(tmp_path: Path) -> None:
    wal = new_wal(tmp_path, fsync="never")
    wal.append(1, batch(0, 3))
    wal.write_pending()
    assert len(replay(tmp_path)[0]) == 3
    assert wal.stats.wal_fsyncs == 0
    wal.close()


def two_chunks(d: Path) -> Path:
    """A fresh segment 1 holding records 1..10 and 11..20 in two chunks."""
    for p in d.glob("wal-*"):
        p.unlink()
    wal = WriteAheadLog(str(d), PersistenceStats())
    wal.open_segment()
    wal.append(1, batch(0, 10))
    wal.write_pending()
    wal.append(11, batch(10, 10))
    wal.write_pending()
    wal.close()
    return d / segment_name(1)


def test_a_torn_tail_is_ignored_and_counted_and_earlier_chunks_kept(tmp_path: Path) -> None:
    for cut in (1, 5, 8, 9, 100):
        seg = two_chunks(tmp_path)
        seg.write_bytes(seg.read_bytes()[:-cut])
        items, stats = replay(tmp_path)
        assert [seq for seq, _ in items] == list(range(1, 11)), cut
        assert stats.wal_torn_bytes > 0


def test_a_flipped_byte_in_the_last_chunk_fails_its_checksum(tmp_path: Path) -> None:
    seg = two_chunks(tmp_path)
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0x01
    seg.write_bytes(bytes(data))
    items, stats = replay(tmp_path)
    assert len(items) == 10
    assert stats.wal_torn_bytes > 100


def test_garbage_after_the_last_chunk_is_a_torn_tail_too(tmp_path: Path) -> None:
    wal = new_wal(tmp_path)
    wal.append(1, batch(0, 10))
    wal.write_pending()
    wal.close()
    with open(tmp_path / segment_name(1), "ab") as f:
        f.write(os.urandom(3000))
    items, stats = replay(tmp_path)
    assert len(items) == 10
    assert stats.wal_torn_bytes == 3000


def test_segments_replay_in_order_and_those_a_snapshot_covers_are_deleted(
    tmp_path: Path,
) -> None:
    wal = new_wal(tmp_path)
    wal.append(1, batch(0, 5))
    sealed = wal.rotate()
    assert sealed == [1]
    wal.append(6, batch(5, 5))
    wal.rotate()
    wal.append(11, batch(10, 5))
    wal.write_pending()
    wal.close()
    items, _ = replay(tmp_path)
    assert [seq for seq, _ in items] == list(range(1, 16))
    items, stats = replay(tmp_path, after_segment=1)
    assert [seq for seq, _ in items] == list(range(6, 16))
    assert stats.replay_skipped == 1
    assert not (tmp_path / segment_name(1)).exists()


def test_a_foreign_segment_is_moved_aside_and_an_empty_one_removed(tmp_path: Path) -> None:
    (tmp_path / segment_name(1)).write_bytes(b"not a log at all, just text\n")
    (tmp_path / segment_name(2)).write_bytes(b"")
    items, stats = replay(tmp_path)
    assert items == []
    assert stats.corrupt_files == 1
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 1
    assert names[0].startswith(segment_name(1) + ".corrupt-")


def test_the_log_never_grows_past_its_bound_and_counts_what_it_did_not_log(
    tmp_path: Path,
) -> None:
    bound = 1024 * 1024
    wal = new_wal(tmp_path, max_bytes=bound)
    seq = 1
    for _ in range(100):
        wal.append(seq, batch(seq, 200, size=100))
        wal.write_pending()
        seq += 200
    assert wal.size <= bound
    assert sum(p.stat().st_size for p in tmp_path.glob("wal-*")) == wal.size
    assert wal.stats.wal_dropped_records > 0
    assert wal.stats.wal_records + wal.stats.wal_dropped_records == 20_000
    assert len(replay(tmp_path)[0]) == wal.stats.wal_records
    wal.close()


def test_after_a_dropped_batch_the_log_takes_nothing_until_a_snapshot_so_replay_has_no_holes(
    tmp_path: Path,
) -> None:
    wal = new_wal(tmp_path, max_bytes=64 * 1024)
    wal.append(1, batch(1, 100, size=100))
    wal.write_pending()
    wal.append(101, batch(101, 1000, size=100))  # over the bound: dropped
    wal.write_pending()
    wal.append(1101, batch(1101, 10, size=100))  # would fit, but would leave a hole
    wal.write_pending()
    assert [seq for seq, _ in replay(tmp_path)[0]] == list(range(1, 101))
    assert wal.stats.wal_dropped_records == 1010
    wal.rotate()  # what a snapshot does first: it holds the dropped records
    wal.append(1111, batch(1111, 10, size=100))
    wal.write_pending()
    assert wal.stats.wal_records == 110
    wal.close()


def test_a_snapshot_that_fails_after_a_gap_leaves_the_log_a_prefix_without_holes(
    tmp_path: Path,
) -> None:
    wal = new_wal(tmp_path, max_bytes=64 * 1024)
    wal.append(1, batch(1, 100, size=100))
    wal.write_pending()
    wal.append(101, batch(101, 1000, size=100))  # over the bound: dropped, a gap
    wal.write_pending()
    wal.rotate()  # an early snapshot starts ...
    wal.append(1101, batch(1101, 10, size=100))  # ... records arrive meanwhile ...
    wal.write_pending()
    wal.snapshot_failed()  # ... and the snapshot fails (disk full)
    wal.append(1111, batch(1111, 10, size=100))
    wal.write_pending()
    assert [seq for seq, _ in replay(tmp_path)[0]] == list(range(1, 101))
    wal.close()


def test_a_failed_snapshot_without_a_gap_keeps_the_new_segment(tmp_path: Path) -> None:
    wal = new_wal(tmp_path)
    wal.append(1, batch(1, 10))
    wal.rotate()
    wal.append(11, batch(11, 10))
    wal.write_pending()
    wal.snapshot_failed()
    assert [seq for seq, _ in replay(tmp_path)[0]] == list(range(1, 21))
    wal.close()


def test_a_failing_disk_is_counted_and_the_log_stays_readable(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes write() fail with EFBIG past 64 KiB, as a full disk
    fails with ENOSPC: the child keeps appending, and the file it leaves has
    no half-written chunk in the middle."""
    script = textwrap.dedent(
        f"""
        import json, resource, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        from tests.test_wal import batch
        from collector.wal import PersistenceStats, WriteAheadLog
        stats = PersistenceStats()
        wal = WriteAheadLog({str(tmp_path)!r}, stats)
        wal.open_segment()
        for i in range(40):
            wal.append(1 + i * 50, batch(i * 50, 50, size=100))
            wal.write_pending()
        wal.sync()
        wal.close()
        print(json.dumps({{"errors": stats.wal_write_errors, "logged": stats.wal_records,
                          "dropped": stats.wal_dropped_records}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    counts = json.loads(out.stdout)
    assert counts["errors"] > 0
    assert counts["logged"] + counts["dropped"] == 2000
    assert "write-ahead log write failed" in out.stderr
    items, stats = replay(tmp_path)
    assert len(items) == counts["logged"]
    assert stats.wal_torn_bytes == 0


def test_a_rolled_log_prunes_the_oldest_segments_once_the_store_holds_none_of_their_records(
    tmp_path: Path,
) -> None:
    wal = new_wal(tmp_path)
    wal.append(1, batch(0, 100))
    wal.write_pending()
    assert wal.roll()
    wal.append(101, batch(100, 100))
    wal.write_pending()
    assert wal.roll()
    assert wal.rolled
    wal.finish_rolls()
    assert not wal.rolled
    wal.append(201, batch(200, 50))
    wal.write_pending()
    assert sorted(wal.segments) == [1, 2, 3]
    # Nothing held is older than every record of a segment: nothing to prune.
    assert wal.prunable(None) == []
    assert wal.prunable(NOW + 99) == []
    # The store's oldest record is past segment 1's newest: 1 goes, in order.
    assert wal.prunable(NOW + 100) == [1]
    # The open segment is never pruned, however old its records.
    assert wal.prunable(NOW + 10**9) == [1, 2]
    wal.forget_segments(wal.unlink_segments(wal.prunable(NOW + 150)))
    assert sorted(wal.segments) == [2, 3]
    assert not (tmp_path / segment_name(1)).exists()
    wal.close()
    items, _ = replay(tmp_path)
    assert [seq for seq, _ in items] == list(range(101, 251))


def test_replay_learns_each_segments_newest_time_so_pruning_goes_on_after_a_restart(
    tmp_path: Path,
) -> None:
    wal = new_wal(tmp_path)
    wal.append(1, batch(0, 10)[::-1])  # out of order inside a batch: the max counts
    wal.write_pending()
    assert wal.roll()
    wal.finish_rolls()
    wal.append(11, batch(10, 10))
    wal.write_pending()
    wal.close()
    again = WriteAheadLog(str(tmp_path), PersistenceStats())
    again.replay(after_segment=0)
    again.open_segment()
    assert again.newest == {1: NOW + 9, 2: NOW + 19}
    assert again.prunable(NOW + 10) == [1]
    assert again.prunable(NOW + 20) == [1, 2]
    again.close()


def test_nothing_is_rolled_while_the_log_has_a_gap(tmp_path: Path) -> None:
    wal = new_wal(tmp_path, max_bytes=HEADER.size + 10)
    wal.append(1, batch(0, 100))
    wal.write_pending()  # over the bound: dropped, the log has a gap
    assert wal.gap
    assert not wal.roll()
    assert sorted(wal.segments) == [1]
    wal.close()


def test_a_segment_past_roll_bytes_is_rolled_as_it_is_written(tmp_path: Path) -> None:
    wal = new_wal(tmp_path, roll_bytes=4096)
    for i in range(0, 1000, 50):
        wal.append(i + 1, batch(i, 50))
        wal.write_pending()
    assert len(wal.segments) >= 5
    assert all(size < 4096 + 50 * 200 for size in wal.segments.values())
    assert wal.rolled  # the old segments' fsync and close wait for finish_rolls
    fsyncs = wal.stats.wal_fsyncs
    wal.finish_rolls()
    assert wal.stats.wal_fsyncs > fsyncs
    assert not wal.rolled
    wal.close()
    items, _ = replay(tmp_path)
    assert [seq for seq, _ in items] == list(range(1, 1001))
