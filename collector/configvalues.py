"""Configuration values: each reader turns one YAML value into a typed one or raises
ValueError(reason); `Checker` collects those reasons under their dotted keys.

Pure: no I/O but reading the named files a value points at (TLS, token, key files).
Used by config.py, and by the running parts that read the same notations.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import math
import os
import re
import zoneinfo
from collections.abc import Callable
from typing import Any

import re2

# --- value parsers: each returns the value or raises ValueError(reason) ----

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB|K|M|G|T)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "K": 1024,
    "KiB": 1024,
    "M": 1024**2,
    "MiB": 1024**2,
    "G": 1024**3,
    "GiB": 1024**3,
    "T": 1024**4,
    "TiB": 1024**4,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}


def parse_duration(value: Any) -> float:
    """`500ms`, `30s`, `15m`, `1h`, `2d` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 90s, 15m, 1h; got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if m is None:
            raise ValueError(f'expected a duration like 90s, 15m, 1h; got "{value}"')
        seconds = float(m[1]) * _DURATION_UNITS[m[2]]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a finite duration >= 0; got {value!r}")
    return seconds


def parse_size(value: Any) -> int:
    """`64KiB`, `512MiB`, `2GiB` or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 64KiB, 512MiB, 2GiB; got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        m = _SIZE.match(str(value))
        if m is None:
            raise ValueError(f'expected a size like 64KiB, 512MiB, 2GiB or bytes; got "{value}"')
        size = int(float(m[1]) * _SIZE_UNITS[m[2]])
    if size < 0:
        raise ValueError(f"expected a size >= 0; got {value!r}")
    return size


def parse_host_port(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); the host must be an IP
    address or a name (names are resolved at bind time)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d{1,5})", value) or re.fullmatch(
        r"([^\s:\[\]/]+):(\d{1,5})", value
    )
    if m is None:
        raise ValueError(f'expected "host:port" or "[v6addr]:port"; got "{value}"')
    host, port = m[1], int(m[2])
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0..65535")
    if value.startswith("["):
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ValueError(f'"{host}" is not an IPv6 address') from None
    return host, port


def resolve_timezone(name: str) -> _dt.tzinfo:
    """An IANA name, `UTC`, or `local` (this machine's zone) -> tzinfo."""
    if name.upper() == "UTC":
        return _dt.timezone.utc
    if name == "local":
        tz_env = os.environ.get("TZ", "").lstrip(":")
        if tz_env:
            try:
                return zoneinfo.ZoneInfo(tz_env)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                pass
        try:
            with open("/etc/localtime", "rb") as f:
                return zoneinfo.ZoneInfo.from_file(f, key="localtime")
        except OSError:
            local = _dt.datetime.now().astimezone().tzinfo
            return local if local is not None else _dt.timezone.utc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'expected an IANA zone name, UTC or local; got "{name}"') from None


# --- validation ---------------------------------------------------------------


class Nested(ValueError):
    """A nested section's problems, each starting with NESTED where the
    enclosing key's path goes."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


NESTED = "\0"


class Checker:
    """Collects problems while converting a mapping into a dataclass."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.listener_index: dict[int, int] = {}  # id(ListenerConfig) -> its place in the file

    def section(self, key: str, value: Any, cls: type[Any], convert: dict[str, Any]) -> Any:
        """`cls` built from `value`, or None with the problems recorded."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.problems.append(f"{key}: expected a mapping; got {kind(value)}")
            return None
        known = set(convert)  # fields filled by checks (TokenConfig.token) are not keys
        kwargs: dict[str, Any] = {}
        for k, v in value.items():
            path = f"{key}.{k}" if key else str(k)
            if k not in known:
                self.problems.append(f"{path}: unknown key")
                continue
            fn = convert[k]
            try:
                kwargs[k] = fn(v)
            except Nested as e:
                self.problems.extend(p.replace(NESTED, path) for p in e.problems)
            except ValueError as e:
                self.problems.append(f"{path}: {e}")
        try:
            return cls(**kwargs)
        except TypeError as e:  # a required key is missing
            missing = re.findall(r"'(\w+)'", str(e))
            for m in missing:
                if m in value:
                    continue  # given but invalid: already named above
                self.problems.append(f"{key}.{m}: required")
            return None


def kind(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), type(v).__name__
    )


def nonempty_str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a non-empty string; got {kind(v)}")
    return v


def opt_str(v: Any) -> str | None:
    return None if v is None else nonempty_str(v)


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false; got {kind(v)}")
    return v


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}; got {v!r}")
        return str(v)

    return check


def integer(lo: int, hi: int | None = None) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer; got {kind(v)} {v!r}")
        if v < lo or (hi is not None and v > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"expected an integer {rng}; got {v}")
        return v

    return check


def message_size(v: Any) -> int:
    size = parse_size(v)
    if not 64 <= size <= 64 * 1024 * 1024:
        raise ValueError(f"expected a size 64..64MiB; got {v!r}")
    return size


def positive_size(v: Any) -> int:
    size = parse_size(v)
    if size == 0:
        raise ValueError("expected a size > 0")
    return size


def positive_duration(v: Any) -> float:
    seconds = parse_duration(v)
    if seconds <= 0:
        raise ValueError(f"expected a duration > 0; got {v!r}")
    return seconds


def opt_duration(v: Any) -> float | None:
    return None if v is None else positive_duration(v)


def wal_max_bytes(v: Any) -> int | None:
    if v is None:
        return None  # twice max_memory, at least 256 MiB (wal_bound)
    size = parse_size(v)
    if size < 1024 * 1024:
        raise ValueError(f"expected a size >= 1MiB; got {v!r}")
    return size


def wal_bound(wal_max_bytes: int | None, max_memory: int) -> int:
    """The log's bound: as set, else twice max_memory and at least 256 MiB.
    A store that evicts for max_memory keeps a log about its own size
    (segments of evicted records are pruned); twice that leaves room for
    the segments a snapshot in progress still covers."""
    if wal_max_bytes is not None:
        return wal_max_bytes
    return max(256 * 1024 * 1024, 2 * max_memory)


def wal_flush_interval(v: Any) -> float:
    seconds = parse_duration(v)
    if not 0.001 <= seconds <= 60:
        raise ValueError(f"expected a duration between 1ms and 60s; got {v!r}")
    return seconds


def file_mode(v: Any) -> int:
    if isinstance(v, str) and re.fullmatch(r"0?o?[0-7]{3,4}", v):
        return int(v.replace("o", ""), 8)
    text = getattr(v, "yaml_text", None)
    if text is not None and not re.fullmatch(r"0o?[0-7]{1,4}", text):
        # YAML reads an unquoted 600 as six hundred (octal 1130): refused,
        # not guessed at, since an unquoted 0600 is read as octal.
        raise ValueError(
            f'expected a file mode like "0666"; got {text}, a decimal number in YAML'
            f' (write "0{text}" in quotes for octal {text})'
        )
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0o7777:
        return v  # YAML 1.1 already reads an unquoted 0666 as octal
    raise ValueError(f'expected a file mode like "0666"; got {v!r}')


def http_token(v: Any) -> str | None:
    token = opt_str(v)
    # Sent as is in an HTTP header (RFC 6750 b64token is narrower still): a
    # space or a non-ASCII character could never be presented, so every
    # client would be locked out. The token itself is never echoed.
    if token is not None and not re.fullmatch(r"[!-~]+", token):
        raise ValueError(
            "expected printable ASCII without spaces (it is sent in an HTTP header);"
            " got a token with a space, a control or a non-ASCII character"
            if token
            else "expected a token; got an empty string (use null for no token)"
        )
    return token


def timezone_name(v: Any) -> str:
    name = nonempty_str(v)
    resolve_timezone(name)
    return name


def http_bind(v: Any) -> str:
    parse_host_port(nonempty_str(v))
    return str(v)


def readable(path: str) -> str | None:
    """None when `path` can be opened for reading, else why not."""
    try:
        with open(path, "rb"):
            return None
    except OSError as e:
        return f"cannot read {path}: {e.strerror or e}"


def compile_linear(text: str | bytes) -> Any:
    """A pattern compiled by RE2, whose matching time is linear in the text;
    ValueError says why `text` cannot be one (a syntax error, or what RE2
    leaves out on purpose: backreferences, lookaround)."""
    options = re2.Options()
    options.log_errors = False  # the error is ours to report, naming the key
    try:
        return re2.compile(text, options)
    except Exception as e:  # re2.error, or TypeError/ValueError from the wrapper
        why = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(f"not a valid RE2 regular expression: {why}") from None


def nested(
    cls: type[Any], convert: dict[str, Any], check: Callable[[Any, Checker], None] | None = None
) -> Callable[[Any], Any]:
    """A converter for a mapping nested under a key; its problems name the full path."""

    def conv(v: Any) -> Any:
        ck = Checker()
        obj = ck.section(NESTED, v, cls, convert)
        if obj is not None and check is not None:
            check(obj, ck)
        if ck.problems:
            raise Nested(ck.problems)
        return obj

    return conv


def optional(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else conv(v)


def list_of(conv: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    """A list whose items `conv` converts; problems name the item's index."""

    def check(v: Any) -> tuple[Any, ...]:
        if v is None:
            return ()
        if not isinstance(v, list):
            raise ValueError(f"expected a list; got {kind(v)}")
        out, problems = [], []
        for i, item in enumerate(v):
            try:
                out.append(conv(item))
            except Nested as e:
                problems += [p.replace(NESTED, f"{NESTED}[{i}]", 1) for p in e.problems]
        if problems:
            raise Nested(problems)
        return tuple(out)

    return check


def rate_per_second(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1e9:
        raise ValueError(f"expected a number of records per second > 0; got {v!r}")
    return float(v)


def level_name(v: Any) -> str:
    from collector.record import LEVELS, level_from_name

    code = level_from_name(v) if isinstance(v, str) else None
    if code is None:
        raise ValueError(f"expected a level ({' '.join(LEVELS)}); got {v!r}")
    return LEVELS[code]


def existing_file(v: Any) -> str:
    path = nonempty_str(v)
    why = readable(path)
    if why is not None:
        raise ValueError(why)
    return path
