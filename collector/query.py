"""Query stage: HTTP parameters -> Query; records -> JSON.

Pure: raises QueryError (-> 400, naming the parameter) for bad input. The
store interprets a Query; this module never touches the store.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from collector.record import datetime_to_us

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100


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


def parse_time(name: str, value: str) -> int:
    """RFC 3339 (missing offset = UTC) or Unix seconds, possibly fractional."""
    try:
        return round(float(value) * 1_000_000)
    except ValueError:
        pass
    try:
        t = _dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise QueryError(f"{name}: expected RFC 3339 time or Unix seconds; got {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return datetime_to_us(t)


def parse_logs_query(params: dict[str, list[str]]) -> Query:
    """Parameters of `GET /logs` (thin: start, end, limit) -> Query."""
    allowed = {"start", "end", "limit"}
    for key in params:
        if key not in allowed:
            raise QueryError(f"{key}: unknown parameter")
    start = end = None
    if "start" in params:
        start = parse_time("start", params["start"][-1])
    if "end" in params:
        end = parse_time("end", params["end"][-1])
    if start is not None and end is not None and end < start:
        raise QueryError("end: is before start")
    limit = DEFAULT_LIMIT
    if "limit" in params:
        raw = params["limit"][-1]
        try:
            limit = int(raw)
        except ValueError:
            raise QueryError(f"limit: expected an integer 1..{MAX_LIMIT}; got {raw!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit: expected an integer 1..{MAX_LIMIT}; got {raw!r}")
    return Query(start=start, end=end, limit=limit)
