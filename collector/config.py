"""Configuration: one frozen Config, every default, read and validated in one place.

`load_config(path)` reads YAML (a repeated key is an error); `config_from_dict(data)`
validates a mapping. Problems are collected, not raised one at a time, so `check-config`
can list them all; each names its dotted key (`listeners[1].bind: ...`). Value readers
live in configvalues.py, the checks on plain values (addresses, broker URLs) in configcheck.py.
"""

from __future__ import annotations

import os
import re
import ssl
import stat
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from collector.configcheck import check_broker_url, load_pem, missing_extra, same_address
from collector.configvalues import (
    NESTED,
    Checker,
    boolean,
    choice,
    compile_linear,
    existing_file,
    file_mode,
    http_bind,
    http_token,
    integer,
    kind,
    level_name,
    list_of,
    message_size,
    nested,
    nonempty_str,
    opt_duration,
    opt_str,
    optional,
    parse_host_port,
    positive_duration,
    positive_size,
    rate_per_second,
    readable,
    timezone_name,
    wal_flush_interval,
    wal_max_bytes,
)
from collector.record import NODE_MAX

STREAM_TRANSPORTS = ("redis", "kafka")
TRANSPORTS = ("udp", "tcp", "unix", *STREAM_TRANSPORTS)
OUTPUT_TYPES = ("redis", "kafka", "syslog")
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
    wal_max_bytes: int | None = None  # write-ahead log bound; None: configvalues.wal_bound
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


def _check_tls(tc: TlsConfig, ck: Checker) -> None:
    bad = False
    for k in ("cert", "key", "client_ca"):
        path = getattr(tc, k)
        why = None if path is None else readable(path)
        if why is not None:
            ck.problems.append(f"{NESTED}.{k}: {why}")
            bad = True
    if bad:
        return
    try:
        load_pem(tc.cert, tc.key, None)
    except (ssl.SSLError, OSError) as e:
        ck.problems.append(f"{NESTED}.cert: cannot load the certificate and key as PEM: {e}")
        return
    if tc.client_ca is not None:
        try:
            load_pem(tc.cert, tc.key, tc.client_ca)
        except (ssl.SSLError, OSError) as e:
            ck.problems.append(f"{NESTED}.client_ca: cannot load CA certificates as PEM: {e}")


def _check_token(tc: TokenConfig, ck: Checker) -> None:
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


def _check_redact_rule(rule: RedactRule, ck: Checker) -> None:
    if rule.match in REDACT_BUILTINS:
        return
    try:
        compile_linear(rule.match)
    except ValueError as e:
        ck.problems.append(f"{NESTED}.match: {e}")


_TLS_CONVERT: dict[str, Any] = {
    "cert": nonempty_str,
    "key": nonempty_str,
    "client_ca": opt_str,
    "handshake_timeout": positive_duration,
}
_tls = optional(nested(TlsConfig, _TLS_CONVERT, _check_tls))
_RATE_LIMIT_CONVERT: dict[str, Any] = {
    "rate": rate_per_second,
    "burst": optional(integer(1, 1_000_000_000)),
    "key": choice(RATE_LIMIT_KEYS),
    "exempt_level": optional(level_name),
}
_TOKEN_CONVERT: dict[str, Any] = {"token_file": nonempty_str, "scope": choice(TOKEN_SCOPES)}
_REDACT_CONVERT: dict[str, Any] = {
    "match": nonempty_str,
    "action": choice(REDACT_ACTIONS),
    "name": opt_str,
}

_LISTENER_CONVERT: dict[str, Any] = {
    "name": nonempty_str,
    "transport": choice(TRANSPORTS),
    "format": choice(FORMATS),
    "bind": nonempty_str,
    "max_connections": integer(1),
    "recv_buffer": positive_size,
    "idle_timeout": opt_duration,
    "mode": file_mode,
    "default_timezone": lambda v: None if v is None else timezone_name(v),
    "tls": _tls,
    "rate_limit": optional(nested(RateLimitConfig, _RATE_LIMIT_CONVERT)),
    "url": opt_str,
    "stream": nonempty_str,
    "group": opt_str,
    "consumer": opt_str,
}
_OUTPUT_CONVERT: dict[str, Any] = {
    "name": nonempty_str,
    "type": choice(OUTPUT_TYPES),
    "url": nonempty_str,
    "stream": nonempty_str,
    "spool_dir": opt_str,
    "spool_max": positive_size,
    "maxlen": integer(1),
    "tls_ca": opt_str,
    "tls_verify": boolean,
}
_HTTP_CONVERT: dict[str, Any] = {
    "bind": http_bind,
    "auth_token": http_token,
    "max_body": positive_size,
    "max_connections": integer(1),
    "idle_timeout": positive_duration,
    "tls": _tls,
    "tokens": list_of(nested(TokenConfig, _TOKEN_CONVERT, _check_token)),
}
_STORE_CONVERT: dict[str, Any] = {
    "ttl": positive_duration,
    "max_records": integer(1),
    "max_memory": positive_size,
    "persist_dir": opt_str,
    "fsync": choice(FSYNC_MODES),
    "shard_span": positive_duration,
    "sweep_interval": positive_duration,
    "wal_max_bytes": wal_max_bytes,
    "wal_flush_interval": wal_flush_interval,
    "node_id": lambda v: None if v is None else integer(0, NODE_MAX)(v),
}
_PARSING_CONVERT: dict[str, Any] = {
    "default_timezone": timezone_name,
    "max_message_bytes": message_size,
    "redact": list_of(nested(RedactRule, _REDACT_CONVERT, _check_redact_rule)),
    "redact_key_file": optional(existing_file),
}


def _named_sections(
    ck: Checker, section: str, value: Any, cls: type[Any], convert: dict[str, Any]
) -> Iterator[tuple[int, str, Any]]:
    """A YAML list of `cls` entries with unique `name`s (listeners, outputs):
    (index, dotted key, entry) for each entry that reads, problems recorded.
    Lazy, so each entry's own checks are reported right after it is read."""
    if not isinstance(value, list):
        ck.problems.append(f"{section}: expected a list; got {kind(value)}")
        return
    names: dict[str, int] = {}
    for i, item in enumerate(value):
        key = f"{section}[{i}]"
        entry = ck.section(key, item, cls, convert)
        if entry is None:
            continue
        if entry.name in names:
            ck.problems.append(
                f"{key}.name: duplicate of {section}[{names[entry.name]}]: {entry.name!r}"
            )
        names.setdefault(entry.name, i)
        yield i, key, entry


def _check_listeners(ck: Checker, value: Any) -> tuple[ListenerConfig, ...]:
    if value is None:
        return _default_listeners()
    out: list[ListenerConfig] = []
    lc: ListenerConfig
    for i, key, lc in _named_sections(ck, "listeners", value, ListenerConfig, _LISTENER_CONVERT):
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


def _check_addresses(ck: Checker, listeners: tuple[ListenerConfig, ...], http: HttpConfig) -> None:
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
            if addr == where if kind == "unix" else same_address(addr, where):
                shown = lc.bind if what == lc.bind else f"{lc.bind} (overlaps {what})"
                ck.problems.append(f"{key}.bind: {kind} {shown} is already used by {who}")
                break
        taken.append((kind, where, key, lc.bind))
    try:
        where = parse_host_port(http.bind)
    except ValueError:
        return  # already reported
    for k, addr, who, what in taken:
        if k == "tcp" and same_address(addr, where):
            ck.problems.append(f"http.bind: {http.bind} is already used by {who} (tcp {what})")
            break


def _check_stream_listener(ck: Checker, key: str, lc: ListenerConfig) -> None:
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


def _check_outputs(ck: Checker, value: Any) -> tuple[OutputConfig, ...]:
    if value is None:
        return ()
    out: list[OutputConfig] = []
    spools: dict[str, int] = {}
    oc: OutputConfig
    for i, key, oc in _named_sections(ck, "outputs", value, OutputConfig, _OUTPUT_CONVERT):
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
        raise ConfigError([f"(top level): expected a mapping; got {kind(data)}"])
    ck = Checker()
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
