"""The record: what every parser produces and the store keeps.

Stage: parse -> *record* -> store. Pure data, no I/O. Also home of levels,
facilities, ids, ParseOptions, the raw fallback and the rules every parser
applies last (truncation flag, clock skew). Times: µs since the epoch, UTC.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.times import format_timestamp

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


# Contract: a parsed time more than 5 minutes ahead would never expire.
MAX_FUTURE_US = 300_000_000


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """What a parser needs to know beyond the bytes: where times without an
    offset live, and the window outside which an event time is distrusted."""

    tz: _dt.tzinfo = field(default=_dt.timezone.utc)
    ttl_us: int = 3600 * 1_000_000


def raw_record(text: str, received_at: int, sender: str | None) -> Record:
    """The fallback: whole text, receipt time, user.notice (contract)."""
    return Record(
        received_at,
        received_at,
        sender,
        None,
        None,
        None,
        FACILITY_USER,
        NOTICE,
        text,
        None,
        None,
        "raw",
    )


def finish_record(rec: Record, opts: ParseOptions, truncated: bool = False) -> Record:
    """The rules every parser applies last, in place: a frame cut to
    max_message_bytes says so (`fields.truncated`), and an event time that
    would vanish (older than the TTL) or never expire (more than 5 minutes
    ahead) is re-stamped with the receipt time, the sender's time kept in
    `fields.original_timestamp` (contract: clock skew)."""
    if truncated:
        rec.fields = {**(rec.fields or {}), "truncated": True}
    now = rec.received_at
    ts = rec.timestamp
    if ts < now - opts.ttl_us or ts > now + MAX_FUTURE_US:
        fields = dict(rec.fields) if rec.fields else {}
        fields["original_timestamp"] = format_timestamp(ts)
        rec.fields = fields
        rec.timestamp = now
    return rec


def apply_clock_skew(rec: Record, opts: ParseOptions) -> Record:
    """The clock-skew rule of `finish_record` alone, for records built by
    `record_from_object` (POST /logs calls it once per record)."""
    return finish_record(rec, opts)


# The record id: event time and sequence number, in hex (`{ts:x}-{seq:x}`).
# A bound str.format rather than a def: a page maps it over its columns at C
# speed (a Python function costs ~25% more per id).
make_id: Callable[[int, int], str] = "{:x}-{:x}".format


def parse_id(text: str) -> tuple[int, int] | None:
    """(timestamp, seq) of an id made by `make_id`, or None when malformed."""
    ts_hex, sep, seq_hex = text.rpartition("-")
    if not sep:
        return None
    try:
        key = (int(ts_hex, 16), int(seq_hex, 16))
    except ValueError:
        return None
    # int() also accepts "0x", "+", "_" and spaces: only the canonical form names a record.
    return key if make_id(*key) == text else None


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
