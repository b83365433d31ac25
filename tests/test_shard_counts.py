"""`shard.uncount`, the per-code counts an eviction takes off a shard's
summaries, against a plain Counter: byte columns and 4-byte code columns,
few and many distinct codes (the fast path and the fallback)."""

from __future__ import annotations

from array import array
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from collector.shard import UNCOUNT_PASSES, uncount


def expected(counts: list[int], values: list[int]) -> list[int]:
    out = list(counts)
    for code, n in Counter(values).items():
        out[code] -= n
    return out


def counts_for(values: list[int], size: int, more: list[int]) -> list[int]:
    """Counts covering `values`, plus what other (live) records hold."""
    counts = [0] * size
    for v in values + more:
        counts[v] += 1
    return counts


@given(
    st.integers(1, 255).flatmap(
        lambda top: st.tuples(
            st.lists(st.integers(0, top), max_size=300),
            st.lists(st.integers(0, top), max_size=50),
        )
    )
)
def test_a_byte_column_is_uncounted_exactly(case: tuple[list[int], list[int]]) -> None:
    values, more = case
    counts = counts_for(values, 256, more)
    want = expected(counts, values)
    uncount(counts, bytearray(values))
    assert counts == want


@given(
    st.sampled_from([2, 8, UNCOUNT_PASSES, UNCOUNT_PASSES + 5, 256, 257, 70_000]).flatmap(
        lambda size: st.tuples(
            st.just(size),
            st.lists(st.integers(0, size - 1), max_size=300),
            st.lists(st.integers(0, size - 1), max_size=50),
        )
    )
)
def test_a_code_column_is_uncounted_exactly(case: tuple[int, list[int], list[int]]) -> None:
    size, values, more = case
    counts = counts_for(values, size, more)
    want = expected(counts, values)
    uncount(counts, array("I", values))
    assert counts == want


def test_code_zero_none_is_what_the_other_codes_leave() -> None:
    values = [0, 0, 3, 0, 255, 3]
    counts = counts_for(values, 256, [0, 7])
    uncount(counts, array("I", values))
    assert (counts[0], counts[3], counts[255], counts[7]) == (1, 0, 0, 1)
