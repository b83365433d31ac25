"""Parse stage: one syslog frame (bytes) -> one Record.

Reads PRI, then picks RFC 5424 (VERSION 1) or RFC 3164 per message, and falls
back to `raw`, so nothing that arrives is lost. Bytes are decoded once (invalid
UTF-8 -> U+FFFD) and never raise. Pure: receipt time, sender and timezone come
in as arguments; no clock, no I/O.
"""

from __future__ import annotations

import datetime as _dt
import re

from collector.record import (
    FACILITY_USER,
    ParseOptions,
    Record,
    finish_record,
    level_from_name,
    raw_record,
)
from collector.rfc3164 import parse_rfc3164
from collector.rfc5424 import parse_rfc5424
from collector.times import parse_timestamp

# PRI = "<" PRIVAL ">"; PRIVAL = 1*3DIGIT ; range 0 .. 191 (RFC 5424 §6.2.1).
# Every spelling of 0..191 in one to three digits, leading zeros included
# (`<013>`: not what the ABNF means, but harmless to read), so PRI costs one
# dict lookup.
_PRIVALS: dict[str, int] = {
    s: int(s)
    for width in (1, 2, 3)
    for s in (f"{i:0{width}d}" for i in range(10**width))
    if int(s) <= 191
}

# The contract's application log line, sent without PRI by apps writing to a
# socket directly (Python logging's default asctime has a comma fraction):
#   2026-01-30 12:01:05 INFO User logged in
#   2026-01-30T12:01:05.123+01:00 [WARN] disk almost full
_APP_LOG = re.compile(
    r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:[Zz]|[+-]\d\d:?\d\d)?)"
    r" +\[?([A-Za-z]{3,11})\]?:?(?: +|\Z)",
    re.ASCII,
)


def _app_log_record(
    text: str, received_at: int, sender: str | None, tz: _dt.tzinfo
) -> Record | None:
    m = _APP_LOG.match(text)
    if m is None:
        return None
    level = level_from_name(m[2])
    if level is None:
        return None
    ts = parse_timestamp(m[1].replace(",", "."), tz)
    if ts is None:
        return None
    return Record(
        ts,
        received_at,
        sender,
        None,
        None,
        None,
        FACILITY_USER,
        level,
        text[m.end() :],
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
    """Parse one syslog message (trailing LF/CR/NUL already stripped by the
    transport). Never raises: what parses as nothing is a `raw` record.

    `sender` is the host for messages that carry none (peer IP, or this
    machine's hostname for the unix socket); `truncated` marks a frame cut to
    max_message_bytes (`fields.truncated`)."""
    text = data.decode("utf-8", "replace")
    if text[:1] == "<":
        # PRI = "<" PRIVAL ">" (RFC 5424 §6.2.1, RFC 3164 §4.1.1)
        gt = text.find(">", 1, 5)
        pri = _PRIVALS.get(text[1:gt]) if gt > 1 else None
        if pri is None:
            # `<999>`, `<abc>`, `<192>`, or no closing `>`: not syslog.
            rec = raw_record(text, received_at, sender)
        elif text.startswith("1 ", gt + 1) and (
            r5424 := parse_rfc5424(text, pri, received_at, sender, opts.tz)
        ):
            rec = r5424
        else:
            # RFC 3164 takes any line after a valid PRI (never None then).
            rec = parse_rfc3164(text, gt + 1, pri, received_at, sender, opts.tz) or raw_record(
                text, received_at, sender
            )
    elif text[:1] == "\ufeff":
        # A BOM before the whole line instead of before MSG: defensive, it is
        # never text, wherever a sender puts it.
        return parse_syslog(data[3:], received_at, sender, opts, truncated)
    else:
        rec = _without_pri(text, received_at, sender, opts.tz)
    return finish_record(rec, opts, truncated)


def _without_pri(text: str, received_at: int, sender: str | None, tz: _dt.tzinfo) -> Record:
    """No PRI: an application log line, or a 3164 header without PRI (RFC 3164
    §4.3.3: a relay treats it as user.notice), else raw."""
    c = text[:1]
    if c.isdigit():
        rec = _app_log_record(text, received_at, sender, tz)
        if rec is not None:
            return rec
    if c.isalnum() or c in "*.":
        rec = parse_rfc3164(text, 0, None, received_at, sender, tz)
        if rec is not None:
            return rec
    return raw_record(text, received_at, sender)
