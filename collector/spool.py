"""Output queues: what an output has encoded but the destination has not yet acknowledged.

Stage: store -> outputs -> *queue* -> destination. Two shapes of one thing: a
MemoryQueue (lost on exit) and a DiskSpool (segment files in `spool_dir`,
kept across restarts). Both hold chunks of (key, value) items, are bounded in
bytes, drop the oldest chunks past the bound (counted), and let a chunk go only
when `ack(number)` says the destination took it. No asyncio, no logging here.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

Item = tuple[bytes, bytes]  # (key, value): kafka's message key (the host) and the encoded record

# A spool frame: magic, payload length, CRC-32 of the payload, record count.
_FRAME = struct.Struct("<4sIII")
_MAGIC = b"CSP1"
_ITEM = struct.Struct("<II")
_SEGMENT = re.compile(r"^spool-(\d{8})\.dat$")
_POSITION = "position"


class OutputQueue(Protocol):
    """What an output's sender and encoder need of a queue."""

    records: int
    nbytes: int
    dropped: int

    def put(self, items: list[Item]) -> None: ...
    def peek(self) -> tuple[int, list[Item]] | None: ...
    def ack(self, number: int) -> None: ...
    def close(self) -> None: ...


def _size(items: list[Item]) -> int:
    return sum(len(k) + len(v) for k, v in items) + _ITEM.size * len(items) + _FRAME.size


class MemoryQueue:
    """Chunks in a deque, bounded by `max_bytes`; gone when the process ends."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.records = 0
        self.nbytes = 0
        self.dropped = 0
        self._chunks: deque[tuple[int, int, list[Item]]] = deque()  # (number, bytes, items)
        self._next = 0
        self._in_flight: int | None = None  # the chunk peek() handed out

    def put(self, items: list[Item]) -> None:
        """Append a chunk; drop the oldest chunks while over the bound."""
        if not items:
            return
        size = _size(items)
        self._chunks.append((self._next, size, items))
        self._next += 1
        self.records += len(items)
        self.nbytes += size
        while self.nbytes > self.max_bytes and len(self._chunks) > 1:
            # The oldest goes, unless it is being sent: then the next oldest.
            at = 1 if self._chunks[0][0] == self._in_flight else 0
            if at >= len(self._chunks) - 1 and at:
                break  # only the chunk in flight and the new one are left
            _, size, old = self._chunks[at]
            del self._chunks[at]
            self.records -= len(old)
            self.nbytes -= size
            self.dropped += len(old)

    def peek(self) -> tuple[int, list[Item]] | None:
        """The oldest chunk and its number, or None when empty."""
        if not self._chunks:
            return None
        number, _, items = self._chunks[0]
        self._in_flight = number
        return number, items

    def ack(self, number: int) -> None:
        """The destination took chunk `number`: let it go (no-op if already dropped)."""
        if self._chunks and self._chunks[0][0] == number:
            _, size, items = self._chunks.popleft()
            self.records -= len(items)
            self.nbytes -= size
            self._in_flight = None

    def close(self) -> None:
        """Nothing to release: what is left is lost with the process."""


def encode_frame(items: list[Item]) -> bytes:
    """One spool frame holding `items`."""
    parts = []
    for k, v in items:
        parts.append(_ITEM.pack(len(k), len(v)))
        parts.append(k)
        parts.append(v)
    payload = b"".join(parts)
    return _FRAME.pack(_MAGIC, len(payload), zlib.crc32(payload), len(items)) + payload


def decode_payload(payload: bytes, count: int) -> list[Item]:
    """The items of a frame's payload; ValueError when it does not add up."""
    items: list[Item] = []
    pos = 0
    for _ in range(count):
        if pos + _ITEM.size > len(payload):
            raise ValueError("frame shorter than its items")
        klen, vlen = _ITEM.unpack_from(payload, pos)
        pos += _ITEM.size
        end = pos + klen + vlen
        if end > len(payload):
            raise ValueError("frame shorter than its items")
        items.append((payload[pos : pos + klen], payload[pos + klen : end]))
        pos = end
    if pos != len(payload):
        raise ValueError("frame longer than its items")
    return items


@dataclass
class _Segment:
    number: int
    size: int = 0  # bytes written
    frames: deque[tuple[int, int]] = field(default_factory=deque)  # unread (offset, records)


class DiskSpool:
    """Chunks as CRC-checked frames in numbered segment files under `directory`.

    Appends go to the newest segment with one write() per chunk; the read
    position (segment, offset) is saved in `position` after each ack, so a
    restart resends at most the chunk in flight (at least once). Past
    `max_bytes` whole oldest segments are deleted and their records counted
    in `dropped`. A torn or damaged frame (a crash mid-write) ends its
    segment's readable part; what it held is counted in `damaged`.
    """

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(64 * 1024, min(64 * 1024 * 1024, max_bytes // 8))
        self.records = 0
        self.nbytes = 0
        self.dropped = 0
        self.damaged = 0
        self._segments: deque[_Segment] = deque()
        self._fd: int | None = None
        self._read_fd: tuple[int, int] | None = None  # (segment number, fd)
        self._head: tuple[int, list[Item]] | None = None
        self._orphan = False  # the head's segment was dropped while it was in flight
        self._opened = False

    # --- start-up -----------------------------------------------------------

    def open(self) -> None:
        """Create the directory or pick up what a previous run left."""
        os.makedirs(self.directory, exist_ok=True)
        numbers = sorted(
            int(m[1]) for name in os.listdir(self.directory) if (m := _SEGMENT.match(name))
        )
        seg_pos, off_pos = self._read_position()
        for n in numbers:
            path = self._path(n)
            if n < seg_pos:
                os.unlink(path)
                continue
            seg = _Segment(n)
            with open(path, "rb") as f:
                data = f.read()
            pos = off_pos if n == seg_pos else 0
            seg.size = len(data)
            while pos + _FRAME.size <= len(data):
                magic, length, _crc, count = _FRAME.unpack_from(data, pos)
                if magic != _MAGIC or pos + _FRAME.size + length > len(data):
                    break
                seg.frames.append((pos, count))
                self.records += count
                pos += _FRAME.size + length
            self.nbytes += seg.size
            self._segments.append(seg)
        self._opened = True
        self._new_segment()

    def _read_position(self) -> tuple[int, int]:
        try:
            with open(os.path.join(self.directory, _POSITION), encoding="ascii") as f:
                seg, off = f.read().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            return 0, 0

    def _path(self, n: int) -> str:
        return os.path.join(self.directory, f"spool-{n:08d}.dat")

    def _new_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        n = self._segments[-1].number + 1 if self._segments else 1
        self._fd = os.open(
            self._path(n), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600
        )
        self._segments.append(_Segment(n))

    # --- the queue ------------------------------------------------------------

    def put(self, items: list[Item]) -> None:
        """Append a chunk as one frame; drop the oldest segments while over the bound."""
        if not items:
            return
        if not self._opened:
            self.open()
        frame = encode_frame(items)
        seg = self._segments[-1]
        if seg.size and seg.size + len(frame) > self.segment_bytes:
            self._new_segment()
            seg = self._segments[-1]
        assert self._fd is not None
        os.write(self._fd, frame)
        seg.frames.append((seg.size, len(items)))
        seg.size += len(frame)
        self.records += len(items)
        self.nbytes += len(frame)
        while self.nbytes > self.max_bytes and len(self._segments) > 1:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        seg = self._segments.popleft()
        lost = sum(count for _, count in seg.frames)
        if self._head is not None and self._head[0] >> 32 == seg.number:
            # Being sent: its items are in memory already; ack() finishes it.
            in_flight = len(self._head[1])
            lost -= in_flight
            self.records -= in_flight
            self._orphan = True
        self.records -= lost
        self.dropped += lost
        self.nbytes -= seg.size
        self._close_reader()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(seg.number))

    def _close_reader(self) -> None:
        if self._read_fd is not None:
            os.close(self._read_fd[1])
            self._read_fd = None

    def peek(self) -> tuple[int, list[Item]] | None:
        """The oldest unacknowledged chunk and its number, or None when empty."""
        if self._head is not None:
            return self._head
        if not self._opened:
            self.open()
        while self._segments:
            seg = self._segments[0]
            if not seg.frames:
                if len(self._segments) == 1:
                    return None  # the segment being appended to, all read
                self._retire_head()
                continue
            offset, count = seg.frames[0]
            items = self._read_frame(seg, offset, count)
            if items is None:  # damaged: the rest of this segment is unreadable
                lost = sum(c for _, c in seg.frames)
                self.damaged += lost
                self.records -= lost
                seg.frames.clear()
                continue
            self._head = ((seg.number << 32) | offset, items)
            return self._head
        return None

    def _read_frame(self, seg: _Segment, offset: int, count: int) -> list[Item] | None:
        if self._read_fd is None or self._read_fd[0] != seg.number:
            self._close_reader()
            self._read_fd = (seg.number, os.open(self._path(seg.number), os.O_RDONLY))
        fd = self._read_fd[1]
        header = os.pread(fd, _FRAME.size, offset)
        if len(header) < _FRAME.size:
            return None
        magic, length, crc, n = _FRAME.unpack(header)
        if magic != _MAGIC or n != count:
            return None
        payload = os.pread(fd, length, offset + _FRAME.size)
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None
        try:
            return decode_payload(payload, count)
        except ValueError:
            return None

    def _retire_head(self) -> None:
        seg = self._segments.popleft()
        self.nbytes -= seg.size
        self._close_reader()
        os.unlink(self._path(seg.number))
        nxt = self._segments[0]
        self._save_position(nxt.number, nxt.frames[0][0] if nxt.frames else 0)

    def ack(self, number: int) -> None:
        """The destination took chunk `number`: move the saved read position past it."""
        if self._head is None or self._head[0] != number:
            return
        self._head = None
        if self._orphan:  # its segment is gone (and its records uncounted already)
            self._orphan = False
            return
        seg = self._segments[0]
        _, count = seg.frames.popleft()
        self.records -= count
        nxt = seg.frames[0][0] if seg.frames else seg.size
        self._save_position(seg.number, nxt)
        if not seg.frames and len(self._segments) > 1:
            self._retire_head()

    def _save_position(self, segment: int, offset: int) -> None:
        tmp = os.path.join(self.directory, _POSITION + ".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{segment} {offset}\n")
        os.replace(tmp, os.path.join(self.directory, _POSITION))

    def close(self) -> None:
        """Close the files; what is unacknowledged stays for the next run."""
        self._close_reader()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._opened = False
        self._segments.clear()
        self._head = None
        self.records = 0
        self.nbytes = 0
