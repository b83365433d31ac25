"""The record: what every parser produces and the store keeps.

Stage: parse -> *record* -> store. Pure data, no I/O. Times are integers of
microseconds since the Unix epoch (UTC) so that the store can keep them in
`array('q')` and compare them without allocating.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# RFC 5424 §6.2.1, table 2: the index is the severity code.
LEVELS: tuple[str, ...] = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

# RFC 5424 §6.2.1, table 1: the index is the facility code. Code 13 is
# "log audit" and 14 "log alert" in the RFC; the contract names them
# `security` and `console` as rsyslog and syslog-ng do.
FACILITIES: tuple[str, ...] = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
)

EMERG, ALERT, CRIT, ERR, WARNING, NOTICE, INFO, DEBUG = range(8)
FACILITY_USER = 1

_LEVEL_BY_NAME: dict[str, int] = {name: code for code, name in enumerate(LEVELS)}
_LEVEL_BY_NAME.update(
    {
        "emergency": EMERG,
        "panic": EMERG,
        "critical": CRIT,
        "fatal": CRIT,
        "error": ERR,
        "warn": WARNING,
        "information": INFO,
        "informational": INFO,
        "trace": DEBUG,
    }
)
_FACILITY_BY_NAME: dict[str, int] = {name: code for code, name in enumerate(FACILITIES)}

# For hot paths that try the exact spelling before calling level_from_name
# (which also tries lower case). Read-only by type; a proxy would cost a call.
LEVEL_BY_NAME: Mapping[str, int] = _LEVEL_BY_NAME


def level_from_name(name: str) -> int | None:
    """Severity code for a keyword or one of the contract's aliases, any case."""
    code = _LEVEL_BY_NAME.get(name)
    if code is None:
        code = _LEVEL_BY_NAME.get(name.lower())
    return code


def facility_from_name(name: str) -> int | None:
    """Facility code for an RFC 5424 keyword, any case."""
    code = _FACILITY_BY_NAME.get(name)
    if code is None:
        code = _FACILITY_BY_NAME.get(name.lower())
    return code


@dataclass(slots=True)
class Record:
    """One log event.

    `structured_data` and `fields` are None when empty (the API shows `{}`),
    which saves a dict per record in the common case. `level` and `facility`
    are codes into LEVELS and FACILITIES.
    """

    timestamp: int
    received_at: int
    host: str | None
    service: str | None
    procid: str | None
    msgid: str | None
    facility: int | None
    level: int
    message: str
    structured_data: dict[str, dict[str, str | list[str]]] | None
    fields: dict[str, Any] | None
    format: str  # "rfc5424" | "rfc3164" | "json" | "raw"


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_US = _dt.timedelta(microseconds=1)


def format_timestamp(us: int) -> str:
    """RFC 3339 UTC with microseconds and `Z`, as the contract prints every time."""
    secs, frac = divmod(us, 1_000_000)
    try:
        t = _dt.datetime.fromtimestamp(secs, _dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        t = _EPOCH + _dt.timedelta(seconds=secs) if secs >= 0 else _EPOCH
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{frac:06d}Z"


def datetime_to_us(t: _dt.datetime) -> int:
    """Microseconds since the epoch for an aware datetime, without float rounding."""
    return (t - _EPOCH) // _US


def record_to_dict(rec: Record, rec_id: str) -> dict[str, Any]:
    """The contract's JSON shape of a record."""
    return {
        "id": rec_id,
        "timestamp": format_timestamp(rec.timestamp),
        "received_at": format_timestamp(rec.received_at),
        "host": rec.host,
        "service": rec.service,
        "procid": rec.procid,
        "msgid": rec.msgid,
        "facility": None if rec.facility is None else FACILITIES[rec.facility],
        "level": LEVELS[rec.level],
        "message": rec.message,
        "structured_data": rec.structured_data or {},
        "fields": rec.fields or {},
        "format": rec.format,
    }
