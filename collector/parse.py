"""Parse stage: one syslog frame (bytes) -> one Record.

Reads PRI, then picks RFC 5424 (VERSION 1..999) or RFC 3164 per message, and falls
back to `raw`, so nothing that arrives is lost. Bytes are decoded once (invalid
UTF-8 -> U+FFFD) and never raise. Pure: receipt time, sender and timezone come
in as arguments; no clock, no I/O. The native module, when built, reads common
RFC 5424 frames first; `parse_syslog_pure` is the specification it mirrors.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable

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

# The native hot path (collector/_native.c): common RFC 5424 and RFC 3164
# frames at C speed, None for every frame it declines (signatures in
# collector/_native.pyi). Absent when it was not built, or
# when COLLECTOR_PURE is set (the module then refuses to load).
_native_parse: Callable[..., Record | None] | None = None
_native_frames: Callable[..., list[Record | None]] | None = None
_native_batch: Callable[..., tuple[list[Record | None], int, int]] | None = None
try:
    import collector._native as _native
except ImportError as e:
    _NATIVE_MISSING = (
        "native module not built" if isinstance(e, ModuleNotFoundError) else f"native module: {e}"
    )
else:
    _native_parse = _native.parse
    _native_frames = _native.parse_frames
    _native_batch = _native.parse_batch

NATIVE = _native_parse is not None
_ZONES: dict[_dt.tzinfo, int | None] = {}


def _zone(tz: _dt.tzinfo) -> int | None:
    """What the native code needs of parsing.default_timezone: its UTC offset
    in whole seconds when it is a fixed one (UTC, `+02:00`), else None (a zone
    with DST rules: RFC 3164 times without a zone are then read in Python)."""
    try:
        return _ZONES[tz]
    except KeyError:
        pass
    off = tz.utcoffset(None) if isinstance(tz, _dt.timezone) else None
    zone = None if off is None or off.microseconds else off.days * 86400 + off.seconds
    if len(_ZONES) > 64:
        _ZONES.clear()
    _ZONES[tz] = zone
    return zone


# What parses syslog in this process, for --version, a metric and the log.
IMPLEMENTATION = "native" if NATIVE else "pure"
IMPLEMENTATION_DETAIL = (
    "native (C: framing, RFC 5424/3164; rest in Python)"
    if NATIVE
    else f"pure Python ({_NATIVE_MISSING})"
)
# The native code keeps every time inside int64; outside this TTL it declines.
_NATIVE_MAX_TTL = 10**18

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
    max_message_bytes (`fields.truncated`). The native module reads the frame
    when it can, with the same result as `parse_syslog_pure`."""
    if _native_parse is not None:
        rec = _native_parse(data, received_at, sender, opts.ttl_us, truncated, _zone(opts.tz))
        if rec is not None:
            return rec
    return parse_syslog_pure(data, received_at, sender, opts, truncated)


def parse_frames(
    frames: list[tuple[bytes, bool]], received_at: int, sender: str | None, opts: ParseOptions
) -> list[Record | None] | None:
    """The native batch: for each (bytes, truncated) frame from one sender,
    its Record, or None for a frame to hand to `parse_syslog` (the native
    code declined it). None when the native module is not loaded (or the TTL
    is beyond what it handles): parse every frame with `parse_syslog`."""
    if _native_frames is None or not 0 <= opts.ttl_us <= _NATIVE_MAX_TTL:
        return None
    return _native_frames(frames, received_at, sender, opts.ttl_us, _zone(opts.tz))


def parse_batch(
    frames: list[tuple[bytes, bool]], received_at: int, sender: str | None, opts: ParseOptions
) -> tuple[list[Record | None], int, int] | None:
    """`parse_frames` with two counts: (records, how many are None, how many
    frames are flagged truncated: told only when none is None). A batch with
    nothing declined goes to the sink as it is, with no loop in Python."""
    if _native_batch is None or not 0 <= opts.ttl_us <= _NATIVE_MAX_TTL:
        return None
    return _native_batch(frames, received_at, sender, opts.ttl_us, _zone(opts.tz))


def parse_syslog_pure(
    data: bytes,
    received_at: int,
    sender: str | None,
    opts: ParseOptions,
    truncated: bool = False,
) -> Record:
    """`parse_syslog` in Python alone: the specification of the native path."""
    text = data.decode("utf-8", "replace")
    if text[:1] == "<":
        # PRI = "<" PRIVAL ">" (RFC 5424 §6.2.1, RFC 3164 §4.1.1)
        gt = text.find(">", 1, 5)
        pri = _PRIVALS.get(text[1:gt]) if gt > 1 else None
        if pri is None:
            # `<999>`, `<abc>`, `<192>`, or no closing `>`: not syslog.
            rec = raw_record(text, received_at, sender)
        elif (
            # VERSION = NONZERO-DIGIT 0*2DIGIT, then SP (§6.2.2): a digit 1-9
            # and a SP within four characters; parse_rfc5424 checks the rest.
            "1" <= (v := text[gt + 1 : gt + 5]) < ":"
            and " " in v
            and (r5424 := parse_rfc5424(text, pri, received_at, sender, opts.tz))
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
        return parse_syslog_pure(data[3:], received_at, sender, opts, truncated)
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
