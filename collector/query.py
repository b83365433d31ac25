"""Query stage: HTTP parameters -> Query; records -> JSON bytes.

Pure: no clock, no I/O. Bad input raises QueryError (-> 400) whose message
starts with the parameter's name. Every check of a query lives here (`check`,
`check_stats`, MAX_BUCKETS); the store calls them and has none of its own
(it only reads its own cursor tokens). This module never touches the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from collector.config import parse_duration
from collector.record import (
    FACILITIES,
    LEVELS,
    Record,
    facility_from_name,
    format_timestamp,
    level_from_name,
)

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
# /stats: a histogram of more buckets is refused (the asked range at parse
# time, the matching records' range while counting), so one request cannot
# make the daemon build a million-entry answer.
MAX_BUCKETS = 100_000
STATS_BY = ("level", "service", "host", "facility")

# Microseconds for 0001-01-01 and 9999-12-31T23:59:59.999999Z: the range
# RFC 3339 can write (§5.6, four-digit year).
MIN_US = -62_135_596_800_000_000
MAX_US = 253_402_300_799_999_999

_FILTERS = frozenset({"start", "end", "service", "host", "level", "min_level", "facility", "q"})
LOGS_PARAMS = _FILTERS | {"limit", "order", "cursor"}
STATS_PARAMS = _FILTERS | {"by", "step"}
TAIL_PARAMS = _FILTERS


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
        if n not in STATS_BY:
            raise QueryError(f"by: cannot count by {n!r}; expected {'|'.join(STATS_BY)}")
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
    return q.q is None or q.q in rec.message.lower()


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
_DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Days since 1970-01-01 in the proleptic Gregorian calendar, without
    # datetime (whose range and float paths we do not want here).
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if not 1 <= m <= 12:
        raise ValueError("month")
    mdays = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[m - 1]
    if not 1 <= d <= mdays:
        raise ValueError("day")
    yy = y - 1
    days = yy * 365 + yy // 4 - yy // 100 + yy // 400
    days += _DAYS_BEFORE_MONTH[m - 1] + (1 if leap and m > 2 else 0) + d - 1
    return days - 719_162  # days from 0001-01-01 to 1970-01-01


def parse_time(name: str, value: str) -> int:
    """RFC 3339 (missing offset = UTC) or Unix seconds, possibly fractional,
    -> microseconds since the epoch. QueryError names `name`."""
    text = value.strip()
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
                f"{name}: expected an RFC 3339 time (2026-01-30T12:00:00Z) or Unix seconds; "
                f"got {value!r}"
            )
        try:
            hour, minute, sec = int(m[4] or 0), int(m[5] or 0), int(m[6] or 0)
            if hour > 23 or minute > 59 or sec > 60:
                raise ValueError("time")
            days = _days_from_civil(int(m[1]), int(m[2]), int(m[3]))
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


def _filters(p: dict[str, str]) -> dict[str, Any]:
    """The filter parameters shared by /logs, /stats and /tail."""
    f: dict[str, Any] = {}
    if "start" in p:
        f["start"] = parse_time("start", p["start"])
    if "end" in p:
        f["end"] = parse_time("end", p["end"])
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
    return f


def parse_logs_query(params: dict[str, list[str]]) -> Query:
    """Parameters of `GET /logs` -> Query (the cursor stays opaque: the store reads it)."""
    p = _single(params, LOGS_PARAMS, "/logs")
    f = _filters(p)
    if "limit" in p:
        raw = p["limit"].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise QueryError(f"limit: expected an integer 1..{MAX_LIMIT}; got {p['limit']!r}")
        f["limit"] = int(raw)
    if "order" in p:
        f["order"] = p["order"]
    if "cursor" in p:
        f["cursor"] = p["cursor"]
    return check(Query(**f))


def parse_tail_query(params: dict[str, list[str]]) -> Query:
    """Parameters of `GET /tail`: the filters only (`start` asks for replay)."""
    return check(Query(**_filters(_single(params, TAIL_PARAMS, "/tail"))))


def parse_stats_query(params: dict[str, list[str]]) -> StatsQuery:
    """Parameters of `GET /stats`: the filters plus `by` and `step`.

    `limit`, `order` and `cursor` are refused: stats count every match."""
    p = _single(params, STATS_PARAMS, "/stats")
    query = check(Query(**_filters(p)))
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


def _opt(value: str | None) -> str:
    return "null" if value is None else _str(value)


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


def logs_json(items: Iterable[tuple[str, Record]], next_cursor: str | None) -> bytes:
    """The `GET /logs` answer for one page."""
    logs = [record_json(rec, rid) for rid, rec in items]
    return (
        f'{{"logs":[{",".join(logs)}],"count":{len(logs)},"next_cursor":{_opt(next_cursor)}}}'
    ).encode("ascii")


def record_line(rec: Record, rec_id: str) -> bytes:
    """One record as an NDJSON line (with its LF), for `/tail`."""
    return (record_json(rec, rec_id) + "\n").encode("ascii")
