# The native record renderer (collector/_render.c): what mypy needs to know of it.
from collections.abc import Callable, Sequence
from typing import Any

from collector.record import Record

def setup(record_type: type[Record], levels: Sequence[str], facilities: Sequence[str]) -> None: ...
def records(
    items: Sequence[tuple[str, Record]],
    separator: bytes,
    fallback: Callable[[Record, str], str],
    object_json: Callable[[dict[Any, Any]], str],
) -> bytes: ...
def rows(
    ts: Any,
    seqs: Any,
    idx: list[int],
    phys: list[int],
    cols: tuple[Any, ...],
    names: tuple[Sequence[Any], ...],
    text: tuple[list[Any], list[int], Any] | tuple[list[Any], list[int], Any, int],
    extras: list[tuple[Any, Any]] | None,
    separator: bytes,
    fallback: Callable[[int], str],
    object_json: Callable[[Any], str],
) -> bytes: ...
