"""Redaction stage: parse -> *redact* -> store, in place, one batch at a time.

Rules run in order over each record's message, structured-data values and
field values, before the sink stores, logs or forwards anything. Built-ins
are fixed patterns behind cheap pre-checks (`'@' in text` before the e-mail
pattern); custom patterns run on RE2, whose matching time is linear in the
text. Pure: the HMAC key comes in as an argument (see `load_key`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Callable
from typing import Any, Protocol

from collector.config import RedactRule, compile_linear
from collector.record import Record

MASK = "[REDACTED]"
KEY_FILE = "redact.key"  # in store.persist_dir: the hash key made once and kept
MAX_DEPTH = 32  # nested field values deeper than this are left alone


class _Pattern(Protocol):
    groups: int

    def sub(self, repl: Callable[[Any], str], text: str) -> str: ...


def compile_pattern(text: str) -> _Pattern:
    """A custom rule's pattern, on RE2; ValueError says why it cannot be one."""
    pattern: _Pattern = compile_linear(text)
    return pattern


# --- built-ins -----------------------------------------------------------------

# Each: (pre-check, pattern, the group to replace, a validator of that group).
# Patterns have no nested unbounded repetition, so the backtracking engine stays
# linear on them; the validators run only on candidates.

_IPV4 = re.compile(
    r"(?<![\w.])((?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})(?![\w.]|\.\d)"
)
_IPV6 = re.compile(
    r"(?<![\w:.])((?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?)(?![\w:.])"
)
_EMAIL = re.compile(r"([A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8})")
_CARD = re.compile(r"(?<![\d-])(\d(?:[ -]?\d){12,18})(?![\d-])")
_SECRET = re.compile(
    r"(?i:\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)\s{0,4}[=:]\s{0,4}\"?([^\s\"'&,;]{1,512}))"
    r"|(?i:\bauthorization:\s{0,4}bearer\s{1,4}([^\s\"']{1,4096}))"
    r"|\b((?:AKIA|ASIA)[0-9A-Z]{16})\b"
)


def _luhn(value: str) -> bool:
    digits = [int(c) for c in value if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _ipv6(value: str) -> bool:
    if value.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _always(text: str) -> bool:
    return True


def _has_digit_run(text: str) -> bool:
    return any(c in text for c in "0123456789")


Builtin = tuple[Callable[[str], bool], Any, Callable[[str], bool] | None]
BUILTINS: dict[str, Builtin] = {
    "ipv4": (lambda t: "." in t, _IPV4, None),
    "ipv6": (lambda t: "::" in t or t.count(":") >= 7, _IPV6, _ipv6),
    "email": (lambda t: "@" in t, _EMAIL, None),
    "card": (_has_digit_run, _CARD, _luhn),
    "secret": (lambda t: "=" in t or ":" in t or "AKIA" in t or "ASIA" in t, _SECRET, None),
}


# --- actions ---------------------------------------------------------------------


def _partial(value: str) -> str:
    """Keep the last 4 characters, star the rest (all of a short value)."""
    if len(value) <= 4:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


def _hasher(key: bytes) -> Callable[[str], str]:
    def hash_(value: str) -> str:
        # Equal values give equal hashes, so they still correlate; without the
        # key nobody can test a guess against them.
        return "h:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:12]

    return hash_


class _Rule:
    """One compiled rule and the counter it adds to."""

    __slots__ = ("action", "check", "counts", "name", "pattern", "valid")

    def __init__(self, name: str, rule: RedactRule, key: bytes, counts: dict[str, int]) -> None:
        self.name = name
        self.counts = counts
        counts.setdefault(name, 0)
        if rule.match in BUILTINS:
            self.check, self.pattern, self.valid = BUILTINS[rule.match]
        else:
            self.check, self.valid = _always, None
            self.pattern = compile_pattern(rule.match)
        self.action: Callable[[str], str] = {
            "mask": lambda _v: MASK,
            "partial": _partial,
            "hash": _hasher(key),
        }[rule.action]

    def _replace(self, m: Any) -> str:
        whole: str = m.group(0)
        if not whole:
            return whole  # an empty match (`.*` at the end) has nothing to hide
        i = m.lastindex or 0  # the capture group that matched (the one when there is one)
        value = m.group(i)
        if not value or (self.valid is not None and not self.valid(value)):
            return whole
        self.counts[self.name] += 1
        if i == 0:
            return self.action(value)
        start = m.start()
        return whole[: m.start(i) - start] + self.action(value) + whole[m.end(i) - start :]

    def text(self, text: str) -> str:
        if not self.check(text):
            return text
        return str(self.pattern.sub(self._replace, text))


def rule_names(rules: tuple[RedactRule, ...]) -> list[str]:
    """The `rule` label of each rule: its `name`, the built-in's name, or `regex[i]`."""
    return [
        r.name or (r.match if r.match in BUILTINS else f"regex[{i}]") for i, r in enumerate(rules)
    ]


class Redactor:
    """The configured rules, applied to batches of records in place."""

    def __init__(self, rules: tuple[RedactRule, ...], key: bytes, counts: dict[str, int]) -> None:
        """`counts` (rule -> values replaced) outlives a reload's new Redactor."""
        self.rules = [
            _Rule(name, rule, key, counts)
            for name, rule in zip(rule_names(rules), rules, strict=True)
        ]

    def text(self, text: str) -> str:
        """`text` with every rule applied in order."""
        for rule in self.rules:
            text = rule.text(text)
        return text

    def apply(self, recs: list[Record]) -> None:
        """Redact message, structured-data values and field values of each record."""
        text = self.text
        for rec in recs:
            rec.message = text(rec.message)
            sd = rec.structured_data
            if sd:
                for params in sd.values():
                    for name, value in params.items():
                        params[name] = (
                            text(value) if isinstance(value, str) else [text(v) for v in value]
                        )
            if rec.fields:
                self._fields(rec.fields, 0)

    def _fields(self, obj: dict[str, Any] | list[Any], depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        items: list[tuple[Any, Any]] = list(
            obj.items() if isinstance(obj, dict) else enumerate(obj)
        )
        for k, v in items:
            if isinstance(v, str):
                obj[k] = self.text(v)
            elif isinstance(v, dict | list):
                self._fields(v, depth + 1)


def load_key(key_file: str | None, persist_dir: str | None) -> tuple[bytes, str]:
    """The HMAC key for `action: hash` and where it came from: the file
    `parsing.redact_key_file`; else `redact.key` in `store.persist_dir`
    (made once, random, mode 0600, and kept, so hashes match across restarts);
    else a random key for this run only. OSError when a file cannot be used."""
    if key_file is not None:
        with open(key_file, "rb") as f:
            key = f.read().strip()
        if not key:
            raise OSError(f"{key_file} is empty")
        return key, key_file
    if persist_dir is None:
        return os.urandom(32), "a random key for this run"
    path = os.path.join(persist_dir, KEY_FILE)
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
        if key:
            return key, path
    except FileNotFoundError:
        pass
    os.makedirs(persist_dir, exist_ok=True)
    key = os.urandom(32).hex().encode()
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
    return key, path
