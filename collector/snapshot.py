"""Persistence stage: the snapshot file, the whole store written once.

It is written to a temp file, fsynced, renamed and the directory fsynced, so a
reader sees the old file or the new one, never half of one. A file that is
not ours or is damaged is moved aside (`.corrupt-<time>`) with one log line,
keeping the records before the damage: never a crash loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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
        with no_gc(), open(tmp, "wb") as f:
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


def read_snapshot(path: str) -> SnapshotRead:
    """Read a snapshot; a damaged one yields the good chunks before the damage.

    A missing file is an empty snapshot. A file that is not ours, or damaged,
    is moved aside and logged, after salvaging what precedes the damage."""
    items: list[tuple[int, Record]] = []
    last_seq = 0
    wal_segment = 0
    ended = False
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed in finally, after move_aside needs it shut
    except FileNotFoundError:
        return SnapshotRead(items, 0)
    error: str | None = None
    with no_gc():
        try:
            check_header(f, SNAPSHOT_MAGIC)
            for obj in read_chunks(f):
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
    return SnapshotRead(items, last_seq, wal_segment, error)
