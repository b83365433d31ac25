"""Framing stage: a byte stream -> frames.

Pure, no I/O. Thin version: LF-delimited frames with a size cap; the RFC 6587
framer (octet counting + LF/NUL) replaces it behind the same interface:
`feed(data) -> list[(frame, truncated)]` and `eof() -> list[(frame, truncated)]`.
"""

from __future__ import annotations

Frame = tuple[bytes, bool]  # (frame without its delimiter, cut to max_bytes?)


class LineFramer:
    """LF-delimited frames; CR/NUL at the end of a frame are stripped."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._scan = 0  # where the last search for LF stopped: no quadratic rescans
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by `data`."""
        buf = self._buf
        buf += data
        out: list[Frame] = []
        start = 0
        while True:
            nl = buf.find(b"\n", max(start, self._scan))
            if nl < 0:
                break
            frame = bytes(buf[start:nl]).rstrip(b"\r\x00")
            if self._discarding:
                self._discarding = False
            elif frame:
                if len(frame) > self.max_bytes:
                    out.append((frame[: self.max_bytes], True))
                else:
                    out.append((frame, False))
            start = nl + 1
            self._scan = start
        del buf[:start]
        self._scan = len(buf)
        if len(buf) > self.max_bytes and not self._discarding:
            out.append((bytes(buf[: self.max_bytes]), True))
            self._discarding = True
        if self._discarding:
            buf.clear()
            self._scan = 0
        return out

    def eof(self) -> list[Frame]:
        """The unterminated last line, if any, is a message."""
        frame = bytes(self._buf).rstrip(b"\r\x00")
        self._buf.clear()
        self._scan = 0
        if self._discarding or not frame:
            return []
        return [(frame, False)]
