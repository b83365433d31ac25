"""Parse stage, RFC 5424: one decoded syslog line -> Record, and the RFC 3339
TIMESTAMP reader every parser shares.

Pure: receipt time, sender and default timezone come in as arguments. The
header is split on single spaces as the ABNF (§6) lays it out, and
STRUCTURED-DATA on its quotes; each ABNF rule is quoted above the code that
reads it, and each leniency is named where it is made.
"""

from __future__ import annotations

import datetime as _dt
import operator
import re
import sys

from collector.record import Record, datetime_to_us

_intern = sys.intern

# --- TIMESTAMP (§6.2.3, RFC 3339 §5.6) ---------------------------------------
#
#   TIMESTAMP      = NILVALUE / FULL-DATE "T" FULL-TIME
#   FULL-DATE      = DATE-FULLYEAR "-" DATE-MONTH "-" DATE-MDAY
#   FULL-TIME      = PARTIAL-TIME TIME-OFFSET
#   PARTIAL-TIME   = TIME-HOUR ":" TIME-MINUTE ":" TIME-SECOND [TIME-SECFRAC]
#   TIME-SECFRAC   = "." 1*6DIGIT
#   TIME-OFFSET    = "Z" / TIME-NUMOFFSET
#   TIME-NUMOFFSET = ("+" / "-") TIME-HOUR ":" TIME-MINUTE
#
# Leniencies, all harmless for a conforming sender: 1 to 9 fraction digits
# (Go and Java senders print nanoseconds; we keep microseconds and drop the
# rest), a space instead of "T" and lowercase "t"/"z" (RFC 3339 §5.6 NOTE;
# JSON loggers), "+hhmm" without the colon (strftime's %z), and no offset at
# all, read in the default timezone (JSON loggers printing a naive
# datetime's isoformat()).
# `-00:00` is UTC with an unknown local offset (RFC 3339 §4.3).
#
# Speed: a time is split into "YYYY-MM-DDTHH:MM:SS" + offset, and that key's
# epoch seconds are cached, so a busy second costs one dict lookup; only the
# fraction is read per message.

_CACHE_LIMIT = 8192
_SECONDS_CACHE: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" + offset -> epoch seconds
_LOCAL_CACHES: dict[_dt.tzinfo, dict[str, int]] = {}  # tz -> local key -> epoch seconds
_FRACTION_SCALE = (0, 100_000, 10_000, 1_000, 100, 10, 1)
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MIN_SECONDS = -62135596800  # 0001-01-01T00:00:00Z
_MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    algorithm): integer arithmetic, no datetime object per new second."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def valid_date(y: int, mo: int, d: int, h: int, mi: int, s: int) -> bool:
    """The ranges of RFC 3339 §5.7 (a leap second, 60, is accepted)."""
    return (
        1 <= y <= 9999
        and 1 <= mo <= 12
        and 1 <= d <= _DAYS_IN_MONTH[mo]
        and (mo != 2 or d < 29 or _is_leap(y))
        and h < 24
        and mi < 60
        and s <= 60
    )


def local_to_seconds(y: int, mo: int, d: int, h: int, mi: int, s: int, tz: _dt.tzinfo) -> int:
    """Epoch seconds of a wall-clock time in `tz` (fields already validated).

    Non-existent and ambiguous local times (DST changes) resolve as
    `datetime` does with fold=0."""
    if tz is _dt.timezone.utc:
        return _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    leap = 1 if s == 60 else 0
    t = _dt.datetime(y, mo, d, h, mi, s - leap, tzinfo=tz)
    return datetime_to_us(t) // 1_000_000 + leap


def _seconds_of(key: str, offset: str, tz: _dt.tzinfo) -> int | None:
    """Epoch seconds of "YYYY-MM-DDTHH:MM:SS" plus an offset ("" = in `tz`)."""
    if not (
        key[4] == "-" and key[7] == "-" and key[10] in "Tt " and key[13] == ":" and key[16] == ":"
    ):
        return None
    digits = key[0:4] + key[5:7] + key[8:10] + key[11:13] + key[14:16] + key[17:19]
    if not (digits.isascii() and digits.isdigit()):
        return None
    y, mo, d = int(digits[0:4]), int(digits[4:6]), int(digits[6:8])
    h, mi, s = int(digits[8:10]), int(digits[10:12]), int(digits[12:14])
    if not valid_date(y, mo, d, h, mi, s):
        return None
    if not offset:
        try:
            return local_to_seconds(y, mo, d, h, mi, s, tz)
        except (ValueError, OverflowError):
            return None
    secs = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    if offset in "Zz":
        return secs
    oh, om = offset[1:3], offset[-2:]
    if not (oh.isascii() and oh.isdigit() and om.isascii() and om.isdigit()):
        return None
    off = int(oh) * 3600 + int(om) * 60
    if int(oh) > 23 or int(om) > 59:
        return None
    secs = secs + off if offset[0] == "-" else secs - off
    return secs if _MIN_SECONDS <= secs <= _MAX_SECONDS else None


def parse_timestamp(s: str, tz: _dt.tzinfo) -> int | None:
    """An RFC 3339 time -> microseconds since the epoch, or None if it is not one.

    A time without an offset is read in `tz`."""
    if s[19:20] == ".":
        # Fast path, the shapes rsyslog, syslog-ng and most libraries print:
        # "YYYY-MM-DDTHH:MM:SS.ffffff" + "Z" or "+hh:mm", seconds cached.
        if s[-1:] == "Z":
            frac = s[20:-1]
            secs = _SECONDS_CACHE.get(s[:19] + "Z")
        elif s[-3:-2] == ":":
            frac = s[20:-6]
            secs = _SECONDS_CACHE.get(s[:19] + s[-6:])
        else:
            secs = None
        if secs is not None and frac.isdecimal():
            n = len(frac)
            if n == 6:
                return secs * 1_000_000 + int(frac)
            if n > 6:
                return secs * 1_000_000 + int(frac[:6])
            return secs * 1_000_000 + int(frac) * _FRACTION_SCALE[n]
    return _parse_timestamp(s, tz)


def _parse_timestamp(s: str, tz: _dt.tzinfo) -> int | None:
    n = len(s)
    if n < 19:
        return None
    last = s[-1]
    if last == "Z" or last == "z":
        offset = "Z"
        end = n - 1
    elif n >= 25 and s[-3] == ":" and s[-6] in "+-":
        offset = s[-6:]
        end = n - 6
    elif n >= 24 and s[-5] in "+-" and s[-4:].isdigit():
        offset = s[-5:]  # "+0530": strftime %z, lenient
        end = n - 5
    else:
        offset = ""
        end = n
    us = 0
    if end != 19:
        if end < 21 or s[19] != ".":
            return None
        frac = s[20:end]
        if not frac.isdecimal():
            return None  # isdecimal: exactly what int() accepts
        frac = frac[:6]
        us = int(frac) * _FRACTION_SCALE[len(frac)]
    key = s[:19]
    if offset:
        cache = _SECONDS_CACHE
        secs = cache.get(key + offset)
    else:
        cache = local_cache(tz)
        secs = cache.get(key)
    if secs is None:
        secs = _seconds_of(key, offset, tz)
        if secs is None:
            return None
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key + offset] = secs
    return secs * 1_000_000 + us


def local_cache(tz: _dt.tzinfo) -> dict[str, int]:
    """The seconds cache for local (offset-less) keys in `tz`; RFC 3164 shares it."""
    cache = _LOCAL_CACHES.get(tz)
    if cache is None:
        if len(_LOCAL_CACHES) > 64:
            _LOCAL_CACHES.clear()
        cache = _LOCAL_CACHES[tz] = {}
    return cache


# --- STRUCTURED-DATA (§6.3) ---------------------------------------------------
#
#   STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT
#   SD-ELEMENT      = "[" SD-ID *(SP SD-PARAM) "]"
#   SD-PARAM        = PARAM-NAME "=" %d34 PARAM-VALUE %d34
#   SD-ID           = SD-NAME
#   PARAM-NAME      = SD-NAME
#   PARAM-VALUE     = UTF-8-STRING ; characters '"', '\' and ']' MUST be escaped.
#   SD-NAME         = 1*32PRINTUSASCII ; except '=', SP, ']', %d34 (")
#
# Speed: one `str.split('"')` cuts the text into structure and values (a
# regular expression over whole elements costs several times more). Even
# parts are structure, odd parts are values; escaped quotes are dealt with
# first (below), so `\"` and `\]` never end a value. An unescaped `]`
# inside quotes (the RFC requires `\]`; senders that forget it still mean a
# value) does not end the element either. Structure parts repeat across
# messages (` isSynced=`, `][origin ip=`), so what each one means is read once
# by _SEGMENT and cached. (Caching whole SD shapes and building each element
# with dict(zip(...)) was measured: about 10% slower than this.)
# SD-NAME length is not enforced: a long name from a sloppy sender is more
# useful kept than lost.

_SD_NAME = r'[^ \]"=]+'
# One structure part: between the start (or a value's closing quote) and the
# next opening quote, or the end of STRUCTURED-DATA.
_SEGMENT = re.compile(
    rf" ({_SD_NAME})=\Z"  # 1: SP PARAM-NAME "=" -- the next param
    rf"|(\]?)((?:\[{_SD_NAME}\])*)"  # 2: "]" ending an element; 3: elements without params
    rf"(?:\[({_SD_NAME}) ({_SD_NAME})=\Z"  # 4: "[" SD-ID SP, 5: PARAM-NAME "="
    r"|(?= |\Z))",  # or STRUCTURED-DATA ends here (SP MSG follows, or nothing)
    re.DOTALL,
)
_SD_IDS = re.compile(rf"\[({_SD_NAME})\]")
# §6.3.3: only `"`, `\` and `]` are escapes; "\n" stays two characters.
_SD_ESCAPE = re.compile(r'\\(["\\\]])')
_group1 = operator.itemgetter(1)

StructuredData = dict[str, dict[str, str | list[str]]]
# A structure part that continues SD: (SD-IDs of elements without params,
# SD-ID whose params start here or None for "same element", PARAM-NAME).
_Continue = tuple[tuple[str, ...], "str | None", str]
_CONTINUE: dict[str, _Continue] = {}


def _read_segment(seg: str, first: bool) -> _Continue | int | None:
    """A structure part -> its meaning, or the index where SD ends in it, or
    None if it breaks the grammar."""
    m = _SEGMENT.match(seg)
    if m is None:
        return None
    if m[1] is not None:
        return None if first else ((), None, m[1])
    if (m[2] == "") != first:
        return None  # an element must close before the next one opens
    ids = tuple(_SD_IDS.findall(m[3])) if m[3] else ()
    if m[4] is None:
        if first and not ids:
            return None
        return m.end()
    return ids, m[4], m[5]


def _join_escaped(parts: list[str]) -> list[str]:
    """Undo splits at escaped quotes: a part ending in an odd run of
    backslashes continues in the next part (the last part has no quote after
    it to escape).

    (Joining structure parts too is harmless: they never end in a backslash
    in well-formed SD, and lengths plus separators still add up.)"""
    out: list[str] = []
    held: str | None = None
    for part in parts:
        if held is not None:
            part = held + '"' + part
            held = None
        if part[-1:] == "\\" and (len(part) - len(part.rstrip("\\"))) & 1:
            held = part
        else:
            out.append(part)
    if held is not None:
        out.append(held)
    return out


# Escapes are hidden before the split when the text allows it: `\\` -> NUL,
# `\"` -> SOH, so that every remaining quote is a real one and `split` alone
# finds the values; both are put back (unescaped in values, as sent in MSG).
_HIDE_BACKSLASH = "\x00"
_HIDE_QUOTE = "\x01"


def _unhide_value(value: str) -> str:
    # §6.3.3: `\]` -> `]` (a hidden `\\` cannot pair with it any more), then
    # the hidden `\\` and `\"`; a backslash before anything else stays.
    return value.replace("\\]", "]").replace(_HIDE_BACKSLASH, "\\").replace(_HIDE_QUOTE, '"')


def _unhide_msg(msg: str) -> str:
    return msg.replace(_HIDE_BACKSLASH, "\\\\").replace(_HIDE_QUOTE, '\\"')


def split_structured_data(
    rest: str, join_escaped: bool = False
) -> tuple[StructuredData, str] | None:
    """Read the SD-ELEMENTs that open `rest` (which starts with `[`).

    Returns the structured data and what follows it after one SP (the MSG,
    "" if none), or None when `rest` does not open with well-formed SD.
    Values are unescaped (§6.3.3); a name repeated in one element keeps
    every value as a list (§6.3.3 allows it, e.g. several `ip` in `origin`);
    an SD-ID repeated in one message (forbidden, §6.3.2) is merged the same
    way. `join_escaped` forces the slower way of handling escaped quotes."""
    hidden = escaped = False
    text = rest
    if "\\" not in rest:
        parts = rest.split('"')
    elif not join_escaped and _HIDE_BACKSLASH not in rest and _HIDE_QUOTE not in rest:
        hidden = True
        text = rest.replace("\\\\", _HIDE_BACKSLASH).replace('\\"', _HIDE_QUOTE)
        parts = text.split('"')
    else:
        escaped = True  # NUL or SOH in the text: join at escaped quotes instead
        parts = _join_escaped(rest.split('"'))
    last = len(parts) - 1
    out: StructuredData = {}
    params: dict[str, str | list[str]] = {}
    cache = _CONTINUE
    k = 0
    while True:
        seg = parts[k]
        meaning: _Continue | None = cache.get(seg)
        if meaning is None:
            if seg[:2] == "] " or (seg == "]" and k == last):
                break  # the common end: "]" SP MSG, or "]" and nothing
            if hidden and (_HIDE_BACKSLASH in seg or _HIDE_QUOTE in seg):
                # A backslash in an SD-NAME (PRINTUSASCII allows it): names
                # must be read as sent, so take the slower joining path.
                return split_structured_data(rest, join_escaped=True)
            found = _read_segment(seg, k == 0)
            if found is None:
                return None
            if isinstance(found, int):
                if found == len(seg) and k != last:
                    return None  # `]"`: a quote right after an element
                for sd_id in _SD_IDS.findall(seg, 0, found):
                    if sd_id not in out:
                        out[sd_id] = {}
                msg = text[sum(map(len, parts[:k])) + k + found + 1 :]
                return out, _unhide_msg(msg) if hidden else msg
            meaning = found
            if len(cache) >= 4096:
                cache.clear()
            cache[seg] = meaning
        ids, sd_id, name = meaning
        if sd_id is not None:
            if (k == 0) != (seg[0] == "["):
                return None  # `"[`: an element opened inside another
            for empty in ids:
                if empty not in out:
                    out[empty] = {}
            known = out.get(sd_id)
            if known is None:
                known = out[sd_id] = {}
            params = known
        try:
            value = parts[k + 1]
        except IndexError:
            return None  # PARAM-NAME "=" and no value
        if hidden:
            value = _unhide_value(value)
        elif escaped and "\\" in value:
            value = _SD_ESCAPE.sub(_group1, value)
        old = params.get(name)
        if old is None:
            params[name] = value
        elif isinstance(old, list):
            old.append(value)
        else:
            params[name] = [old, value]
        k += 2
        if k > last:
            return None  # no closing quote
    # With no quote in MSG there is no need to find where it starts.
    msg = seg[2:] if k == last else text[sum(map(len, parts[:k])) + k + 2 :]
    return out, _unhide_msg(msg) if hidden else msg


# --- SYSLOG-MSG (§6) ----------------------------------------------------------
#
#   SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG]
#   HEADER     = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID
#   PRI        = "<" PRIVAL ">"          ; PRIVAL 0..191, read by collector.parse
#   VERSION    = NONZERO-DIGIT 0*2DIGIT   ; only "1" is defined
#   HOSTNAME   = NILVALUE / 1*255PRINTUSASCII
#   APP-NAME   = NILVALUE / 1*48PRINTUSASCII
#   PROCID     = NILVALUE / 1*128PRINTUSASCII
#   MSGID      = NILVALUE / 1*32PRINTUSASCII
#   MSG        = MSG-ANY / MSG-UTF8       ; MSG-UTF8 = BOM UTF-8-STRING
#   NILVALUE   = "-"
#
# Field lengths and PRINTUSASCII are not enforced: a too-long or non-ASCII
# hostname is still the sender's hostname. NILVALUE becomes None.


def parse_rfc5424(
    text: str, pri: int, received_at: int, sender: str | None, tz: _dt.tzinfo
) -> Record | None:
    """`text` is the whole decoded message, starting with its PRI (already read
    as `pri`); None when it is not RFC 5424 (VERSION other than 1, or fewer
    than the six header fields)."""
    parts = text.split(" ", 6)
    if len(parts) == 7:
        head, ts, host, app, procid, msgid, rest = parts
    elif len(parts) == 6:
        # `<0>1 - - - - -`: STRUCTURED-DATA missing altogether. Defensive:
        # read as an empty message rather than refused.
        head, ts, host, app, procid, msgid = parts
        rest = "-"
    else:
        return None
    if not (head.endswith(">1") and ts and host and app and procid and msgid):
        return None  # another VERSION, or two spaces in a row: not this grammar
    fields = None
    if ts == "-":
        timestamp = received_at  # contract: no usable time -> receipt time
    else:
        t = parse_timestamp(ts, tz)
        if t is None:
            # Keep the message; say what was wrong rather than drop it.
            timestamp = received_at
            fields = {"invalid_timestamp": ts}
        else:
            timestamp = t
    sd = None
    c = rest[:1]
    if c == "-":
        if len(rest) == 1:
            msg = ""
        elif rest[1] == " ":
            msg = rest[2:]
        else:
            msg = rest  # "-text": SD left out, MSG starts with "-"
    elif c == "[" and (found := split_structured_data(rest)) is not None:
        sd, msg = found
    else:
        # STRUCTURED-DATA omitted (`... ID text`, as hand-written senders
        # do): keep everything after MSGID as MSG rather than lose it.
        msg = rest
    if msg[:1] == " ":
        # rsyslog's RSYSLOG_SyslogProtocol23Format puts %msg% after the SP, and
        # for a message it received as RFC 3164 that text still starts with the
        # SP that followed the TAG's colon: one space is framing, not text.
        msg = msg[1:]
    if msg[:1] == "\ufeff":
        msg = msg[1:]  # MSG-UTF8's BOM (§6.4) is a marker, not text
    return Record(
        timestamp,
        received_at,
        sender if host == "-" else _intern(host),
        None if app == "-" else _intern(app),
        None if procid == "-" else procid,
        None if msgid == "-" else msgid,
        pri >> 3,
        pri & 7,
        msg,
        sd,
        fields,
        "rfc5424",
    )
