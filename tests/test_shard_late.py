"""Late records into an open shard: after any sequence of batches (each
sorted by key, as the store hands them over), the shard's key index is the
sorted keys of everything it took, and each key still finds its own record.
Batches with many late records take the merge, others the block moves."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.record import Record
from collector.shard import Shard

BASE = 1_767_225_600_000_000


def rec(ts: int, seq: int) -> Record:
    return Record(ts, ts, "h", "s", None, None, 1, 6, f"m{seq}", None, None, "raw")


def add_batch(shard: Shard, offsets: list[int], seq: int) -> list[tuple[int, int]]:
    """Add records at BASE + each offset, seqs from seq + 1, sorted by key as
    the store hands a batch over; returns their keys."""
    keys = sorted((BASE + off, seq + 1 + i) for i, off in enumerate(offsets))
    shard.add([rec(t, s) for t, s in keys], [t for t, _ in keys], [s for _, s in keys])
    return keys


@settings(max_examples=200)
@given(
    st.lists(
        st.lists(st.integers(0, 60), min_size=1, max_size=40),  # event-time offsets per batch
        min_size=1,
        max_size=12,
    )
)
def test_late_batches_keep_the_key_index_sorted_and_pointing_at_their_records(
    batches: list[list[int]],
) -> None:
    shard = Shard(0)
    seq = 0
    taken: list[tuple[int, int]] = []
    for offsets in batches:
        keys = add_batch(shard, offsets, seq)
        seq += len(keys)
        taken += keys
    want = sorted(taken)
    assert list(zip(shard.ts, shard.seqs, strict=True)) == want
    got = shard.records(range(len(shard)))
    assert [r.message for r in got] == [f"m{s}" for _, s in want]
    assert [r.timestamp for r in got] == [t for t, _ in want]


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 60), min_size=1, max_size=40),
            st.sampled_from(["none", "read", "trim", "cut"]),  # what follows the batch
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 8),
)
def test_waiting_late_records_are_in_every_read_trim_and_cut(
    steps: list[tuple[list[int], str]], waiting: int
) -> None:
    """Late records wait outside the key index until it is read (or until
    `LATE_WAITING` wait): whatever comes between batches (a read, a trim of
    the oldest, a cut of the dead prefix) sees them in place."""
    import collector.shard as shard_mod

    saved = shard_mod.LATE_WAITING
    shard_mod.LATE_WAITING = waiting
    try:
        shard = Shard(0)
        seq = 0
        live: list[tuple[int, int]] = []
        for offsets, then in steps:
            keys = add_batch(shard, offsets, seq)
            seq += len(keys)
            live = sorted(live + keys)
            assert len(shard) == len(live)
            if then == "read":
                assert list(zip(shard.ts, shard.seqs, strict=True)) == live
            elif then in ("trim", "cut"):
                k = len(live) // 3
                shard.trim(k)
                live = live[k:]
                if then == "cut":
                    shard.drop_dead_prefix()
        assert list(zip(shard.ts, shard.seqs, strict=True)) == live
        got = shard.records(range(len(shard)))
        assert [r.message for r in got] == [f"m{s}" for _, s in live]
        assert [r.timestamp for r in got] == [t for t, _ in live]
    finally:
        shard_mod.LATE_WAITING = saved


def test_a_few_late_records_far_back_in_a_large_shard() -> None:
    shard = Shard(0)
    n = 20_000
    shard.add(
        [rec(BASE + 10 * i, i) for i in range(n)], [BASE + 10 * i for i in range(n)], range(n)
    )
    late = [(BASE + 5, n), (BASE + 10 * 7_000 + 5, n + 1), (BASE + 10 * 7_000 + 5, n + 2)]
    late.append((BASE + 10 * (n - 1) + 20, n + 3))  # not late: after the last key
    shard.add([rec(t, s) for t, s in late], [t for t, _ in late], [s for _, s in late])
    keys = list(zip(shard.ts, shard.seqs, strict=True))
    assert keys == sorted(keys)
    assert keys[1] == (BASE + 5, n)
    assert keys[7_002:7_004] == [(BASE + 10 * 7_000 + 5, n + 1), (BASE + 10 * 7_000 + 5, n + 2)]
    assert shard.record(7_002).message == f"m{n + 1}"
    assert shard.record(len(shard) - 1).message == f"m{n + 3}"


def test_structured_data_follows_its_records_across_prefix_cuts_and_late_records() -> None:
    """Extras are keyed by arrival number: after the dead prefix is cut
    (twice), and with late records in between, each record still has its own
    structured data, and the cut frees exactly the dead records' extras."""
    shard = Shard(0)
    n = 1_000

    def sd_rec(ts: int, seq: int) -> Record:
        sd = {"m@1": {"n": str(seq)}} if seq % 3 == 0 else None
        return Record(ts, ts, "h", "s", None, None, 1, 6, f"m{seq}", sd, None, "raw")

    shard.add(
        [sd_rec(BASE + 10 * i, i) for i in range(n)], [BASE + 10 * i for i in range(n)], range(n)
    )
    late = [(BASE + 10 * 600 + 5, n), (BASE + 10 * 900 + 5, n + 1)]
    shard.add([sd_rec(t, s) for t, s in late], [t for t, _ in late], [s for _, s in late])
    for k in (300, 250):
        shard.trim(k)
        freed = shard.drop_dead_prefix()
        assert freed > 0
        assert shard.dead_bytes >= 0
    assert shard.pdrop > 0
    got = shard.records(range(len(shard)))
    for r in got:
        seq = int(r.message[1:])
        assert r.structured_data == ({"m@1": {"n": str(seq)}} if seq % 3 == 0 else None)
    assert {int(r.message[1:]) for r in got} == set(range(550, n + 2))
    for i in range(0, len(shard), 7):  # one by one too (Shard.record)
        one = shard.record(i)
        assert one == got[i]
    assert min(shard.extras) >= shard.pdrop  # the cut ones are gone
