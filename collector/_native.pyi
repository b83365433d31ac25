# The native hot path (collector/_native.c): what mypy needs to know of it.
from collector.record import Record

def parse(
    data: bytes, received_at: int, sender: str | None, ttl_us: int, truncated: bool
) -> Record | None: ...
def parse_frames(
    frames: list[tuple[bytes, bool]], received_at: int, sender: str | None, ttl_us: int
) -> list[Record | None]: ...
def direct_slots() -> bool: ...
