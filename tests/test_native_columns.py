"""collector/columns.py, what an eviction takes off an open shard's counts and
index: `uncount` against a plain Counter (byte columns and 4-byte code
columns, few and many distinct codes: the fast path and the fallback), and
the C helpers of the late-record path against their pure versions."""

from __future__ import annotations

from array import array
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector import columns
from collector.columns import UNCOUNT_PASSES, uncount


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


# -- native against pure: the late-record path of eviction ---------------------

native = pytest.mark.skipif(
    not columns.NATIVE, reason="collector._native not built (or COLLECTOR_PURE set)"
)


@native
@given(
    st.sampled_from([1, 4]).flatmap(
        lambda width: st.tuples(
            st.just(width),
            st.lists(st.integers(0, 255 if width == 1 else 70_000), min_size=1, max_size=400),
        )
    ),
    st.data(),
)
def test_uncount_at_native_matches_pure(case: tuple[int, list[int]], data: st.DataObject) -> None:
    width, values = case
    col: bytearray | array[int] = bytearray(values) if width == 1 else array("I", values)
    phys = array("I", data.draw(st.lists(st.integers(0, len(values) - 1), max_size=400)))
    size = max(values) + 1 + data.draw(st.integers(0, 3))
    counts = [data.draw(st.integers(0, 5)) + values.count(v) for v in range(size)]
    a, b = list(counts), list(counts)
    columns.uncount_at(a, col, phys)
    columns.uncount_at_pure(b, col, phys)
    assert a == b


@native
def test_uncount_at_refuses_positions_and_codes_out_of_range_without_changing_counts() -> None:
    counts = [5, 5, 5]
    with pytest.raises(IndexError):
        columns.uncount_at(counts, bytearray([0, 1]), array("I", [0, 2]))
    with pytest.raises(IndexError):
        columns.uncount_at(counts, bytearray([0, 7]), array("I", [0, 1]))
    with pytest.raises(TypeError):
        columns.uncount_at(counts, array("q", [0]), array("I", [0]))
    assert counts == [5, 5, 5]


@native
@given(st.lists(st.integers(0, 2**32 - 1), max_size=300), st.integers(0, 2**32 - 1))
def test_shift_down_and_min_of_native_match_pure(values: list[int], m: int) -> None:
    a, b = array("I", values), array("I", values)
    if values:
        assert columns.min_of(a) == columns.min_of_pure(b) == min(values)
        m = min(m, min(values)) if m % 2 else m  # half the cases valid, half maybe not
    errors = []
    for fn, arr in ((columns.shift_down, a), (columns.shift_down_pure, b)):
        try:
            fn(arr, m)
            errors.append(None)
        except ValueError:
            errors.append("ValueError")
    assert errors[0] == errors[1]
    assert a == b  # refused: nothing changed; else the same values, in place
    if errors[0] is None:
        assert list(a) == [v - m for v in values]


@native
def test_min_of_an_empty_array_is_an_error_both_ways() -> None:
    with pytest.raises(ValueError, match="empty"):
        columns.min_of(array("I"))
    with pytest.raises(ValueError, match="empty"):
        columns.min_of_pure(array("I"))


@native
@given(
    st.sampled_from(["I", "q"]),
    st.lists(st.integers(0, 2**20), min_size=1, max_size=300),
    st.data(),
)
def test_span_sum_native_matches_pure(typecode: str, steps: list[int], data: st.DataObject) -> None:
    offs = array(typecode, [0])
    for step in steps:
        offs.append(offs[-1] + step)
    phys = array("I", data.draw(st.lists(st.integers(0, len(offs) - 2), max_size=300)))
    assert columns.span_sum(offs, phys) == columns.span_sum_pure(offs, phys)
    assert columns.span_sum(offs, phys) == sum(steps[p] for p in phys)


@native
def test_span_sum_refuses_a_position_past_the_offsets() -> None:
    with pytest.raises(IndexError):
        columns.span_sum(array("I", [0, 5]), array("I", [1]))


@native
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=300),
    st.data(),
)
def test_sum_at_native_matches_pure(values: list[int], data: st.DataObject) -> None:
    col = array("I", values)
    phys = array("I", data.draw(st.lists(st.integers(0, len(col) - 1), max_size=300)))
    assert columns.sum_at(col, phys) == columns.sum_at_pure(col, phys)
    assert columns.sum_at(col, phys) == sum(values[p] for p in phys)


@native
def test_sum_at_refuses_a_position_past_the_column() -> None:
    with pytest.raises(IndexError):
        columns.sum_at(array("I", [7]), array("I", [1]))
