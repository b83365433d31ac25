"""RFC 5424: header, TIMESTAMP, STRUCTURED-DATA and MSG, as tables of real
lines (RFC 5424 §6.5 examples first) and a round trip of generated messages."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.parse import parse_syslog
from collector.record import LEVELS, ParseOptions, Record, record_to_dict
from collector.rfc5424 import split_structured_data

# Receipt time for every case: 2026-01-02T03:04:05.5Z; a TTL of 100 years so
# the RFC's 2003 examples keep their own time (clock skew is tested apart).
NOW = 1767323045_500000
OPTS = ParseOptions(ttl_us=100 * 365 * 86400 * 1_000_000)
SENDER = "192.0.2.7"


def parsed(data: bytes, opts: ParseOptions = OPTS) -> dict[str, Any]:
    out = record_to_dict(parse_syslog(data, NOW, SENDER, opts), "x")
    del out["id"], out["received_at"]
    return out


def subset(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    return {k: got[k] for k in want}


HEADER_CASES = [
    pytest.param(
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
        {
            "timestamp": "2003-10-11T22:14:15.003000Z",
            "host": "mymachine.example.com",
            "service": "su",
            "procid": None,
            "msgid": "ID47",
            "facility": "auth",
            "level": "crit",
            "message": "'su root' failed for lonvick on /dev/pts/8",
            "structured_data": {},
            "format": "rfc5424",
        },
        id="rfc-example-1-bom-removed",
    ),
    pytest.param(
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        {
            "timestamp": "2003-08-24T12:14:15.000003Z",
            "host": "192.0.2.1",
            "service": "myproc",
            "procid": "8710",
            "msgid": None,
            "facility": "local4",
            "level": "notice",
            "message": "%% It's time to make the do-nuts.",
        },
        id="rfc-example-2-offset-and-microseconds",
    ),
    pytest.param(
        b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] \xef\xbb\xbfAn application event log entry...',
        {
            "service": "evntslog",
            "message": "An application event log entry...",
            "structured_data": {
                "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}
            },
        },
        id="rfc-example-3-sd-and-msg",
    ),
    pytest.param(
        b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]',
        {
            "message": "",
            "structured_data": {
                "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
                "examplePriority@32473": {"class": "high"},
            },
        },
        id="rfc-example-4-two-elements-no-msg",
    ),
    pytest.param(
        b'<14>1 2026-01-02T03:04:00Z h app 1 M [a x="1"][b y="2" z="3"][c@123 w="4"] text',
        {
            "structured_data": {
                "a": {"x": "1"},
                "b": {"y": "2", "z": "3"},
                "c@123": {"w": "4"},
            },
            "message": "text",
        },
        id="three-sd-elements",
    ),
    pytest.param(
        b"<0>1 - - - - - -",
        {
            "timestamp": "2026-01-02T03:04:05.500000Z",
            "host": SENDER,
            "service": None,
            "procid": None,
            "msgid": None,
            "facility": "kern",
            "level": "emerg",
            "message": "",
            "structured_data": {},
            "fields": {},
            "format": "rfc5424",
        },
        id="minimal-all-nil",
    ),
    pytest.param(
        b"<191>1 - - - - - - hello",
        {"facility": "local7", "level": "debug", "message": "hello", "host": SENDER},
        id="nil-everywhere-with-msg",
    ),
    pytest.param(
        b"<13>1 - host app - - - msg",
        {"timestamp": "2026-01-02T03:04:05.500000Z", "host": "host", "message": "msg"},
        id="nil-timestamp-gets-receipt-time",
    ),
    pytest.param(
        b"<13>1 - - - - -",
        {"message": "", "structured_data": {}, "format": "rfc5424"},
        id="sd-field-missing-after-msgid",
    ),
    pytest.param(
        b"<13>1 2026-01-02T03:04:00Z host app 123 ID - text",
        {"message": "text", "structured_data": {}, "procid": "123", "msgid": "ID"},
        id="nil-sd-then-msg",
    ),
    pytest.param(
        b"<13>1 2026-01-02T03:04:00Z host app 123 ID text goes here",
        {"message": "text goes here", "structured_data": {}, "format": "rfc5424"},
        id="sd-omitted-entirely-rest-is-msg",
    ),
    pytest.param(
        b"<13>1 2026-01-02T03:04:00Z host app 123 ID - [not sd] really",
        {"message": "[not sd] really", "structured_data": {}},
        id="msg-starting-with-bracket-after-nil-sd-stays-msg",
    ),
    pytest.param(
        b'<13>1 2026-01-02T03:04:00Z host app 123 ID [broken x=1] text "quoted"',
        {"message": '[broken x=1] text "quoted"', "structured_data": {}},
        id="malformed-sd-kept-as-msg",
    ),
    pytest.param(
        b"<13>1 2026-01-02T03:04:00Z host app - - -",
        {"message": "", "structured_data": {}},
        id="empty-msg-is-empty-string",
    ),
    pytest.param(
        b"<13>1 2026-01-02T03:04:00Z host app - - - \xef\xbb\xbf",
        {"message": ""},
        id="bom-only-msg-is-empty",
    ),
    pytest.param(
        b"<13>1 2026-01-02T03:04:00Z host app - - - caf\xe9 \xff\xfe ok",
        {"message": "caf\ufffd \ufffd\ufffd ok", "format": "rfc5424"},
        id="invalid-utf8-replaced",
    ),
    pytest.param(
        b"<13>1 2026-01-02T03:04:00Z h\xffst app - - - m",
        {"host": "h\ufffdst", "message": "m"},
        id="invalid-utf8-in-header",
    ),
    pytest.param(
        b"<13>1 2026-01-02T03:04:00Z host app - - - \xef\xbb\xbfpr\xc3\xbcfen \xf0\x9f\x98\x80",
        {"message": "pr\u00fcfen \U0001f600"},
        id="utf8-msg-with-bom",
    ),
    pytest.param(
        b"<13>1 2026-02-30T03:04:00Z host app - - - m",
        {
            "timestamp": "2026-01-02T03:04:05.500000Z",
            "fields": {"invalid_timestamp": "2026-02-30T03:04:00Z"},
            "format": "rfc5424",
        },
        id="impossible-date-gets-receipt-time-and-says-so",
    ),
    pytest.param(
        b"<13>1 yesterday host app - - - m",
        {"timestamp": "2026-01-02T03:04:05.500000Z", "fields": {"invalid_timestamp": "yesterday"}},
        id="garbage-timestamp-gets-receipt-time",
    ),
    pytest.param(
        b"<13>2 2026-01-02T03:04:00Z host app - - - m",
        {"format": "rfc3164", "message": "2 2026-01-02T03:04:00Z host app - - - m"},
        id="unknown-version-is-not-5424",
    ),
    pytest.param(
        b"<13>1  2026-01-02T03:04:00Z host app - - - m",
        {"format": "rfc3164"},
        id="double-space-is-not-5424",
    ),
    pytest.param(
        b"<13>1 2026-01-02T03:04:00Z host app - - - m   with  spaces  ",
        {"message": "m   with  spaces  "},
        id="msg-whitespace-kept",
    ),
]


@pytest.mark.parametrize(("data", "want"), HEADER_CASES)
def test_rfc5424_lines_parse_to_the_contract_record(data: bytes, want: dict[str, Any]) -> None:
    assert subset(parsed(data), want) == want


SD_CASES = [
    pytest.param(r'[a x="q\"uote"]', {"a": {"x": 'q"uote'}}, id="escaped-quote"),
    pytest.param(r'[a x="back\\slash"]', {"a": {"x": "back\\slash"}}, id="escaped-backslash"),
    pytest.param(r'[a x="close\]bracket"]', {"a": {"x": "close]bracket"}}, id="escaped-bracket"),
    pytest.param(r'[a x="new\nline"]', {"a": {"x": "new\\nline"}}, id="other-escape-kept"),
    pytest.param(r'[a x="ends\\"]', {"a": {"x": "ends\\"}}, id="value-ends-in-escaped-backslash"),
    pytest.param(r'[a x="\\\""]', {"a": {"x": '\\"'}}, id="backslash-then-quote"),
    pytest.param('[a x="a]b" y="c"]', {"a": {"x": "a]b", "y": "c"}}, id="bracket-inside-quotes"),
    pytest.param('[a x=""]', {"a": {"x": ""}}, id="empty-value"),
    pytest.param('[a x="with space"]', {"a": {"x": "with space"}}, id="space-in-value"),
    pytest.param("[exampleSDID@32473]", {"exampleSDID@32473": {}}, id="pen-sd-id-without-params"),
    pytest.param('[a][b x="1"]', {"a": {}, "b": {"x": "1"}}, id="element-without-params-first"),
    pytest.param('[b x="1"][a]', {"b": {"x": "1"}, "a": {}}, id="element-without-params-last"),
    pytest.param(
        '[origin ip="10.0.0.1" ip="10.0.0.2" ip="10.0.0.3"]',
        {"origin": {"ip": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}},
        id="repeated-param-keeps-all-values",
    ),
    pytest.param('[a x="1" x="1"]', {"a": {"x": ["1", "1"]}}, id="repeated-equal-values-kept"),
    pytest.param('[a x="1"][a y="2"]', {"a": {"x": "1", "y": "2"}}, id="repeated-sd-id-merged"),
    pytest.param(
        '[a x="caf\u00e9 \u65e5\u672c"]', {"a": {"x": "caf\u00e9 \u65e5\u672c"}}, id="utf8-value"
    ),
    pytest.param(r'[a\b x="1"]', {"a\\b": {"x": "1"}}, id="backslash-in-sd-id-kept-as-sent"),
    pytest.param(
        r'[a y\z="\"" w="]"]', {"a": {"y\\z": '"', "w": "]"}}, id="backslash-in-param-name"
    ),
    pytest.param(
        r'[a x="\\\"\]\n"][b y="2"]',
        {"a": {"x": '\\"]\\n'}, "b": {"y": "2"}},
        id="every-escape-in-one-value",
    ),
]


@pytest.mark.parametrize(("sd", "want"), SD_CASES)
def test_structured_data_is_unescaped_and_grouped(sd: str, want: dict[str, Any]) -> None:
    got = parsed(f"<13>1 2026-01-02T03:04:00Z h a - - {sd} the msg".encode())
    assert got["structured_data"] == want
    assert got["message"] == "the msg"
    assert parsed(f"<13>1 2026-01-02T03:04:00Z h a - - {sd}".encode())["message"] == ""
    # A NUL in MSG forces the other way of handling escaped quotes: same result,
    # also when MSG ends in a backslash.
    got = parsed(f"<13>1 2026-01-02T03:04:00Z h a - - {sd} q\x00\\".encode())
    assert (got["structured_data"], got["message"]) == (want, "q\x00\\")
    got = parsed(f'<13>1 2026-01-02T03:04:00Z h a - - {sd} \\" q\x00'.encode())
    assert got["structured_data"] == want
    assert got["message"] == '\\" q\x00'


@pytest.mark.parametrize(
    "rest",
    [
        pytest.param('[a x="unterminated', id="unterminated-value"),
        pytest.param('[a x="1"', id="unclosed-element"),
        pytest.param('[a x="1"]"', id="quote-after-element"),
        pytest.param("[a x=1]", id="unquoted-value"),
        pytest.param('[a b c="1"]', id="space-in-param-name"),
        pytest.param('[a x="1"]text', id="no-space-before-msg"),
        pytest.param("[]", id="empty-sd-id"),
        pytest.param('[a x="1"][', id="dangling-open"),
        pytest.param(r'[a x="escaped quote at end\"]', id="escaped-closing-quote"),
        pytest.param('[a x="1"[b y="2"]', id="element-not-closed-before-next"),
        pytest.param('[a =""]', id="empty-param-name"),
        pytest.param('[a x="1" ="2"]', id="second-param-without-name"),
    ],
)
def test_malformed_structured_data_is_refused(rest: str) -> None:
    assert split_structured_data(rest) is None
    got = parsed(f"<13>1 2026-01-02T03:04:00Z h a - - {rest}".encode())
    assert got["structured_data"] == {}
    assert got["message"] == rest  # kept, as MSG, not lost


def test_structured_data_hands_back_the_msg_after_it_quotes_and_all() -> None:
    rest = '[a x="1" y="a \\" b"][b] he said "hi" [x]'
    found = split_structured_data(rest)
    assert found is not None
    sd, msg = found
    assert msg == 'he said "hi" [x]'
    assert sd == {"a": {"x": "1", "y": 'a " b'}, "b": {}}
    assert split_structured_data('[a x="1"]') == ({"a": {"x": "1"}}, "")
    assert split_structured_data('[a x="1"] ') == ({"a": {"x": "1"}}, "")
    assert split_structured_data("[a] [b]") == ({"a": {}}, "[b]")


# --- generated messages -------------------------------------------------------

_PRINTUSASCII = st.characters(min_codepoint=33, max_codepoint=126)
_NAME = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='= ]"'),
    min_size=1,
    max_size=32,
)
_FIELD = st.one_of(st.just("-"), st.text(_PRINTUSASCII, min_size=1, max_size=48))
# Values lean on the characters the SD reader treats specially: quotes,
# backslashes, brackets, and the NUL/SOH it borrows when hiding escapes.
_VALUE = st.text(
    st.one_of(st.sampled_from('"\\]= [\x00\x01'), st.characters(exclude_categories=("Cs",))),
    max_size=30,
)
_SD = st.dictionaries(
    _NAME, st.dictionaries(_NAME, st.lists(_VALUE, min_size=1, max_size=3), max_size=4), max_size=3
)
_TIMES = st.datetimes(
    min_value=dt.datetime(1971, 1, 1),
    max_value=dt.datetime(2026, 1, 1),
    timezones=st.just(dt.timezone.utc),
)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


@settings(max_examples=300, deadline=None)
@given(
    pri=st.integers(0, 191),
    when=_TIMES,
    host=_FIELD,
    app=_FIELD,
    procid=_FIELD,
    msgid=_FIELD.map(lambda s: s[:32]),
    sd=_SD,
    msg=st.one_of(st.none(), st.text(st.characters(exclude_categories=("Cs",)), max_size=60)),
)
def test_generated_rfc5424_messages_parse_back_to_their_fields(
    pri: int,
    when: dt.datetime,
    host: str,
    app: str,
    procid: str,
    msgid: str,
    sd: dict[str, dict[str, list[str]]],
    msg: str | None,
) -> None:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    sd_text = "".join(
        "[" + sd_id + "".join(f' {k}="{_escape(v)}"' for k, vs in ps.items() for v in vs) + "]"
        for sd_id, ps in sd.items()
    )
    line = f"<{pri}>1 {stamp} {host} {app} {procid} {msgid} {sd_text or '-'}"
    if msg is not None:
        line += " \ufeff" + msg
    rec: Record = parse_syslog(line.encode(), NOW, SENDER, OPTS)
    assert rec.format == "rfc5424"
    assert rec.timestamp == (
        when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    ) // dt.timedelta(microseconds=1)
    assert rec.host == (SENDER if host == "-" else host)
    assert rec.service == (None if app == "-" else app)
    assert rec.procid == (None if procid == "-" else procid)
    assert rec.msgid == (None if msgid == "-" else msgid)
    assert (rec.facility, LEVELS[rec.level]) == (pri >> 3, LEVELS[pri & 7])
    want_sd = {
        k: {n: vs[0] if len(vs) == 1 else vs for n, vs in ps.items()} for k, ps in sd.items()
    }
    assert (rec.structured_data or {}) == want_sd
    assert rec.message == (msg or "")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_5424_header_never_raise(tail: bytes) -> None:
    rec = parse_syslog(b"<13>1 2026-01-02T03:04:00Z h a - - " + tail, NOW, SENDER, OPTS)
    assert rec.format == "rfc5424"
    assert isinstance(rec.message, str)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='[]"\\= ax1', max_size=40))
def test_structured_data_splitting_never_raises_on_bracket_soup(rest: str) -> None:
    found = split_structured_data("[" + rest)
    if found is not None:
        sd, msg = found
        assert ("[" + rest).endswith(msg)
        assert all(isinstance(v, dict) for v in sd.values())


def test_a_repeated_sd_shape_is_read_the_same_from_the_segment_cache() -> None:
    shape = '[origin ip="{0}" software="{1}"][meta sequenceId="{2}"][x@1][y z="{3}"]'
    first = shape.format("10.0.0.1", "rsyslogd", "1", "a")
    second = shape.format("10.0.0.2", 'say \\"hi\\"', "2", "b\\]c")
    want_first = {
        "origin": {"ip": "10.0.0.1", "software": "rsyslogd"},
        "meta": {"sequenceId": "1"},
        "x@1": {},
        "y": {"z": "a"},
    }
    want_second = {
        "origin": {"ip": "10.0.0.2", "software": 'say "hi"'},
        "meta": {"sequenceId": "2"},
        "x@1": {},
        "y": {"z": "b]c"},
    }
    for _ in range(2):
        assert split_structured_data(first + " m1") == (want_first, "m1")
        assert split_structured_data(second + " m2") == (want_second, "m2")
        assert split_structured_data(second) == (want_second, "")
    # Repeated names keep their lists when read from cached segments too.
    rep = '[a x="1" x="2"]'
    assert split_structured_data(rep + " m") == ({"a": {"x": ["1", "2"]}}, "m")
    assert split_structured_data(rep + " m") == ({"a": {"x": ["1", "2"]}}, "m")


# A slow, obviously-right reading of §6.3 as one regular expression: the
# oracle the fast reader is compared with.
_REF_NAME = r'[^ \]"=]+'
_REF_VALUE = r'[^"\\]*(?:\\.[^"\\]*)*'
_REF_ELEMENTS = re.compile(rf'(?:\[{_REF_NAME}(?: {_REF_NAME}="{_REF_VALUE}")*\])+', re.DOTALL)
_REF_TOKENS = re.compile(rf'\[({_REF_NAME})|({_REF_NAME})="({_REF_VALUE})"', re.DOTALL)
_REF_ESCAPE = re.compile(r'\\(["\\\]])')


def _reference_sd(rest: str) -> tuple[dict[str, dict[str, Any]], str] | None:
    m = _REF_ELEMENTS.match(rest)
    if m is None or not (m.end() == len(rest) or rest[m.end()] == " "):
        return None
    out: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {}
    for sd_id, name, value in _REF_TOKENS.findall(m.group()):
        if sd_id:
            params = out.setdefault(sd_id, {})
            continue
        value = _REF_ESCAPE.sub(r"\1", value)
        old = params.get(name)
        params[name] = (
            value if old is None else [*old, value] if isinstance(old, list) else [old, value]
        )
    return out, rest[m.end() + 1 :]


_SD_PIECES = st.sampled_from(
    [
        "[",
        "[a",
        "[b@1",
        "[c\\d",
        "]",
        " ",
        "x=",
        "y\\=",
        '"',
        "v",
        "\\",
        '\\"',
        "\\]",
        "\\\\",
        "=",
        "\x00",
        "\x01",
        "m",
    ]
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_SD_PIECES, min_size=1, max_size=16))
def test_structured_data_agrees_with_a_regex_reading_of_the_abnf(pieces: list[str]) -> None:
    rest = "[" + "".join(pieces)
    assert split_structured_data(rest) == _reference_sd(rest)
    assert split_structured_data(rest, join_escaped=True) == _reference_sd(rest)
