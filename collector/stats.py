"""Store stage, `/stats` aggregation: counts by field and a histogram over shards.

Pure: no asyncio, no logging, no clock. It reads shards, never changes them:
a shard whose every record in range passes the filters is counted from its
summaries, the others from the records that `Shard.select` yields. The
histogram's size bound is query.py's MAX_BUCKETS, checked by query.py.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from itertools import chain
from typing import Any, cast

from collector.matching import extra_values, field_names
from collector.query import MAX_BUCKETS, MAX_BY_VALUES, MAX_FIELDS, check_buckets
from collector.record import FACILITIES, LEVELS
from collector.search import is_dotted
from collector.shard import NO_FACILITY, Shard
from collector.shardquery import Plan, bounds, filters_for, select, tests_records
from collector.times import format_timestamp

# Distinct values one `/stats` field tracks while counting: past it, values
# not yet seen count under `others` (the top MAX_BY_VALUES stay exact unless a
# field has more than this many distinct values). Bounds the answer's memory.
MAX_TRACKED = 100_000
MEMO_COUNTS_MAX = 2_000
# /stats in steps (aggregate_steps): records tested one by one, or values
# merged, between two steps; each step is a few to ~20 ms of work.
STEP_RECORDS = 5_000
STEP_VALUES = 20_000


def _phys(shard: Shard, idx: Sequence[int] | range) -> Sequence[int]:
    if shard.order is None:
        if isinstance(idx, range):
            return range(shard.base + idx.start, shard.base + idx.stop)
        return list(map(shard.base.__add__, idx))
    return list(map(shard.order.__getitem__, idx))


def _memo(
    shard: Shard, key: tuple[Any, ...], compute: Callable[..., Counter[str]], *args: Any
) -> Counter[str]:
    """Whole-shard counts, remembered unless they have more than
    MEMO_COUNTS_MAX keys (a field with an id per record would push every
    other shard's counts out of the store's bounded Memo)."""
    counts: Counter[str] | None = shard.memo_peek(key)
    if counts is None:
        counts = compute(*args)
        if len(counts) <= MEMO_COUNTS_MAX:
            shard.memo_put(key, counts)
    return counts


def _extra_counts(shard: Shard, phys: Sequence[int], field: str) -> Counter[str]:
    """Records of `phys` by their value of a fields.*/sd.* key ("-": none)."""
    if not shard.has_extras():
        return Counter({"-": len(phys)})
    out: Counter[str] = Counter()
    for sd, fields in shard.extras_at(phys):
        values = extra_values(field, sd, fields)
        if values is None:
            out["-"] += 1
        else:
            out.update(set(values))
    return out


def _name_counts(shard: Shard, phys: Sequence[int]) -> Counter[str]:
    """How many records of `phys` have each fields.*/sd.* name."""
    out: Counter[str] = Counter()
    if shard.has_extras():
        for sd, fields in shard.extras_at(phys):
            if sd or fields:
                out.update(field_names(sd, fields))
    return out


def _merge(
    into: Counter[str], part: Counter[str] | dict[str, int], others: Counter[str], field: str
) -> None:
    if len(into) < MAX_TRACKED:
        into.update(part)
        return
    for key, n in part.items():
        if key in into:
            into[key] += n
        else:
            others[field] += n


def aggregate(
    shards: Iterable[Shard], plan: Plan, by: tuple[str, ...], step_us: int | None
) -> dict[str, Any]:
    """The `/stats` answer over `shards` (in time order) for a validated plan."""
    for answer in aggregate_steps(shards, plan, by, step_us):
        if answer is not None:
            return answer
    raise AssertionError("aggregate_steps ends with its answer")


def aggregate_steps(
    shards: Iterable[Shard], plan: Plan, by: tuple[str, ...], step_us: int | None
) -> Iterator[dict[str, Any] | None]:
    """`aggregate` in steps: None after each bounded piece of work (about
    STEP_RECORDS records tested or STEP_VALUES values merged), the answer
    last. The caller may change the store between steps (the event loop
    serves meanwhile); each step reads the shards as they are then."""
    total = 0
    counts: dict[str, Counter[str]] = {f: Counter() for f in by}
    others: Counter[str] = Counter()
    buckets: Counter[int] = Counter()
    stacked = step_us is not None and "level" in by
    by_level: Counter[tuple[int, int]] = Counter()  # (bucket, level code) -> n
    work = 0
    for shard in list(shards):
        if work >= STEP_VALUES:
            work = 0
            yield None
        a, b = bounds(shard, plan)
        if a >= b:
            continue
        filters = filters_for(shard, plan, a, b)
        if filters is None:
            continue
        whole = a == 0 and b == len(shard)
        if not filters and not tests_records(shard, plan):
            total += b - a
            for field in by:
                if is_dotted(field):
                    part = shard.memo_peek(("by", field)) if whole else None
                    if part is None:
                        part = Counter()
                        lo, hi = (0, len(shard)) if whole else (a, b)
                        for start in range(lo, hi, STEP_RECORDS):
                            end = min(start + STEP_RECORDS, hi)
                            part.update(
                                _extra_counts(shard, _phys(shard, range(start, end)), field)
                            )
                            if end < hi:
                                yield None
                        # Remembered only when read in one step (the shard did not move).
                        if whole and hi - lo <= STEP_RECORDS and len(part) <= MEMO_COUNTS_MAX:
                            shard.memo_put(("by", field), part)
                    work += len(part)
                    yield from _merge_steps(counts[field], part, others, field)
                    continue
                col, name = _column_of(shard, field)
                if whole:
                    work += yield from _summary_steps(shard, field, counts[field], others)
                    continue
                if shard.order is None:
                    tally: dict[int, int] = Counter(col[shard.base + a : shard.base + b])
                else:
                    tally = Counter(map(col.__getitem__, shard.order[a:b]))
                work += len(tally)
                _merge(counts[field], {name(code): n for code, n in tally.items()}, others, field)
            if step_us is not None:
                _count_buckets(buckets, shard.ts, a, b, step_us)
                if stacked:
                    _count_by_level(by_level, shard, a, b, step_us)
            continue
        for lo in range(a, b, STEP_RECORDS):
            hi = min(lo + STEP_RECORDS, b)
            if lo > a:
                yield None
            matched = list(select(shard, plan, lo, hi))
            if not matched:
                continue
            total += len(matched)
            phys = _phys(shard, matched)
            for field in by:
                if is_dotted(field):
                    _merge(counts[field], _extra_counts(shard, phys, field), others, field)
                    continue
                col, name = _column_of(shard, field)
                tally = Counter(map(col.__getitem__, phys))
                _merge(counts[field], {name(code): n for code, n in tally.items()}, others, field)
            if step_us is not None:
                keys = list(map(step_us.__rfloordiv__, map(shard.ts.__getitem__, matched)))
                buckets.update(keys)
                if stacked:
                    by_level.update(zip(keys, map(shard.lvl.__getitem__, phys), strict=True))
                if len(buckets) > MAX_BUCKETS:
                    # Bounded while counting, not only at the end: the Counter
                    # itself must not grow past the bound.
                    check_buckets(max(buckets) - min(buckets) + 1)
        work += STEP_VALUES  # a shard tested record by record ends a step
    histogram: list[dict[str, Any]] = []
    if step_us is not None and buckets:
        first, last = min(buckets), max(buckets)
        check_buckets(last - first + 1)
        histogram = [
            {"start": format_timestamp(k * step_us), "count": buckets.get(k, 0)}
            for k in range(first, last + 1)
        ]
        if stacked:
            levels: dict[int, dict[str, int]] = {}
            for (k, code), n in sorted(by_level.items()):
                levels.setdefault(k, {})[_level_name(code)] = n
            for bucket, k in zip(histogram, range(first, last + 1), strict=True):
                bucket["by_level"] = levels.get(k, {})
    answer_by: dict[str, dict[str, int]] = {}
    for f, c in counts.items():
        yield None
        answer_by[f] = yield from _top_steps(c, others[f])
    yield {"total": total, "by": answer_by, "histogram": histogram}


def _merge_steps(
    into: Counter[str], part: Counter[str] | dict[str, int], others: Counter[str], field: str
) -> Iterator[None]:
    """_merge, STEP_VALUES values at a time."""
    if len(part) <= STEP_VALUES:
        _merge(into, part, others, field)
        return
    items = list(part.items())
    for start in range(0, len(items), STEP_VALUES):
        _merge(into, dict(items[start : start + STEP_VALUES]), others, field)
        yield None


def _top_steps(counter: Counter[str], others: int) -> Generator[None, None, dict[str, int]]:
    """The MAX_BY_VALUES most frequent values (ties by value), then `others`
    for the rest; in steps of STEP_VALUES values."""
    if len(counter) > MAX_BY_VALUES:
        # The cut-off count at C speed, then sort only what can make the top.
        floor = heapq.nlargest(MAX_BY_VALUES, counter.values())[-1]
        above = [(k, n) for k, n in counter.items() if n > floor]
        tied = [k for k, n in counter.items() if n == floor]
        need = MAX_BY_VALUES - len(above)
        best: list[str] = []
        for start in range(0, len(tied), STEP_VALUES):
            yield None
            best = heapq.nsmallest(need, chain(best, tied[start : start + STEP_VALUES]))
        items = sorted(above, key=_by_count) + [(k, floor) for k in best]
        others += sum(counter.values()) - sum(n for _, n in items)
    else:
        items = sorted(counter.items(), key=_by_count)
    out = dict(items)
    if others:
        out["others"] = others
    return out


def warm_names(shard: Shard) -> int:
    """Count a whole shard's fields.*/sd.* names ahead of `/fields` (kept
    until it changes); returns how many records that read (0: already done)."""
    key = ("names",)
    if shard.run is not None or not shard.has_extras() or shard.memo_peek(key) is not None:
        return 0  # a sealed shard keeps the counts made while open (Store.install)
    _memo(shard, key, _name_counts, shard, _phys(shard, range(len(shard))))
    return shard.has_extras()


def field_counts(shards: Iterable[Shard], plan: Plan) -> list[tuple[str, int]]:
    """`/fields`: the fields.*/sd.* names of matching records, how many have
    each, most frequent first, at most MAX_FIELDS."""
    names: Counter[str] = Counter()
    for shard in shards:
        if not shard.has_extras():
            continue
        a, b = bounds(shard, plan)
        if a >= b:
            continue
        filters = filters_for(shard, plan, a, b)
        if filters is None:
            continue
        if not filters and not tests_records(shard, plan):
            if a == 0 and b == len(shard):
                part = _memo(
                    shard, ("names",), _name_counts, shard, _phys(shard, range(len(shard)))
                )
            else:
                part = _name_counts(shard, _phys(shard, range(a, b)))
        else:
            part = _name_counts(shard, _phys(shard, list(select(shard, plan, a, b))))
        names.update(part)
    return sorted(names.items(), key=_by_count)[:MAX_FIELDS]


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _count_by_level(
    by_level: Counter[tuple[int, int]], shard: Shard, a: int, b: int, step: int
) -> None:
    """(bucket, level) counts of the live records a..b of a shard, all passing:
    per bucket a bisect, then bytes.count per level present, at C speed."""
    ts = shard.ts
    first, last = ts[a] // step, ts[b - 1] // step
    if shard.order is not None or (last - first + 1) * 16 >= b - a:
        lv = map(shard.lvl.__getitem__, _phys(shard, range(a, b)))
        by_level.update(zip(map(step.__rfloordiv__, ts[a:b]), lv, strict=True))
        return
    present = [code for code, n in enumerate(shard.lvl_counts) if n]
    lo = a
    for k in range(first, last + 1):
        hi = bisect_left(ts, (k + 1) * step, lo, b)
        if hi > lo:
            seg = shard.lvl[shard.base + lo : shard.base + hi]
            for code in present:
                n = seg.count(code)
                if n:
                    by_level[(k, code)] += n
        lo = hi


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


def _summary_steps(
    shard: Shard, field: str, into: Counter[str], others: Counter[str]
) -> Generator[None, None, int]:
    """Merge a whole shard's live-record counts for `field` from its summary,
    STEP_VALUES values a step; returns how many values it merged. Host and
    service values are distinct within a shard (code 0 is None, read "-")."""
    if field in ("level", "facility"):
        counts = shard.lvl_counts if field == "level" else shard.fac_counts
        name = _level_name if field == "level" else _facility_name
        _merge(into, {name(c): n for c, n in enumerate(counts) if n}, others, field)
        return len(counts)
    table = shard.tables[0 if field == "host" else 1]
    values = cast("list[str]", table.values)  # only code 0 is None
    tallies = table.counts
    if tallies[0]:
        _merge(into, {"-": tallies[0]}, others, field)
    n = len(values)
    for start in range(1, n, STEP_VALUES):
        end = min(start + STEP_VALUES, n)
        part = {v: c for v, c in zip(values[start:end], tallies[start:end], strict=False) if c}
        _merge(into, part, others, field)
        if end < n:
            yield None
    return n


def _level_name(code: int) -> str:
    return LEVELS[code] if code < len(LEVELS) else str(code)


def _facility_name(code: int) -> str:
    if code == NO_FACILITY:
        return "-"
    return FACILITIES[code] if code < len(FACILITIES) else str(code)
