"""Persistence stage: the write-ahead log of records handed to the store.

Appends are buffered and written as one checksummed chunk per flush (one
write() per timer tick or per 256 KiB, never per message); `fsync` decides when
the chunk reaches the disk. The log is a series of numbered segment files; a
snapshot names the last segment it covers, which is then deleted. A torn tail
(after kill -9 or power loss) fails its CRC at replay and is ignored, counted.
Write errors are counted and logged rate-limited, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter
from typing import Any

from collector.diskformat import (
    HEADER,
    BadFile,
    DamagedChunk,
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

log = logging.getLogger("collector.wal")

_TIMESTAMP = attrgetter("timestamp")
_SEGMENT = re.compile(r"^wal-(\d{8})\.log$")
# Buffered bytes written at once without waiting for the timer: encoding
# 1 MiB of records (tuples and marshal, on the event loop) took 10-20 ms,
# the largest share of the loop's stalls at 200k msg/s.
FLUSH_BYTES = 256 * 1024
_LOG_EVERY = 10.0
WAL_MAGIC = b"CLWALOG\x00"


@dataclass(slots=True)
class PersistenceStats:
    """Plain counters of the persistence stage for /metrics (read at scrape time).

    The log writes the `wal_*`, `replay_skipped` and `corrupt_files` counts;
    `Persistence` (persist.py) owns the object and adds the snapshot ones."""

    wal_bytes: int = 0  # current size of the log on disk
    wal_records: int = 0  # records appended to the log since start
    wal_write_errors: int = 0  # failed write()/fsync() calls (disk full, I/O error)
    wal_dropped_records: int = 0  # records not logged (write error or size bound)
    wal_fsyncs: int = 0
    wal_torn_bytes: int = 0  # bytes ignored at replay (torn tail after a crash)
    wal_segments_pruned: int = (
        0  # segments deleted between snapshots: the store held none of their records
    )
    snapshots: int = 0
    snapshot_errors: int = 0
    snapshot_seconds: float = 0.0  # duration of the last snapshot
    snapshot_records: int = 0  # records in the last snapshot
    restored_records: int = 0  # records in the store after start-up restore
    replayed_records: int = 0  # of which from the log
    replay_skipped: int = 0  # log segments (or records) already in the snapshot, not replayed
    corrupt_files: int = 0  # files moved aside
    block_files: int = 0  # block files on disk (one per sealed shard)
    block_files_written: int = 0
    block_files_deleted: int = 0  # their shard expired, was evicted or reopened
    block_bytes_written: int = 0
    block_write_errors: int = 0  # failed block file writes (disk full, I/O error)
    lost_records: int = 0  # records a snapshot named that could not be read back at start


def segment_name(n: int) -> str:
    """File name of log segment `n`."""
    return f"wal-{n:08d}.log"


class WriteAheadLog:
    """Numbered segment files in one directory; one open for appending."""

    def __init__(
        self,
        directory: str,
        stats: PersistenceStats,
        *,
        fsync: str = "batch",
        max_bytes: int = 256 * 1024 * 1024,
        flush_bytes: int = FLUSH_BYTES,
        roll_bytes: int | None = None,
    ) -> None:
        self.directory = directory
        # A segment this large is closed and a new one started (see roll);
        # None: only a snapshot's rotate() starts one.
        self.roll_bytes = roll_bytes
        self._retired: list[tuple[int, bool]] = []  # rolled: (fd, needs fsync)
        self.stats = stats
        self.fsync_mode = fsync
        self.max_bytes = max_bytes
        self.flush_bytes = flush_bytes
        self.segment = 0  # number of the segment appended to (or last one used)
        self.segments: dict[int, int] = {}  # segment number -> bytes on disk
        # segment number -> the newest event time of a record in it (see prunable)
        self.newest: dict[int, int] = {}
        self.last_seq = 0  # highest seq appended (or replayed)
        self.needs_fsync = False
        self.gap = False  # records were dropped from the log since the last snapshot
        # The first segment opened by a rotate() while the log had a gap: it
        # follows the hole, so it counts only once a snapshot covers the hole.
        self.after_gap: int | None = None
        self._fd: int | None = None
        self._fd_lock = threading.Lock()  # sync() runs in a thread; close() must wait for it
        self._pending: list[tuple[Sequence[int], list[Record]]] = []
        self._pending_records = 0
        self._bytes_per_record = 256.0  # running estimate, for the 1 MiB trigger
        self._last_log = 0.0
        self._suppressed = 0
        self._reopen_after = 0.0

    @property
    def size(self) -> int:
        """Bytes of all segments on disk."""
        return sum(self.segments.values())

    def _path(self, n: int) -> str:
        return os.path.join(self.directory, segment_name(n))

    def _existing(self) -> list[int]:
        return sorted(
            int(m[1]) for name in os.listdir(self.directory) if (m := _SEGMENT.match(name))
        )

    def _warn(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log < _LOG_EVERY:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += f" ({self._suppressed} similar messages suppressed)"
        self._suppressed = 0
        self._last_log = now
        log.error(msg, *args)

    # --- start-up ---------------------------------------------------------

    def replay(self, *, after_segment: int, after_seq: int = 0) -> list[tuple[int, Record]]:
        """Records of every segment after `after_segment`, in log order.

        Segments up to `after_segment` are in the snapshot: deleted, not read
        (a crash between snapshot rename and log truncation leaves them). A
        segment's torn tail is skipped and counted; a foreign file moved aside."""
        out: list[tuple[int, Record]] = []
        self.last_seq = max(self.last_seq, after_seq)
        # New segments are numbered above the snapshot's, even when its
        # segments are gone: a reused number would be skipped as covered.
        self.segment = max(self.segment, after_segment)
        with no_gc():
            self._replay_segments(after_segment, out)
        if out:
            self.last_seq = max(self.last_seq, max(seq for seq, _ in out))
        self.stats.wal_bytes = self.size
        return out

    def _replay_segments(self, after_segment: int, out: list[tuple[int, Record]]) -> None:
        for n in self._existing():
            self.segment = max(self.segment, n)
            path = self._path(n)
            if n <= after_segment:
                self.stats.replay_skipped += 1
                try:
                    os.unlink(path)
                except OSError as e:
                    log.warning("cannot remove %s, already in the snapshot: %s", path, e)
                continue
            self._replay_segment(path, n, out)

    def _replay_segment(self, path: str, n: int, out: list[tuple[int, Record]]) -> None:
        try:
            f = open(path, "rb")  # noqa: SIM115 -- closed below, before a move aside
        except OSError as e:
            log.error("cannot read write-ahead log %s: %s", path, e)
            return
        size = os.fstat(f.fileno()).st_size
        before = len(out)
        try:
            check_header(f, WAL_MAGIC)
            for chunk in read_chunks(f):
                out.extend(record_from_tuple(t) for t in chunk)
        except BadFile as e:
            f.close()
            if size == 0 or (size < HEADER.size and n == max(self._existing())):
                # Killed between creating the segment and writing its header.
                os.unlink(path)
                return
            self.stats.corrupt_files += 1
            move_aside(path, str(e))
            return
        except DamagedChunk as e:
            torn = size - e.offset
            self.stats.wal_torn_bytes += torn
            log.warning(
                "write-ahead log %s: %s; ignored the last %d bytes (a write cut short by a crash), kept %d records",
                path,
                e,
                torn,
                len(out) - before,
            )
        except (TypeError, ValueError) as e:
            self.stats.wal_torn_bytes += size - f.tell()
            log.error("write-ahead log %s: records do not decode (%s); kept those before", path, e)
        finally:
            f.close()
        self.segments[n] = size
        if len(out) > before:
            self.newest[n] = max(rec.timestamp for _, rec in islice(out, before, None))

    def open_segment(self, *, strict: bool = False, sync: bool = True) -> None:
        """Start a fresh segment for appends (numbered after every existing one).

        `strict` (at start-up): raise the OSError instead of serving from memory.
        `sync=False`: the caller runs `sync_created()` soon, in a thread (an
        fsync of the directory can wait for all the writeback before it)."""
        self.segment += 1
        path = self._path(self.segment)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as e:
            if strict:
                raise
            self._fd_failed(path, e)
            return
        try:
            os.write(fd, header(WAL_MAGIC))
            if self.fsync_mode != "never" and sync:
                os.fsync(fd)
                fsync_dir(self.directory)
        except OSError as e:
            os.close(fd)
            if strict:
                raise
            self._fd_failed(path, e)
            return
        self._fd = fd
        self.segments[self.segment] = HEADER.size
        self.stats.wal_bytes = self.size

    def _fd_failed(self, path: str, e: OSError) -> None:
        self.stats.wal_write_errors += 1
        self._reopen_after = time.monotonic() + 1.0
        self._warn("cannot open write-ahead log %s: %s; serving from memory only", path, e)

    # --- appending ----------------------------------------------------------

    def append(self, first_seq: int, records: list[Record]) -> None:
        """Buffer a batch the store numbered first_seq...; in `always` mode
        write and fsync it now, before the caller returns to the event loop."""
        n = len(records)
        if not n:
            return
        self.last_seq = first_seq + n - 1
        # A copy of the list (not of the records): the caller may reuse its list.
        self._pending.append((range(first_seq, first_seq + n), records[:]))
        self._pending_records += n
        self._after_append()

    def append_items(self, items: list[tuple[int, Record]]) -> None:
        """Buffer records with their own seqs (read from a stream: other
        nodes' ids). `last_seq` stays this node's: it is what new ids follow."""
        if not items:
            return
        self._pending.append(([s for s, _ in items], [r for _, r in items]))
        self._pending_records += len(items)
        self._after_append()

    def _after_append(self) -> None:
        if self.fsync_mode == "always":
            self.write_pending()
            self.sync()
        elif self._pending_records * self._bytes_per_record >= self.flush_bytes:
            self.write_pending()

    def write_pending(self) -> None:
        """Write the buffered batches as one chunk (one write() call)."""
        if not self._pending:
            return
        pending, n = self._pending, self._pending_records
        self._pending, self._pending_records = [], 0
        if self._fd is None and time.monotonic() >= self._reopen_after:
            self.open_segment()
        if self._fd is None or self.gap:
            self._drop(n)
            return
        tuples = [
            record_tuple(seq, r)
            for seqs, recs in pending
            for seq, r in zip(seqs, recs, strict=True)
        ]
        chunk = encode_chunk(tuples)
        self._bytes_per_record = len(chunk) / n
        if self.size + len(chunk) > self.max_bytes:
            self._drop(n)
            self._warn(
                "write-ahead log is at its bound (%d bytes): %d records kept in memory only until the next snapshot",
                self.max_bytes,
                n,
            )
            return
        fd = self._fd
        good = self.segments[self.segment]
        try:
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as e:
            self.stats.wal_write_errors += 1
            self._drop(n)
            self._warn("write-ahead log write failed: %s; %d records in memory only", e, n)
            try:  # cut the partial chunk so the next one follows a clean end
                os.ftruncate(fd, good)
            except OSError:
                self._close_fd()  # the next write starts a new segment
                self._reopen_after = time.monotonic() + 1.0
            return
        self.segments[self.segment] = good + len(chunk)
        top = max(max(map(_TIMESTAMP, recs)) for _, recs in pending)
        if top > self.newest.get(self.segment, top - 1):
            self.newest[self.segment] = top
        self.stats.wal_records += n
        self.stats.wal_bytes = self.size
        self.needs_fsync = True
        if self.roll_bytes and good + len(chunk) >= self.roll_bytes:
            self.roll()

    def _drop(self, n: int) -> None:
        """Records that could not be logged: from here on the log would have a
        gap, and a replay would bring back later records without them. So it
        takes nothing more until the next snapshot (which holds them) starts
        a fresh segment: after a crash the log replays a prefix, never holes."""
        self.stats.wal_dropped_records += n
        self.gap = True

    def sync(self) -> None:
        """fsync the open segment (from a thread in `batch` mode)."""
        with self._fd_lock:
            if self._fd is None or not self.needs_fsync:
                return
            self.needs_fsync = False
            try:
                os.fsync(self._fd)
            except OSError as e:
                self.stats.wal_write_errors += 1
                self._warn("write-ahead log fsync failed: %s", e)
                return
            self.stats.wal_fsyncs += 1

    # --- truncation -----------------------------------------------------------

    def sync_created(self) -> None:
        """The fsyncs `open_segment(sync=False)` left out (from a thread)."""
        if self.fsync_mode == "never":
            return
        with self._fd_lock:
            try:
                if self._fd is not None:
                    os.fsync(self._fd)
                fsync_dir(self.directory)
            except OSError as e:
                self.stats.wal_write_errors += 1
                self._warn("write-ahead log fsync failed: %s", e)

    def rotate(self, *, reopen: bool = True, sync: bool = True) -> list[int]:
        """Write the buffer, seal the open segment and (reopen) start a new one.

        Returns the sealed segment numbers, the open one last: a snapshot of
        the store taken now covers them all."""
        self.write_pending()
        self._close_fd()
        if self.gap and self.after_gap is None:
            # The snapshot taken now will hold what the log dropped; until it
            # is written, what follows is logged past a hole: snapshot_failed()
            # removes it again, so the log still replays a prefix.
            self.after_gap = self.segment + 1
        self.gap = False
        sealed = sorted(set(self.segments) | {self.segment})
        if reopen:
            self.open_segment(sync=sync)
        return sealed

    def snapshot_written(self) -> None:
        """A snapshot covering every sealed segment (and any hole) is durable."""
        self.after_gap = None

    def snapshot_failed(self) -> None:
        """The snapshot after a rotate() failed. When the log had a gap, the
        segments logged since follow a hole: remove them and take nothing
        more until a snapshot succeeds. What a crash loses is then a suffix."""
        first = self.after_gap
        if first is None:
            return
        self.after_gap = None
        self.write_pending()
        self._close_fd()
        self.gap = True
        for n in sorted(self.segments):
            if n >= first:
                try:
                    os.unlink(self._path(n))
                except FileNotFoundError:
                    pass
                except OSError as e:
                    # Cannot remove: empty it, or replay would bring a hole back.
                    self._warn("cannot remove write-ahead log segment %s: %s", self._path(n), e)
                    with contextlib.suppress(OSError):
                        os.truncate(self._path(n), 0)
                self.segments.pop(n, None)
        self.stats.wal_bytes = self.size

    def remove_segments(self, numbers: list[int]) -> None:
        """Delete segments a durable snapshot covers."""
        self.forget_segments(self.unlink_segments(numbers))

    def unlink_segments(self, numbers: list[int]) -> list[int]:
        """The file side of `remove_segments`, safe in a worker thread (it
        only unlinks: removing a large file can take tens of ms); returns
        the numbers removed, for `forget_segments` on the owner's thread."""
        removed = []
        for n in numbers:
            if n == self.segment and self._fd is not None:
                continue
            try:
                os.unlink(self._path(n))
            except FileNotFoundError:
                pass
            except OSError as e:
                self._warn("cannot remove write-ahead log segment %s: %s", self._path(n), e)
                continue
            removed.append(n)
        return removed

    def forget_segments(self, numbers: list[int]) -> None:
        for n in numbers:
            self.segments.pop(n, None)
            self.newest.pop(n, None)
        self.stats.wal_bytes = self.size

    # --- rolling and pruning, between snapshots --------------------------------

    def roll(self) -> bool:
        """Start a new segment now, without a snapshot, so that older
        segments can be pruned once the store no longer holds their records
        (`write_pending` rolls by itself past `roll_bytes`). The old
        segment's fsync and close wait for `finish_rolls` (a worker thread's
        job); False when nothing was rolled (no segment open, or a gap)."""
        if self.gap or self._fd is None:
            return False
        with self._fd_lock:
            old, self._fd = self._fd, None
            dirty, self.needs_fsync = self.needs_fsync, False
        self._retired.append((old, dirty))
        self.open_segment(sync=False)
        return True

    @property
    def rolled(self) -> bool:
        """Segments were rolled and wait for `finish_rolls`."""
        return bool(self._retired)

    def finish_rolls(self) -> None:
        """The file side of `roll` (from a thread, or at close): make each
        rolled segment durable and close it, then the new ones' creation."""
        retired, self._retired = self._retired, []
        for fd, dirty in retired:
            try:
                if dirty and self.fsync_mode != "never":
                    os.fsync(fd)
                    self.stats.wal_fsyncs += 1
            except OSError as e:
                self.stats.wal_write_errors += 1
                self._warn("write-ahead log fsync failed: %s", e)
            finally:
                os.close(fd)
        if retired:
            self.sync_created()

    def prunable(self, oldest: int | None) -> list[int]:
        """The oldest closed segments whose records are all older than
        `oldest`, the event time of the oldest record the store holds: the
        store evicted or expired every one of them (it drops oldest first),
        so a restart needs none of them. In order, stopping at the first
        segment still needed (or whose times are unknown)."""
        if oldest is None:
            return []
        out = []
        for n in sorted(self.segments):
            if n == self.segment and self._fd is not None:
                break
            top = self.newest.get(n)
            if top is None or top >= oldest:
                break
            out.append(n)
        return out

    def _close_fd(self) -> None:
        with self._fd_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self.needs_fsync = False

    def close(self) -> None:
        """Close the open segment and any rolled ones (the buffer is not
        written; call rotate first)."""
        self.finish_rolls()
        self._close_fd()
