"""Persistence stage: the snapshot file, `snapshot.bin`.

Format 2 (written since sealed blocks go to block files, blockfile.py) is a
manifest: which block files are live (name, shard key, records still live,
records in the file, newest time), then the open shards' records, then the
end marker. Format 1 (read only: a daemon upgraded in place restarts with
its data) holds every record. Either is written to a temp file, fsynced,
renamed and the directory fsynced, so a reader sees the old file or the new
one, never half of one. A file that is not ours or is damaged is moved aside
(`.corrupt-<time>`) with one log line, keeping the records before the
damage: never a crash loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

from collector.diskformat import (
    BadFile,
    DamagedChunk,
    RecordTuple,
    check_header,
    encode_chunk,
    fsync_dir,
    header,
    move_aside,
    no_gc,
    read_chunks,
    record_from_tuple,
    record_tuple,
)
from collector.record import Record

log = logging.getLogger("collector.snapshot")

SNAPSHOT_MAGIC = b"CLSNAPSH"
SNAPSHOT_NAME = "snapshot.bin"
SNAPSHOT_CHUNK_RECORDS = 4096
RECORDS_VERSION = 1  # every record in the file
MANIFEST_VERSION = 2  # block files named, open shards' records in the file


@dataclass(slots=True, frozen=True)
class FileEntry:
    """A live block file as the manifest names it."""

    name: str
    key: int  # the shard's key (event time // shard span)
    live: int  # how many of its records the shard still held (the newest ones)
    records: int  # records in the file
    max_ts: int  # the newest record's event time (a file past TTL is not read)

    def as_tuple(self) -> tuple[str, int, int, int, int]:
        return (self.name, self.key, self.live, self.records, self.max_ts)


class ManifestWriter:
    """Writes a format-2 snapshot piece by piece (each call may run in a
    worker thread): `open()` with the block files, `add()` chunks of
    record tuples (`encode_chunk`), `finish()` the end marker, fsync and
    rename; `abort()` removes the temp file. OSError propagates."""

    def __init__(self, path: str, files: list[FileEntry], span_us: int) -> None:
        self.path = path
        self.tmp = path + ".tmp"
        self.files = files
        self.span_us = span_us
        self.records = 0
        self._f: IO[bytes] | None = None

    def open(self) -> None:
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._f = open(fd, "wb")  # noqa: SIM115 -- closed by finish() or abort()
        self._f.write(header(SNAPSHOT_MAGIC, MANIFEST_VERSION))
        manifest = {
            "manifest": MANIFEST_VERSION,
            "span": self.span_us,
            "files": [e.as_tuple() for e in self.files],
        }
        self._f.write(encode_chunk(manifest))

    def add(self, chunk: bytes, records: int) -> None:
        assert self._f is not None
        self._f.write(chunk)
        self.records += records

    def add_all(self, chunks: list[tuple[bytes, int]]) -> None:
        """`add` each (chunk, records) in turn."""
        for chunk, records in chunks:
            self.add(chunk, records)

    def finish(self, last_seq: int, wal_segment: int) -> None:
        assert self._f is not None
        f = self._f
        end = {
            "end": True,
            "last_seq": last_seq,
            "wal_segment": wal_segment,
            "records": self.records,
        }
        f.write(encode_chunk(end))
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._f = None
        os.replace(self.tmp, self.path)
        fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    def abort(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def write_snapshot(
    path: str,
    items: Iterable[tuple[int, Record]],
    last_seq: int,
    wal_segment: int,
    *,
    tmp: str | None = None,
    still_wanted: Callable[[], bool] | None = None,
) -> int:
    """Write every (seq, record) to `path` atomically; returns how many.

    `wal_segment` is the last write-ahead log segment whose records are all in
    this snapshot: replay skips it and those before. The last chunk is a dict
    `{"end": True, "last_seq", "wal_segment", "records"}`; a snapshot without
    it is incomplete. OSError propagates (disk full). `still_wanted` is asked
    just before the rename (a snapshot child whose daemon died gives up)."""
    tmp = tmp or path + ".tmp"
    count = 0
    try:
        # 0600 like the log: records may hold what only the owner should read.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with no_gc(), open(fd, "wb") as f:
            f.write(header(SNAPSHOT_MAGIC))
            batch: list[RecordTuple] = []
            for seq, rec in items:
                batch.append(record_tuple(seq, rec))
                if len(batch) >= SNAPSHOT_CHUNK_RECORDS:
                    f.write(encode_chunk(batch))
                    count += len(batch)
                    batch = []
            if batch:
                f.write(encode_chunk(batch))
                count += len(batch)
            f.write(
                encode_chunk(
                    {
                        "end": True,
                        "last_seq": last_seq,
                        "wal_segment": wal_segment,
                        "records": count,
                    }
                )
            )
            f.flush()
            os.fsync(f.fileno())
        if still_wanted is not None and not still_wanted():
            raise OSError("the daemon that asked for this snapshot is gone")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    return count


@dataclass(slots=True)
class SnapshotRead:
    """What a snapshot held; `error` says why it is incomplete (file moved aside)."""

    items: list[tuple[int, Record]]
    last_seq: int
    wal_segment: int = 0
    error: str | None = None
    version: int = RECORDS_VERSION
    # Format 2: the live block files (None: the manifest chunk was unreadable).
    files: list[FileEntry] | None = None
    span_us: int | None = None


def read_snapshot(path: str) -> SnapshotRead:
    """Read a snapshot; a damaged one yields the good chunks before the damage.

    A missing file is an empty snapshot. A file that is not ours, or damaged,
    is moved aside and logged, after salvaging what precedes the damage."""
    items: list[tuple[int, Record]] = []
    last_seq = 0
    wal_segment = 0
    ended = False
    version = RECORDS_VERSION
    files: list[FileEntry] | None = None
    span_us: int | None = None
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed in finally, after move_aside needs it shut
    except FileNotFoundError:
        return SnapshotRead(items, 0)
    error: str | None = None
    with no_gc():
        try:
            version = check_header(f, SNAPSHOT_MAGIC, (RECORDS_VERSION, MANIFEST_VERSION))
            chunks = read_chunks(f)
            if version == MANIFEST_VERSION:
                head = next(chunks, None)
                if not isinstance(head, dict) or head.get("manifest") != MANIFEST_VERSION:
                    raise DamagedChunk(f.tell(), "no manifest chunk")
                span_us = int(head["span"])
                files = [_entry(e) for e in head["files"]]
            for obj in chunks:
                if ended:
                    raise DamagedChunk(f.tell(), "data after the end marker")
                if isinstance(obj, dict):
                    if obj.get("end") is not True or obj.get("records") != len(items):
                        raise DamagedChunk(f.tell(), "end marker does not match the records")
                    last_seq = int(obj["last_seq"])
                    wal_segment = int(obj["wal_segment"])
                    ended = True
                    continue
                items.extend(record_from_tuple(t) for t in obj)
            if not ended:
                error = "no end marker: the snapshot is incomplete"
        except BadFile as e:
            error = str(e)
            items = []
        except DamagedChunk as e:
            error = str(e)
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            error = f"records do not decode ({e})"
        except OSError as e:
            error = f"cannot read: {e}"
        finally:
            f.close()
    if error is not None:
        if items:
            last_seq = max(last_seq, max(seq for seq, _ in items))
        log.error("snapshot %s: %s; kept %d records read before it", path, error, len(items))
        move_aside(path, error)
    return SnapshotRead(items, last_seq, wal_segment, error, version, files, span_us)


def _entry(e: object) -> FileEntry:
    """A manifest entry from its tuple; TypeError on a wrong shape."""
    if not isinstance(e, tuple) or len(e) != 5:
        raise TypeError("manifest entry is not a 5-tuple")
    name, key, live, records, max_ts = e
    if type(name) is not str or not all(type(v) is int for v in (key, live, records, max_ts)):
        raise TypeError("manifest entry has wrong types")
    return FileEntry(name, key, live, records, max_ts)
