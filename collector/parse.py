"""Parse stage: one syslog frame (bytes) -> one Record.

Picks RFC 5424 or RFC 3164 per message and falls back to `raw`, so nothing
that arrives is lost. Pure: receipt time, sender and timezone come in as
arguments; no clock, no I/O.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field

from collector.record import FACILITY_USER, NOTICE, Record, datetime_to_us

# Contract: a parsed time more than 5 minutes ahead would never expire.
MAX_FUTURE_US = 300_000_000


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """What a parser needs to know beyond the bytes: where times without an
    offset live, and the window outside which an event time is distrusted."""

    tz: _dt.tzinfo = field(default=_dt.timezone.utc)
    ttl_us: int = 3600 * 1_000_000


_PRI = re.compile(rb"<(\d{1,3})>")
_5424 = re.compile(
    rb"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ?(.*)\Z",
    re.DOTALL,
)


def _nil(b: bytes) -> str | None:
    return None if b == b"-" else b.decode("utf-8", "replace")


def apply_clock_skew(rec: Record, opts: ParseOptions) -> Record:
    """Re-stamp an event time that would vanish or never expire (contract:
    clock skew), keeping the sender's time in `fields.original_timestamp`."""
    now = rec.received_at
    if rec.timestamp < now - opts.ttl_us or rec.timestamp > now + MAX_FUTURE_US:
        from collector.record import format_timestamp

        fields = dict(rec.fields or {})
        fields["original_timestamp"] = format_timestamp(rec.timestamp)
        rec.fields = fields
        rec.timestamp = now
    return rec


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


def parse_syslog(
    data: bytes,
    received_at: int,
    sender: str | None,
    opts: ParseOptions,
    truncated: bool = False,
) -> Record:
    """Parse one syslog message (trailing LF/CR/NUL already stripped)."""
    rec = _parse(data, received_at, sender, opts)
    if truncated:
        rec.fields = {**(rec.fields or {}), "truncated": True}
    return apply_clock_skew(rec, opts)


def _parse(data: bytes, received_at: int, sender: str | None, opts: ParseOptions) -> Record:
    m = _5424.match(data)
    if m is not None and int(m[1]) < 192:
        pri = int(m[1])
        ts = received_at
        if m[2] != b"-":
            try:
                t = _dt.datetime.fromisoformat(m[2].decode().replace("Z", "+00:00"))
                ts = datetime_to_us(t if t.tzinfo else t.replace(tzinfo=opts.tz))
            except ValueError:
                pass
        rest = m[7]
        if rest.startswith(b"- "):
            rest = rest[2:]
        elif rest == b"-":
            rest = b""
        return Record(
            ts,
            received_at,
            _nil(m[3]) or sender,
            _nil(m[4]),
            _nil(m[5]),
            _nil(m[6]),
            pri >> 3,
            pri & 7,
            rest.decode("utf-8", "replace"),
            None,
            None,
            "rfc5424",
        )
    m = _PRI.match(data)
    if m is not None and int(m[1]) < 192:
        pri = int(m[1])
        body = data[m.end() :].decode("utf-8", "replace")
        return Record(
            received_at,
            received_at,
            sender,
            None,
            None,
            None,
            pri >> 3,
            pri & 7,
            body,
            None,
            None,
            "rfc3164",
        )
    return raw_record(data.decode("utf-8", "replace"), received_at, sender)
