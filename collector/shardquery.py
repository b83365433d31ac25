"""Store stage, query over one shard: a Query planned into a Plan, then the
filters, the search tree's summaries and tests, and the sealed-run search.

Pure: no asyncio, no logging, no clock. Reads shards, never changes them
(besides their Memo); the per-record tests stop at the plan's scan budget.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import compress
from operator import itemgetter
from typing import Any

from collector import matching, search
from collector.query import Query, QueryError
from collector.record import LEVELS, Record, parse_id
from collector.shard import NO_FACILITY, Shard, unpack_extras
from collector.wordfilter import word_keys, words

_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


@dataclass(slots=True)
class Plan:
    """A validated Query as shards read it: bounds as (timestamp, seq) keys and the filters."""

    start: int | None
    end: int | None
    services: frozenset[str] | None
    hosts: frozenset[str] | None
    levels: frozenset[int] | None
    facilities: frozenset[int] | None
    needle: bytes | None  # lower-cased UTF-8, searched in the ASCII-lowered text
    q: str | None
    after: tuple[int, int] | None  # asc cursor: keys strictly greater
    before: tuple[int, int] | None  # desc cursor: keys strictly smaller
    reverse: bool
    # From the search language (see plan_of): tests of the values of the
    # interned columns (by table index), words/phrases found through the text
    # search then checked at word boundaries, and the rest as a record test.
    value_tests: tuple[tuple[int, Callable[[str | None], bool]], ...] = ()
    texts: tuple[search.Text, ...] = ()
    residual: matching.Predicate | None = None
    # fields.*/sd.* terms ANDed at the top: found through a per-shard value
    # index (built once per shard version) instead of unpacking every record.
    extra_terms: tuple[search.Field | search.Exists, ...] = ()
    # At most this many per-record tests (word edges, residual) per request
    # (0: no bound); past it the scan stops, `exhausted` is set, and
    # `last_key` is the last record tested (where the next page goes on).
    budget: int = 0
    spent: int = 0
    # Records a request may still unpack to build value indexes (None: no
    # bound); a shard without one then leaves its fields.*/sd.* terms to `residual`.
    index_budget: int | None = None
    last_key: tuple[int, int] | None = None
    exhausted: bool = False
    tree: search.Node | None = None  # the whole tree, for the summaries' verdict


# One filter over one shard: a column (None = the physical index itself) and
# the set of values that pass.
# How many live records of the shard pass it orders the filters: the most
# selective runs at C speed over the range, the others only over its hits.
_Filter = tuple[Any, set[int], int]


def _hits(f: _Filter) -> int:
    return f[2]


def plan_of(q: Query, use_cursor: bool = True) -> Plan:
    """A Query resolved for the shards: its cursor as a key, its text as bytes."""
    after = before = None
    reverse = q.order == "desc"
    if use_cursor and q.cursor is not None:
        # Reading the cursor is not a check of the query: a cursor is this
        # store's own token, opaque to query.py.
        key = parse_id(q.cursor)
        if key is None:
            raise QueryError(f"cursor: not a cursor from this server: {q.cursor[:100]!r}")
        if reverse:
            before = key
        else:
            after = key
    text = q.q or None
    plan = Plan(
        start=q.start,
        end=q.end,
        services=q.services,
        hosts=q.hosts,
        levels=q.levels,
        facilities=q.facilities,
        needle=None if text is None else text.encode("utf-8", "surrogatepass"),
        q=text,
        after=after,
        before=before,
        reverse=reverse,
    )
    if q.search is not None:
        _plan_search(plan, q.search)
    return plan


_TABLE_OF = {name: i for i, name in enumerate(search.TEXT_FIELDS)}  # Shard.tables' order
_ALL_LEVELS = frozenset(range(len(LEVELS)))


def _value_test(node: search.Field | search.Exists, negate: bool) -> Callable[[str | None], bool]:
    if isinstance(node, search.Exists):
        return (lambda v: v is None) if negate else (lambda v: v is not None)
    f = node

    def test(v: str | None) -> bool:
        return (v is not None and matching.value_matches(f, (v,))) is not negate

    return test


def _plan_search(plan: Plan, tree: search.Node) -> None:
    """Fold the tree's top-level terms into what shards run at column speed,
    as the equivalent parameters would be: level and facility sets, value
    tests on the interned columns (host:web-*, -service:cron), words and
    phrases through the text search; what is left is tested per record."""
    rest: list[search.Node] = []
    tests: list[tuple[int, Callable[[str | None], bool]]] = []
    texts: list[search.Text] = []
    extra_terms: list[search.Field | search.Exists] = []
    for node in tree.children if isinstance(tree, search.And) else (tree,):
        inner, negate = (node.child, True) if isinstance(node, search.Not) else (node, False)
        if isinstance(inner, search.Codes) and (inner.name == "level" or not negate):
            codes = _ALL_LEVELS - inner.codes if negate else inner.codes
            if inner.name == "level":
                plan.levels = codes if plan.levels is None else plan.levels & codes
            else:
                plan.facilities = codes if plan.facilities is None else plan.facilities & codes
        elif isinstance(inner, search.Field | search.Exists) and inner.name in _TABLE_OF:
            tests.append((_TABLE_OF[inner.name], _value_test(inner, negate)))
        elif isinstance(inner, search.Text) and not negate:
            texts.append(inner)
        else:
            if isinstance(inner, search.Field | search.Exists) and not negate:
                # Through the shard's value index where there is one; the
                # residual test stays for shards without (see index_budget).
                extra_terms.append(inner)
            rest.append(node)
    plan.value_tests = tuple(tests)
    plan.texts = tuple(texts)
    plan.extra_terms = tuple(extra_terms)
    if rest:
        plan.residual = matching.predicate(rest[0] if len(rest) == 1 else search.And(tuple(rest)))
    plan.tree = tree


def bounds(shard: Shard, plan: Plan) -> tuple[int, int]:
    """The logical range [a, b) of the plan's time bounds and cursor."""
    n = len(shard.ts)
    a = 0 if plan.start is None else bisect_left(shard.ts, plan.start)
    b = n if plan.end is None else bisect_right(shard.ts, plan.end)
    if plan.after is not None:
        a = max(a, shard.position(plan.after[0], plan.after[1] + 1))
    if plan.before is not None:
        b = min(b, shard.position(*plan.before))
    return a, b


def filters_for(shard: Shard, plan: Plan, a: int, b: int) -> list[_Filter] | None:
    """Per-record filters still needed here; None when nothing here can match.

    The summaries decide first: a wanted value no live record holds skips
    the shard, and a filter every live record passes is dropped.
    """
    n = len(shard.ts)
    out: list[_Filter] = []
    for values, col, table in (
        (plan.services, shard.service, shard.tables[1]),
        (plan.hosts, shard.host, shard.tables[0]),
    ):
        if values is not None:
            codes = table.wanted(values)
            hits = sum(table.counts[c] for c in codes)
            if not hits:
                return None
            if hits < n:
                out.append((col, codes, hits))
    for ints, small_col, counts in (
        (plan.levels, shard.lvl, shard.lvl_counts),
        (plan.facilities, shard.fac, shard.fac_counts),
    ):
        if ints is not None:
            codes = {c for c in ints if 0 <= c < NO_FACILITY and counts[c]}
            hits = sum(counts[c] for c in codes)
            if not hits:
                return None
            if hits < n:
                out.append((small_col, codes, hits))
    if plan.tree is not None and not matching.may_match(plan.tree, _Summary(shard, a, b)):
        return None
    sealed = shard.run is not None
    columns = (shard.host, shard.service, shard.procid, shard.msgid, shard.fmt)
    for ti, test in plan.value_tests:
        if sealed and ti >= 2:
            continue  # sealed: only host and service stay in the clear; select() tests it
        table = shard.tables[ti]
        counted = ti < 2  # live-record counts are kept for host and service only
        codes = {
            c for c, v in enumerate(table.values) if (not counted or table.counts[c]) and test(v)
        }
        hits = sum(table.counts[c] for c in codes) if counted else n
        if not codes or (counted and not hits):
            return None
        if not counted or hits < n:
            out.append((columns[ti], codes, hits))
    if shard.run is not None and (plan.needle is not None or plan.texts):
        # Sealed: the blocks' text is searched (a block at a time, on the
        # scan pool); hits are logical indices (a sealed shard has no order).
        run, rb = shard.run, shard.run_base
        needles = [t.text for t in plan.texts]
        if plan.needle is not None:
            assert plan.q is not None
            needles.insert(0, plan.q)
        for needle in needles:
            in_run = run.search(needle, rb + a, rb + b, run.cache.mapper)
            if not in_run:
                return None
            logical = set(map((-rb).__add__, in_run))
            out.append((None, logical, len(logical)))
    elif plan.needle is not None or plan.texts:
        if shard.order is None:
            pa, pb = shard.base + a, shard.base + b
        else:  # the key range is not a physical one: search every message
            pa, pb = 0, len(shard.recv)
        if plan.needle is not None:
            assert plan.q is not None
            found = shard.text.search(plan.needle, plan.q, pa, pb)
            if not found:
                return None
            out.append((None, found, len(found)))
        for t in plan.texts:
            # Substring hits here; whole-word edges are checked lazily in
            # select(), on the records the other filters leave.
            found = shard.text.search(t.text.encode("utf-8", "surrogatepass"), t.text, pa, pb)
            if not found:
                return None
            out.append((None, found, len(found)))
    for term in () if sealed else plan.extra_terms:  # sealed: the residual tests them
        key = ("index", term.name)
        index = shard.memo_peek(key)
        if index is None:
            if plan.index_budget is not None:
                if plan.index_budget < len(shard.extras):
                    continue  # not in this request's budget: the residual tests it
                plan.index_budget -= len(shard.extras)
            index = shard.memo_get(key, _value_index, shard, term.name)
        if isinstance(term, search.Exists):
            matched = set(index.ps)
        elif term.prefixes:
            continue  # a hash index cannot answer a prefix: the residual tests it
        else:
            matched = index.lookup(term.values)
        if shard.order is None:
            pa, pb = shard.base + a, shard.base + b
            matched = {p for p in matched if pa <= p < pb}
        if not matched:
            return None
        out.append((None, matched, len(matched)))
    return out


def select(shard: Shard, plan: Plan, a: int, b: int) -> Iterator[int]:
    """Logical indices in [a, b) matching the plan, in the plan's order.

    A sealed shard's text search runs over a block's worth of records
    first (its first block's size), then twice as many each time the page
    asks for more: the first page of a common word decodes a block or two,
    not the shard, and a long scan still gives the scan threads several
    blocks at a time."""
    if a >= b or plan.exhausted:
        return iter(())
    run = shard.run
    if run is not None and (plan.needle is not None or plan.texts):
        step = max(1, run.blocks[run.first_block].n)
        if b - a > step:
            return _in_steps(shard, plan, a, b, step)
    return _select_range(shard, plan, a, b)


def _in_steps(shard: Shard, plan: Plan, a: int, b: int, step: int) -> Iterator[int]:
    # Steps double (1, 2, 4... blocks): a first page searches one block, and
    # a long scan still hands several blocks at a time to the scan threads.
    steps = []
    if plan.reverse:  # from the end of the range
        hi = b
        while hi > a:
            steps.append((max(a, hi - step), hi))
            hi -= step
            step *= 2
    else:
        lo = a
        while lo < b:
            steps.append((lo, min(b, lo + step)))
            lo += step
            step *= 2
    for lo, hi in steps:
        if plan.exhausted:
            return
        yield from _select_range(shard, plan, lo, hi)


def _select_range(shard: Shard, plan: Plan, a: int, b: int) -> Iterator[int]:
    filters = filters_for(shard, plan, a, b)
    if filters is None:
        return iter(())
    reverse = plan.reverse
    idx = range(b - 1, a - 1, -1) if reverse else range(a, b)
    found = _select(shard, filters, idx, a, b, reverse)
    # Then, lazily, the per-record tests: a first page runs them only on
    # as many records as it needs.
    tests = _sealed_tests(shard, plan) if shard.run is not None else _open_tests(shard, plan)
    if not tests:
        return found
    return _tested(shard, plan, found, tests)


def tests_records(shard: Shard, plan: Plan) -> bool:
    """Whether select() tests records one by one beyond what filters_for() says."""
    return plan.residual is not None or (
        shard.run is not None and any(ti >= 2 for ti, _ in plan.value_tests)
    )


def _open_tests(shard: Shard, plan: Plan) -> list[Callable[[int], bool]]:
    tests: list[Callable[[int], bool]] = []
    phys = shard.phys
    for t in plan.texts:
        if t.start or t.end:
            tests.append(partial(_edges_hold, shard.text.lowered, phys, t))
    if plan.residual is not None:
        residual = plan.residual
        tests.append(lambda i: residual(_Row(shard, phys(i))))
    return tests


def _sealed_tests(shard: Shard, plan: Plan) -> list[Callable[[int], bool]]:
    """A sealed shard's per-record tests read the record decoded from its
    block (one decode per record, shared by its tests): word edges on
    its message lower-cased, the value tests of columns not kept in the
    clear (procid, msgid, format), the residual."""
    last: list[Any] = [-1, None]

    def rec(i: int) -> Record:
        if last[0] != i:
            last[0], last[1] = i, shard.record(i)
        return last[1]  # type: ignore[no-any-return]

    tests: list[Callable[[int], bool]] = []
    for t in plan.texts:
        if t.start or t.end:
            tests.append(partial(_sealed_edges_hold, rec, t))
    for ti, test in plan.value_tests:
        if ti >= 2:
            tests.append(partial(_sealed_value_holds, rec, search.TEXT_FIELDS[ti], test))
    if plan.residual is not None:
        residual = plan.residual
        tests.append(lambda i: residual(rec(i)))
    return tests


def _tested(
    shard: Shard, plan: Plan, found: Iterable[int], tests: list[Callable[[int], bool]]
) -> Iterator[int]:
    ts, seqs = shard.ts, shard.seqs
    for i in found:
        if plan.budget and plan.spent >= plan.budget:
            plan.exhausted = True
            return
        plan.spent += 1
        plan.last_key = (ts[i], seqs[i])
        if all(test(i) for test in tests):
            yield i


def _select(
    shard: Shard, filters: list[_Filter], idx: range, a: int, b: int, reverse: bool
) -> Iterator[int]:
    if not filters:
        return iter(idx)
    if shard.order is None:
        # A few records named by a set (a text search's hits, an index's):
        # walk them in order rather than test every record of the range.
        few = min((f for f in filters if f[0] is None), key=_hits, default=None)
        if few is not None and few[2] * 16 < b - a:
            base = shard.base
            lo, hi = base + a, base + b
            hits = sorted((p for p in few[1] if lo <= p < hi), reverse=reverse)
            walk: Iterator[int] = (p - base for p in hits)
            for f in filters:
                if f is not few:
                    walk = filter(_passes(shard, f[0], f[1]), walk)
            return walk
    view: Callable[[Any], Iterable[int]]
    if shard.order is None:
        pa, pb = shard.base + a, shard.base + b
        prange = range(pb - 1, pa - 1, -1) if reverse else range(pa, pb)

        def view(col: Any) -> Iterable[int]:
            if col is None:
                return prange
            part = col[pa:pb]
            return part[::-1] if reverse else part  # type: ignore[no-any-return]
    else:
        phys = shard.order[a:b]
        if reverse:
            phys.reverse()

        def view(col: Any) -> Iterable[int]:
            return phys if col is None else map(col.__getitem__, phys)

    if len(filters) > 1 and min(f[2] for f in filters) * 4 <= len(shard.ts):
        filters.sort(key=_hits)
        col, codes, _ = filters[0]
        found: Iterator[int] = compress(idx, map(codes.__contains__, view(col)))
        for col, codes, _ in filters[1:]:
            found = filter(_passes(shard, col, codes), found)
        return found
    sels = [map(codes.__contains__, view(col)) for col, codes, _ in filters]
    sel = sels[0] if len(sels) == 1 else map(all, zip(*sels, strict=True))
    return compress(idx, sel)


def _value_index(shard: Shard, name: str) -> _HashIndex:
    """Physical records by the hash of their (lower-cased) values of a
    fields.*/sd.* name."""
    pairs: list[tuple[int, int]] = []
    pdrop = shard.pdrop  # extras are keyed by arrival number (see Shard.extras)
    for a, packed in shard.extras.items():
        sd, fields = unpack_extras(packed)
        values = matching.extra_values(name, sd, fields)
        if values is not None:
            pairs.extend((hash(v), a - pdrop) for v in {v.lower() for v in values})
    pairs.sort()
    return _HashIndex(array("q", map(_FIRST, pairs)), array("q", map(_SECOND, pairs)))


def _passes(shard: Shard, col: Any, codes: set[int]) -> Callable[[int], bool]:
    """Whether logical record i passes one filter (for the few that passed another)."""
    order, base = shard.order, shard.base
    if col is None:
        if order is None:
            return lambda i: base + i in codes
        return lambda i: order[i] in codes
    if order is None:
        return lambda i: col[base + i] in codes
    return lambda i: col[order[i]] in codes


class _HashIndex:
    """Records by the hash of a field's value: 16 bytes an entry (a dict of
    values would be ~100), so a whole store's indexes fit the Memo. A hash
    hit is a candidate: the term's own test confirms it (the residual)."""

    __slots__ = ("hashes", "ps")

    def __init__(self, hashes: array[int], ps: array[int]) -> None:
        self.hashes = hashes
        self.ps = ps

    def __len__(self) -> int:
        # The Memo's measure of size: an entry here is ~1/8 of a dict entry.
        return len(self.ps) // 8

    def lookup(self, values: Iterable[str]) -> set[int]:
        out: set[int] = set()
        hashes, ps = self.hashes, self.ps
        for v in values:
            h = hash(v)
            i = bisect_left(hashes, h)
            j = bisect_right(hashes, h, i)
            out.update(ps[i:j])
        return out


class _Summary:
    """What a shard knows without reading records, for matching.may_match."""

    __slots__ = ("a", "b", "shard")

    def __init__(self, shard: Shard, a: int, b: int) -> None:
        self.shard = shard
        self.a = a
        self.b = b

    def may_have_word(self, word: str) -> bool:
        # A sealed shard answers from its blocks' word filters over [a, b)
        # (wordfilter.words splits as the search language does: runs of letters
        # and digits of the lower-cased text); an open one has none: True.
        shard = self.shard
        if shard.run is None:
            return True
        ws = words(word)
        return not ws or shard.may_contain_words(word_keys(ws), self.a, self.b)

    def values(self, name: str) -> list[str | None] | None:
        if name not in ("host", "service"):
            return None
        table = self.shard.tables[0 if name == "host" else 1]
        return [v for v, n in zip(table.values, table.counts, strict=True) if n]

    def codes(self, name: str) -> list[int] | None:
        counts = self.shard.lvl_counts if name == "level" else self.shard.fac_counts
        return [c for c, n in enumerate(counts) if n]


def _sealed_edges_hold(rec: Callable[[int], Record], t: search.Text, i: int) -> bool:
    return matching.find_text(rec(i).message.lower(), t)


def _sealed_value_holds(
    rec: Callable[[int], Record], name: str, test: Callable[[str | None], bool], i: int
) -> bool:
    value: str | None = getattr(rec(i), name)
    return test(value)


def _edges_hold(
    lowered: Callable[[int], str], phys: Callable[[int], int], t: search.Text, i: int
) -> bool:
    return matching.find_text(lowered(phys(i)), t)


class _Row:
    """A stored record as a search predicate reads it: each column only when
    asked for (most terms read one), not the whole Record rebuilt."""

    __slots__ = ("_extras", "p", "shard")

    def __init__(self, shard: Shard, p: int) -> None:
        self.shard = shard
        self.p = p
        self._extras: tuple[Any, Any] | None = None

    @property
    def message(self) -> str:
        return self.shard.text.message(self.p)

    @property
    def level(self) -> int:
        return self.shard.lvl[self.p]

    @property
    def facility(self) -> int | None:
        fac = self.shard.fac[self.p]
        return None if fac == NO_FACILITY else fac

    @property
    def host(self) -> str | None:
        return self.shard.tables[0].values[self.shard.host[self.p]]

    @property
    def service(self) -> str | None:
        return self.shard.tables[1].values[self.shard.service[self.p]]

    @property
    def procid(self) -> str | None:
        return self.shard.tables[2].values[self.shard.procid[self.p]]

    @property
    def msgid(self) -> str | None:
        return self.shard.tables[3].values[self.shard.msgid[self.p]]

    @property
    def format(self) -> str:
        return self.shard.tables[4].values[self.shard.fmt[self.p]] or ""

    def _both(self) -> tuple[Any, Any]:
        if self._extras is None:
            self._extras = unpack_extras(self.shard.extra(self.p))
        return self._extras

    @property
    def structured_data(self) -> Any:
        return self._both()[0]

    @property
    def fields(self) -> Any:
        return self._both()[1]
