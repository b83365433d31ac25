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
import zoneinfo
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from collector.record import NODE_MAX

STREAM_TRANSPORTS = ("redis", "kafka")
TRANSPORTS = ("udp", "tcp", "unix", *STREAM_TRANSPORTS)
OUTPUT_TYPES = ("redis", "kafka", "syslog")
# The optional extra each broker client comes from: (import name, pip extra).
CLIENT_EXTRAS = {"redis": ("redis", "redis"), "kafka": ("confluent_kafka", "kafka")}
FORMATS = ("syslog", "json")
FSYNC_MODES = ("never", "batch", "always")


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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


class _Checker:
    """Collects problems while converting a mapping into a dataclass."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def section(self, key: str, value: Any, cls: type[Any], convert: dict[str, Any]) -> Any:
        """`cls` built from `value`, or None with the problems recorded."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.problems.append(f"{key}: expected a mapping; got {_kind(value)}")
            return None
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for k, v in value.items():
            path = f"{key}.{k}" if key else str(k)
            if k not in known:
                self.problems.append(f"{path}: unknown key")
                continue
            fn = convert[k]
            try:
                kwargs[k] = fn(v)
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
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0o7777:
        return v  # YAML 1.1 already reads an unquoted 0666 as octal
    raise ValueError(f'expected a file mode like "0666"; got {v!r}')


def _timezone(v: Any) -> str:
    name = _str(v)
    resolve_timezone(name)
    return name


def _http_bind(v: Any) -> str:
    parse_host_port(_str(v))
    return str(v)


_LISTENER_CONVERT: dict[str, Any] = {
    "name": _str,
    "transport": _choice(TRANSPORTS),
    "format": _choice(FORMATS),
    "bind": _str,
    "max_connections": _int(1),
    "recv_buffer": _positive_size,
    "idle_timeout": _opt_duration,
    "mode": _mode,
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
    "auth_token": _opt_str,
    "max_body": _positive_size,
    "max_connections": _int(1),
    "idle_timeout": _positive_duration,
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
}


def _check_listeners(ck: _Checker, value: Any) -> tuple[ListenerConfig, ...]:
    if value is None:
        return _default_listeners()
    if not isinstance(value, list):
        ck.problems.append(f"listeners: expected a list; got {_kind(value)}")
        return ()
    out: list[ListenerConfig] = []
    names: dict[str, int] = {}
    addresses: dict[tuple[str, str], int] = {}
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
        if lc.transport == "unix":
            if re.fullmatch(r"[^/]*:\d+", lc.bind):
                ck.problems.append(f'{key}.bind: unix needs a socket path; got "{lc.bind}"')
                continue
        else:
            try:
                _, port = parse_host_port(lc.bind)
            except ValueError as e:
                ck.problems.append(f"{key}.bind: {e}")
                continue
            if port == 0:  # ephemeral ports never collide
                out.append(lc)
                continue
        where = (lc.transport, lc.bind)
        if where in addresses:
            ck.problems.append(
                f"{key}.bind: {lc.transport} {lc.bind} is already used by listeners[{addresses[where]}]"
            )
        addresses.setdefault(where, i)
        out.append(lc)
    return tuple(out)


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
