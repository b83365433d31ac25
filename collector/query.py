"""Query stage: HTTP parameters -> Query; records -> JSON bytes.

Pure: no clock, no I/O. Bad input raises QueryError (-> 400) whose message
starts with the parameter's name. Every check of a query lives here (`check`,
`check_stats`, MAX_BUCKETS); the store calls them and has none of its own
(it only reads its own cursor tokens). This module never touches the store.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from collector import matching, search
from collector.configvalues import parse_duration
from collector.record import FACILITIES, LEVELS, Record, facility_from_name, level_from_name
from collector.times import MAX_US, MIN_US, days_from_civil, format_timestamp, valid_day

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
# /stats: a histogram of more buckets is refused (the asked range at parse
# time, the matching records' range while counting), so one request cannot
# make the daemon build a million-entry answer.
MAX_BUCKETS = 100_000
STATS_BY = ("level", "service", "host", "facility")

_FILTERS = frozenset(
    {"start", "end", "service", "host", "level", "min_level", "facility", "q", "query"}
)
LOGS_PARAMS = _FILTERS | {"limit", "order", "cursor"}
STATS_PARAMS = _FILTERS | {"by", "step"}
TAIL_PARAMS = _FILTERS
FIELDS_PARAMS = _FILTERS
CONTEXT_PARAMS = frozenset({"before", "after", "scope"})
CONTEXT_SCOPES = ("host", "host,service", "all")
MAX_CONTEXT = 1000
DEFAULT_CONTEXT = 10
# /stats by a field with more distinct values answers the most frequent
# ones and `others`; /fields names at most this many fields.
MAX_BY_VALUES = 1000
MAX_FIELDS = 1000


class QueryError(ValueError):
    """A bad query parameter; the message names it."""


@dataclass(frozen=True, slots=True)
class Query:
    """A filter over records. Sets are None when the filter is absent.

    `levels` already folds `level` and `min_level` together; `q` is
    lower-cased; times are microseconds since the epoch, both ends inclusive.
    """

    start: int | None = None
    end: int | None = None
    services: frozenset[str] | None = None
    hosts: frozenset[str] | None = None
    levels: frozenset[int] | None = None
    facilities: frozenset[int] | None = None
    q: str | None = None
    limit: int = DEFAULT_LIMIT
    order: str = "asc"
    cursor: str | None = None
    # The search language (`query=`) as a filter tree, ANDed with the rest.
    search: search.Node | None = None
    # Which filters a cursor handed out for this query is good for (see
    # `make_cursor`); "" for queries built in code. Not part of equality:
    # two queries with the same filters are the same query.
    fingerprint: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class ContextQuery:
    """`GET /logs/{id}/context`: how many neighbours each side, and among which."""

    before: int = DEFAULT_CONTEXT
    after: int = DEFAULT_CONTEXT
    scope: str = "host"


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """`GET /stats`: the filter, the fields to count by, the histogram step."""

    query: Query
    by: tuple[str, ...] = ()
    step_us: int | None = None


def check(q: Query) -> Query:
    """`q` if it is a valid query, else QueryError naming the parameter.

    The one check of a Query: the parse_* functions apply it to what they
    build, and the store at its entry, since tests, benchmarks and tools
    build Queries directly. (A Query does not check itself on construction:
    property tests build arbitrary ones and filter them afterwards.)"""
    if q.start is not None and q.end is not None and q.end < q.start:
        raise QueryError(f"end: {_show_time(q.end)} is before start {_show_time(q.start)}")
    if q.order not in ("asc", "desc"):
        raise QueryError(f"order: expected asc or desc; got {q.order!r}")
    if q.cursor == "":
        raise QueryError("cursor: empty; pass the next_cursor of the previous page")
    # Any other cursor is opaque here: only the store that made it can read
    # it, and refuses one it did not make (QueryError naming `cursor`).
    return q


def check_stats(sq: StatsQuery) -> StatsQuery:
    """`sq` if it is a valid stats query (see `check`), else QueryError.

    The HTTP parameters have further rules of their own (a step of at least
    1 ms) that `parse_stats_query` applies."""
    check(sq.query)
    for n in sq.by:
        if n not in STATS_BY and not search.is_dotted(n):
            raise QueryError(
                f"by: cannot count by {n!r}; expected {'|'.join(STATS_BY)}, "
                "fields.KEY[.KEY...] or sd.SD-ID.PARAM"
            )
    if sq.step_us is not None and sq.step_us <= 0:
        raise QueryError(f"step: must be positive; got {sq.step_us}us")
    return sq


def check_buckets(count: int) -> None:
    """Refuse a `/stats` histogram of `count` buckets when over MAX_BUCKETS."""
    if count > MAX_BUCKETS:
        raise QueryError(
            f"step: too small for the time range ({count} buckets; at most {MAX_BUCKETS})"
        )


def _show_time(us: int) -> str:
    # An error message must not fail itself: years beyond 9999 stay numbers.
    return format_timestamp(us) if MIN_US <= us <= MAX_US else f"{us}us"


def matches(rec: Record, q: Query) -> bool:
    """Whether `rec` passes every filter of `q` (limit, order, cursor aside).

    Used for live `/tail` records; a store may use it for its scan too."""
    if q.start is not None and rec.timestamp < q.start:
        return False
    if q.end is not None and rec.timestamp > q.end:
        return False
    if q.levels is not None and rec.level not in q.levels:
        return False
    if q.services is not None and rec.service not in q.services:
        return False
    if q.hosts is not None and rec.host not in q.hosts:
        return False
    if q.facilities is not None and rec.facility not in q.facilities:
        return False
    if q.q is not None and q.q not in rec.message.lower():
        return False
    return q.search is None or predicate(q.search)(rec)


@lru_cache(maxsize=256)
def predicate(tree: search.Node) -> Callable[[Record], bool]:
    """The tree's record test, built once per distinct tree (every /tail
    record of a stream is tested with it)."""
    return matching.predicate(tree)


# --- times ----------------------------------------------------------------------

# RFC 3339 §5.6 date-time, with the leniencies a query string needs: the
# offset may be missing (then UTC, per the contract), seconds and the time
# itself may be left out (`2026-01-30` is midnight), `t`/space may stand for
# `T` (§5.6 NOTE), and the fraction may have any number of digits.
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)"
    r"(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?)?"
    r"(?:([Zz])|([+-])(\d\d):?(\d\d))?"
)
_UNIX = re.compile(r"(-?)(\d+)(?:\.(\d*))?")


# `now`, `-15m`, `+2h`, `now-1d`: a unit is required, so `-1.5` stays Unix seconds.
_RELATIVE = re.compile(r"(?:now)?\s*([+-])\s*(\d+(?:\.\d+)?\s*(?:ms|s|m|h|d))", re.IGNORECASE)


def parse_time(name: str, value: str, now_us: int | None = None) -> int:
    """RFC 3339 (missing offset = UTC), Unix seconds, possibly fractional,
    or (given `now_us`) `now` and times relative to it (`-15m`, `now-2h`)
    -> microseconds since the epoch. QueryError names `name`."""
    text = value.strip()
    if now_us is not None:
        if text.lower() == "now":
            return now_us
        rel = _RELATIVE.fullmatch(text)
        if rel is not None:
            delta = round(parse_duration(rel[2].replace(" ", "")) * 1_000_000)
            us = now_us - delta if rel[1] == "-" else now_us + delta
            if not MIN_US <= us <= MAX_US:
                raise QueryError(f"{name}: out of range (years 0001..9999): {value!r}")
            return us
    m = _UNIX.fullmatch(text)
    if m is not None:
        frac = (m[3] or "")[:6].ljust(6, "0")
        us = int(m[2]) * 1_000_000 + int(frac)
        us = -us if m[1] else us
    else:
        m = _RFC3339.fullmatch(text)
        if m is None and text.count(" ") and text[-6:-5] == " ":
            # A literal `+` in a query string decodes to a space (form
            # encoding); `...T10:00:00 02:00` was meant as `+02:00`.
            m = _RFC3339.fullmatch(text[:-6] + "+" + text[-5:])
        if m is None:
            raise QueryError(
                f"{name}: expected an RFC 3339 time (2026-01-30T12:00:00Z), Unix seconds, "
                f"now, or a time relative to now (-15m, -2h, -1d); got {value!r}"
            )
        try:
            hour, minute, sec = int(m[4] or 0), int(m[5] or 0), int(m[6] or 0)
            if hour > 23 or minute > 59 or sec > 60:
                raise ValueError("time")
            y, mo, d = int(m[1]), int(m[2]), int(m[3])
            if not valid_day(y, mo, d):
                raise ValueError("date")
            days = days_from_civil(y, mo, d)
        except ValueError:
            raise QueryError(f"{name}: not a valid date or time: {value!r}") from None
        # RFC 3339 §5.6 allows a leap second (:60); count it as :59.999999.
        us = (days * 86400 + hour * 3600 + minute * 60 + min(sec, 59)) * 1_000_000
        us += 999_999 if sec == 60 else int((m[7] or "")[:6].ljust(6, "0"))
        if m[9]:
            offset = (int(m[10]) * 60 + int(m[11])) * 60_000_000
            us -= offset if m[9] == "+" else -offset
    if not MIN_US <= us <= MAX_US:
        raise QueryError(f"{name}: out of range (years 0001..9999): {value!r}")
    return us


# --- parameters -------------------------------------------------------------------


def _single(params: dict[str, list[str]], allowed: frozenset[str], where: str) -> dict[str, str]:
    """One value per parameter: unknown names and repeats are 400.

    A repeat is refused rather than "last wins" so that `level=err&level=crit`
    cannot silently mean crit only; a comma list is how to ask for several."""
    out: dict[str, str] = {}
    for key in sorted(params):
        if key not in allowed:
            raise QueryError(
                f"{key}: unknown parameter for {where}; expected one of {', '.join(sorted(allowed))}"
            )
        values = params[key]
        if len(values) != 1:
            raise QueryError(
                f"{key}: given {len(values)} times; give it once (a comma list means any of)"
            )
        out[key] = values[0]
    return out


def _names(key: str, value: str) -> list[str]:
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise QueryError(f"{key}: expected a name or a comma-separated list; got {value!r}")
    return items


def _level(key: str, name: str) -> int:
    code = level_from_name(name)
    if code is None:
        raise QueryError(f"{key}: unknown level {name!r}; expected one of {' '.join(LEVELS)}")
    return code


def _filters(p: dict[str, str], now_us: int | None) -> dict[str, Any]:
    """The filter parameters shared by /logs, /stats, /fields and /tail."""
    f: dict[str, Any] = {}
    if "start" in p:
        f["start"] = parse_time("start", p["start"], now_us)
    if "end" in p:
        f["end"] = parse_time("end", p["end"], now_us)
    if "service" in p:
        f["services"] = frozenset(_names("service", p["service"]))
    if "host" in p:
        f["hosts"] = frozenset(_names("host", p["host"]))
    levels: frozenset[int] | None = None
    if "level" in p:
        levels = frozenset(_level("level", n) for n in _names("level", p["level"]))
    if "min_level" in p:
        # Severity codes run 0 (emerg) .. 7 (debug): "this or more severe" is <=.
        worst = _level("min_level", p["min_level"].strip())
        at_least = frozenset(range(worst + 1))
        levels = at_least if levels is None else levels & at_least
    if levels is not None:
        f["levels"] = levels
    if "facility" in p:
        codes = []
        for n in _names("facility", p["facility"]):
            code = facility_from_name(n)
            if code is None:
                raise QueryError(
                    f"facility: unknown facility {n!r}; expected one of {' '.join(FACILITIES)}"
                )
            codes.append(code)
        f["facilities"] = frozenset(codes)
    if p.get("q"):
        f["q"] = p["q"].lower()
    if "query" in p:
        try:
            tree = search.parse(p["query"])
        except search.SearchError as e:
            raise QueryError(f"query: {e}") from None
        if tree != search.ALL:
            f["search"] = tree
    return f


# --- cursors ------------------------------------------------------------------------
# A cursor names where the next page starts (the store's own token) and the
# filters it was made for: a hash of their text, and the times `start`/`end`
# resolved to (so `start=-15m` means the same instant on every page).


def _fingerprint(p: dict[str, str]) -> str:
    canon = "\x00".join(f"{k}={p[k]}" for k in sorted(p) if k not in ("cursor", "limit"))
    return hashlib.blake2b(canon.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def make_cursor(store_cursor: str | None, q: Query) -> str | None:
    """The `next_cursor` handed out for a page of `q` (None stays None)."""
    if store_cursor is None:
        return None
    start = "" if q.start is None else f"{q.start:x}"
    end = "" if q.end is None else f"{q.end:x}"
    return f"{store_cursor}~{q.fingerprint}~{start}~{end}"


def _read_cursor(text: str, fingerprint: str, f: dict[str, Any]) -> None:
    parts = text.split("~")
    if len(parts) != 4 or not parts[0]:
        raise QueryError(f"cursor: not a cursor from this server: {text[:100]!r}")
    store_cursor, made_for, start, end = parts
    if made_for != fingerprint:
        raise QueryError(
            "cursor: made for other filters; repeat the request that gave it, "
            "with only cursor (and limit) changed"
        )
    try:
        f["start"] = int(start, 16) if start else None
        f["end"] = int(end, 16) if end else None
    except ValueError:
        raise QueryError(f"cursor: not a cursor from this server: {text[:100]!r}") from None
    f["cursor"] = store_cursor


def parse_logs_query(params: dict[str, list[str]], now_us: int | None = None) -> Query:
    """Parameters of `GET /logs` -> Query (the cursor must be one this server
    made, for the same filters). `now_us` resolves `now` and `-15m`."""
    p = _single(params, LOGS_PARAMS, "/logs")
    f = _filters(p, now_us)
    f["fingerprint"] = _fingerprint(p)
    if "limit" in p:
        raw = p["limit"].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise QueryError(f"limit: expected an integer 1..{MAX_LIMIT}; got {p['limit']!r}")
        f["limit"] = int(raw)
    if "order" in p:
        f["order"] = p["order"]
    if "cursor" in p:
        if p["cursor"]:
            _read_cursor(p["cursor"], f["fingerprint"], f)
        else:
            f["cursor"] = ""  # check() names it
    return check(Query(**f))


def parse_tail_query(params: dict[str, list[str]], now_us: int | None = None) -> Query:
    """Parameters of `GET /tail`: the filters only (`start` asks for replay)."""
    return check(Query(**_filters(_single(params, TAIL_PARAMS, "/tail"), now_us)))


def parse_fields_query(params: dict[str, list[str]], now_us: int | None = None) -> Query:
    """Parameters of `GET /fields`: the filters of /logs."""
    return check(Query(**_filters(_single(params, FIELDS_PARAMS, "/fields"), now_us)))


def parse_context_query(params: dict[str, list[str]]) -> ContextQuery:
    """Parameters of `GET /logs/{id}/context`: before, after (0..1000), scope."""
    p = _single(params, CONTEXT_PARAMS, "/logs/{id}/context")
    counts = {}
    for key in ("before", "after"):
        raw = p.get(key, str(DEFAULT_CONTEXT)).strip()
        if not raw.isdigit() or int(raw) > MAX_CONTEXT:
            raise QueryError(f"{key}: expected an integer 0..{MAX_CONTEXT}; got {p[key]!r}")
        counts[key] = int(raw)
    scope = ",".join(part.strip() for part in p.get("scope", "host").split(","))
    if scope == "service,host":
        scope = "host,service"
    if scope not in CONTEXT_SCOPES:
        raise QueryError(f"scope: expected {' | '.join(CONTEXT_SCOPES)}; got {p['scope']!r}")
    return ContextQuery(counts["before"], counts["after"], scope)


def parse_stats_query(params: dict[str, list[str]], now_us: int | None = None) -> StatsQuery:
    """Parameters of `GET /stats`: the filters plus `by` and `step`.

    `limit`, `order` and `cursor` are refused: stats count every match."""
    p = _single(params, STATS_PARAMS, "/stats")
    query = check(Query(**_filters(p, now_us)))
    by: tuple[str, ...] = ()
    if "by" in p:
        by = tuple(dict.fromkeys(_names("by", p["by"])))
    step_us = None
    if "step" in p:
        try:
            step_us = round(parse_duration(p["step"]) * 1_000_000)
        except ValueError as e:
            raise QueryError(f"step: {e}") from None
        if step_us < 1000:
            raise QueryError(f"step: must be at least 1ms; got {p['step']!r}")
        if query.start is not None and query.end is not None:
            # The buckets start..end touches, aligned as the histogram aligns them.
            check_buckets(query.end // step_us - query.start // step_us + 1)
    return check_stats(StatsQuery(query, by, step_us))


# --- rendering ------------------------------------------------------------------

# ensure_ascii: a JSON string may hold a lone surrogate (`"\ud800"` posted to
# /logs); escaped output can always be encoded, raw UTF-8 could not.
_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
_str = json.encoder.encode_basestring_ascii  # the C escaper json.dumps itself uses
_FACILITY_JSON: dict[int | None, str] = {None: "null"}
_FACILITY_JSON.update((code, f'"{name}"') for code, name in enumerate(FACILITIES))
# Seconds -> "YYYY-MM-DDTHH:MM:SS": records on one page mostly share seconds,
# and formatting a date is most of the cost of rendering a record.
_SECONDS: dict[int, str] = {}


def to_json(obj: Any) -> bytes:
    """Compact JSON bytes, the shape every API answer uses."""
    return _encode(obj).encode("ascii")


def _time(us: int) -> str:
    secs, frac = divmod(us, 1_000_000)
    head = _SECONDS.get(secs)
    if head is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        head = _SECONDS[secs] = format_timestamp(secs * 1_000_000)[:-8]
    return f"{head}.{frac:06d}Z"


def _value(v: Any) -> str:
    t = type(v)
    if t is str:
        return _str(v)
    if t is dict:
        return _object(v)
    if t is list:
        return f"[{','.join(map(_value, v))}]"
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return int.__repr__(v)
    return _encode(v)  # floats and the rest: the encoder's own spelling


def _object(d: dict[Any, Any]) -> str:
    # JSONEncoder.encode costs ~5 us a call even for {"a": "b"}; fields and
    # structured data are small dicts of strings, so they are written here.
    parts = []
    for k, v in d.items():
        if type(k) is not str:
            return _encode(d)  # keys the encoder would coerce: let it
        parts.append(f"{_str(k)}:{_value(v)}")
    return f"{{{','.join(parts)}}}"


def opt_json(value: str | None) -> str:
    """A string or None as JSON text."""
    return "null" if value is None else _str(value)


_opt = opt_json


def record_json(rec: Record, rec_id: str) -> str:
    """The contract's JSON of one record, equal to `json.dumps(record_to_dict(...))`
    but built directly: /logs pages are the API's hot path."""
    return (
        # `_opt` written out: a Python call per field is a tenth of a record's cost.
        f'{{"id":{_str(rec_id)},"timestamp":"{_time(rec.timestamp)}",'
        f'"received_at":"{_time(rec.received_at)}",'
        f'"host":{"null" if rec.host is None else _str(rec.host)},'
        f'"service":{"null" if rec.service is None else _str(rec.service)},'
        f'"procid":{"null" if rec.procid is None else _str(rec.procid)},'
        f'"msgid":{"null" if rec.msgid is None else _str(rec.msgid)},'
        f'"facility":{_FACILITY_JSON[rec.facility]},"level":"{LEVELS[rec.level]}",'
        f'"message":{_str(rec.message)},'
        f'"structured_data":{_object(rec.structured_data) if rec.structured_data else "{}"},'
        f'"fields":{_object(rec.fields) if rec.fields else "{}"},"format":{_str(rec.format)}}}'
    )


def _records_pure(items: Iterable[tuple[str, Record]], separator: bytes) -> bytes:
    return separator.decode().join([record_json(rec, rid) for rid, rec in items]).encode("ascii")


# The native renderer (collector/_render.c) writes the same bytes as
# record_json at C speed; it hands back to record_json any record it does
# not read exactly (and to _object the non-empty dicts). Without it, or with
# COLLECTOR_PURE set, the pure path runs.
_render_records: Callable[[list[tuple[str, Record]], bytes], bytes]
try:
    from collector import _render

    _render.setup(Record, LEVELS, FACILITIES)

    def _render_records(items: list[tuple[str, Record]], separator: bytes) -> bytes:
        return _render.records(items, separator, record_json, _object)

    RENDERER = "native"
    RENDER_DETAIL = "native (C)"
except ImportError as e:
    _render_records = _records_pure
    RENDERER = "pure"
    RENDER_DETAIL = "pure Python" + (
        " (native module not built)"
        if isinstance(e, ModuleNotFoundError)
        else f" (native module: {e})"
    )


def logs_json_rows(rows: bytes, count: int, next_cursor: str | None) -> bytes:
    """`logs_json` for `count` records already written (`,` between them)."""
    return b"".join(
        (
            b'{"logs":[',
            rows,
            b'],"count":%d,"next_cursor":%s}' % (count, _opt(next_cursor).encode("ascii")),
        )
    )


def object_json(d: dict[Any, Any]) -> str:
    """A record's structured data or fields as JSON text (as record_json writes them)."""
    return _object(d)


def records_json(items: list[tuple[str, Record]], separator: bytes = b",") -> bytes:
    """The JSON of each record, `separator` between them (ASCII bytes)."""
    return _render_records(items, separator)


def logs_json(items: list[tuple[str, Record]], next_cursor: str | None) -> bytes:
    """The `GET /logs` answer for one page."""
    return b"".join(
        (
            b'{"logs":[',
            _render_records(items, b","),
            b'],"count":%d,"next_cursor":%s}' % (len(items), _opt(next_cursor).encode("ascii")),
        )
    )


def record_line(rec: Record, rec_id: str) -> bytes:
    """One record as an NDJSON line (with its LF), for `/tail`."""
    return (record_json(rec, rec_id) + "\n").encode("ascii")
