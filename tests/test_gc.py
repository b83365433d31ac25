"""The daemon's GC setting (daemon.tune_gc): batches die young, the store
holds no per-record objects for the GC to walk, and what it holds is freed
when it expires even when frozen."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest

from collector.daemon import GC_GEN0_THRESHOLD, tune_gc
from collector.ingest import FLUSH_FRAMES
from collector.query import parse_logs_query
from collector.record import Record
from collector.store import Store

HOUR_US = 3600 * 10**6


@pytest.fixture
def tuned_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _records(n: int, t0: int) -> list[Record]:
    # Structured data and fields are dicts of dicts/lists: GC-tracked objects
    # that the store keeps as they are, the ones a freeze takes out of sight.
    return [
        Record(
            t0 + i,
            t0 + i,
            f"host-{i % 7}",
            "app",
            str(i),
            None,
            1,
            6,
            f"message {i}",
            {"meta@1": {"seq": str(i), "tags": ["a", str(i)]}},
            {"n": i, "nested": {"k": [i]}},
            "rfc5424",
        )
        for i in range(n)
    ]


def _fill_and_expire(store: Store, t0: int, n: int) -> None:
    for start in range(0, n, 1000):
        store.add_many(_records(1000, t0 + start))
    gc.freeze()  # the worst case: everything the store holds is frozen
    assert store.expire(t0 + n + HOUR_US + 1) == n
    assert len(store) == 0


@pytest.mark.usefixtures("tuned_gc")
def test_tune_gc_lets_a_whole_listener_batch_die_young() -> None:
    assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
    assert GC_GEN0_THRESHOLD >= 10 * FLUSH_FRAMES
    assert gc.isenabled()


def test_the_store_keeps_nothing_per_record_that_the_cyclic_gc_walks() -> None:
    store = Store(ttl_us=HOUR_US, max_records=10**6, max_memory=1 << 30)
    records = _records(5000, 10**15)
    gc.collect()
    before = len(gc.get_objects())
    store.add_many(records)
    del records
    gc.collect()
    # Structured data and fields are kept marshalled: a full collection's
    # cost does not grow with the records held (~0.7 s per million if kept
    # as dicts).
    assert len(gc.get_objects()) - before < 100
    page = store.query(parse_logs_query({"limit": ["1"]}))
    assert page.items[0][1].structured_data == {"meta@1": {"seq": "0", "tags": ["a", "0"]}}
    assert page.items[0][1].fields == {"n": 0, "nested": {"k": [0]}}


@pytest.mark.usefixtures("tuned_gc")
def test_memory_is_flat_over_repeated_fill_and_expire_cycles() -> None:
    store = Store(ttl_us=HOUR_US, max_records=10**6, max_memory=1 << 30)
    tracemalloc.start()
    try:
        _fill_and_expire(store, 10**15, 10_000)
        after_first = tracemalloc.get_traced_memory()[0]
        for cycle in range(1, 4):
            _fill_and_expire(store, 10**15 + cycle * 2 * HOUR_US, 10_000)
        after_last = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # One fill holds ~12 MB; a leak of what it held would show.
    assert after_last - after_first < 1_000_000, (after_first, after_last)
