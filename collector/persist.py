"""Persistence stage, orchestration: restore the store at start, log every
batch, write each sealed shard's blocks once (block files), snapshot (a
manifest naming the live block files, plus the open shards' records) when
block files changed, early when the log grows, and at shutdown; then
truncate the log and delete dead block files. The file formats live
beneath it: `diskformat` (header, chunks), `blockfile` (a sealed shard's
blocks), `snapshot` (the manifest), `wal` (the write-ahead log); imports
flow one way, from here down. Disk errors are counted and logged, never
raised: the daemon keeps serving from memory. No fork: the blocks are
immutable, so a worker thread writes them while the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from collector.block import Block
from collector.blockcache import BlockCache
from collector.blockfile import (
    BLOCK_FILE,
    BlockFileRead,
    block_file_name,
    read_block_file,
    write_block_file,
)
from collector.blockrun import records as block_records
from collector.diskformat import (
    RecordTuple,
    encode_chunk,
    fsync_dir,
    move_aside,
    no_gc,
    record_tuple,
)
from collector.record import Record
from collector.sealing import SealedColumns, sealed_columns
from collector.shard import Shard
from collector.snapshot import (
    MANIFEST_VERSION,
    SNAPSHOT_NAME,
    FileEntry,
    ManifestWriter,
    SnapshotRead,
    read_snapshot,
)
from collector.wal import PersistenceStats, WriteAheadLog

# PersistenceStats is defined beside the log that writes most of its counters;
# daemon.py and metrics.py import it from here, with Persistence.
__all__ = ["DirectoryInUse", "Persistence", "PersistenceStats", "RecordStore"]

log = logging.getLogger("collector.persist")
LOCK_NAME = "lock"  # flock()ed by the daemon using the directory
# A snapshot after block files were written or became dead, at most this
# often (seconds): it names the new files, so that a restart after a crash
# reads blocks instead of replaying the log, and lets dead files go.
SNAPSHOT_EVERY = 30.0
BLOCK_RETRY = 10.0  # seconds before block files are tried again after a disk error
# Open shards' records serialised per loop turn during a snapshot (~5-10 ms).
SLICE_RECORDS = 1024
ROLL_PARTS = 16  # a log segment is rolled at wal_max_bytes / ROLL_PARTS (see _roll_and_prune)
PRUNE_GRACE = 30.0  # seconds without pruning before the log at half its bound wants a snapshot
WRITE_BATCH = 8  # slices' chunks per write in the worker thread (~1 MiB)
BLOCK_CACHE_BYTES = 4 * 1024 * 1024


class DirectoryInUse(OSError):
    """Another process holds the persist_dir's lock."""


class RecordStore(Protocol):
    """The part of the store that persistence uses."""

    ttl_us: int
    shard_span_us: int

    def restore(self, items: Iterable[tuple[int, Record]], *, last_seq: int = 0) -> None: ...
    def restore_sealed(
        self,
        key: int,
        blocks: list[Block],
        live: int | None = None,
        *,
        columns: SealedColumns | None = None,
        max_seq: int | None = None,
    ) -> Shard: ...
    def shards(self) -> list[Shard]: ...
    def snapshot_items(self) -> Iterator[tuple[int, Record]]: ...
    def expire(self, now: int) -> int: ...
    def oldest_timestamp(self) -> int | None: ...
    def __len__(self) -> int: ...


@dataclass(slots=True)
class BlockFile:
    """A block file on disk and the sealed shard it holds."""

    name: str
    key: int
    records: int
    max_ts: int


class Persistence:
    """Block files + snapshot (a manifest) + write-ahead log for one store in
    one directory.

    `open(now)` restores; `log(first_seq, records)` after each `add_many`;
    `flush()` on a timer (it also writes newly sealed shards' block files and
    starts a snapshot when one is due); `close()` at shutdown writes the
    snapshot and truncates the log. Disk errors are counted and logged,
    never raised: the daemon keeps serving from memory."""

    def __init__(
        self,
        directory: str,
        store: RecordStore,
        *,
        fsync: str = "batch",
        wal_max_bytes: int = 256 * 1024 * 1024,
        snapshot_every: float = SNAPSHOT_EVERY,
    ) -> None:
        self.directory = directory
        self.store = store
        self.stats = PersistenceStats()
        self.snapshot_path = os.path.join(directory, SNAPSHOT_NAME)
        self.wal = WriteAheadLog(
            directory,
            self.stats,
            fsync=fsync,
            max_bytes=wal_max_bytes,
            roll_bytes=wal_max_bytes // ROLL_PARTS,
        )
        self.snapshot_every = snapshot_every
        self._snapshot_task: asyncio.Task[None] | None = None
        self._blocks_task: asyncio.Task[bool] | None = None
        self._last_snapshot_try = 0.0
        self._last_snapshot = 0.0  # the first block files get a snapshot at once
        self._pruned_at = float("-inf")  # when pruning last deleted a log segment
        self._lock_fd: int | None = None
        # Sealed shards whose blocks are on disk: shard uid -> its file.
        self._files: dict[int, BlockFile] = {}
        # Files no shard needs any more: deleted once a snapshot without them is durable.
        self._dead: list[str] = []
        self._blocks_changed = False  # since the last snapshot
        self._next_file = 1
        self._blocks_retry_at = 0.0
        self._last_warning = 0.0
        self._snapshot_lock = asyncio.Lock()  # one snapshot at a time (timer, shutdown, callers)

    def open(self, now_us: int) -> None:
        """Create the directory, restore snapshot + block files + log into the
        store, open the log.

        OSError when the directory cannot be created, locked or written;
        DirectoryInUse when another process holds it."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        # An existing directory too: records are private. Only group and other
        # bits are taken away; a directory the owner made read-only stays so
        # (and the log's first segment then fails: an error at start-up).
        mode = os.stat(self.directory).st_mode & 0o7777
        if mode & 0o077:
            os.chmod(self.directory, mode & 0o700)
        self._lock()
        try:
            self._restore(now_us)
        except BaseException:
            self.unlock()
            raise

    def _block_files_on_disk(self) -> dict[str, int]:
        """Block file name -> its number, for every block file in the directory."""
        return {
            name: int(m[1]) for name in os.listdir(self.directory) if (m := BLOCK_FILE.match(name))
        }

    def _restore(self, now_us: int) -> None:
        for name in os.listdir(self.directory):
            # A snapshot or block file cut short by a crash.
            if name.startswith(SNAPSHOT_NAME + ".tmp") or (
                name.startswith("blocks-") and name.endswith(".tmp")
            ):
                os.unlink(os.path.join(self.directory, name))
        t0 = time.monotonic()
        snap = read_snapshot(self.snapshot_path)
        if snap.error is not None:
            self.stats.corrupt_files += 1
        on_disk = self._block_files_on_disk()
        self._next_file = max(on_disk.values(), default=0) + 1
        with no_gc():
            from_blocks, expired_files = self._restore_block_files(snap, on_disk, now_us)
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
                self.store.restore(snap.items, last_seq=snap.last_seq)
            if replayed:
                self.store.restore(replayed, last_seq=self.wal.last_seq)
            self.store.restore([], last_seq=max(snap.last_seq, self.wal.last_seq))
            self.store.expire(now_us)
        self.stats.restored_records = len(self.store)
        self._scan()  # files of shards the restore's expire() dropped are dead
        # Dead files (expired while down) go with the first snapshot.
        self._blocks_changed = bool(self._dead)
        self.stats.block_files = len(self._files)
        if snap.items or replayed or snap.error or from_blocks or expired_files:
            log.info(
                "restored %d records (%d from block files, %d from snapshot, %d from log, %d expired meanwhile) in %.2fs",
                len(self.store),
                from_blocks,
                len(snap.items),
                len(replayed),
                max(0, from_blocks + len(snap.items) + len(replayed) - len(self.store)),
                time.monotonic() - t0,
            )
        self.wal.open_segment(strict=True)  # a read-only directory is an error now, not later

    def _restore_block_files(
        self, snap: SnapshotRead, on_disk: dict[str, int], now_us: int
    ) -> tuple[int, int]:
        """Load the snapshot's block files into sealed shards, as they are.

        Returns (records loaded, files skipped as past TTL). A file past TTL
        is not read; a file that is missing, damaged or of another block
        format is named in an ERROR line with the records it lost (counted),
        and the start goes on. Files the snapshot does not name (written
        after it, before a crash) hold records the log still has: deleted."""
        entries: list[FileEntry]
        if snap.files is not None:
            entries = snap.files
        elif snap.version == MANIFEST_VERSION:
            # The manifest itself is damaged: every block file there is, the
            # newest file for a shard winning (ids stay unique: the log's
            # records for a shard so loaded are skipped as already held).
            entries = []
            for name in sorted(on_disk, key=on_disk.__getitem__):
                entries.append(FileEntry(name, -1, -1, -1, 1 << 62))
            log.error(
                "snapshot %s: its list of block files is lost; reading all %d block files there",
                self.snapshot_path,
                len(entries),
            )
        else:
            entries = []
        cutoff = now_us - self.store.ttl_us
        span = self.store.shard_span_us
        loaded = 0
        expired = 0
        named = set()
        by_key: dict[int, tuple[FileEntry, BlockFileRead]] = {}
        for entry in entries:
            named.add(entry.name)
            if entry.max_ts < cutoff:
                expired += 1
                self._dead.append(entry.name)
                continue
            path = os.path.join(self.directory, entry.name)
            got = read_block_file(path)
            if got.error is not None:
                self._block_file_lost(entry, got, path)
            if not got.blocks or got.key is None:
                continue
            if entry.key == -1:  # a damaged manifest: no live counts, newest file wins
                older = by_key.get(got.key)
                if older is not None:
                    self._dead.append(older[0].name)
                by_key[got.key] = (entry, got)
                continue
            loaded += self._load_blocks(entry, got, span)
        for entry, got in by_key.values():
            loaded += self._load_blocks(entry, got, span)
        for name in on_disk:
            if name not in named:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, name))
        return loaded, expired

    def _block_file_lost(self, entry: FileEntry, got: BlockFileRead, path: str) -> None:
        """One ERROR line naming a block file that is not whole and what it lost."""
        self.stats.corrupt_files += 1
        kept = got.records_read
        front = max(0, entry.records - entry.live)  # records gone from the shard before
        lost = max(0, entry.live - max(0, kept - front)) if entry.live >= 0 else 0
        self.stats.lost_records += lost
        log.error(
            "block file %s: %s; %d of its %d live records lost, %d read",
            path,
            got.error,
            lost,
            max(entry.live, 0),
            max(0, kept - front),
        )
        if os.path.exists(path):
            move_aside(path, got.error or "damaged")

    def _load_blocks(self, entry: FileEntry, got: BlockFileRead, span: int) -> int:
        """Put a block file's blocks into the store as a sealed shard (or, if
        they cannot make one as they are, their records); returns how many records."""
        assert got.key is not None
        records = got.records_read
        # Records that left the shard before the snapshot left from the front.
        live = records - max(0, entry.records - entry.live) if entry.live >= 0 else records
        if live <= 0:
            return 0
        try:
            try:
                shard = self.store.restore_sealed(
                    got.key, got.blocks, live, columns=got.columns, max_seq=got.max_seq
                )
            except ValueError:
                if got.columns is None:
                    raise
                shard = self.store.restore_sealed(got.key, got.blocks, live)  # decode them
        except ValueError:
            # Another shard span than the one written, or the shard is held
            # already: its records go in one by one.
            cache = BlockCache(BLOCK_CACHE_BYTES)
            items: list[tuple[int, Record]] = []
            for block in got.blocks:
                seqs = block.decode_keys().seqs
                items.extend(zip(seqs, block_records(block, range(block.n), cache), strict=True))
            self.store.restore(items[len(items) - live :])
            self._dead.append(entry.name)
            return live
        if got.error is None:
            max_ts = got.blocks[-1].last[0]
            self._files[shard.uid] = BlockFile(entry.name, got.key, records, max_ts)
        # else the file was moved aside: the shard gets a new one, as if just sealed
        return live

    def _lock(self) -> None:
        """Hold an exclusive flock on `lock` in the directory for the process's
        life: two daemons on one directory would overwrite each other's files
        and reuse each other's ids."""
        path = os.path.join(self.directory, LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DirectoryInUse(
                f"{self.directory} is in use by another collector (pid {holder})"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def log(self, first_seq: int, records: list[Record]) -> None:
        """Log a batch that `add_many` just stored (seqs first_seq...)."""
        self.wal.append(first_seq, records)

    def log_items(self, items: list[tuple[int, Record]]) -> None:
        """Log records stored with their own seqs (`Store.add_items`)."""
        self.wal.append_items(items)

    async def durable(self) -> None:
        """Return once what was logged so far is written (and fsynced, in
        `batch` mode): a stream listener acknowledges only then."""
        self.wal.write_pending()
        if self.wal.fsync_mode == "batch" and self.wal.needs_fsync:
            await asyncio.to_thread(self.wal.sync)

    @property
    def wants_snapshot(self) -> bool:
        """The log has dropped records (disk full, at its bound), or is past
        half its bound while pruning has not freed a segment for PRUNE_GRACE
        seconds: snapshot early, then start the log afresh. (While the store
        evicts, pruning keeps the log at about the size of what the store
        holds; a snapshot of open shards would rewrite every record for
        little. Should that not fit, the log reaches its bound, and the gap
        asks for the snapshot.)"""
        wal = self.wal
        if wal.gap:
            return True
        return wal.size >= wal.max_bytes // 2 and time.monotonic() - self._pruned_at > PRUNE_GRACE

    @property
    def snapshot_due(self) -> bool:
        """Block files were written or became dead since the last snapshot,
        `snapshot_every` ago: a snapshot names the new files (so a restart
        reads them instead of replaying the log) and lets the dead go."""
        return (
            self._blocks_changed and time.monotonic() - self._last_snapshot >= self.snapshot_every
        )

    async def flush(self) -> None:
        """One timer tick: write the buffer, fsync it (batch mode, in a thread),
        write newly sealed shards' block files (in a thread), and start a
        snapshot when the log is past half its bound or one is due."""
        self.wal.write_pending()
        if self.wal.fsync_mode == "batch" and self.wal.needs_fsync:
            await asyncio.to_thread(self.wal.sync)
        await self._roll_and_prune()
        unwritten = self._scan()
        if (
            unwritten
            and self._blocks_task is None
            and self._snapshot_task is None
            and time.monotonic() >= self._blocks_retry_at
        ):
            self._blocks_task = asyncio.ensure_future(self._write_blocks_task(unwritten))
        if (
            (self.wants_snapshot or self.snapshot_due)
            and self._snapshot_task is None
            and time.monotonic() - self._last_snapshot_try > 10.0
        ):
            self._last_snapshot_try = time.monotonic()
            if self.wants_snapshot:
                log.info(
                    "early snapshot: the log is at %d of %d bytes",
                    self.wal.size,
                    self.wal.max_bytes,
                )
            self._snapshot_task = asyncio.ensure_future(self._snapshot_while_running())

    async def _roll_and_prune(self) -> None:
        """Between snapshots: finish the log segments rolled since the last
        tick (every sixteenth of the log's bound: fsync and close, in a
        thread), and delete the oldest segments once the store holds none
        of their records (evicted or expired). A store bounded by
        max_memory then keeps a log about the size of what it holds, with
        no snapshot needed to bound it (a snapshot of a store held in open
        shards rewrites every record)."""
        wal = self.wal
        if wal.rolled:
            await asyncio.to_thread(wal.finish_rolls)
        dead = wal.prunable(self.store.oldest_timestamp())
        if dead:
            wal.forget_segments(await asyncio.to_thread(wal.unlink_segments, dead))
            self.stats.wal_segments_pruned += len(dead)
            self._pruned_at = time.monotonic()

    # --- block files -----------------------------------------------------------

    def _scan(self) -> list[Shard]:
        """Sealed shards whose blocks are not on disk yet; the files of shards
        that are gone (expired, evicted, reopened by a late record) become dead."""
        shards = self.store.shards()
        if self._files:
            uids = {s.uid for s in shards}
            for uid in [u for u in self._files if u not in uids]:
                self._dead.append(self._files.pop(uid).name)
                self._blocks_changed = True
        return [s for s in shards if s.run is not None and len(s) and s.uid not in self._files]

    async def _write_blocks_task(self, shards: list[Shard]) -> bool:
        try:
            return await self._write_blocks(shards)
        finally:
            self._blocks_task = None

    async def _write_blocks(self, shards: list[Shard]) -> bool:
        """Write each shard's live blocks to a block file of its own, in a
        worker thread (`to_bytes` copies bytes, the writes release the GIL);
        then fsync the directory once. False on a disk error (counted,
        logged rate-limited; retried after BLOCK_RETRY seconds)."""
        wrote = False
        ok = True
        for shard in shards:
            if shard.uid in self._files or shard.run is None:
                continue
            blocks = shard.run.live_blocks()  # immutable blocks: safe in a thread
            if not blocks:
                continue
            columns = sealed_columns(shard)  # copied here: the shard may be trimmed meanwhile
            name = block_file_name(self._next_file)
            self._next_file += 1
            path = os.path.join(self.directory, name)
            try:
                size = await asyncio.to_thread(write_block_file, path, shard.key, blocks, columns)
            except OSError as e:
                self.stats.block_write_errors += 1
                self._blocks_retry_at = time.monotonic() + BLOCK_RETRY
                self._warn("cannot write block file %s: %s; the log keeps its records", path, e)
                ok = False
                break
            wrote = True
            self._files[shard.uid] = BlockFile(
                name, shard.key, sum(b.n for b in blocks), blocks[-1].last[0]
            )
            self._blocks_changed = True
            self.stats.block_files_written += 1
            self.stats.block_bytes_written += size
        self.stats.block_files = len(self._files)
        if wrote:
            try:
                await asyncio.to_thread(fsync_dir, self.directory)
            except OSError as e:
                self.stats.block_write_errors += 1
                self._warn("cannot fsync %s: %s", self.directory, e)
                ok = False
        return ok

    def _warn(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_warning < 10.0:
            return
        self._last_warning = now
        log.error(msg, *args)

    def _delete(self, names: list[str]) -> None:
        for name in names:
            try:
                os.unlink(os.path.join(self.directory, name))
            except FileNotFoundError:
                pass
            except OSError as e:
                self._warn("cannot delete block file %s: %s", name, e)
                continue
            self.stats.block_files_deleted += 1

    # --- snapshots ---------------------------------------------------------------

    async def _snapshot_while_running(self) -> None:
        try:
            await self.snapshot()
        finally:
            self._snapshot_task = None

    async def snapshot(self, *, reopen: bool = True) -> bool:
        """Seal the log segment and write the snapshot: the missing block
        files, then the manifest naming them with the open shards' records;
        then delete the log segments and dead block files it covers. No fork,
        no copy of the store: the loop serialises the open shards in slices
        of SLICE_RECORDS records, a worker thread writes and fsyncs them."""
        async with self._snapshot_lock:
            return await self._snapshot(reopen=reopen)

    async def _snapshot(self, *, reopen: bool) -> bool:
        t0 = time.monotonic()
        dead = self._dead
        self._dead = []
        ok, segments, records = await self._take_snapshot(reopen=reopen)
        if not ok:
            self._dead = dead + self._dead
            self.stats.snapshot_errors += 1
            log.error("snapshot %s failed; the log is kept", self.snapshot_path)
            self.wal.snapshot_failed()
            return False
        self.stats.snapshots += 1
        self.stats.snapshot_records = records
        self.stats.snapshot_seconds = round(time.monotonic() - t0, 6)
        log.info(
            "snapshot: %d block files and %d records of open shards in %.2fs",
            len(self._files),
            records,
            self.stats.snapshot_seconds,
        )
        self.wal.snapshot_written()
        # Unlinks in a thread: removing a 100 MiB file held the loop ~20 ms.
        self.wal.forget_segments(await asyncio.to_thread(self.wal.unlink_segments, segments))
        await asyncio.to_thread(self._delete, dead)
        self.stats.block_files = len(self._files)
        return True

    async def _take_snapshot(self, *, reopen: bool) -> tuple[bool, list[int], int]:
        """(written, the log segments it covers, open records written)."""
        if self._blocks_task is not None:
            await self._blocks_task
        segments = self.wal.rotate(reopen=reopen, sync=False)
        last_seq = self.wal.last_seq
        self._last_snapshot = time.monotonic()
        # The store as of this instant: what the snapshot holds. Shards change
        # meanwhile; the log from here on has whatever they take.
        unwritten = self._scan()
        shards = self.store.shards()
        sealed = [(s, len(s)) for s in shards if s.run is not None and len(s)]
        # Each open shard up to its last key now: records taken later are in
        # the log's new segment (a snapshot chasing them took 35 s and wrote
        # 3x the store at 190k msg/s).
        open_shards = [(s, (s.ts[-1], s.seqs[-1])) for s in shards if s.run is None and len(s)]
        self._blocks_changed = False
        if reopen:
            await asyncio.to_thread(self.wal.sync_created)
        if unwritten and not await self._write_blocks(unwritten):
            self._blocks_changed = True
            return False, segments, 0
        files = []
        for shard, live in sealed:
            f = self._files[shard.uid]
            files.append(FileEntry(f.name, f.key, live, f.records, f.max_ts))
        writer = ManifestWriter(self.snapshot_path, files, self.store.shard_span_us)
        # The loop encodes chunks; a worker thread writes them, a batch at a
        # time while the loop encodes the next (a write() can wait for the
        # kernel's writeback, which must not stall the loop).
        batch: list[tuple[bytes, int]] = []
        writing: asyncio.Future[None] | None = None
        try:
            await asyncio.to_thread(writer.open)
            for shard, last in open_shards:
                for tuples in _open_records(shard, last):
                    batch.append((encode_chunk(tuples), len(tuples)))
                    if len(batch) >= WRITE_BATCH:
                        if writing is not None:
                            await writing
                        writing = asyncio.ensure_future(asyncio.to_thread(writer.add_all, batch))
                        batch = []
                    await asyncio.sleep(0)
            if writing is not None:
                await writing
                writing = None
            await asyncio.to_thread(writer.add_all, batch)
            await asyncio.to_thread(writer.finish, last_seq, segments[-1])
        except OSError as e:
            if writing is not None:
                with contextlib.suppress(OSError):
                    await writing
            await asyncio.to_thread(writer.abort)
            self._blocks_changed = True
            log.error("snapshot %s: %s", self.snapshot_path, e)
            return False, segments, 0
        return True, segments, writer.records

    async def close(self) -> None:
        """Shutdown: flush the log, write the snapshot (and the block files it
        needs), truncate the log, release the directory."""
        try:
            if self._snapshot_task is not None:
                await self._snapshot_task
            if self._blocks_task is not None:
                await self._blocks_task
            self.wal.write_pending()
            if self.wal.fsync_mode != "never":
                self.wal.sync()
            await self.snapshot(reopen=False)
            self.wal.close()
        finally:
            self.unlock()

    def unlock(self) -> None:
        """Release the directory's lock (closing its file releases the flock)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _open_records(shard: Shard, upto: tuple[int, int]) -> Iterator[list[RecordTuple]]:
    """An open shard's records up to key `upto` as record tuples,
    SLICE_RECORDS at a time, in (timestamp, seq) order: the caller yields to
    the loop between slices. Each slice starts after the last key of the one
    before, so records the shard takes or loses meanwhile never shift it:
    each record present throughout comes exactly once (the log holds any
    taken meanwhile)."""
    i = 0
    while True:
        n = shard.position(upto[0], upto[1] + 1)
        if i >= n:
            return
        j = min(n, i + SLICE_RECORDS)
        idx = range(i, j)
        seqs = shard.seqs[i:j]
        last = (shard.ts[j - 1], seqs[-1])
        recs = shard.records(idx)
        yield [record_tuple(seq, r) for seq, r in zip(seqs, recs, strict=True)]
        i = shard.position(last[0], last[1] + 1)
