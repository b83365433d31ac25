"""Parse stage, RFC 5424: one decoded syslog line -> Record.

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

from collector.record import Record
from collector.times import parse_timestamp

_intern = sys.intern

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
# TIMESTAMP (§6.2.3) is RFC 3339's, read by collector.times.parse_timestamp.
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
