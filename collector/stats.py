"""Store stage, `/stats` aggregation: counts by field and a histogram over shards.

Pure: no asyncio, no logging, no clock. It reads shards, never changes them:
a shard whose every record in range passes the filters is counted from its
summaries, the others from the records that `Shard.select` yields. The
histogram's size bound is query.py's MAX_BUCKETS, checked by query.py.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from collector.query import MAX_BUCKETS, check_buckets
from collector.record import FACILITIES, LEVELS, format_timestamp
from collector.shard import NO_FACILITY, Plan, Shard


def aggregate(
    shards: Iterable[Shard], plan: Plan, by: tuple[str, ...], step_us: int | None
) -> dict[str, Any]:
    """The `/stats` answer over `shards` (in time order) for a validated plan."""
    total = 0
    counts: dict[str, Counter[str]] = {f: Counter() for f in by}
    buckets: Counter[int] = Counter()
    for shard in shards:
        a, b = shard.bounds(plan)
        if a >= b:
            continue
        filters = shard.filters(plan, a, b)
        if filters is None:
            continue
        whole = a == 0 and b == len(shard)
        if not filters:
            total += b - a
            for field in by:
                col, name = _column_of(shard, field)
                if whole:
                    tally: dict[int, int] = _summary(shard, field)
                elif shard.order is None:
                    tally = Counter(col[shard.base + a : shard.base + b])
                else:
                    tally = Counter(map(col.__getitem__, shard.order[a:b]))
                for code, n in tally.items():
                    counts[field][name(code)] += n
            if step_us is not None:
                _count_buckets(buckets, shard.ts, a, b, step_us)
            continue
        matched = list(shard.select(plan, a, b))
        if not matched:
            continue
        total += len(matched)
        if shard.order is None:
            phys: Sequence[int] = list(map(shard.base.__add__, matched))
        else:
            phys = list(map(shard.order.__getitem__, matched))
        for field in by:
            col, name = _column_of(shard, field)
            for code, n in Counter(map(col.__getitem__, phys)).items():
                counts[field][name(code)] += n
        if step_us is not None:
            buckets.update(map(step_us.__rfloordiv__, map(shard.ts.__getitem__, matched)))
            if len(buckets) > MAX_BUCKETS:
                # Bounded while counting, not only at the end: the Counter
                # itself must not grow past the bound.
                check_buckets(max(buckets) - min(buckets) + 1)
    histogram: list[dict[str, Any]] = []
    if step_us is not None and buckets:
        first, last = min(buckets), max(buckets)
        check_buckets(last - first + 1)
        histogram = [
            {"start": format_timestamp(k * step_us), "count": buckets.get(k, 0)}
            for k in range(first, last + 1)
        ]
    return {
        "total": total,
        "by": {f: dict(sorted(c.items(), key=_by_count)) for f, c in counts.items()},
        "histogram": histogram,
    }


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _count_buckets(buckets: Counter[int], ts: array[int], a: int, b: int, step: int) -> None:
    """Histogram counts of ts[a:b] (sorted): by bisect when buckets are few."""
    first, last = ts[a] // step, ts[b - 1] // step
    check_buckets(last - first + 1)
    if (last - first + 1) * 16 < b - a:
        lo = a
        for k in range(first, last + 1):
            hi = bisect_left(ts, (k + 1) * step, lo, b)
            if hi > lo:
                buckets[k] += hi - lo
            lo = hi
    else:
        buckets.update(map(step.__rfloordiv__, ts[a:b]))


def _column_of(shard: Shard, field: str) -> tuple[Any, Callable[[int], str]]:
    """A shard's column for `field` and how its codes read as `/stats` keys."""
    if field == "level":
        return shard.lvl, _level_name
    if field == "facility":
        return shard.fac, _facility_name
    table = shard.tables[0] if field == "host" else shard.tables[1]
    col = shard.host if field == "host" else shard.service
    values = table.values

    def name(code: int) -> str:
        v = values[code]
        return "-" if v is None else v

    return col, name


def _summary(shard: Shard, field: str) -> dict[int, int]:
    """Live-record counts by code for `field`, from the shard summary."""
    if field == "level":
        counts = shard.lvl_counts
    elif field == "facility":
        counts = shard.fac_counts
    else:
        counts = shard.tables[0 if field == "host" else 1].counts
    return {c: n for c, n in enumerate(counts) if n}


def _level_name(code: int) -> str:
    return LEVELS[code] if code < len(LEVELS) else str(code)


def _facility_name(code: int) -> str:
    if code == NO_FACILITY:
        return "-"
    return FACILITIES[code] if code < len(FACILITIES) else str(code)
