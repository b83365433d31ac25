"""Persistence stage, bottom layer: the on-disk format the snapshot and the
write-ahead log share. A file is a 16-byte versioned header (`header`), then
checksummed chunks: u32 length, u32 CRC32, a marshal payload (`encode_chunk`,
`read_chunks`). Records travel as plain tuples (`record_tuple`). Also the file
chores both need: fsync a directory, move a bad file aside. No event loop here.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import marshal
import os
import struct
import time
import zlib
from collections.abc import Iterator
from typing import IO, Any

from collector.record import Record

log = logging.getLogger("collector.diskformat")

# Header: 8-byte magic, format version, payload encoding. Bump VERSION when
# the record tuple changes shape; an unknown version is moved aside.
HEADER = struct.Struct("<8sII")
CHUNK = struct.Struct("<II")  # payload length, zlib.crc32(payload)
VERSION = 1
ENCODING_MARSHAL = 1
# marshal format 4 is stable since Python 3.4 and newer Pythons read it.
MARSHAL_VERSION = 4
# A length field beyond this is damage, not data: refuse to allocate it.
MAX_CHUNK = 1 << 30


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


def header(magic: bytes, version: int = VERSION) -> bytes:
    """The 16 bytes every file of ours starts with."""
    return HEADER.pack(magic, version, ENCODING_MARSHAL)


def encode_chunk(obj: Any) -> bytes:
    """One checksummed chunk holding `obj` (builtin types only)."""
    data = marshal.dumps(obj, MARSHAL_VERSION)
    return CHUNK.pack(len(data), zlib.crc32(data)) + data


def check_header(f: IO[bytes], magic: bytes, versions: tuple[int, ...] = (VERSION,)) -> int:
    """Read and check the header, returning its format version (one of
    `versions`); BadFile says why it is not ours."""
    raw = f.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise BadFile(f"too short for a header ({len(raw)} bytes)")
    got_magic, version, encoding = HEADER.unpack(raw)
    if got_magic != magic:
        raise BadFile(f"not a collector file (magic {got_magic!r})")
    if version not in versions or encoding != ENCODING_MARSHAL:
        raise BadFile(f"unknown format version {version} encoding {encoding}")
    return int(version)


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
