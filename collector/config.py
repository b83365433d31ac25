"""Configuration: one frozen Config, every default and every check in one place.

`load_config(path)` reads YAML; `config_from_dict(data)` validates a mapping.
Problems are collected, not raised one at a time, so `check-config` can list
them all; each names its dotted key (`listeners[1].bind: ...`).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import ipaddress
import math
import os
import re
import ssl
import stat
import zoneinfo
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import re2
import yaml

from collector.record import NODE_MAX

STREAM_TRANSPORTS = ("redis", "kafka")
TRANSPORTS = ("udp", "tcp", "unix", *STREAM_TRANSPORTS)
OUTPUT_TYPES = ("redis", "kafka", "syslog")
# The optional extra each broker client comes from: (import name, pip extra).
CLIENT_EXTRAS = {"redis": ("redis", "redis"), "kafka": ("confluent_kafka", "kafka")}
RATE_LIMIT_KEYS = ("host", "service", "peer", "host,service")
TOKEN_SCOPES = ("read", "write")
REDACT_ACTIONS = ("mask", "partial", "hash")
REDACT_BUILTINS = ("ipv4", "ipv6", "email", "card", "secret")
FORMATS = ("syslog", "json")
FSYNC_MODES = ("never", "batch", "always")


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM files for a TLS server (a tcp listener, or HTTPS); read again on SIGHUP."""

    cert: str
    key: str
    client_ca: str | None = None  # set: clients must present a certificate signed by it
    handshake_timeout: float = 10.0  # a handshake not done by then is closed and counted


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """A token bucket per key: `rate` records/s, up to `burst` at once."""

    rate: float
    burst: int | None = None  # None: one second's worth (`rate`, at least 1)
    key: str = "host"
    exempt_level: str | None = None  # this level and more severe always pass


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """An API token read from a file, allowed the routes of its scope."""

    token_file: str
    scope: str
    # The file's text (stripped), read when the config is loaded; never printed.
    token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class RedactRule:
    """One redaction rule: a built-in name or a regular expression, and an action."""

    match: str
    action: str = "mask"
    name: str | None = None  # the `rule` metric label; default: the built-in's name or regex[i]


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One socket the daemon reads logs from."""

    name: str
    transport: str
    format: str = "syslog"
    bind: str = "0.0.0.0:5514"
    max_connections: int = 1024
    recv_buffer: int = 8 * 1024 * 1024
    # Extensions beyond the contract:
    idle_timeout: float | None = None  # tcp: close a connection silent this long
    mode: int = 0o666  # unix: permissions of the socket file, like /dev/log
    default_timezone: str | None = None  # None: parsing.default_timezone
    tls: TlsConfig | None = None  # tcp: syslog over TLS (RFC 5425)
    rate_limit: RateLimitConfig | None = None
    # Stream listeners (transport redis | kafka):
    url: str | None = None
    stream: str = "collector"  # kafka: the topic
    group: str | None = None  # None: read the whole stream (a replica)
    consumer: str | None = None  # group member name; default: host name and node id

    @property
    def is_stream(self) -> bool:
        """Reads a broker (Redis Streams, Kafka) rather than a socket."""
        return self.transport in STREAM_TRANSPORTS


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """One destination every stored record is forwarded to."""

    name: str
    type: str
    url: str
    stream: str = "collector"  # redis: the stream; kafka: the topic; syslog: unused
    spool_dir: str | None = None
    spool_max: int = 1024 * 1024 * 1024
    # Extensions beyond the contract:
    maxlen: int = 1_000_000  # redis: XADD MAXLEN ~ this
    tls_ca: str | None = None  # syslog tls://: CA file to verify the server (default: system CAs)
    tls_verify: bool = True  # syslog tls://: check the server's certificate and name


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The query API and /metrics port."""

    bind: str = "127.0.0.1:9514"
    auth_token: str | None = None
    max_body: int = 16 * 1024 * 1024
    max_connections: int = 1024
    idle_timeout: float = 60.0
    tls: TlsConfig | None = None
    tokens: tuple[TokenConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The in-memory store and its durability."""

    ttl: float = 3600.0
    max_records: int = 5_000_000
    max_memory: int = 512 * 1024 * 1024
    persist_dir: str | None = None
    fsync: str = "batch"
    shard_span: float = 60.0
    sweep_interval: float = 1.0
    wal_max_bytes: int = 256 * 1024 * 1024  # write-ahead log bound; snapshot early at half
    wal_flush_interval: float = 0.2  # write (and, with fsync: batch, fsync) the log this often
    node_id: int | None = None  # the node part of ids; None: kept in persist_dir, or random


@dataclass(frozen=True, slots=True)
class ParsingConfig:
    """How bytes become records."""

    default_timezone: str = "UTC"
    max_message_bytes: int = 65536
    redact: tuple[RedactRule, ...] = ()
    redact_key_file: str | None = None


def _default_listeners() -> tuple[ListenerConfig, ...]:
    return (
        ListenerConfig(name="syslog-udp", transport="udp", format="syslog", bind="0.0.0.0:5514"),
        ListenerConfig(name="syslog-tcp", transport="tcp", format="syslog", bind="0.0.0.0:5514"),
        ListenerConfig(name="json-tcp", transport="tcp", format="json", bind="0.0.0.0:5515"),
    )


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; `Config()` is the built-in default."""

    listeners: tuple[ListenerConfig, ...] = field(default_factory=_default_listeners)
    http: HttpConfig = field(default_factory=HttpConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    parsing: ParsingConfig = field(default_factory=ParsingConfig)
    outputs: tuple[OutputConfig, ...] = ()


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


class _Nested(ValueError):
    """A nested section's problems, each starting with NESTED where the
    enclosing key's path goes."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


NESTED = "\0"


class _Checker:
    """Collects problems while converting a mapping into a dataclass."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.listener_index: dict[int, int] = {}  # id(ListenerConfig) -> its place in the file

    def section(self, key: str, value: Any, cls: type[Any], convert: dict[str, Any]) -> Any:
        """`cls` built from `value`, or None with the problems recorded."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.problems.append(f"{key}: expected a mapping; got {_kind(value)}")
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
            except _Nested as e:
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


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), type(v).__name__
    )


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a non-empty string; got {_kind(v)}")
    return v


def _opt_str(v: Any) -> str | None:
    return None if v is None else _str(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false; got {_kind(v)}")
    return v


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}; got {v!r}")
        return str(v)

    return check


def _int(lo: int, hi: int | None = None) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer; got {_kind(v)} {v!r}")
        if v < lo or (hi is not None and v > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"expected an integer {rng}; got {v}")
        return v

    return check


def _message_size(v: Any) -> int:
    size = parse_size(v)
    if not 64 <= size <= 64 * 1024 * 1024:
        raise ValueError(f"expected a size 64..64MiB; got {v!r}")
    return size


def _positive_size(v: Any) -> int:
    size = parse_size(v)
    if size == 0:
        raise ValueError("expected a size > 0")
    return size


def _positive_duration(v: Any) -> float:
    seconds = parse_duration(v)
    if seconds <= 0:
        raise ValueError(f"expected a duration > 0; got {v!r}")
    return seconds


def _opt_duration(v: Any) -> float | None:
    return None if v is None else _positive_duration(v)


def _wal_max_bytes(v: Any) -> int:
    size = parse_size(v)
    if size < 1024 * 1024:
        raise ValueError(f"expected a size >= 1MiB; got {v!r}")
    return size


def _wal_flush_interval(v: Any) -> float:
    seconds = parse_duration(v)
    if not 0.001 <= seconds <= 60:
        raise ValueError(f"expected a duration between 1ms and 60s; got {v!r}")
    return seconds


def _mode(v: Any) -> int:
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


def _token(v: Any) -> str | None:
    token = _opt_str(v)
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


def _timezone(v: Any) -> str:
    name = _str(v)
    resolve_timezone(name)
    return name


def _http_bind(v: Any) -> str:
    parse_host_port(_str(v))
    return str(v)


def _readable(path: str) -> str | None:
    """None when `path` can be opened for reading, else why not."""
    try:
        with open(path, "rb"):
            return None
    except OSError as e:
        return f"cannot read {path}: {e.strerror or e}"


def _load_pem(cert: str, key: str, client_ca: str | None) -> None:
    """Load the files as a TLS server would (collector.tls makes the real
    context; this is the check); ssl.SSLError or OSError when they do not."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key, password=lambda: "")  # an encrypted key fails, never prompts
    if client_ca is not None:
        ctx.load_verify_locations(cafile=client_ca)


def _check_tls(tc: TlsConfig, ck: _Checker) -> None:
    bad = False
    for k in ("cert", "key", "client_ca"):
        path = getattr(tc, k)
        why = None if path is None else _readable(path)
        if why is not None:
            ck.problems.append(f"{NESTED}.{k}: {why}")
            bad = True
    if bad:
        return
    try:
        _load_pem(tc.cert, tc.key, None)
    except (ssl.SSLError, OSError) as e:
        ck.problems.append(f"{NESTED}.cert: cannot load the certificate and key as PEM: {e}")
        return
    if tc.client_ca is not None:
        try:
            _load_pem(tc.cert, tc.key, tc.client_ca)
        except (ssl.SSLError, OSError) as e:
            ck.problems.append(f"{NESTED}.client_ca: cannot load CA certificates as PEM: {e}")


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


def _nested(
    cls: type[Any], convert: dict[str, Any], check: Callable[[Any, _Checker], None] | None = None
) -> Callable[[Any], Any]:
    """A converter for a mapping nested under a key; its problems name the full path."""

    def conv(v: Any) -> Any:
        ck = _Checker()
        obj = ck.section(NESTED, v, cls, convert)
        if obj is not None and check is not None:
            check(obj, ck)
        if ck.problems:
            raise _Nested(ck.problems)
        return obj

    return conv


def _opt(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else conv(v)


def _list_of(conv: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    """A list whose items `conv` converts; problems name the item's index."""

    def check(v: Any) -> tuple[Any, ...]:
        if v is None:
            return ()
        if not isinstance(v, list):
            raise ValueError(f"expected a list; got {_kind(v)}")
        out, problems = [], []
        for i, item in enumerate(v):
            try:
                out.append(conv(item))
            except _Nested as e:
                problems += [p.replace(NESTED, f"{NESTED}[{i}]", 1) for p in e.problems]
        if problems:
            raise _Nested(problems)
        return tuple(out)

    return check


def _check_token(tc: TokenConfig, ck: _Checker) -> None:
    try:
        with open(tc.token_file, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        ck.problems.append(f"{NESTED}.token_file: cannot read {tc.token_file}: {why}")
        return
    if not token:
        ck.problems.append(f"{NESTED}.token_file: {tc.token_file} is empty")
        return
    object.__setattr__(tc, "token", token)  # frozen: set once, here, while it is being built


def _check_redact_rule(rule: RedactRule, ck: _Checker) -> None:
    if rule.match in REDACT_BUILTINS:
        return
    try:
        compile_linear(rule.match)
    except ValueError as e:
        ck.problems.append(f"{NESTED}.match: {e}")


def _rate(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1e9:
        raise ValueError(f"expected a number of records per second > 0; got {v!r}")
    return float(v)


def _level_name(v: Any) -> str:
    from collector.record import LEVELS, level_from_name

    code = level_from_name(v) if isinstance(v, str) else None
    if code is None:
        raise ValueError(f"expected a level ({' '.join(LEVELS)}); got {v!r}")
    return LEVELS[code]


def _existing_file(v: Any) -> str:
    path = _str(v)
    why = _readable(path)
    if why is not None:
        raise ValueError(why)
    return path


_TLS_CONVERT: dict[str, Any] = {
    "cert": _str,
    "key": _str,
    "client_ca": _opt_str,
    "handshake_timeout": _positive_duration,
}
_tls = _opt(_nested(TlsConfig, _TLS_CONVERT, _check_tls))
_RATE_LIMIT_CONVERT: dict[str, Any] = {
    "rate": _rate,
    "burst": _opt(_int(1, 1_000_000_000)),
    "key": _choice(RATE_LIMIT_KEYS),
    "exempt_level": _opt(_level_name),
}
_TOKEN_CONVERT: dict[str, Any] = {"token_file": _str, "scope": _choice(TOKEN_SCOPES)}
_REDACT_CONVERT: dict[str, Any] = {
    "match": _str,
    "action": _choice(REDACT_ACTIONS),
    "name": _opt_str,
}

_LISTENER_CONVERT: dict[str, Any] = {
    "name": _str,
    "transport": _choice(TRANSPORTS),
    "format": _choice(FORMATS),
    "bind": _str,
    "max_connections": _int(1),
    "recv_buffer": _positive_size,
    "idle_timeout": _opt_duration,
    "mode": _mode,
    "default_timezone": lambda v: None if v is None else _timezone(v),
    "tls": _tls,
    "rate_limit": _opt(_nested(RateLimitConfig, _RATE_LIMIT_CONVERT)),
    "url": _opt_str,
    "stream": _str,
    "group": _opt_str,
    "consumer": _opt_str,
}
_OUTPUT_CONVERT: dict[str, Any] = {
    "name": _str,
    "type": _choice(OUTPUT_TYPES),
    "url": _str,
    "stream": _str,
    "spool_dir": _opt_str,
    "spool_max": _positive_size,
    "maxlen": _int(1),
    "tls_ca": _opt_str,
    "tls_verify": _bool,
}
_HTTP_CONVERT: dict[str, Any] = {
    "bind": _http_bind,
    "auth_token": _token,
    "max_body": _positive_size,
    "max_connections": _int(1),
    "idle_timeout": _positive_duration,
    "tls": _tls,
    "tokens": _list_of(_nested(TokenConfig, _TOKEN_CONVERT, _check_token)),
}
_STORE_CONVERT: dict[str, Any] = {
    "ttl": _positive_duration,
    "max_records": _int(1),
    "max_memory": _positive_size,
    "persist_dir": _opt_str,
    "fsync": _choice(FSYNC_MODES),
    "shard_span": _positive_duration,
    "sweep_interval": _positive_duration,
    "wal_max_bytes": _wal_max_bytes,
    "wal_flush_interval": _wal_flush_interval,
    "node_id": lambda v: None if v is None else _int(0, NODE_MAX)(v),
}
_PARSING_CONVERT: dict[str, Any] = {
    "default_timezone": _timezone,
    "max_message_bytes": _message_size,
    "redact": _list_of(_nested(RedactRule, _REDACT_CONVERT, _check_redact_rule)),
    "redact_key_file": _opt(_existing_file),
}


def _check_listeners(ck: _Checker, value: Any) -> tuple[ListenerConfig, ...]:
    if value is None:
        return _default_listeners()
    if not isinstance(value, list):
        ck.problems.append(f"listeners: expected a list; got {_kind(value)}")
        return ()
    out: list[ListenerConfig] = []
    names: dict[str, int] = {}
    for i, item in enumerate(value):
        key = f"listeners[{i}]"
        lc = ck.section(key, item, ListenerConfig, _LISTENER_CONVERT)
        if lc is None:
            continue
        if lc.name in names:
            ck.problems.append(f"{key}.name: duplicate of listeners[{names[lc.name]}]: {lc.name!r}")
        names.setdefault(lc.name, i)
        if lc.is_stream:
            _check_stream_listener(ck, key, lc)
            out.append(lc)
            continue
        if lc.tls is not None and lc.transport != "tcp":
            ck.problems.append(
                f"{key}.tls: only a tcp listener speaks TLS; this one is {lc.transport}"
            )
        if lc.transport == "unix":
            if re.fullmatch(r"[^/]*:\d+", lc.bind):
                ck.problems.append(f'{key}.bind: unix needs a socket path; got "{lc.bind}"')
                continue
            folder = os.path.dirname(os.path.abspath(lc.bind))
            if not os.path.isdir(folder):
                ck.problems.append(
                    f"{key}.bind: directory {folder} does not exist; create it or bind elsewhere"
                )
            elif os.path.lexists(lc.bind) and not stat.S_ISSOCK(os.lstat(lc.bind).st_mode):
                ck.problems.append(f"{key}.bind: {lc.bind} exists and is not a socket")
        else:
            try:
                parse_host_port(lc.bind)
            except ValueError as e:
                ck.problems.append(f"{key}.bind: {e}")
                continue
        ck.listener_index[id(lc)] = i
        out.append(lc)
    return tuple(out)


# Hosts that take a port on every address of their family ("::" is dual-stack
# here: the listeners and the HTTP port take IPv4 on it too).
_ANY_HOST = {"0.0.0.0": "4", "": "4", "::": "any"}


def _same_address(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Would binding both collide (EADDRINUSE)? Same port and the same host,
    or a wildcard on either side covering the other's family."""
    if a[1] != b[1] or a[1] == 0:  # ephemeral ports never collide
        return False
    ha, hb = (("127.0.0.1" if h == "localhost" else h) for h in (a[0], b[0]))
    if ha == hb or "any" in (_ANY_HOST.get(ha), _ANY_HOST.get(hb)):
        return True
    for wild, other in ((ha, hb), (hb, ha)):
        if _ANY_HOST.get(wild) == "4" and ":" not in other:
            return True
    return False


def _check_addresses(ck: _Checker, listeners: tuple[ListenerConfig, ...], http: HttpConfig) -> None:
    """Two sockets on one address fail at bind time: say so now. TCP
    listeners and http.bind share TCP ports; UDP ports are separate."""
    taken: list[tuple[str, tuple[str, int], str, str]] = []  # (kind, address, who, what)
    for lc in listeners:
        if lc.is_stream:
            continue  # reads a broker: binds nothing
        key = f"listeners[{ck.listener_index.get(id(lc), '?')}]"
        if lc.transport == "unix":
            where: tuple[str, int] = (os.path.abspath(lc.bind), -1)
            kind = "unix"
        else:
            where, kind = parse_host_port(lc.bind), lc.transport
        for k, addr, who, what in taken:
            if k != kind:
                continue
            if addr == where if kind == "unix" else _same_address(addr, where):
                shown = lc.bind if what == lc.bind else f"{lc.bind} (overlaps {what})"
                ck.problems.append(f"{key}.bind: {kind} {shown} is already used by {who}")
                break
        taken.append((kind, where, key, lc.bind))
    try:
        where = parse_host_port(http.bind)
    except ValueError:
        return  # already reported
    for k, addr, who, what in taken:
        if k == "tcp" and _same_address(addr, where):
            ck.problems.append(f"http.bind: {http.bind} is already used by {who} (tcp {what})")
            break


def check_broker_url(kind: str, url: str) -> None:
    """Raise ValueError unless `url` suits a `kind` broker (redis, kafka, syslog)."""
    if kind == "redis":
        if not re.match(r"^(redis|rediss|unix)://", url):
            raise ValueError(
                f'expected redis://HOST:PORT/DB, rediss://... or unix://PATH; got "{url}"'
            )
        return
    if kind == "kafka":
        m = re.fullmatch(r"kafka://([^/]+)/?", url)
        if m is None:
            raise ValueError(f'expected kafka://HOST:PORT[,HOST:PORT...]; got "{url}"')
        for hp in m[1].split(","):
            parse_host_port(hp)
        return
    m = re.fullmatch(r"(tcp|tls|udp)://(.+)", url)
    if m is None:
        raise ValueError(
            f'expected tcp://HOST:PORT, tls://HOST:PORT or udp://HOST:PORT; got "{url}"'
        )
    _, port = parse_host_port(m[2])
    if port == 0:
        raise ValueError(f'port 0 cannot be sent to; got "{url}"')


def missing_extra(kind: str) -> str | None:
    """Why a `kind` broker cannot be used here (its client is not installed), or None."""
    if kind not in CLIENT_EXTRAS:
        return None
    module, extra = CLIENT_EXTRAS[kind]
    if importlib.util.find_spec(module) is not None:
        return None
    return f"{kind} needs its client library: pip install 'collector[{extra}]'"


def _check_stream_listener(ck: _Checker, key: str, lc: ListenerConfig) -> None:
    if lc.url is None:
        ck.problems.append(f"{key}.url: required for transport {lc.transport}")
    else:
        try:
            check_broker_url(lc.transport, lc.url)
        except ValueError as e:
            ck.problems.append(f"{key}.url: {e}")
    why = missing_extra(lc.transport)
    if why:
        ck.problems.append(f"{key}.transport: {why}")


def _check_outputs(ck: _Checker, value: Any) -> tuple[OutputConfig, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        ck.problems.append(f"outputs: expected a list; got {_kind(value)}")
        return ()
    out: list[OutputConfig] = []
    names: dict[str, int] = {}
    spools: dict[str, int] = {}
    for i, item in enumerate(value):
        key = f"outputs[{i}]"
        oc = ck.section(key, item, OutputConfig, _OUTPUT_CONVERT)
        if oc is None:
            continue
        if oc.name in names:
            ck.problems.append(f"{key}.name: duplicate of outputs[{names[oc.name]}]: {oc.name!r}")
        names.setdefault(oc.name, i)
        try:
            check_broker_url(oc.type, oc.url)
        except ValueError as e:
            ck.problems.append(f"{key}.url: {e}")
        why = missing_extra(oc.type)
        if why:
            ck.problems.append(f"{key}.type: {why}")
        if oc.spool_dir is not None:
            where = os.path.abspath(oc.spool_dir)
            if where in spools:
                ck.problems.append(
                    f"{key}.spool_dir: already used by outputs[{spools[where]}]; each output needs its own"
                )
            spools.setdefault(where, i)
        if oc.tls_ca is not None and not os.access(oc.tls_ca, os.R_OK):
            ck.problems.append(f"{key}.tls_ca: cannot read {oc.tls_ca}")
        out.append(oc)
    return tuple(out)


def config_from_dict(data: Any) -> Config:
    """Validate a parsed YAML document into a Config, or raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping; got {_kind(data)}"])
    ck = _Checker()
    for k in data:
        if k not in ("listeners", "http", "store", "parsing", "outputs"):
            ck.problems.append(f"{k}: unknown key")
    listeners = _check_listeners(ck, data.get("listeners"))
    http = ck.section("http", data.get("http"), HttpConfig, _HTTP_CONVERT)
    store = ck.section("store", data.get("store"), StoreConfig, _STORE_CONVERT)
    parsing = ck.section("parsing", data.get("parsing"), ParsingConfig, _PARSING_CONVERT)
    if http is not None:
        _check_addresses(ck, listeners, http)
    outputs = _check_outputs(ck, data.get("outputs"))
    if ck.problems:
        raise ConfigError(ck.problems)
    return Config(
        listeners=listeners,
        http=http,
        store=store,
        parsing=parsing,
        outputs=outputs,
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping: YAML would keep
    the last silently, and `ttl: 1h` ... `ttl: 2h` is a mistake to report."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                break  # SafeLoader's own check reports an unhashable key
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _YamlInt(int):
    """An int read from YAML, with its text: `mode: 600` and `mode: 0600`
    differ in meaning, and only the text tells which was written."""

    yaml_text: str


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    value = _YamlInt(loader.construct_yaml_int(node))
    value.yaml_text = str(node.value)
    return value


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML file; ConfigError says what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_UniqueKeyLoader)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError([f"{path}: invalid YAML{where}: {reason}"]) from None
    return config_from_dict(data)
