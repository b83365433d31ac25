"""The search language without sockets: every row of the language table,
the errors and their columns, and two properties: the parser raises nothing
but SearchError on any string, and a parsed query agrees with a separately
written model over random records."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.matching import may_match, predicate, word_clauses
from collector.record import FACILITIES, LEVELS, Record, record_to_dict
from collector.search import (
    ALL,
    MAX_DEPTH,
    MAX_QUERY_CHARS,
    And,
    Codes,
    Exists,
    Field,
    Not,
    Or,
    Regex,
    SearchError,
    Text,
    parse,
    unparse,
)

T0 = 1_769_774_400_000_000


def rec(**kw: Any) -> Record:
    base: dict[str, Any] = dict(
        timestamp=T0, received_at=T0, host="web-1", service="sshd", procid="42", msgid=None,
        facility=4, level=3, message="Failed password", structured_data=None, fields=None,
        format="rfc5424",
    )  # fmt: skip
    base.update(kw)
    return Record(**base)


def hits(query: str, **kw: Any) -> bool:
    return predicate(parse(query))(rec(**kw))


# --- every row of the table -----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message", "expected"),
    [
        # A word: whole word, case-insensitive; `_` and punctuation separate words.
        ("timeout", "connection_timeout: 5s", True),
        ("timeout", "read TIMEOUT after 5s", True),
        ("timeout", "timeouts: 3", False),
        ("timeout", "notimeout", False),
        ("5s", "connection_timeout: 5s", True),
        ("ünïcode", "Ünïcode text", True),
        # A bare term with other characters inside is a phrase.
        ("user_id", "bad user_id=7", True),
        ("user_id", "bad user id", False),
        ("user_id", "bad xuser_id", False),
        ("10.0.0.1", "from 10.0.0.1 port 22", True),
        ("10.0.0.1", "from 10.0.0.10 port 22", False),
        ("10.0.0.1", "from 110.0.0.1 port 22", False),
        # Wildcards: a word starting with, ending with, containing.
        ("time*", "timeouts: 3", True),
        ("time*", "overtime", False),
        ("*out", "timeout", True),
        ("*out", "outer", False),
        ("*meou*", "TIMEOUTS", True),
        ("*meou*", "time out", False),
        ("10.0.*", "from 10.0.3.4", True),
        ("10.0.*", "from 110.0.3.4", False),
        # Phrases: the words in order, the same characters between, whole words at both ends.
        ('"disk full"', "error: Disk full on /var", True),
        ('"disk full"', "disk  full", False),
        ('"disk full"', "full disk", False),
        ('"disk full"', "mydisk full", False),
        ('"disk full"', "disk fuller", False),
        ('"say \\"hi\\""', 'they say "hi" to you', True),
        ('"a\\\\b"', "path a\\b here", True),
        # Regular expressions, case-insensitive.
        ("/time(d )?out/", "it timed out", True),
        ("/time(d )?out/", "TIMEOUT", True),
        ("/time(d )?out/", "time d out", False),
        ("/^Failed/", "Failed password", True),
        ("/^password/", "Failed password", False),
        ("/a\\/b/", "x a/b y", True),
        ("/\\d{3}/", "code 500", True),
    ],
)
def test_message_terms_match_as_the_table_says(query: str, message: str, expected: bool) -> None:
    assert hits(query, message=message) is expected


@pytest.mark.parametrize(
    ("query", "fields", "expected"),
    [
        ("host:web-1", {}, True),
        ("host:WEB-1", {}, True),
        ("host:web-2", {}, False),
        ("host:web-2,web-1", {}, True),
        ("host:web-*", {}, True),
        ("host:web-*", {"host": "db-1"}, False),
        ("host:*", {"host": None}, False),
        ("-host:*", {"host": None}, True),
        ("service:sshd,cron", {}, True),
        ("service:sshd,cron", {"service": "cron"}, True),
        ("service:sshd,cron", {"service": "nginx"}, False),
        ("service:sshd(pam_unix)", {"service": "sshd(pam_unix)"}, True),
        ('service:"postfix/smtpd"', {"service": "postfix/smtpd"}, True),
        ("procid:42", {}, True),
        ("msgid:ID47", {"msgid": "ID47"}, True),
        ("msgid:ID47", {}, False),
        ("format:rfc5424", {}, True),
        ("format:json,raw", {}, False),
        ("facility:auth", {}, True),
        ("facility:local*", {"facility": 17}, True),
        ("facility:*", {"facility": None}, False),
        ("level:err", {}, True),
        ("level:error", {}, True),
        ("level:warn", {}, False),
        ("level>=warning", {"level": 4}, True),
        ("level>=warning", {"level": 0}, True),
        ("level>=warning", {"level": 5}, False),
        ("level<=info", {"level": 6}, True),
        ("level<=info", {"level": 7}, True),
        ("level<=info", {"level": 5}, False),
        ("level>err", {"level": 3}, False),
        ("level<err", {"level": 4}, True),
        ("fields.user_id:42", {"fields": {"user_id": 42}}, True),
        ("fields.user_id:42", {"fields": {"user_id": "42"}}, True),
        ("fields.user_id:42", {"fields": {"user_id": 420}}, False),
        ("fields.user_id:42", {}, False),
        ("fields.http.status:500", {"fields": {"http": {"status": 500}}}, True),
        ("fields.http.status:500", {"fields": {"http.status": 500}}, True),
        ("fields.http.status:500", {"fields": {"http": {"status": 404}}}, False),
        ("fields.ok:true", {"fields": {"ok": True}}, True),
        ("fields.tags:blue", {"fields": {"tags": ["red", "blue"]}}, True),
        ("fields.user:Bob", {"fields": {"user": "bob"}}, True),
        ("fields.user:b*", {"fields": {"user": "bob"}}, True),
        ("fields.user_id:*", {"fields": {"user_id": None}}, True),
        ("fields.user_id:*", {"fields": {"other": 1}}, False),
        ("-fields.user_id:*", {"fields": {"other": 1}}, True),
        ("-fields.user_id:*", {"fields": {"user_id": 1}}, False),
        ("sd.origin.ip:10.0.0.1", {"structured_data": {"origin": {"ip": "10.0.0.1"}}}, True),
        (
            "sd.origin.ip:10.0.0.1",
            {"structured_data": {"origin@32473": {"ip": "10.0.0.1"}}},
            False,
        ),
        (
            "sd.meta@32473.user:u7",
            {"structured_data": {"meta@32473": {"user": "u7"}}},
            True,
        ),
        ("sd.a.b.c:1", {"structured_data": {"a.b": {"c": "1"}}}, True),
        ("sd.a.b.c:1", {"structured_data": {"a": {"b.c": "1"}}}, True),
        ("sd.x.p:2", {"structured_data": {"x": {"p": ["1", "2"]}}}, True),
        ("sd.x.p:*", {"structured_data": {"x": {"q": "1"}}}, False),
    ],
)
def test_field_terms_match_as_the_table_says(
    query: str, fields: dict[str, Any], expected: bool
) -> None:
    assert hits(query, **fields) is expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("failed password", True),
        ("failed nothing", False),
        ("failed AND password", True),
        ("nothing OR password", True),
        ("nothing OR other", False),
        ("-nothing", True),
        ("-failed", False),
        ("NOT failed", False),
        ("-(nothing OR failed)", False),
        ("host:web-1 nothing OR failed", True),  # OR binds tighter: host AND (nothing OR failed)
        ("(host:web-2 nothing) OR failed", True),
        ("host:web-2 nothing OR failed", False),
        ("-service:cron level>=err password", True),
        ("--failed", True),
        ("*", True),
        ("", True),
        ("-*", False),
        ("or", False),  # lower-case `or` is a word, not the operator
    ],
)
def test_terms_combine_with_and_or_not_and_parentheses(query: str, expected: bool) -> None:
    assert hits(query) is expected


def test_the_tree_has_the_shape_stores_read() -> None:
    assert parse("timeout") == Text("timeout")
    assert parse("time*") == Text("time", True, False)
    assert parse("*meou*") == Text("meou", False, False)
    assert parse('"Disk Full"') == Text("disk full")
    assert parse("/a+/") == Regex("a+")
    assert parse("host:web-1,WEB-2") == Field("host", frozenset({"web-1", "web-2"}))
    assert parse("host:web-*") == Field("host", frozenset(), ("web-",))
    assert parse("fields.user_id:*") == Exists("fields.user_id")
    assert parse("level>=err") == Codes("level", frozenset({0, 1, 2, 3}))
    assert parse("level:*") == ALL
    assert parse("-a b") == And((Not(Text("a")), Text("b")))
    assert parse("a OR b") == Or((Text("a"), Text("b")))
    assert parse("(a OR b) OR c") == Or((Text("a"), Text("b"), Text("c")))


# --- errors name the column ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "column", "fragment"),
    [
        ('"disk full', 1, "unterminated quote"),
        ('error "disk', 7, "unterminated quote"),
        ('""', 1, "empty phrase"),
        ("/(a/", 1, "bad regular expression"),
        ("x /(a/", 3, "missing )"),
        ("/a\\1/", 1, "bad regular expression"),  # backreferences are not linear-time
        ("/unclosed", 1, "unterminated regular expression"),
        ("/var/log/syslog", 6, "quote a path"),
        ("//", 1, "empty regular expression"),
        ("(a", 1, "never closed"),
        ("a (b (c)", 3, "never closed"),
        ("a)", 2, "unmatched ')'"),
        ("()", 1, "empty parentheses"),
        ("OR a", 1, "OR needs a term before it"),
        ("a OR", 3, "OR needs a term after it"),
        ("a OR OR b", 3, "OR needs a term after it"),
        ("AND a", 1, "AND needs a term before it"),
        ("a AND", 3, "AND needs a term after it"),
        ("- a", 1, "'-' needs a term"),
        ("a -", 3, "'-' needs a term"),
        ("NOT", 1, "NOT needs a term"),
        ("ti*me", 3, "a * may only start or end"),
        ("**a*b", 4, "a * may only start or end"),
        ("nope:x", 1, "unknown field 'nope'"),
        ("a Host:x", 3, "unknown field 'Host'"),
        ("http://example.com", 1, "quote text that has a colon"),
        ("host:", 6, "expected a value after host:"),
        ("host:a,", 8, "expected a value after host:"),
        ("host:a,,b", 8, "expected a value after host:"),
        ("host:w*b", 7, "a * may only end a value"),
        ('host:"a"b', 9, "expected a space after the value"),
        ("level:bogus", 7, "unknown level 'bogus'"),
        ("level:err,bogus", 11, "unknown level 'bogus'"),
        ("level>=", 8, "expected a level"),
        ("level>=nope", 8, "unknown level"),
        ("facility:nope", 10, "unknown facility 'nope'"),
        ("facility:zz*", 10, "no facility starts with 'zz'"),
        ("host>=a", 5, "compares levels only"),
        ("sd.origin:x", 1, "sd.SD-ID.PARAM"),
        ("fields:x", 1, "fields.KEY"),
        ("fields.a..b:x", 1, "fields.KEY"),
    ],
)
def test_a_query_that_does_not_parse_names_the_column(
    query: str, column: int, fragment: str
) -> None:
    with pytest.raises(SearchError) as e:
        parse(query)
    assert e.value.column == column, str(e.value)
    assert fragment in str(e.value)
    assert str(e.value).endswith(f"at column {column}")


def test_a_hostile_query_is_refused_by_size_and_depth_not_by_a_crash() -> None:
    with pytest.raises(SearchError, match="longer than"):
        parse("a" * (MAX_QUERY_CHARS + 1))
    with pytest.raises(SearchError, match="nested deeper"):
        parse("(" * (MAX_DEPTH + 5) + "a" + ")" * (MAX_DEPTH + 5))
    with pytest.raises(SearchError, match="nested deeper"):
        parse("-" * 500 + "a")
    with pytest.raises(SearchError, match="more than"):
        parse(" ".join(f"w{i}" for i in range(1000)))


def test_a_pathological_regex_over_a_65_kb_message_is_linear() -> None:
    # (a+)+$ backtracks exponentially in Python's re on "aaa...b"; RE2 does not.
    import time

    message = "a" * 65_536 + "b"
    match = predicate(parse("/(a+)+$/ OR /(a|aa)*c/ OR /(x+x+)+y/"))
    record = rec(message=message)
    t0 = time.perf_counter()
    for _ in range(10):
        assert match(record) is False
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, elapsed


# --- what a store may skip ----------------------------------------------------------------


class FakeSummary:
    def __init__(self, words: set[str], values: dict[str, set[str]], codes: dict[str, set[int]]):
        self.words, self._values, self._codes = words, values, codes

    def may_have_word(self, word: str) -> bool:
        return word in self.words

    def values(self, name: str) -> set[str] | None:
        return self._values.get(name)

    def codes(self, name: str) -> set[int] | None:
        return self._codes.get(name)


def test_word_clauses_name_the_words_a_block_must_hold() -> None:
    assert word_clauses(parse("timeout")) == [frozenset({"timeout"})]
    assert word_clauses(parse('"Disk full"')) == [frozenset({"disk"}), frozenset({"full"})]
    assert word_clauses(parse("user_id")) == [frozenset({"user"}), frozenset({"id"})]
    assert word_clauses(parse("time*")) == []
    assert word_clauses(parse("conn.time*")) == [frozenset({"conn"})]
    assert word_clauses(parse("*x.timeout")) == [frozenset({"timeout"})]
    assert word_clauses(parse("a OR b")) == [frozenset({"a", "b"})]
    assert word_clauses(parse("a OR b*")) == []
    assert word_clauses(parse("-a")) == []
    assert word_clauses(parse("/a/ host:x b")) == [frozenset({"b"})]


def test_may_match_rules_out_only_what_summaries_prove_absent() -> None:
    s = FakeSummary({"disk", "full"}, {"host": {"web-1", "web-2"}}, {"level": {6}})
    assert may_match(parse('"disk full" host:web-*'), s)
    assert not may_match(parse('"disk empty"'), s)
    assert not may_match(parse("host:db-1"), s)
    assert may_match(parse("host:DB-1 OR disk"), s)
    assert not may_match(parse("level>=err"), s)
    assert may_match(parse("service:x"), s)  # no summary for service: cannot rule out
    assert may_match(parse("-disk"), s)
    assert may_match(parse("/nothing/"), s)


# --- properties ------------------------------------------------------------------------------

SYNTAX = st.sampled_from(
    [*'()"/\\-*:,<>= \t', "OR", "AND", "NOT", "host", "level", "fields.", "sd.", "x", "é"]
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(SYNTAX, st.text(max_size=3)), max_size=25).map("".join))
def test_the_parser_raises_nothing_but_its_own_error_on_any_string(text: str) -> None:
    try:
        tree = parse(text)
    except SearchError as e:
        column = e.column
        assert 1 <= column <= len(text) + 1
        return
    predicate(tree)(rec(message=text))  # and what parses, runs
    try:
        again = unparse(tree)
    except ValueError:
        return  # a wildcard over characters a bare term cannot spell
    assert parse(again) == tree


# A model written apart from the evaluator: terms are generated as data,
# rendered as query text, and judged here with `re` over the record's JSON shape.

VOCAB = ["disk", "full", "time", "timeout", "out", "Error", "x1", "éa"]
SEPS = [" ", "_", ".", ": ", "-", "  "]
HOSTS = ["web-1", "web-2", "db-1", "WEB-3", None]
SERVICES = ["sshd", "cron", "nginx", None]


@st.composite
def records(draw: st.DrawFn) -> Record:
    words = draw(st.lists(st.sampled_from(VOCAB), max_size=6))
    seps = draw(st.lists(st.sampled_from(SEPS), min_size=len(words), max_size=len(words)))
    message = "".join(w + s for w, s in zip(words, seps, strict=True)).strip()
    fields = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "user": st.sampled_from(["bob", "Bo", "alice"]),
                    "code": st.sampled_from([42, "42", 7, True, None]),
                    "http": st.fixed_dictionaries({"status": st.sampled_from([200, 500])}),
                },
            ),
        )
    )
    sd = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "origin": st.fixed_dictionaries({"ip": st.sampled_from(["10.0.0.1", "x"])}),
                    "meta@32473": st.fixed_dictionaries({"user": st.sampled_from(["u7", "U8"])}),
                },
            ),
        )
    )
    return rec(
        host=draw(st.sampled_from(HOSTS)),
        service=draw(st.sampled_from(SERVICES)),
        level=draw(st.integers(0, 7)),
        facility=draw(st.sampled_from([None, 0, 4, 16, 23])),
        message=message,
        fields=fields or None,
        structured_data=sd or None,
    )


Model = tuple[str, Callable[[dict[str, Any]], bool]]


def _model_text(text: str, start: bool, end: bool) -> Callable[[dict[str, Any]], bool]:
    pattern = re.escape(text.lower())
    if start and text[0].isalnum():
        pattern = r"(?<![^\W_])" + pattern
    if end and text[-1].isalnum():
        pattern += r"(?![^\W_])"
    compiled = re.compile(pattern)
    return lambda d: compiled.search(d["message"].lower()) is not None


def _path(d: dict[str, Any], name: str) -> list[str] | None:
    if name.startswith("fields."):
        obj: Any = d["fields"]
        for key in name.split(".")[1:]:
            if not isinstance(obj, dict) or key not in obj:
                return None
            obj = obj[key]
        if isinstance(obj, str):
            return [obj]
        if obj is None or isinstance(obj, bool):
            return ["null" if obj is None else str(obj).lower()]
        return [str(obj)]
    if name.startswith("sd."):
        _, sd_id, param = name.rsplit(".", 2) if name.count(".") == 2 else ("", "", "")
        v = d["structured_data"].get(sd_id, {}).get(param)
        return None if v is None else [v]
    v = d[name]
    return None if v is None else [v]


@st.composite
def leaf_terms(draw: st.DrawFn) -> Model:
    kind = draw(st.sampled_from(["word", "prefix", "suffix", "infix", "phrase", "regex", "field"]))
    if kind == "word":
        w = draw(st.sampled_from(VOCAB))
        return w.upper() if draw(st.booleans()) else w, _model_text(w, True, True)
    if kind in ("prefix", "suffix", "infix"):
        w = draw(st.sampled_from(["tim", "out", "ime", "di", "x", "é"]))
        start, end = kind != "suffix" and kind != "infix", kind != "prefix" and kind != "infix"
        text = ("" if start else "*") + w + ("" if end else "*")
        return text, _model_text(w, start, end)
    if kind == "phrase":
        a, b = draw(st.sampled_from(VOCAB)), draw(st.sampled_from(VOCAB))
        sep = draw(st.sampled_from(SEPS))
        phrase = a + sep + b
        return '"' + phrase + '"', _model_text(phrase, True, True)
    if kind == "regex":
        a = draw(st.sampled_from(VOCAB))
        compiled = re.compile(re.escape(a) + "[ _.]", re.IGNORECASE)
        return f"/{re.escape(a)}[ _.]/", lambda d: compiled.search(d["message"]) is not None
    name = draw(
        st.sampled_from(
            ["host", "service", "fields.user", "fields.code", "fields.http.status",
             "sd.origin.ip", "sd.meta@32473.user", "level", "facility"]
        )
    )  # fmt: skip
    if name == "level":
        op = draw(st.sampled_from([">=", "<=", ":"]))
        lv = draw(st.sampled_from(LEVELS))
        code = LEVELS.index(lv)
        test = {
            ">=": lambda d: LEVELS.index(d["level"]) <= code,
            "<=": lambda d: LEVELS.index(d["level"]) >= code,
            ":": lambda d: d["level"] == lv,
        }[op]
        return f"level{op}{lv}", test
    if name == "facility":
        fac = draw(st.sampled_from(["kern", "auth", "local0", "local*"]))
        if fac.endswith("*"):
            return f"facility:{fac}", lambda d: (d["facility"] or "").startswith("local")
        return f"facility:{fac}", lambda d: d["facility"] == fac
    if draw(st.booleans()):
        return f"{name}:*", lambda d: _path(d, name) is not None
    values = draw(
        st.lists(
            st.sampled_from(
                [
                    "web-1",
                    "WEB-3",
                    "web-*",
                    "sshd",
                    "bob",
                    "b*",
                    "42",
                    "500",
                    "true",
                    "10.0.0.1",
                    "u7",
                    "null",
                ]
            ),
            min_size=1,
            max_size=3,
        )
    )

    def test(d: dict[str, Any]) -> bool:
        have = _path(d, name)
        if have is None:
            return False
        for h in have:
            for v in values:
                if v.endswith("*") and h.lower().startswith(v[:-1].lower()):
                    return True
                if not v.endswith("*") and h.lower() == v.lower():
                    return True
        return False

    return f"{name}:{','.join(values)}", test


def terms(depth: int = 2) -> st.SearchStrategy[Model]:
    if depth == 0:
        return leaf_terms()
    sub = terms(depth - 1)

    def negate(m: Model) -> Model:
        text, test = m
        return f"-({text})", lambda d: not test(d)

    def all_of(ms: list[Model]) -> Model:
        return "(" + " ".join(t for t, _ in ms) + ")", lambda d: all(f(d) for _, f in ms)

    def any_of(ms: list[Model]) -> Model:
        return "(" + " OR ".join(t for t, _ in ms) + ")", lambda d: any(f(d) for _, f in ms)

    return st.one_of(
        sub,
        sub.map(negate),
        st.lists(sub, min_size=1, max_size=3).map(all_of),
        st.lists(sub, min_size=1, max_size=3).map(any_of),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms(), st.lists(records(), min_size=1, max_size=8))
def test_a_parsed_query_agrees_with_a_model_over_random_records(
    term: Model, recs: list[Record]
) -> None:
    text, model = term
    match = predicate(parse(text))
    for r in recs:
        assert match(r) is model(record_to_dict(r, "id")), (text, r)


def test_every_level_and_facility_name_is_a_term() -> None:
    for code, name in enumerate(LEVELS):
        assert parse(f"level:{name}") == Codes("level", frozenset({code}))
    for code, name in enumerate(FACILITIES):
        assert parse(f"facility:{name}") == Codes("facility", frozenset({code}))


def test_a_group_that_matches_everything_is_not_empty_parentheses() -> None:
    assert parse("(level<=emerg)") == parse("level<=emerg")
    assert parse("((level<=emerg)) sshd") == parse("sshd")
    for text in ("()", "( )", "(())", "a ( ) b"):
        with pytest.raises(SearchError, match="empty parentheses"):
            parse(text)
