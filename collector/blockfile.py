"""Persistence stage: block files, one sealed shard's blocks written once.

A sealed shard never changes (records only leave it from the front, by TTL
or eviction), so its blocks are written to disk once, as the store sealed
them: `Block.to_bytes()` per block, no re-encoding. The snapshot (a
manifest, see snapshot.py) names the files that are live and how many of
each file's records still are. Layout: the shared 16-byte header (magic
`CLBLOCKS`), a dict chunk `{"key", "blocks", "records", "block_format",
"max_seq", "columns"}`, then (when "columns") a dict chunk `{"columns":
<zstd of the marshalled sealing.sealed_columns>}` (the columns a sealed shard
keeps in the clear, so a restore need not decode them from the blocks), one
chunk per block (its `to_bytes()`), and an end chunk `{"end": True,
"records"}`. A file is written to `<name>.tmp`, fsynced and renamed, so it is
whole or absent; `block_format` is the block layout's version (block.py's
FORMAT_VERSION): a file of another layout is refused, never misread. No
event loop here: the writer runs in a worker thread (writes release the GIL).
"""

from __future__ import annotations

import contextlib
import marshal
import os
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import zstandard

from collector.block import FORMAT_VERSION, Block
from collector.diskformat import (
    BadFile,
    DamagedChunk,
    check_header,
    encode_chunk,
    header,
    read_chunks,
)
from collector.sealing import SealedColumns

BLOCKS_MAGIC = b"CLBLOCKS"
BLOCK_FILE = re.compile(r"^blocks-(\d{8})\.bin$")


def block_file_name(n: int) -> str:
    """File name of block file number `n`."""
    return f"blocks-{n:08d}.bin"


def write_block_file(
    path: str,
    key: int,
    blocks: Sequence[Block],
    columns: SealedColumns | None = None,
    *,
    fsync: bool = True,
) -> int:
    """Write a shard's blocks (and its clear columns, if given) to `path`
    atomically (temp file, fsync, rename); returns the bytes written. The
    directory's fsync is the caller's (once for many files). OSError
    propagates (disk full)."""
    tmp = path + ".tmp"
    records = sum(b.n for b in blocks)
    size = 0
    max_seq = None
    packed = None
    if columns is not None:
        seqs = array("q")
        seqs.frombytes(columns[1])
        max_seq = max(seqs) if len(seqs) else None
        packed = zstandard.ZstdCompressor(level=1).compress(marshal.dumps(columns, 4))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as f:
            f.write(header(BLOCKS_MAGIC))
            f.write(
                encode_chunk(
                    {
                        "key": key,
                        "blocks": len(blocks),
                        "records": records,
                        "block_format": FORMAT_VERSION,
                        "max_seq": max_seq,
                        "columns": packed is not None,
                    }
                )
            )
            if packed is not None:
                f.write(encode_chunk({"columns": packed}))
            for block in blocks:
                f.write(encode_chunk(block.to_bytes()))
            f.write(encode_chunk({"end": True, "records": records}))
            f.flush()
            if fsync:
                os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size


@dataclass(slots=True)
class BlockFileRead:
    """What a block file held: the blocks read before any damage, how many
    records the file says it holds (None: unknown), and `error` (why it is
    not whole; None when it is)."""

    key: int | None = None
    blocks: list[Block] = field(default_factory=list)
    records: int | None = None
    error: str | None = None
    columns: SealedColumns | None = None  # None: decode them from the blocks
    max_seq: int | None = None

    @property
    def records_read(self) -> int:
        return sum(b.n for b in self.blocks)


def read_block_file(path: str) -> BlockFileRead:
    """Read a block file; a damaged one yields its blocks before the damage.

    Never raises for what is in the file: a missing file, a foreign one, one
    of another block layout or one cut short says so in `error`."""
    out = BlockFileRead()
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed in finally
    except OSError as e:
        out.error = f"cannot read: {e.strerror or e}"
        return out
    ended = False
    try:
        check_header(f, BLOCKS_MAGIC)
        chunks = read_chunks(f)
        head = next(chunks, None)
        if not isinstance(head, dict) or "key" not in head:
            raise DamagedChunk(f.tell(), "no block file header chunk")
        if head.get("block_format") != FORMAT_VERSION:
            out.error = (
                f"written with block format {head.get('block_format')}, this collector"
                f" reads format {FORMAT_VERSION}"
            )
            return out
        out.key = int(head["key"])
        out.records = int(head["records"])
        if head.get("columns"):
            cols = next(chunks, None)
            if not isinstance(cols, dict) or type(cols.get("columns")) is not bytes:
                raise DamagedChunk(f.tell(), "no columns chunk")
            out.columns = _columns(cols["columns"])
            if out.columns is not None and type(head.get("max_seq")) is int:
                out.max_seq = head["max_seq"]
        for obj in chunks:
            if ended:
                raise DamagedChunk(f.tell(), "data after the end marker")
            if isinstance(obj, dict):
                if obj.get("end") is not True or obj.get("records") != out.records_read:
                    raise DamagedChunk(f.tell(), "end marker does not match the blocks")
                ended = True
                continue
            if type(obj) is not bytes:
                raise DamagedChunk(f.tell(), "a chunk that is not a block")
            out.blocks.append(Block.from_bytes(obj))
        if not ended:
            out.error = "no end marker: the file is cut short"
    except BadFile as e:
        out.error = str(e)
    except DamagedChunk as e:
        out.error = str(e)
    except (TypeError, ValueError, KeyError) as e:
        out.error = f"blocks do not decode ({e})"
    except OSError as e:
        out.error = f"cannot read: {e.strerror or e}"
    finally:
        f.close()
    return out


def _columns(packed: bytes) -> SealedColumns | None:
    """The columns chunk's content, or None when it does not decode (the
    blocks still do: the restore decodes the columns from them)."""
    try:
        cols = marshal.loads(zstandard.ZstdDecompressor().decompress(packed))
    except (ValueError, EOFError, TypeError, zstandard.ZstdError):
        return None
    return cols if type(cols) is tuple and len(cols) == 7 else None
