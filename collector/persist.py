"""Persistence stage: the store on disk (snapshot) plus the write-ahead log.

Files are checksummed chunks after a versioned header (`read_chunks`); a
snapshot is written to a temp file, fsynced, renamed and the directory
fsynced, so a reader sees the old file or the new one, never half of one. A
file that is not ours or is damaged is moved aside (`.corrupt-<time>`) with one
log line and the daemon starts anyway: never a crash loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import marshal
import os
import struct
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

from collector.record import Record

log = logging.getLogger("collector.persist")

# Header: 8-byte magic, format version, payload encoding. Bump VERSION when
# the record tuple changes shape; an unknown version is moved aside.
HEADER = struct.Struct("<8sII")
CHUNK = struct.Struct("<II")  # payload length, zlib.crc32(payload)
SNAPSHOT_MAGIC = b"CLSNAPSH"
WAL_MAGIC = b"CLWALOG\x00"
VERSION = 1
ENCODING_MARSHAL = 1
# marshal format 4 is stable since Python 3.4 and newer Pythons read it.
MARSHAL_VERSION = 4
# A length field beyond this is damage, not data: refuse to allocate it.
MAX_CHUNK = 1 << 30
SNAPSHOT_NAME = "snapshot.bin"
SNAPSHOT_CHUNK_RECORDS = 4096


class BadFile(Exception):
    """The file's header is not ours, or from a format version we do not know."""


class DamagedChunk(Exception):
    """A chunk is cut short or fails its checksum; `offset` is where it starts."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"{reason} at byte {offset}")
        self.offset = offset
        self.reason = reason


RecordTuple = tuple[Any, ...]


def record_tuple(seq: int, r: Record) -> RecordTuple:
    """The on-disk shape of one record: builtin types only, fields in order."""
    return (
        seq,
        r.timestamp,
        r.received_at,
        r.host,
        r.service,
        r.procid,
        r.msgid,
        r.facility,
        r.level,
        r.message,
        r.structured_data,
        r.fields,
        r.format,
    )


def record_from_tuple(t: RecordTuple) -> tuple[int, Record]:
    """Inverse of `record_tuple`; TypeError/ValueError on a wrong shape."""
    seq, ts, recv, host, service, procid, msgid, fac, level, message, sd, fields, fmt = t
    if type(seq) is not int or type(ts) is not int or type(message) is not str:
        raise TypeError("record tuple has wrong types")
    return seq, Record(ts, recv, host, service, procid, msgid, fac, level, message, sd, fields, fmt)


def header(magic: bytes) -> bytes:
    """The 16 bytes every file of ours starts with."""
    return HEADER.pack(magic, VERSION, ENCODING_MARSHAL)


def encode_chunk(obj: Any) -> bytes:
    """One checksummed chunk holding `obj` (builtin types only)."""
    data = marshal.dumps(obj, MARSHAL_VERSION)
    return CHUNK.pack(len(data), zlib.crc32(data)) + data


def check_header(f: IO[bytes], magic: bytes) -> None:
    """Read and check the header; BadFile says why it is not ours."""
    raw = f.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise BadFile(f"too short for a header ({len(raw)} bytes)")
    got_magic, version, encoding = HEADER.unpack(raw)
    if got_magic != magic:
        raise BadFile(f"not a collector file (magic {got_magic!r})")
    if version != VERSION or encoding != ENCODING_MARSHAL:
        raise BadFile(f"unknown format version {version} encoding {encoding}")


def read_chunks(f: IO[bytes]) -> Iterator[Any]:
    """Decoded chunks after the header, up to a clean end of file.

    Raises DamagedChunk at the first chunk cut short or failing its CRC; the
    chunks before it were good and have been yielded."""
    offset = f.tell()
    while True:
        head = f.read(CHUNK.size)
        if not head:
            return
        if len(head) < CHUNK.size:
            raise DamagedChunk(offset, "chunk header cut short")
        length, crc = CHUNK.unpack(head)
        if length > MAX_CHUNK:
            raise DamagedChunk(offset, f"chunk length {length} is implausible")
        data = f.read(length)
        if len(data) < length:
            raise DamagedChunk(offset, "chunk cut short")
        if zlib.crc32(data) != crc:
            raise DamagedChunk(offset, "chunk checksum mismatch")
        try:
            obj = marshal.loads(data)
        except (ValueError, EOFError, TypeError) as e:
            raise DamagedChunk(offset, f"chunk does not decode ({e})") from None
        yield obj
        offset += CHUNK.size + length


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic GC while bulk-building records: a million new tuples
    trigger hundreds of full-heap scans that find nothing (3x slower reads)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def fsync_dir(path: str) -> None:
    """Make a rename in `path` durable (POSIX leaves it in the page cache)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_aside(path: str, reason: str) -> str | None:
    """Rename a bad file to `<path>.corrupt-<UTC time>`; returns the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    try:
        os.replace(path, target)
    except OSError as e:
        log.error("%s is unusable (%s) and cannot be moved aside: %s", path, reason, e)
        return None
    log.error("%s is unusable (%s); moved aside to %s", path, reason, target)
    return target


# --- snapshot ---------------------------------------------------------------


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


# --- the running persistence: snapshot + write-ahead log ---------------------


class RecordStore(Protocol):
    """The part of the store that persistence uses."""

    def restore(self, items: Iterable[tuple[int, Record]]) -> None: ...
    def snapshot_items(self) -> Iterator[tuple[int, Record]]: ...
    def expire(self, now: int) -> int: ...
    def __len__(self) -> int: ...


@dataclass(slots=True)
class PersistenceStats:
    """Plain counters for /metrics (read at scrape time)."""

    wal_bytes: int = 0  # current size of the log on disk
    wal_records: int = 0  # records appended to the log since start
    wal_write_errors: int = 0  # failed write()/fsync() calls (disk full, I/O error)
    wal_dropped_records: int = 0  # records not logged (write error or size bound)
    wal_fsyncs: int = 0
    wal_torn_bytes: int = 0  # bytes ignored at replay (torn tail after a crash)
    snapshots: int = 0
    snapshot_errors: int = 0
    snapshot_seconds: float = 0.0  # duration of the last snapshot
    snapshot_records: int = 0  # records in the last snapshot
    restored_records: int = 0  # records in the store after start-up restore
    replayed_records: int = 0  # of which from the log
    replay_skipped: int = 0  # log segments (or records) already in the snapshot, not replayed
    corrupt_files: int = 0  # files moved aside


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
        from collector.wal import WriteAheadLog

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
