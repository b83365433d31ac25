# The native hot path (collector/_native.c): what mypy needs to know of it.
from collections.abc import Callable

from collector.record import Record

def parse(
    data: bytes, received_at: int, sender: str | None, ttl_us: int, truncated: bool
) -> Record | None: ...
def parse_frames(
    frames: list[tuple[bytes, bool]], received_at: int, sender: str | None, ttl_us: int
) -> list[Record | None]: ...
def parse_batch(
    frames: list[tuple[bytes, bool]], received_at: int, sender: str | None, ttl_us: int
) -> tuple[list[Record | None], int, int]: ...
def direct_slots() -> bool: ...

class Framer:
    """framing.StreamFramer in C: the same frames, flags and drops."""

    max_bytes: int
    def __init__(
        self,
        max_bytes: int,
        *,
        octet_counting: bool = True,
        nul_delimits: bool = True,
        max_count: int | None = None,
        drop: Callable[[str, int], None] | None = None,
    ) -> None: ...
    @property
    def pending(self) -> bool: ...
    @property
    def buffered(self) -> int: ...
    def feed(self, data: bytes) -> list[tuple[bytes, bool]]: ...
    def flush(self) -> list[tuple[bytes, bool]]: ...
    def eof(self) -> list[tuple[bytes, bool]]: ...
