"""Parse stage for JSON lines: one line (bytes) -> one Record.

Pure. The contract's key aliases are mapped in one place, `record_from_object`,
which POST /logs uses too. A value that cannot serve its role (a `host` that
is an object, an unknown level word, an unreadable time) is not consumed: it
stays in `fields` under its own key and the next alias is tried.
"""

from __future__ import annotations

import datetime as _dt
import json
import json.scanner
import math
import re
import sys
from collections.abc import Callable
from typing import Any

from collector.record import (
    CRIT,
    DEBUG,
    ERR,
    INFO,
    LEVEL_BY_NAME,
    WARNING,
    ParseOptions,
    Record,
    facility_from_name,
    finish_record,
    level_from_name,
    raw_record,
)
from collector.times import MAX_US, MIN_US, parse_timestamp

_intern = sys.intern

# Contract, "JSON lines": keys in precedence order, first usable one wins.
TIME_KEYS = ("timestamp", "time", "ts", "@timestamp")
LEVEL_KEYS = ("level", "severity", "lvl")
MESSAGE_KEYS = ("message", "msg", "log")
SERVICE_KEYS = ("service", "app", "app_name", "program", "logger")
HOST_KEYS = ("host", "hostname")
FACILITY_KEYS = ("facility",)

# pino and bunyan numeric levels (trace debug info warn error fatal).
_NUMERIC_LEVELS = {10: DEBUG, 20: DEBUG, 30: INFO, 40: WARNING, 50: ERR, 60: CRIT}
_MISSING: Any = object()

# Epoch numbers: seconds until year 5138, then milliseconds, microseconds and
# nanoseconds by magnitude (the contract names seconds and milliseconds; the
# rest is what OpenTelemetry and Go exporters print).
_MS_FROM = 100_000_000_000
_US_FROM = 100_000_000_000_000
_NS_FROM = 100_000_000_000_000_000


def _nonfinite(name: str) -> str:
    # NaN/Infinity are not JSON (RFC 8259 §6) but Python's decoder takes
    # them; kept as text so the API never prints invalid JSON.
    return name


def _finite_float(text: str) -> float | str:
    # `1e999` is valid JSON that overflows a double to inf: kept as text too.
    f = float(text)
    return f if f - f == 0.0 else text


_DECODER = json.JSONDecoder(parse_constant=_nonfinite, parse_float=_finite_float)
# typeshed types make_scanner's argument oddly; it takes the decoder, as
# JSONDecoder.__init__ does.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def epoch_to_us(value: float) -> int | None:
    """Unix seconds, milliseconds (or µs, ns) -> microseconds, None if absurd."""
    a = abs(value)
    if isinstance(value, int):
        # Integers stay exact: no float rounding of nanoseconds.
        if a < _MS_FROM:
            us = value * 1_000_000
        elif a < _US_FROM:
            us = value * 1_000
        elif a < _NS_FROM:
            us = value
        else:
            us = value // 1_000
    else:
        if not math.isfinite(value):
            return None
        if a < _MS_FROM:
            f = value * 1_000_000
        elif a < _US_FROM:
            f = value * 1_000
        elif a < _NS_FROM:
            f = value
        else:
            f = value / 1_000
        us = round(f)
    return us if MIN_US <= us <= MAX_US else None


def _time_value(v: Any, tz: _dt.tzinfo) -> int | None:
    if isinstance(v, str):
        t = parse_timestamp(v, tz)
        if t is None:
            try:
                return epoch_to_us(float(v))  # "1700000000.5": numbers sent as text
            except ValueError:
                return None
        return t
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return epoch_to_us(v)
    return None


def _level_value(v: Any) -> int | None:
    if isinstance(v, str):
        code = level_from_name(v)
        if code is not None or not v.isdigit() or not v.isascii():
            return code
        v = int(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        if 0 <= v <= 7:
            return v  # syslog severity
        return _NUMERIC_LEVELS.get(v)
    return None


def _facility_value(v: Any) -> int | None:
    if isinstance(v, str):
        code = facility_from_name(v)
        if code is not None or not v.isdigit() or not v.isascii():
            return code
        v = int(v)
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 23:
        return v
    return None


def _text_value(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _from_fields(
    fields: dict[str, Any], received_at: int, sender: str | None, tz: _dt.tzinfo
) -> Record:
    """Build the record, consuming used keys from `fields` (which it owns)."""
    get = fields.get
    timestamp = received_at  # contract: no time key -> receipt time
    for key in TIME_KEYS:
        v = get(key, _MISSING)
        if v is _MISSING:
            continue
        cls = v.__class__
        if cls is str:
            t = parse_timestamp(v, tz)
            if t is None:
                t = _time_value(v, tz)
        elif cls is int:
            t = epoch_to_us(v)
        else:
            t = _time_value(v, tz)
        if t is not None:
            del fields[key]
            timestamp = t
            break
    level = INFO  # contract: no level means info
    for key in LEVEL_KEYS:
        v = get(key, _MISSING)
        if v is _MISSING:
            continue
        lv = LEVEL_BY_NAME.get(v) if v.__class__ is str else None
        if lv is None:
            lv = _level_value(v)
        if lv is not None:
            del fields[key]
            level = lv
            break
    message = ""
    for key in MESSAGE_KEYS:
        v = get(key, _MISSING)
        if v.__class__ is str:  # text only; a structured `log` stays a field
            del fields[key]
            message = v
            break
    service = None
    for key in SERVICE_KEYS:
        v = get(key, _MISSING)
        if v.__class__ is str and v:
            del fields[key]
            service = _intern(v)
            break
    host = sender
    for key in HOST_KEYS:
        v = get(key, _MISSING)
        if v.__class__ is str and v:  # ECS `host` is an object: not a name
            del fields[key]
            host = _intern(v)
            break
    facility = None  # contract: no facility means null
    v = get("facility", _MISSING)
    if v is not _MISSING and (fc := _facility_value(v)) is not None:
        del fields["facility"]
        facility = fc
    return Record(
        timestamp,
        received_at,
        host,
        service,
        None,
        None,
        facility,
        level,
        message,
        None,
        fields or None,
        "json",
    )


def record_from_object(
    obj: dict[str, Any], received_at: int, sender: str | None, opts: ParseOptions
) -> Record:
    """A decoded JSON object (a JSON line, or an item of POST /logs) -> Record.

    `obj` is not modified nor shared: `fields` gets a deep copy that the API
    can always print (lone surrogates -> U+FFFD, NaN/inf floats -> text). Clock skew is not applied here: callers apply
    `collector.record.apply_clock_skew(rec, opts)` once per record (it
    re-stamps and keeps `fields.original_timestamp`)."""
    try:
        fields = _sanitized(obj)
    except RecursionError:
        fields = dict(obj)
    return _from_fields(fields, received_at, sender, opts.tz)


def _sanitized(v: Any) -> Any:
    """A copy of a decoded JSON value that the API can always print: each
    lone surrogate (`\\ud800` alone decodes to one; it cannot be encoded as
    UTF-8) is U+FFFD, and a NaN or infinite float (json.loads makes them from
    `NaN` or `1e999`) is its JSON spelling as text. Surrogate pairs were
    already joined by the decoder."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return v.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, dict):
        return {_sanitized(k): _sanitized(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_sanitized(x) for x in v]
    return v


# Objects nested deeper than this are kept as raw lines: a record whose
# fields the API cannot print (json.dumps recursion) is worse than text.
MAX_DEPTH = 100


def nested_deeper_than(obj: Any, limit: int = MAX_DEPTH) -> bool:
    """Is any value nested more than `limit` levels deep? (Iterative.)"""
    stack = [(obj, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values() if isinstance(x, (dict, list)))
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v if isinstance(x, (dict, list)))
    return False


def parse_json_line(
    data: bytes,
    received_at: int,
    sender: str | None,
    opts: ParseOptions,
    truncated: bool = False,
) -> Record:
    """Parse one JSON line (trailing LF/CR already stripped). Never raises:
    anything but a JSON object (arrays, strings, broken JSON, plain text) is
    a `raw` record with the whole line as message."""
    text = data.decode("utf-8", "replace")
    if text[:1] == "\ufeff":
        text = text[1:]  # a BOM, as Windows editors save UTF-8 text
    obj: Any = None
    if text[:1] == "{" or text.lstrip(" \t")[:1] == "{":
        # The C scanner directly (what json.loads runs underneath, minus two
        # Python layers); then only whitespace may follow the object.
        try:
            obj, end = _SCAN(text, text.find("{"))
        except (StopIteration, ValueError, RecursionError):
            obj = None
        else:
            if end != len(text) and not text[end:].isspace():
                obj = None  # `{...} trailing`: not one JSON object
    if obj.__class__ is dict and (
        text.count("[") + text.count("{") <= MAX_DEPTH or not nested_deeper_than(obj, MAX_DEPTH)
    ):
        if "\\u" in text and _SURROGATE_ESCAPE.search(text):
            try:
                obj = _sanitized(obj)
            except RecursionError:
                # Nested as deep as the decoder allows: keep it as text.
                obj = {"message": text}
        rec = _from_fields(obj, received_at, sender, opts.tz)
    else:
        rec = raw_record(text, received_at, sender)
    return finish_record(rec, opts, truncated)
