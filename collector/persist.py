"""Persistence stage, orchestration: restore the store at start, log every
batch, snapshot early when the log grows and at shutdown, then truncate the
log. The file formats live beneath it: `diskformat` (header, chunks),
`snapshot` (the store written once), `wal` (the write-ahead log); imports
flow one way, from here down. Disk errors are counted and logged, never
raised: the daemon keeps serving from memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Protocol

from collector.diskformat import no_gc
from collector.record import Record
from collector.snapshot import SNAPSHOT_NAME, read_snapshot, write_snapshot
from collector.wal import PersistenceStats, WriteAheadLog

# PersistenceStats is defined beside the log that writes most of its counters;
# daemon.py and metrics.py import it from here, with Persistence.
__all__ = ["Persistence", "PersistenceStats", "RecordStore"]

log = logging.getLogger("collector.persist")


class RecordStore(Protocol):
    """The part of the store that persistence uses."""

    def restore(self, items: Iterable[tuple[int, Record]]) -> None: ...
    def snapshot_items(self) -> Iterator[tuple[int, Record]]: ...
    def expire(self, now: int) -> int: ...
    def __len__(self) -> int: ...


class Persistence:
    """Snapshot + write-ahead log for one store in one directory.

    `open(now)` restores; `log(first_seq, records)` after each `add_many`;
    `flush()` on a timer; `close()` at shutdown writes the snapshot and
    truncates the log. Disk errors are counted and logged, never raised:
    the daemon keeps serving from memory."""

    def __init__(
        self,
        directory: str,
        store: RecordStore,
        *,
        fsync: str = "batch",
        wal_max_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.directory = directory
        self.store = store
        self.stats = PersistenceStats()
        self.snapshot_path = os.path.join(directory, SNAPSHOT_NAME)
        self.wal = WriteAheadLog(directory, self.stats, fsync=fsync, max_bytes=wal_max_bytes)
        self._snapshot_task: asyncio.Task[None] | None = None
        self._last_snapshot_try = 0.0

    def open(self, now_us: int) -> None:
        """Create the directory, restore snapshot + log into the store, open the log.

        OSError only when the directory cannot be created or the log opened."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        for name in os.listdir(self.directory):
            if name.startswith(SNAPSHOT_NAME + ".tmp"):  # a snapshot cut short by a crash
                os.unlink(os.path.join(self.directory, name))
        t0 = time.monotonic()
        snap = read_snapshot(self.snapshot_path)
        if snap.error is not None:
            self.stats.corrupt_files += 1
        replayed = self.wal.replay(after_segment=snap.wal_segment, after_seq=snap.last_seq)
        if snap.error is not None and snap.items and replayed:
            # The damaged snapshot lost its record of which log segments it
            # covers: a segment it covered may still be here. Ids stay unique.
            in_snapshot = {seq for seq, _ in snap.items}
            kept = [item for item in replayed if item[0] not in in_snapshot]
            self.stats.replay_skipped += len(replayed) - len(kept)
            replayed = kept
        self.stats.replayed_records = len(replayed)
        # Expired records go in too, then expire(): the store's sequence then
        # continues above every seq ever logged, so new ids never repeat one.
        with no_gc():
            if snap.items:
                self.store.restore(snap.items)
            if replayed:
                self.store.restore(replayed)
            self.store.expire(now_us)
        self.stats.restored_records = len(self.store)
        if snap.items or replayed or snap.error:
            log.info(
                "restored %d records (%d from snapshot, %d from log, %d expired meanwhile) in %.2fs",
                len(self.store),
                len(snap.items),
                len(replayed),
                len(snap.items) + len(replayed) - len(self.store),
                time.monotonic() - t0,
            )
        self.wal.open_segment()

    def log(self, first_seq: int, records: list[Record]) -> None:
        """Log a batch that `add_many` just stored (seqs first_seq...)."""
        self.wal.append(first_seq, records)

    @property
    def wants_snapshot(self) -> bool:
        """The log is past half its bound, or has dropped records (disk full,
        at its bound): snapshot early, then start the log afresh."""
        return self.wal.gap or self.wal.size >= self.wal.max_bytes // 2

    async def flush(self) -> None:
        """One timer tick: write the buffer, fsync it (batch mode, in a thread),
        and start an early snapshot when the log is past half its bound."""
        self.wal.write_pending()
        if self.wal.fsync_mode == "batch" and self.wal.needs_fsync:
            await asyncio.to_thread(self.wal.sync)
        if (
            self.wants_snapshot
            and self._snapshot_task is None
            and time.monotonic() - self._last_snapshot_try > 10.0
        ):
            self._last_snapshot_try = time.monotonic()
            self._snapshot_task = asyncio.ensure_future(self._snapshot_while_running())

    async def _snapshot_while_running(self) -> None:
        """Seal the log segment and write the snapshot from a forked child.

        fork() gives the child a copy-on-write image of the store as of this
        instant, as Redis's BGSAVE does: the event loop neither copies the
        items nor shares the GIL with the encoder. The child uses no event
        loop, lock or logging; it writes the file and reports through a pipe."""
        try:
            sealed = self.wal.rotate()
            last_seq = self.wal.last_seq
            log.info(
                "early snapshot: the log is at %d of %d bytes", self.wal.size, self.wal.max_bytes
            )
            t0 = time.monotonic()
            outcome = await self._snapshot_in_child(last_seq, sealed[-1])
            if outcome.startswith("ok "):
                self.stats.snapshots += 1
                self.stats.snapshot_records = int(outcome.split()[1])
                self.stats.snapshot_seconds = round(time.monotonic() - t0, 6)
                log.info(
                    "snapshot: %d records in %.2fs (child process)",
                    self.stats.snapshot_records,
                    self.stats.snapshot_seconds,
                )
                self.wal.remove_segments(sealed)
            else:
                self.stats.snapshot_errors += 1
                log.error("snapshot %s failed: %s; the log is kept", self.snapshot_path, outcome)
        finally:
            self._snapshot_task = None

    async def _snapshot_in_child(self, last_seq: int, wal_segment: int) -> str:
        """ "ok <records>" or what went wrong."""
        r, w = os.pipe()
        parent = os.getpid()
        try:
            with warnings.catch_warnings():  # 3.12+ warns about fork with threads
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError as e:
            os.close(r)
            os.close(w)
            return f"cannot fork: {e}"
        if pid == 0:  # pragma: no cover -- the child; coverage cannot see it
            code = 0
            try:
                os.close(r)
                items = self.store.snapshot_items()
                n = write_snapshot(
                    self.snapshot_path,
                    items,
                    last_seq,
                    wal_segment,
                    tmp=f"{self.snapshot_path}.tmp-{os.getpid()}",
                    still_wanted=lambda: os.getppid() == parent,
                )
                os.write(w, f"ok {n}".encode())
            except BaseException as e:
                os.write(w, f"{type(e).__name__}: {e}".encode()[:1000])
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        try:
            _, status = await asyncio.to_thread(os.waitpid, pid, 0)
            outcome = (await asyncio.to_thread(os.read, r, 4096)).decode(errors="replace")
        finally:
            os.close(r)
        if not outcome:
            outcome = f"child exited with status {status}"
        return outcome

    def _write_snapshot(
        self, items: Iterable[tuple[int, Record]], last_seq: int, wal_segment: int
    ) -> bool:
        t0 = time.monotonic()
        try:
            n = write_snapshot(self.snapshot_path, items, last_seq, wal_segment)
        except OSError as e:
            self.stats.snapshot_errors += 1
            log.error("snapshot %s failed: %s; the write-ahead log is kept", self.snapshot_path, e)
            return False
        self.stats.snapshots += 1
        self.stats.snapshot_records = n
        self.stats.snapshot_seconds = round(time.monotonic() - t0, 6)
        log.info("snapshot: %d records in %.2fs", n, self.stats.snapshot_seconds)
        return True

    async def close(self) -> None:
        """Shutdown: flush the log, write the snapshot, truncate the log."""
        if self._snapshot_task is not None:
            await self._snapshot_task
        self.wal.write_pending()
        if self.wal.fsync_mode != "never":
            self.wal.sync()
        sealed = self.wal.rotate(reopen=False)
        if self._write_snapshot(self.store.snapshot_items(), self.wal.last_seq, sealed[-1]):
            self.wal.remove_segments(sealed)
        self.wal.close()
