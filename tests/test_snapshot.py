"""The snapshot file: round trips, atomic replacement, and every way a file
can be damaged or foreign (salvaged up to the damage, then moved aside)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from collector.diskformat import HEADER, encode_chunk, header, record_tuple
from collector.record import Record
from collector.snapshot import SNAPSHOT_MAGIC, read_snapshot, write_snapshot

NOW = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def rec(i: int, ts: int | None = None) -> Record:
    return Record(
        timestamp=NOW + i if ts is None else ts,
        received_at=NOW + i + 5,
        host=f"h{i % 3}",
        service="svc" if i % 2 else None,
        procid=str(i),
        msgid=None,
        facility=None if i % 4 == 0 else 3,
        level=i % 8,
        message=f"message {i} \u00e9\u4e2d\U0001f600",
        structured_data={"a@1": {"k": ["v1", "v2"], "x": "y"}} if i % 5 == 0 else None,
        fields={"n": i, "f": 1.5, "b": True, "l": [1, None], "d": {"z": "w"}}
        if i % 3 == 0
        else None,
        format="rfc5424",
    )


def test_a_snapshot_round_trips_every_field_and_sequence_number(tmp_path: Path) -> None:
    items = [(i * 3 + 1, rec(i)) for i in range(10_000)]  # several chunks, sparse seqs
    path = str(tmp_path / "snapshot.bin")
    assert write_snapshot(path, items, last_seq=99_999, wal_segment=7) == 10_000
    snap = read_snapshot(path)
    assert snap.error is None
    assert snap.items == items
    assert (snap.last_seq, snap.wal_segment) == (99_999, 7)
    assert not os.path.exists(path + ".tmp")


def test_a_missing_snapshot_is_an_empty_one(tmp_path: Path) -> None:
    snap = read_snapshot(str(tmp_path / "nothing"))
    assert (snap.items, snap.last_seq, snap.error) == ([], 0, None)


def test_writing_a_snapshot_replaces_the_old_one_whole(tmp_path: Path) -> None:
    path = str(tmp_path / "snapshot.bin")
    write_snapshot(path, [(1, rec(1))], 1, 0)
    write_snapshot(path, [(2, rec(2)), (3, rec(3))], 3, 0)
    assert [seq for seq, _ in read_snapshot(path).items] == [2, 3]
    assert sorted(os.listdir(tmp_path)) == ["snapshot.bin"]


def test_a_damaged_chunk_keeps_the_chunks_before_it_and_moves_the_file_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "snapshot.bin"
    write_snapshot(str(path), [(i + 1, rec(i)) for i in range(10_000)], 10_000, 0)
    data = bytearray(path.read_bytes())
    data[-2000] ^= 0x55  # inside the last record chunk (4096 records per chunk)
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR):
        snap = read_snapshot(str(path))
    assert snap.error is not None
    assert "checksum mismatch" in snap.error
    assert len(snap.items) == 8192
    assert snap.last_seq == 8192  # the highest seq kept, since the end marker is lost
    assert not path.exists()
    aside = list(tmp_path.glob("snapshot.bin.corrupt-*"))
    assert len(aside) == 1
    assert "moved aside" in caplog.text


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "too short for a header"),
        (b"{}\n" * 10, "not a collector file"),
        (b"CLSNAPSH" + b"\x09\x00\x00\x00\x01\x00\x00\x00", "unknown format version 9"),
    ],
)
def test_a_file_that_is_not_a_snapshot_we_know_is_moved_aside(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "snapshot.bin"
    path.write_bytes(content)
    snap = read_snapshot(str(path))
    assert snap.items == []
    assert snap.error is not None
    assert reason in snap.error
    assert len(list(tmp_path.glob("snapshot.bin.corrupt-*"))) == 1


def test_a_snapshot_without_its_end_marker_keeps_its_records_but_is_moved_aside(
    tmp_path: Path,
) -> None:
    path = tmp_path / "snapshot.bin"
    path.write_bytes(header(SNAPSHOT_MAGIC) + encode_chunk([record_tuple(5, rec(5))]))
    snap = read_snapshot(str(path))
    assert snap.error == "no end marker: the snapshot is incomplete"
    assert snap.items == [(5, rec(5))]
    assert snap.last_seq == 5
    assert len(list(tmp_path.glob("snapshot.bin.corrupt-*"))) == 1


def test_a_checksummed_chunk_of_the_wrong_shape_is_an_error_not_an_exception(
    tmp_path: Path,
) -> None:
    path = tmp_path / "snapshot.bin"
    path.write_bytes(header(SNAPSHOT_MAGIC) + encode_chunk([(1, 2, 3)]))
    snap = read_snapshot(str(path))
    assert snap.error is not None
    assert snap.error.startswith("records do not decode")
    assert snap.items == []


def test_a_snapshot_cut_after_its_header_is_incomplete_not_empty(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.bin"
    write_snapshot(str(path), [(1, rec(1))], 1, 0)
    path.write_bytes(path.read_bytes()[: HEADER.size])
    snap = read_snapshot(str(path))
    assert snap.error == "no end marker: the snapshot is incomplete"
