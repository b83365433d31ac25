"""Column operations for eviction from an open shard (shard.py): taking
evicted records' codes off a shard's counts, summing their bytes, and
renumbering its order index when a dead prefix goes. In C when
collector._native is built (the late-record path read one Python int per
record: ~0.1 s a million), else
the pure versions here; tests/test_native_columns.py holds both to the
same answers. Pure: no I/O, no clock.
"""

from __future__ import annotations

import sys
from array import array
from collections import Counter
from collections.abc import Callable

# Distinct live codes up to which `uncount` counts a code column by one
# bytes.count pass per code (each ~0.1 ms a MiB) instead of a Counter
# (~33 ns a record: ~10 ms for an eviction step of 300k records).
UNCOUNT_PASSES = 32
_LOW_BYTE = 0 if sys.byteorder == "little" else 3


def uncount(counts: list[int], values: bytearray | array[int]) -> None:
    """counts[code] -= how often code occurs in `values` (a column slice);
    `counts` covers every code in it."""
    if not values:
        return
    if isinstance(values, bytearray):
        data = bytes(values)
    elif len(counts) <= 256:
        # Codes below 256 in 4-byte cells: their low bytes are the codes.
        data = values.tobytes()[_LOW_BYTE :: values.itemsize]
    else:
        data = b""
    if data:
        live = [c for c in range(len(counts)) if counts[c]]
        if len(live) <= UNCOUNT_PASSES:
            for c in live:
                counts[c] -= data.count(c)
            return
    for code, n in Counter(values).items():
        counts[code] -= n


def uncount_at_pure(counts: list[int], col: bytearray | array[int], phys: array[int]) -> None:
    """counts[col[p]] -= 1 for each p in phys."""
    for code, n in Counter(map(col.__getitem__, phys)).items():
        counts[code] -= n


def shift_down_pure(order: array[int], m: int) -> None:
    """Subtract m from every value of `order`, in place (each must be >= m)."""
    if len(order) and min(order) < m:
        raise ValueError("a value below m")
    order[:] = array(order.typecode, map((-m).__add__, order))


def min_of_pure(order: array[int]) -> int:
    """The smallest value of `order` (ValueError when empty)."""
    if not len(order):
        raise ValueError("min_of() of an empty array")
    return min(order)


def span_sum_pure(offs: array[int], phys: array[int]) -> int:
    """The sum of offs[p + 1] - offs[p] over p in phys (the bytes of those
    messages in a text heap)."""
    return sum(map(offs.__getitem__, map((1).__add__, phys))) - sum(map(offs.__getitem__, phys))


def sum_at_pure(col: array[int], phys: array[int]) -> int:
    """The sum of col[p] over p in phys (the evicted records' structured-data bytes)."""
    return sum(map(col.__getitem__, phys))


uncount_at: Callable[[list[int], bytearray | array[int], array[int]], None]
span_sum: Callable[[array[int], array[int]], int]
sum_at: Callable[[array[int], array[int]], int]
shift_down: Callable[[array[int], int], None]
min_of: Callable[[array[int]], int]
try:
    from collector._native import min_of, shift_down, span_sum, sum_at, uncount_at
except ImportError:  # not built, or COLLECTOR_PURE
    uncount_at, shift_down, min_of = uncount_at_pure, shift_down_pure, min_of_pure
    span_sum, sum_at = span_sum_pure, sum_at_pure
NATIVE = uncount_at is not uncount_at_pure
