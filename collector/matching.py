"""Query stage: a search tree evaluated over records and over summaries.

Pure: no I/O, no clock. `predicate` turns a tree from `search.parse` into a
function over records; `may_match` / `word_clauses` let the store skip shards
and blocks from their summaries without looking at a record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol

from collector.record import FACILITIES, LEVELS
from collector.search import (
    TEXT_FIELDS,
    And,
    Codes,
    Exists,
    Field,
    Node,
    Not,
    Or,
    Regex,
    Text,
    compile_regex,
)


def field_text(value: Any) -> str:
    """A JSON value as the text `fields.x:VALUE` compares with: strings as
    they are, the rest in their JSON spelling (`true`, `42`, `null`)."""
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is int:
        return int.__repr__(value)  # json.dumps' own spelling, without its ~10 us a call
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


_MISSING: Any = object()


def lookup_path(obj: Any, parts: list[str]) -> Any:
    """`fields.a.b`: nested keys, or a key that itself has dots (`"a.b"`)
    when no nested path matches. _MISSING when absent."""
    if not parts:
        return obj
    if not isinstance(obj, dict):
        return _MISSING
    for k in range(1, len(parts) + 1):
        key = ".".join(parts[:k])
        if key in obj:
            found = lookup_path(obj[key], parts[k:])
            if found is not _MISSING:
                return found
    return _MISSING


def field_values(rec: RecordLike, name: str) -> list[str] | None:
    """The text values of field `name` in `rec` (a list: an SD-PARAM may
    repeat, a JSON value may be an array); None when the record has none."""
    if name in TEXT_FIELDS:
        v = getattr(rec, name)
        return None if v is None else [v]
    if name == "level":
        return [LEVELS[rec.level]]
    if name == "facility":
        return None if rec.facility is None else [FACILITIES[rec.facility]]
    return extra_values(name, rec.structured_data, rec.fields)


def extra_values(name: str, structured_data: Any, fields: Any) -> list[str] | None:
    """`field_values` of a `fields.PATH` or `sd.ID.PARAM` name, from a
    record's structured data and fields (None or dicts)."""
    if name.startswith("fields."):
        found = lookup_path(fields or {}, name.split(".")[1:])
        if found is _MISSING:
            return None
        if isinstance(found, list):
            return [field_text(x) for x in found]
        return [field_text(found)]
    if name.startswith("sd.") and structured_data:
        path = name[3:]
        out: list[str] = []
        # An SD-ID and a PARAM-NAME may both contain dots: try every split.
        for k in range(len(path)):
            if path[k] != ".":
                continue
            params = structured_data.get(path[:k])
            if params is not None and path[k + 1 :] in params:
                v = params[path[k + 1 :]]
                out.extend(v if isinstance(v, list) else [v])
        return out or None
    return None


MAX_NAME_DEPTH = 8


def field_names(structured_data: Any, fields: Any) -> set[str]:
    """The names a record answers to (`fields.http.status`, `sd.origin.ip`):
    leaf paths of its fields (nested objects dotted, at most MAX_NAME_DEPTH
    deep) and every SD-PARAM."""
    names: set[str] = set()
    if fields:
        stack: list[tuple[str, Any, int]] = [("fields", fields, 0)]
        while stack:
            prefix, obj, depth = stack.pop()
            for k, v in obj.items():
                name = f"{prefix}.{k}"
                if isinstance(v, dict) and v and depth < MAX_NAME_DEPTH:
                    stack.append((name, v, depth + 1))
                else:
                    names.add(name)
    if structured_data:
        for sd_id, params in structured_data.items():
            for param in params:
                names.add(f"sd.{sd_id}.{param}")
    return names


def find_text(low: str, t: Text) -> bool:
    """Whether the lower-cased message `low` contains `t` with its boundaries."""
    needle = t.text
    i = low.find(needle)
    if i < 0 or not (t.start or t.end):
        return i >= 0
    n = len(needle)
    while i >= 0:
        if (not t.start or i == 0 or not low[i - 1].isalnum()) and (
            not t.end or i + n == len(low) or not low[i + n].isalnum()
        ):
            return True
        i = low.find(needle, i + 1)
    return False


def value_matches(node: Field, values: Iterable[str]) -> bool:
    """Whether one of a record's `values` passes a Field term."""
    for v in values:
        low = v.lower()
        if low in node.values or (node.prefixes and low.startswith(node.prefixes)):
            return True
    return False


class RecordLike(Protocol):
    """What a predicate reads: a Record, or a store's view of a stored one."""

    @property
    def message(self) -> str: ...
    @property
    def level(self) -> int: ...
    @property
    def facility(self) -> int | None: ...
    @property
    def host(self) -> str | None: ...
    @property
    def service(self) -> str | None: ...
    @property
    def procid(self) -> str | None: ...
    @property
    def msgid(self) -> str | None: ...
    @property
    def format(self) -> str: ...
    @property
    def structured_data(self) -> Any: ...
    @property
    def fields(self) -> Any: ...


Predicate = Callable[[RecordLike], bool]


def predicate(node: Node) -> Predicate:
    """A function `record -> bool` for the tree (for /tail and store scans)."""
    if isinstance(node, And):
        preds = [predicate(c) for c in node.children]
        if not preds:
            return lambda rec: True
        if len(preds) == 1:
            return preds[0]
        return lambda rec: all(p(rec) for p in preds)
    if isinstance(node, Or):
        preds = [predicate(c) for c in node.children]
        return lambda rec: any(p(rec) for p in preds)
    if isinstance(node, Not):
        inner = predicate(node.child)
        return lambda rec: not inner(rec)
    if isinstance(node, Text):
        t = node
        return lambda rec: find_text(rec.message.lower(), t)
    if isinstance(node, Regex):
        search = compile_regex(node.pattern)
        return lambda rec: search(rec.message)
    if isinstance(node, Codes):
        codes = node.codes
        if node.name == "level":
            return lambda rec: rec.level in codes
        return lambda rec: rec.facility in codes
    if isinstance(node, Exists):
        name = node.name
        return lambda rec: field_values(rec, name) is not None
    f = node
    if f.name in TEXT_FIELDS:
        attr = f.name

        def text_field(rec: RecordLike) -> bool:
            v = getattr(rec, attr)
            return v is not None and value_matches(f, (v,))

        return text_field
    return lambda rec: value_matches(f, field_values(rec, f.name) or ())


# --- what a store can skip ------------------------------------------------------------------


class Summary(Protocol):
    """What a shard or block knows about its records without reading them."""

    def may_have_word(self, word: str) -> bool:
        """False only when no message here contains `word` (lower-cased)."""

    def values(self, name: str) -> Collection[str | None] | None:
        """Every value (None for absent) of a TEXT_FIELDS field present here; None: not known."""

    def codes(self, name: str) -> Collection[int] | None:
        """Every `level`/`facility` code present here (None: not known)."""


_WORD = re.compile(r"[^\W_]+")


def text_words(t: Text) -> list[str]:
    """The whole words every message matching `t` contains: the words of its
    text, less an edge word cut by a wildcard (`time*` holds none)."""
    words = _WORD.findall(t.text)
    if not words:
        return []
    if t.text[:1].isalnum() and not t.start:
        words = words[1:]
    if words and t.text[-1:].isalnum() and not t.end:
        words = words[:-1]
    return words


def word_clauses(node: Node) -> list[frozenset[str]]:
    """Conditions on words, all of which hold for every matching record: in
    each set, the message contains at least one of the words. A block whose
    word filter has none of a set's words can be skipped."""
    if isinstance(node, Text):
        return [frozenset((w,)) for w in text_words(node)]
    if isinstance(node, And):
        return [c for child in node.children for c in word_clauses(child)]
    if isinstance(node, Or):
        alternatives: set[str] = set()
        for child in node.children:
            clauses = word_clauses(child)
            if not clauses:
                return []  # one alternative needs no word: nothing is required
            alternatives |= min(clauses, key=len)
        return [frozenset(alternatives)]
    return []


def may_match(node: Node, summary: Summary) -> bool:
    """False only when no record summarised by `summary` can match `node`."""
    if isinstance(node, And):
        return all(may_match(c, summary) for c in node.children)
    if isinstance(node, Or):
        return any(may_match(c, summary) for c in node.children)
    if isinstance(node, Text):
        return all(summary.may_have_word(w) for w in text_words(node))
    if isinstance(node, Codes):
        present = summary.codes(node.name)
        return present is None or any(c in node.codes for c in present)
    if isinstance(node, Field) and node.name in TEXT_FIELDS:
        values = summary.values(node.name)
        return values is None or value_matches(node, (v for v in values if v is not None))
    if isinstance(node, Exists) and node.name in TEXT_FIELDS:
        values = summary.values(node.name)
        return values is None or any(v is not None for v in values)
    # Not, Regex, fields.*, sd.*: a summary cannot rule them out.
    return True
