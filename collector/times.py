"""Times: RFC 3339 reading and formatting, civil-day math, zones.

Stage: shared by parse (every parser reads its times here), query (time
parameters) and the JSON renderers. Pure: no clock; the default timezone
comes in as an argument. Times are integers of microseconds since the Unix
epoch (UTC); the range is what RFC 3339 can write, years 0001..9999.
"""

from __future__ import annotations

import datetime as _dt

# The range RFC 3339 can write (§5.6, four-digit year): 0001-01-01T00:00:00Z
# to 9999-12-31T23:59:59.999999Z, in seconds and in microseconds.
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799
MIN_US = MIN_SECONDS * 1_000_000
MAX_US = MAX_SECONDS * 1_000_000 + 999_999

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_US = _dt.timedelta(microseconds=1)
# Microseconds in one unit of a fraction written with n digits (index n).
FRACTION_SCALE = (0, 100_000, 10_000, 1_000, 100, 10, 1)
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


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


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    algorithm): integer arithmetic, no datetime object, any year. The date
    is not checked: see `valid_day`."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def is_leap(y: int) -> bool:
    """A leap year of the proleptic Gregorian calendar."""
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def valid_day(y: int, mo: int, d: int) -> bool:
    """Does day `d` of month `mo` exist in year `y` (any year)?"""
    return 1 <= mo <= 12 and 1 <= d <= _DAYS_IN_MONTH[mo] and (mo != 2 or d < 29 or is_leap(y))


def valid_date(y: int, mo: int, d: int, h: int, mi: int, s: int) -> bool:
    """The ranges of RFC 3339 §5.7 (a leap second, 60, is accepted)."""
    return 1 <= y <= 9999 and valid_day(y, mo, d) and h < 24 and mi < 60 and s <= 60


def local_to_seconds(y: int, mo: int, d: int, h: int, mi: int, s: int, tz: _dt.tzinfo) -> int:
    """Epoch seconds of a wall-clock time in `tz` (fields already validated).

    Non-existent and ambiguous local times (DST changes) resolve as
    `datetime` does with fold=0."""
    if tz is _dt.timezone.utc:
        return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    leap = 1 if s == 60 else 0
    t = _dt.datetime(y, mo, d, h, mi, s - leap, tzinfo=tz)
    return datetime_to_us(t) // 1_000_000 + leap


# --- reading: RFC 5424 TIMESTAMP (§6.2.3), RFC 3339 §5.6 -----------------------
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

CACHE_LIMIT = 8192
_SECONDS_CACHE: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" + offset -> epoch seconds
_LOCAL_CACHES: dict[_dt.tzinfo, dict[str, int]] = {}  # tz -> local key -> epoch seconds


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
    secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    if offset in "Zz":
        return secs
    oh, om = offset[1:3], offset[-2:]
    if not (oh.isascii() and oh.isdigit() and om.isascii() and om.isdigit()):
        return None
    off = int(oh) * 3600 + int(om) * 60
    if int(oh) > 23 or int(om) > 59:
        return None
    secs = secs + off if offset[0] == "-" else secs - off
    return secs if MIN_SECONDS <= secs <= MAX_SECONDS else None


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
            return secs * 1_000_000 + int(frac) * FRACTION_SCALE[n]
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
        us = int(frac) * FRACTION_SCALE[len(frac)]
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
        if len(cache) >= CACHE_LIMIT:
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
