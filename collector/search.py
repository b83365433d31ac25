"""The search language: one string a person types -> a filter tree.

Stage: HTTP `query=` / the CLI's QUERY / the page's search box -> *tree* ->
store and tail. Pure: no I/O, no clock. `parse` raises SearchError naming the
1-based column of the problem; it never raises anything else. The tree is
plain frozen data, evaluated by `collector.matching` (`predicate` over
records, `may_match` / `word_clauses` over store summaries).

Grammar (juxtaposition is AND; OR binds tighter, as in web search, so
`host:web-1 error OR fail` is host:web-1 AND (error OR fail)):

    query   = [ and ]
    and     = or { [ "AND" ] or }
    or      = unary { "OR" unary }
    unary   = ( "-" | "NOT" ) unary | primary
    primary = "(" and ")" | '"' phrase '"' | "/" regex "/" | field | bare
    field   = NAME ( ":" values | ( ">=" | "<=" | ">" | "<" ) value )
    values  = value { "," value }     (a value: "quoted" or bare; a bare one may end in *)
    bare    = word, phrase-like run, or either with a leading and/or trailing *
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2

from collector.record import FACILITIES, LEVELS, facility_from_name, level_from_name

# Bounds: a query is typed by a person; these keep a hostile one cheap to
# parse and to run (recursion depth, terms evaluated per record, regex memory).
MAX_QUERY_CHARS = 8192
MAX_DEPTH = 32
MAX_TERMS = 200
REGEX_MAX_MEM = 8 << 20

TEXT_FIELDS = ("host", "service", "procid", "msgid", "format")
CODE_FIELDS = ("level", "facility")
FIELD_NAMES = (*TEXT_FIELDS, *CODE_FIELDS)

_SPACE = frozenset(" \t\r\n\f\v")
# A field name: the record's own fields, or `fields.`/`sd.` and a dotted path.
# Field names are case-sensitive (keys of JSON lines are).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[^\s:()\"<>=,]+)*")
_OPS = (">=", "<=", ">", "<", ":")


class SearchError(ValueError):
    """A query that does not parse; `column` is 1-based."""

    def __init__(self, what: str, column: int) -> None:
        super().__init__(f"{what} at column {column}")
        self.what = what
        self.column = column


# --- the tree ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    """`message` contains `text` (lower-cased); `start`/`end`: the match must
    begin/end at a word boundary there (only meaningful when that edge of
    `text` is a letter or digit; normalised to False otherwise).

    A word is Text(word, True, True); `time*` is Text("time", True, False);
    `*meou*` is Text("meou", False, False); a phrase has both bounds."""

    text: str
    start: bool = True
    end: bool = True

    @property
    def is_word(self) -> bool:
        return self.start and self.end and _is_word(self.text)


@dataclass(frozen=True, slots=True)
class Regex:
    """`message` matches `pattern` (RE2 syntax, case-insensitive, linear time)."""

    pattern: str


@dataclass(frozen=True, slots=True)
class Field:
    """A text field equals one of `values` or starts with one of `prefixes`
    (all lower-cased; comparison is case-insensitive). `name` is one of
    TEXT_FIELDS, `fields.PATH` or `sd.ID.PARAM`."""

    name: str
    values: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Exists:
    """The field has a value (`fields.x:*`); `-fields.x:*` is Not(Exists)."""

    name: str


@dataclass(frozen=True, slots=True)
class Codes:
    """`level` or `facility` is one of `codes` (indexes into LEVELS/FACILITIES)."""

    name: str
    codes: frozenset[int]


@dataclass(frozen=True, slots=True)
class And:
    """Every child matches; And(()) matches every record."""

    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one child matches."""

    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


Node = Text | Regex | Field | Exists | Codes | And | Or | Not
ALL: Node = And(())


def _is_word(text: str) -> bool:
    return text.isalnum()


def _and(children: list[Node]) -> Node:
    flat: list[Node] = []
    for c in children:
        flat.extend(c.children if isinstance(c, And) else (c,))
    if not flat:
        return ALL
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def _or(children: list[Node]) -> Node:
    flat: list[Node] = []
    for c in children:
        if c == ALL:
            return ALL
        flat.extend(c.children if isinstance(c, Or) else (c,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def _not(child: Node) -> Node:
    return child.child if isinstance(child, Not) else Not(child)


# --- regular expressions ---------------------------------------------------------------


def _re2_options() -> Any:
    opts = re2.Options()
    opts.case_sensitive = False
    opts.log_errors = False  # an invalid pattern is the user's 400, not a line on stderr
    opts.max_mem = REGEX_MAX_MEM
    return opts


_RE2_OPTIONS = _re2_options()


def compile_regex(pattern: str) -> Callable[[str], bool]:
    """A linear-time, case-insensitive search for `pattern` (RE2 syntax).

    Raises ValueError with RE2's reason for an invalid or too large pattern."""
    try:
        compiled = re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None
    search = compiled.search

    def matches(text: str) -> bool:
        return search(text) is not None

    return matches


# --- the parser --------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.terms = 0

    def fail(self, what: str, at: int | None = None) -> SearchError:
        return SearchError(what, (self.i if at is None else at) + 1)

    def skip_space(self) -> None:
        s, i = self.s, self.i
        while i < len(s) and s[i] in _SPACE:
            i += 1
        self.i = i

    def at_end_of_term(self, i: int) -> bool:
        return i >= len(self.s) or self.s[i] in _SPACE or self.s[i] == ")"

    def keyword(self, word: str) -> bool:
        """Whether the keyword `word` (capitals only) stands alone at the cursor."""
        j = self.i + len(word)
        return self.s.startswith(word, self.i) and (
            j >= len(self.s) or self.s[j] in _SPACE or self.s[j] in "()"
        )

    def parse(self) -> Node:
        node = self.and_(0)
        if self.i < len(self.s):  # only a stray `)` stops and_ early at depth 0
            raise self.fail("unmatched ')'")
        return node

    def and_(self, depth: int) -> Node:
        items: list[Node] = []
        while True:
            self.skip_space()
            if self.i >= len(self.s) or self.s[self.i] == ")":
                break
            if self.keyword("AND"):
                if not items:
                    raise self.fail("AND needs a term before it")
                at = self.i
                self.i += 3
                self.skip_space()
                if self.i >= len(self.s) or self.s[self.i] == ")":
                    raise self.fail("AND needs a term after it", at)
                continue
            if self.keyword("OR"):
                raise self.fail("OR needs a term before it")
            items.append(self.or_(depth))
        return _and(items) if items else ALL

    def or_(self, depth: int) -> Node:
        items = [self.unary(depth)]
        while True:
            save = self.i
            self.skip_space()
            if not self.keyword("OR"):
                self.i = save
                break
            at = self.i
            self.i += 2
            self.skip_space()
            if self.i >= len(self.s) or self.s[self.i] == ")" or self.keyword("OR"):
                raise self.fail("OR needs a term after it", at)
            if self.keyword("AND"):
                raise self.fail("AND cannot follow OR")
            items.append(self.unary(depth))
        return _or(items)

    def unary(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH}")
        at = self.i
        if self.s[self.i] == "-":
            self.i += 1
            if self.at_end_of_term(self.i):
                raise self.fail("'-' needs a term right after it", at)
            return _not(self.unary(depth + 1))
        if self.keyword("NOT"):
            self.i += 3
            self.skip_space()
            if self.at_end_of_term(self.i):
                raise self.fail("NOT needs a term after it", at)
            return _not(self.unary(depth + 1))
        return self.primary(depth)

    def primary(self, depth: int) -> Node:
        c = self.s[self.i]
        if c == "(":
            at = self.i
            self.i += 1
            self.skip_space()
            # Empty means nothing inside, not a group that matches everything
            # (`(level<=emerg)` folds to ALL and is a valid group).
            if self.i < len(self.s) and self.s[self.i] == ")":
                raise self.fail("empty parentheses", at)
            node = self.and_(depth + 1)
            if self.i >= len(self.s):
                raise self.fail("'(' is never closed", at)
            self.i += 1  # the `)`
            return node
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.fail(f"more than {MAX_TERMS} terms")
        if c == '"':
            at = self.i
            text = self.quoted()
            if not text:
                raise self.fail("empty phrase", at)
            self.end_of_term("phrase")
            return Text(text.lower(), *_bounds(text.lower(), True, True))
        if c == "/":
            return self.regex()
        m = _NAME.match(self.s, self.i)
        if m is not None and self.s.startswith(_OPS, m.end()):
            return self.field(m.group(), m.start())
        return self.bare()

    def end_of_term(self, what: str) -> None:
        if not self.at_end_of_term(self.i) and self.s[self.i] != "(":
            raise self.fail(f"expected a space after the {what}")

    def quoted(self) -> str:
        """A "..." string at the cursor; `\\"` and `\\\\` are escapes."""
        at = self.i
        s, i = self.s, self.i + 1
        out: list[str] = []
        while i < len(s):
            c = s[i]
            if c == "\\" and i + 1 < len(s) and s[i + 1] in '"\\':
                out.append(s[i + 1])
                i += 2
            elif c == '"':
                self.i = i + 1
                return "".join(out)
            else:
                out.append(c)
                i += 1
        raise self.fail("unterminated quote", at)

    def regex(self) -> Node:
        at = self.i
        s, i = self.s, self.i + 1
        out: list[str] = []
        while i < len(s):
            c = s[i]
            if c == "\\" and i + 1 < len(s):
                out.append("/" if s[i + 1] == "/" else s[i : i + 2])
                i += 2
            elif c == "/":
                break
            else:
                out.append(c)
                i += 1
        else:
            raise self.fail('unterminated regular expression (quote a path: "/var/log")', at)
        self.i = i + 1
        pattern = "".join(out)
        if not pattern:
            raise self.fail("empty regular expression", at)
        if not self.at_end_of_term(self.i):
            raise self.fail(
                'expected a space after the regular expression (quote a path: "/var/log")'
            )
        try:
            compile_regex(pattern)
        except ValueError as e:
            raise self.fail(f"bad regular expression: {e}", at) from None
        return Regex(pattern)

    def bare_run(self, stop: str) -> str:
        """Characters up to a space, a `stop` character, or a `)` that closes
        nothing opened inside the run (so `sshd(pam_unix)` stays whole)."""
        s, i = self.s, self.i
        depth = 0
        while i < len(s):
            c = s[i]
            if c in _SPACE or c in stop:
                break
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    break
                depth -= 1
            i += 1
        run = s[self.i : i]
        self.i = i
        return run

    def bare(self) -> Node:
        at = self.i
        run = self.bare_run("")
        lead = run.startswith("*")
        trail = run.endswith("*")
        core = run.strip("*")
        inner = core.find("*")
        if inner >= 0:
            raise self.fail("a * may only start or end a term", at + run.index(core) + inner)
        if not core:
            return ALL  # `*` alone: everything
        text = core.lower()
        return Text(text, *_bounds(text, not lead, not trail))

    def field(self, name: str, at: int) -> Node:
        self.i = at + len(name)
        op = next(o for o in _OPS if self.s.startswith(o, self.i))
        op_at = self.i
        self.i += len(op)
        if name not in FIELD_NAMES and not is_dotted(name):
            if name.startswith(("fields.", "sd.")) or name in ("fields", "sd"):
                raise self.fail("expected fields.KEY[.KEY...] or sd.SD-ID.PARAM", at)
            raise self.fail(
                f"unknown field {name!r}; fields are {' '.join(FIELD_NAMES)}, fields.KEY, "
                f'sd.SD-ID.PARAM (quote text that has a colon: "{name}{op}...")',
                at,
            )
        if op != ":":
            if name != "level":
                raise self.fail(f"{op} compares levels only (level{op}warning)", op_at)
            v_at = self.i
            if self.i < len(self.s) and self.s[self.i] == '"':
                value = self.quoted()
            else:
                value = self.bare_run(',"')
            if not value:
                raise self.fail(f"expected a level after {name}{op}", v_at)
            code = level_from_name(value.strip())
            if code is None:
                raise self.fail(
                    f"unknown level {value!r}; expected one of {' '.join(LEVELS)}", v_at
                )
            self.end_of_term("level")
            # Severity codes run 0 (emerg) .. 7 (debug): "more severe" is a smaller code.
            codes = {
                ">=": range(code + 1),
                ">": range(code),
                "<=": range(code, len(LEVELS)),
                "<": range(code + 1, len(LEVELS)),
            }[op]
            return ALL if len(codes) == len(LEVELS) else Codes("level", frozenset(codes))
        items = self.values(name)
        self.end_of_term("value")
        if name in CODE_FIELDS:
            return self.codes(name, items)
        if any(v == "*" and not quoted for v, quoted, _ in items):
            return Exists(name)
        values: set[str] = set()
        prefixes: list[str] = []
        for v, quoted, _ in items:
            if not quoted and v.endswith("*"):
                prefixes.append(v[:-1].lower())
            else:
                values.add(v.lower())
        return Field(name, frozenset(values), tuple(dict.fromkeys(prefixes)))

    def values(self, name: str) -> list[tuple[str, bool, int]]:
        """value {"," value} -> (text, quoted, column index) each."""
        items: list[tuple[str, bool, int]] = []
        while True:
            v_at = self.i
            if self.i < len(self.s) and self.s[self.i] == '"':
                items.append((self.quoted(), True, v_at))
            else:
                v = self.bare_run(',"')
                if not v:
                    raise self.fail(f"expected a value after {name}:", v_at)
                if "*" in v[:-1]:
                    raise self.fail("a * may only end a value (host:web-*)", v_at + v.index("*"))
                items.append((v, False, v_at))
            if self.i < len(self.s) and self.s[self.i] == ",":
                self.i += 1
                continue
            return items

    def codes(self, name: str, items: list[tuple[str, bool, int]]) -> Node:
        names = LEVELS if name == "level" else FACILITIES
        lookup = level_from_name if name == "level" else facility_from_name
        codes: set[int] = set()
        for v, quoted, v_at in items:
            if not quoted and v.endswith("*"):
                prefix = v[:-1].lower()
                hit = {c for c, n in enumerate(names) if n.startswith(prefix)}
                if not hit:
                    raise self.fail(f"no {name} starts with {prefix!r}", v_at)
                codes |= hit
                continue
            code = lookup(v)
            if code is None:
                raise self.fail(f"unknown {name} {v!r}; expected one of {' '.join(names)}", v_at)
            codes.add(code)
        if name == "level" and len(codes) == len(LEVELS):
            return ALL  # every record has a level
        return Codes(name, frozenset(codes))


def is_dotted(name: str) -> bool:
    """`fields.a.b` (at least one key) or `sd.ID.PARAM` (at least two parts)."""
    parts = name.split(".")
    if parts[0] == "fields":
        return len(parts) >= 2 and all(parts[1:])
    if parts[0] == "sd":
        return len(parts) >= 3 and all(parts[1:])
    return False


def _bounds(text: str, start: bool, end: bool) -> tuple[bool, bool]:
    # A boundary only constrains an edge that is a letter or digit: `"-v"`
    # may follow anything, since `-` can never continue a word.
    return (start and text[:1].isalnum(), end and text[-1:].isalnum())


def parse(text: str) -> Node:
    """The search language -> a filter tree. Raises SearchError (with the
    1-based column) and nothing else; an empty query matches everything."""
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(f"longer than {MAX_QUERY_CHARS} characters", MAX_QUERY_CHARS + 1)
    return _Parser(text).parse()


# --- writing a tree back ----------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unparse(node: Node) -> str:
    """A query string that parses back to `node` (canonical spelling)."""
    if isinstance(node, And):
        if not node.children:
            return "*"
        return " ".join(unparse(c) for c in node.children)  # OR binds tighter: no parentheses
    if isinstance(node, Or):
        return " OR ".join(_group(c, And) for c in node.children)
    if isinstance(node, Not):
        return "-" + _group(node.child, And, Or)
    if isinstance(node, Text):
        lead = "" if node.start or not node.text[:1].isalnum() else "*"
        trail = "" if node.end or not node.text[-1:].isalnum() else "*"
        if (lead or trail) and _bare_safe(node.text, lead=bool(lead)):
            return f"{lead}{node.text}{trail}"
        if node.is_word:
            return node.text
        if not lead and not trail:
            return _quote(node.text)
        # Wildcards with characters a bare term cannot carry: no spelling.
        raise ValueError(f"cannot write {node!r} as a query")
    if isinstance(node, Regex):
        return "/" + node.pattern.replace("/", "\\/") + "/"
    if isinstance(node, Exists):
        return f"{node.name}:*"
    if isinstance(node, Codes):
        if not node.codes:
            return f"{node.name}>emerg"  # nothing is more severe than emerg
        names = LEVELS if node.name == "level" else FACILITIES
        return f"{node.name}:" + ",".join(names[c] for c in sorted(node.codes))
    items = [_quote(v) for v in sorted(node.values)] + [f"{_value_text(p)}*" for p in node.prefixes]
    return f"{node.name}:{','.join(items)}"


def _bare_safe(text: str, lead: bool) -> bool:
    # Characters a bare run reads back as they are, whatever they follow.
    first_ok = lead or text[:1].isalnum() or text[:1] in "._@"
    return first_ok and all(c.isalnum() or c in "._-@" for c in text)


def _value_text(p: str) -> str:
    if p and all(c.isalnum() or c in "._-@/" for c in p):
        return p
    raise ValueError(f"cannot write the prefix {p!r} as a query")


def _group(node: Node, *kinds: type) -> str:
    text = unparse(node)
    return f"({text})" if isinstance(node, kinds) and node != ALL else text
