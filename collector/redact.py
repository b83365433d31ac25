"""Redaction stage: parse -> *redact* -> store, in place, one batch at a time.

Rules run in order over each record's message, structured-data values and
field values, before the sink stores, logs or forwards anything. A batch's
texts are joined (NUL between them) and each rule scans that one string: a
rule that finds nothing costs one C-speed scan per batch, not a call per text.
Built-ins start at a literal or a narrow class (`@`, `:`, a digit) and check
candidates in Python (octets, Luhn, ipaddress); custom patterns run on RE2,
whose matching time is linear in the text. Pure: the HMAC key is an argument.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import ipaddress
import itertools
import os
import re
from collections.abc import Callable
from typing import Any

import re2

from collector.config import RedactRule
from collector.configvalues import compile_linear
from collector.record import Record

MASK = "[REDACTED]"
KEY_FILE = "redact.key"  # in store.persist_dir: the hash key made once and kept
MAX_DEPTH = 32  # nested field values deeper than this are left alone
SEP = "\0"  # between a batch's texts: no built-in pattern matches it

Span = tuple[int, int]
Finder = Callable[[str], list[Span]]


# --- built-ins: each finds the spans to replace in a text ------------------------

_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")


def _ipv4(text: str) -> list[Span]:
    out = []
    n = len(text)
    for m in _IPV4.finditer(text):
        s, e = m.span()
        if s and (text[s - 1] in _WORD or text[s - 1] == "."):
            continue  # inside a longer word or dotted number
        if e < n and (text[e] in _WORD or (text[e] == "." and e + 1 < n and text[e + 1].isdigit())):
            continue  # 1.2.3.4.5, 1.2.3.4a
        if all(len(o) == 1 or (o[0] != "0" and int(o) < 256) for o in m[0].split(".")):
            out.append((s, e))
    return out


# A colon run no timestamp has: `::`, or three hex groups between colons.
_IPV6_HINT = re.compile(r"::|:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def _ipv6(text: str) -> list[Span]:
    out: list[Span] = []
    end = 0
    for m in _IPV6_HINT.finditer(text):
        if m.start() < end:
            continue  # inside the address just found
        s, e = m.start(), m.end()
        while s and text[s - 1] in _IPV6_CHARS:
            s -= 1
        while e < len(text) and text[e] in _IPV6_CHARS:
            e += 1
        end = e
        cand = text[s:e].rstrip(".:") if not text[s:e].endswith("::") else text[s:e]
        if s and text[s - 1] in _WORD:
            continue
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        out.append((s, s + len(cand)))
    return out


_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")
_EMAIL_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")


def _email(text: str) -> list[Span]:
    out = []
    for m in _EMAIL_DOMAIN.finditer(text):
        s = at = m.start()
        while s and at - s < 64 and text[s - 1] in _EMAIL_LOCAL:
            s -= 1
        if s < at:
            out.append((s, m.end()))
    return out


# 13 to 19 digits in a row, or in groups of four split by a space or a dash.
_CARD = re.compile(r"\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{1,7}")


def _luhn(value: str) -> bool:
    digits = [int(c) for c in value if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(text: str) -> list[Span]:
    out = []
    for m in _CARD.finditer(text):
        s, e = m.span()
        if (s and (text[s - 1].isdigit() or text[s - 1] == "-")) or (
            e < len(text) and text[e].isdigit()
        ):
            continue
        if _luhn(m[0]):
            out.append((s, e))
    return out


# Keywords found with str.find in the lower-cased text (same length, checked;
# C speed, where a regex alternation would be tried at every position), then
# the rest matched right there; values are taken from the original text:
# `password=...`, `token: "..."`, `Authorization: Bearer ...`.
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "api-key",
                 "access_key", "accesskey", "access-key")  # fmt: skip
_SECRET_VALUE = re.compile(r"[ \t]{0,4}[=:][ \t]{0,4}\"?([^\s\"'&,;\0]{1,512})")
_BEARER = re.compile(r"authorization:[ \t]{0,4}bearer[ \t]{1,4}([^\s\"'\0]{1,1000})")
_AWS_KEY = re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}")


def _secret(text: str) -> list[Span]:
    out = []
    low = text.lower()
    if len(low) != len(text):  # rare: a character whose lower case is longer
        low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    for word in _SECRET_WORDS:
        at = low.find(word)
        while at != -1:
            end = at + len(word)
            if not (at and low[at - 1].isalnum()):
                m = _SECRET_VALUE.match(low, end)
                if m is not None:
                    out.append(m.span(1))
            at = low.find(word, end)
    if "bearer" in low:
        out += [m.span(1) for m in _BEARER.finditer(low)]
    if "AKIA" in text or "ASIA" in text:
        for m in _AWS_KEY.finditer(text):
            s, e = m.span()
            if not (s and text[s - 1] in _WORD) and not (e < len(text) and text[e] in _WORD):
                out.append((s, e))
    return sorted(out)


BUILTINS: dict[str, Finder] = {
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "email": _email,
    "card": _card,
    "secret": _secret,
}


def compile_pattern(text: str) -> Finder:
    """A custom rule (an RE2 pattern) as a finder: each match, or its capture
    group (the last one that matched) when it has groups. Empty matches are skipped."""
    pattern = compile_linear(text)

    def find(s: str) -> list[Span]:
        out = []
        for m in pattern.finditer(s):
            i = m.lastindex or 0
            start, end = m.span(i)
            if end > start:
                out.append((start, end))
        return out

    return find


# --- the fast path: every built-in in one RE2 scan of the batch -----------------
#
# RE2 runs all the candidates as one automaton over the batch's bytes (when
# the batch is ASCII, byte and character offsets agree), so the text is read
# once whatever the number of rules; Python sees the candidates only. The
# finders above are the same rules one at a time: the path for other text.

_O = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# No counted repetition beyond a few: it multiplies the automaton's states.
CANDIDATES: dict[str, str] = {
    "ipv4": rf"{_O}(?:\.{_O}){{3}}",
    "ipv6": r"[0-9A-Fa-f:.]*(?:::|:[0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+:)[0-9A-Fa-f:.]*",
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
    "card": r"[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{1,7}",
    "secret": r"(?i:(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)[ \t]*[=:]"
    r"[ \t]*\"?([^\s\"'&,;\x00]+)|authorization:[ \t]*bearer[ \t]+([^\s\"'\x00]+))"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}",
}


def _check_ipv4(text: str, s: int, e: int) -> Span | None:
    if (s and (text[s - 1] in _WORD or text[s - 1] == ".")) or (
        e < len(text) and (text[e] in _WORD or (text[e] == "." and text[e + 1 : e + 2].isdigit()))
    ):
        return None
    return s, e


def _check_ipv6(text: str, s: int, e: int) -> Span | None:
    found = _ipv6(text[max(0, s - 1) : e + 1])
    if not found:
        return None
    base = max(0, s - 1)
    return base + found[0][0], base + found[0][1]


def _check_email(text: str, s: int, e: int) -> Span | None:
    return s, e


def _check_card(text: str, s: int, e: int) -> Span | None:
    if (s and (text[s - 1].isdigit() or text[s - 1] == "-")) or (
        e < len(text) and text[e].isdigit()
    ):
        return None
    return (s, e) if _luhn(text[s:e]) else None


def _check_secret(text: str, s: int, e: int) -> Span | None:
    if text[s : s + 4] in ("AKIA", "ASIA") and (
        (s and text[s - 1] in _WORD) or (e < len(text) and text[e] in _WORD)
    ):
        return None
    return s, e


CHECKS: dict[str, Callable[[str, int, int], Span | None]] = {
    "ipv4": _check_ipv4,
    "ipv6": _check_ipv6,
    "email": _check_email,
    "card": _check_card,
    "secret": _check_secret,
}


class _Scan:
    """The built-in rules of a Redactor as one RE2 pattern: which groups
    belong to which rule, and the spans each rule should replace."""

    def __init__(self, names: list[str]) -> None:
        parts, self.groups = [], []
        g = 1
        for name in names:
            cand = CANDIDATES[name]
            inner = compile_linear(cand).groups
            parts.append(f"({cand})")
            self.groups.append((g, tuple(range(g + 1, g + 1 + inner)), CHECKS[name]))
            g += 1 + inner
        self.match = compile_linear("|".join(parts).encode())._regexp.Match
        self.unanchored = re2._Anchor.UNANCHORED

    def spans(self, text: str, data: bytes) -> list[list[Span]]:
        """Per rule, the spans to replace in `text` (`data`: it, in ASCII)."""
        out: list[list[Span]] = [[] for _ in self.groups]
        match, anchor = self.match, self.unanchored
        pos, end = 0, len(data)
        while pos < end:
            spans = match(anchor, data, pos, end)
            s, e = spans[0]
            if s < 0:
                break
            k = 0
            while spans[self.groups[k][0]][0] < 0:
                k += 1
            _, inner, check = self.groups[k]
            for i in inner:  # a rule with a value group replaces the value only
                if spans[i][0] >= 0:
                    s, e = spans[i]
                    break
            found = check(text, s, e)
            if found is None:
                pos = spans[0][0] + 1  # not this one: another rule may start inside
                continue
            out[k].append(found)
            pos = max(spans[0][1], pos + 1)
        return out


# --- actions ---------------------------------------------------------------------


def _mask(_value: str) -> str:
    return MASK


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

    __slots__ = ("action", "builtin", "counts", "find", "name")

    def __init__(self, name: str, rule: RedactRule, key: bytes, counts: dict[str, int]) -> None:
        self.name = name
        self.counts = counts
        counts.setdefault(name, 0)
        self.builtin = rule.match in BUILTINS
        self.find: Finder = BUILTINS.get(rule.match) or compile_pattern(rule.match)
        self.action: Callable[[str], str] = {
            "mask": _mask,
            "partial": _partial,
            "hash": _hasher(key),
        }[rule.action]

    def text(self, text: str) -> str:
        """`text` with this rule applied; the same object when nothing matched."""
        spans = self.find(text)
        if not spans:
            return text
        return _splice(text, [(s, e, self) for s, e in spans])


def _splice(text: str, spans: list[tuple[int, int, _Rule]]) -> str:
    """`text` with each (start, end, rule) span replaced by that rule's
    action, in order of start; a span overlapping an earlier one is skipped."""
    pieces = []
    pos = 0
    for start, end, rule in spans:
        if start < pos:
            continue
        pieces.append(text[pos:start])
        pieces.append(rule.action(text[start:end]))
        rule.counts[rule.name] += 1
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)


def rule_names(rules: tuple[RedactRule, ...]) -> list[str]:
    """The `rule` label of each rule: its `name`, the built-in's name, or `regex[i]`."""
    return [
        r.name or (r.match if r.match in BUILTINS else f"regex[{i}]") for i, r in enumerate(rules)
    ]


class Redactor:
    """The configured rules, applied to batches of records in place.

    Built-in rules run first (one combined scan; where two could match at
    one place the one listed first wins), then custom patterns in order."""

    def __init__(self, rules: tuple[RedactRule, ...], key: bytes, counts: dict[str, int]) -> None:
        """`counts` (rule -> values replaced) outlives a reload's new Redactor."""
        compiled = [
            _Rule(name, rule, key, counts)
            for name, rule in zip(rule_names(rules), rules, strict=True)
        ]
        self.builtins = [r for r in compiled if r.builtin]
        self.customs = [r for r in compiled if not r.builtin]
        self.rules = self.builtins + self.customs
        names = [rule.match for rule in rules if rule.match in BUILTINS]
        self.scan = _Scan(names) if names else None

    def text(self, text: str) -> str:
        """`text` with every rule applied (the one-text-at-a-time path)."""
        for rule in self.rules:
            text = rule.text(text)
        return text

    def apply(self, recs: list[Record]) -> None:
        """Redact message, structured-data values and field values of each
        record: the batch's texts are joined and scanned once per rule."""
        texts = [rec.message for rec in recs]
        # Where the other texts go back: (mapping or list, key).
        slots: list[tuple[Any, Any]] = []
        for rec in recs:
            if rec.structured_data:
                for params in rec.structured_data.values():
                    for name, value in params.items():
                        if isinstance(value, str):
                            slots.append((params, name))
                            texts.append(value)
                        else:
                            params[name] = value = list(value)
                            for i, v in enumerate(value):
                                slots.append((value, i))
                                texts.append(v)
            if rec.fields:
                _field_texts(rec.fields, slots, texts, 0)
        n = len(recs)
        for i, value in self._changed(texts).items():
            if i < n:
                recs[i].message = value
            else:
                where, key = slots[i - n]
                where[key] = value

    def _changed(self, texts: list[str]) -> dict[int, str]:
        """The texts a rule changed, by index, redacted."""
        n = len(texts)
        joined = SEP.join(texts)
        if joined.count(SEP) != n - 1:  # a text holds a NUL itself: one at a time
            each = (self.text(t) for t in texts)
            return {
                i: new
                for i, (old, new) in enumerate(zip(texts, each, strict=True))
                if new is not old
            }
        changed: dict[int, str] = {}
        if self.scan is not None and joined.isascii():
            per_rule = self.scan.spans(joined, joined.encode("ascii"))
            spans = sorted(
                (s, e, rule)
                for rule, found in zip(self.builtins, per_rule, strict=True)
                for s, e in found
            )
            if spans:
                # Only the texts with a span are rebuilt: find each one's text.
                starts = [0, *itertools.accumulate(len(t) + 1 for t in texts)]
                by_text: dict[int, list[tuple[int, int, _Rule]]] = {}
                for s, e, rule in spans:
                    i = bisect.bisect_right(starts, s) - 1
                    base = starts[i]
                    by_text.setdefault(i, []).append((s - base, e - base, rule))
                for i, text_spans in by_text.items():
                    changed[i] = _splice(texts[i], text_spans)
        else:
            for i, t in enumerate(texts):
                new = t
                for rule in self.builtins:
                    new = rule.text(new)
                if new is not t:
                    changed[i] = new
        if self.customs:
            current = [changed.get(i, t) for i, t in enumerate(texts)]
            done = joined = SEP.join(current)
            for rule in self.customs:
                out = rule.text(done)
                if out is not done and out.count(SEP) != n - 1:
                    # The pattern matched across two texts: one at a time.
                    out = SEP.join(rule.text(t) for t in done.split(SEP))
                done = out
            if done is not joined:
                for i, (old, new) in enumerate(zip(current, done.split(SEP), strict=True)):
                    if new != old:
                        changed[i] = new
        return changed


def _field_texts(obj: Any, slots: list[tuple[Any, Any]], texts: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in items:
        if isinstance(v, str):
            slots.append((obj, k))
            texts.append(v)
        elif isinstance(v, dict | list):
            _field_texts(v, slots, texts, depth + 1)


def key_for(
    rules: tuple[RedactRule, ...], key_file: str | None, persist_dir: str | None
) -> tuple[bytes, str]:
    """`load_key` when a rule hashes; otherwise a random key, touching no file."""
    if not any(rule.action == "hash" for rule in rules):
        return os.urandom(32), "a random key for this run"
    return load_key(key_file, persist_dir)


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
    os.makedirs(persist_dir, mode=0o700, exist_ok=True)  # as persistence makes it
    key = os.urandom(32).hex().encode()
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
    return key, path
