"""RFC 6587 framing: every case is fed whole, byte by byte, and in odd splits,
and must give the same frames and the same drop counts each way."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.framing import StreamFramer, line_framer, syslog_framer

Frames = list[tuple[bytes, bool]]


def _splits(data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [data]
    yield "byte by byte", [data[i : i + 1] for i in range(len(data))]
    odd, i, sizes = [], 0, [3, 1, 7, 2, 11, 5]
    while i < len(data):
        n = sizes[len(odd) % len(sizes)]
        odd.append(data[i : i + n])
        i += n
    yield "odd splits", odd


def _run(
    make: Callable[..., StreamFramer], chunks: list[bytes], max_bytes: int
) -> tuple[Frames, dict[str, int]]:
    drops: dict[str, int] = {}

    def drop(reason: str, n: int = 1) -> None:
        drops[reason] = drops.get(reason, 0) + n

    framer = make(max_bytes, drop)
    out: Frames = []
    for chunk in chunks:
        out += framer.feed(chunk)
    out += framer.eof()
    return out, drops


X64 = b"x" * 64

SYSLOG_CASES: list[tuple[str, bytes, Frames, dict[str, int]]] = [
    ("LF-delimited lines", b"<13>a\n<13>b\n", [(b"<13>a", False), (b"<13>b", False)], {}),
    ("CRLF-delimited lines", b"<13>a\r\n<13>b\r\n", [(b"<13>a", False), (b"<13>b", False)], {}),
    (
        "NUL-delimited (SysLogHandler)",
        b"<13>a\x00<13>b\x00",
        [(b"<13>a", False), (b"<13>b", False)],
        {},
    ),
    (
        "octet counted frames back to back",
        b"6 <hello7 <world!",
        [(b"<hello", False), (b"<world!", False)],
        {},
    ),
    (
        "an LF at the end inside a counted frame is stripped",
        b"7 <hello\n8 <world!\n",
        [(b"<hello", False), (b"<world!", False)],
        {},
    ),
    (
        "an LF in the middle of a counted frame is kept",
        b"12 <hello\nworld",
        [(b"<hello\nworld", False)],
        {},
    ),
    (
        "an LF after a counted frame is skipped",
        b"6 <hello\n6 <world\n",
        [(b"<hello", False), (b"<world", False)],
        {},
    ),
    (
        "counted and delimited mixed per frame",
        b"6 <hello<13>line\n4 <abc<13>z\x00",
        [(b"<hello", False), (b"<13>line", False), (b"<abc", False), (b"<13>z", False)],
        {},
    ),
    (
        "a count not followed by a PRI is a line, not a frame",
        b"500 Internal Server Error\n<13>next\n",
        [(b"500 Internal Server Error", False), (b"<13>next", False)],
        {},
    ),
    ("a count and SP at EOF are a line", b"<13>a\n42 ", [(b"<13>a", False), (b"42 ", False)], {}),
    (
        "an unterminated last line is a message",
        b"<13>a\n<13>last",
        [(b"<13>a", False), (b"<13>last", False)],
        {},
    ),
    (
        "an incomplete counted frame at EOF is dropped and counted",
        b"<13>a\n10 <abc",
        [(b"<13>a", False)],
        {"incomplete_frame": 1},
    ),
    (
        "a huge length loses that frame only",
        b"99999999999 <13>junk junk\n<13>next\n",
        [(b"<13>next", False)],
        {"bad_length": 1},
    ),
    (
        "a valid length past the cap is skipped exactly: the next frame needs no LF",
        b"70 <13>" + b"y" * 66 + b"6 <13>ok",
        [(b"<13>" + b"y" * 60, True), (b"<13>ok", False)],
        {},
    ),
    (
        "a huge length at EOF is still one bad frame",
        b"<13>a\n123456789 <junk",
        [(b"<13>a", False)],
        {"bad_length": 1},
    ),
    (
        "digits without a SP start a delimited line",
        b"2026-01-30 12:01:05 INFO up\n",
        [(b"2026-01-30 12:01:05 INFO up", False)],
        {},
    ),
    ("a leading zero is not a MSG-LEN", b"0 abc\n", [(b"0 abc", False)], {}),
    ("bare digits at EOF are a line", b"<13>a\n123", [(b"<13>a", False), (b"123", False)], {}),
    (
        "empty lines and stray delimiters are not messages",
        b"\n\n\r\n\x00<13>a\n\x00",
        [(b"<13>a", False)],
        {},
    ),
    (
        "an over-long line is cut, flagged, the rest discarded",
        b"<" + X64 + b"yyy\n<13>ok\n",
        [(b"<" + X64[:63], True), (b"<13>ok", False)],
        {},
    ),
    (
        "an over-long counted frame is cut, the rest discarded",
        b"100 <" + X64[1:] + b"z" * 36 + b"<13>ok\n",
        [(b"<" + X64[1:], True), (b"<13>ok", False)],
        {},
    ),
    (
        "exactly max bytes plus CRLF is not truncated",
        X64 + b"\r\n<13>ok\n",
        [(X64, False), (b"<13>ok", False)],
        {},
    ),
    (
        "a counted frame of max bytes plus its LF is not truncated",
        b"65 <" + X64[1:] + b"\n",
        [(b"<" + X64[1:], False)],
        {},
    ),
    (
        "an over-long unterminated last line is cut once",
        b"<13>a\n<" + X64 + b"tail",
        [(b"<13>a", False), (b"<" + X64[:63], True)],
        {},
    ),
    (
        "a traceback after a PRI line stays one message (LF-framed)",
        b"<11>app: boom\nTraceback (most recent):\n  File x\nValueError: v\n<13>next\n",
        [
            (b"<11>app: boom\nTraceback (most recent):\n  File x\nValueError: v", False),
            (b"<13>next", False),
        ],
        {},
    ),
    (
        "a continuation line starting with digits that are no octet count",
        b"<11>a\n500 Internal\n12 <13>counted\n<13>z\n",
        [(b"<11>a\n500 Internal", False), (b"<13>counted", False), (b"<13>z", False)],
        {},
    ),
    (
        "blank lines inside a multi-line message are kept",
        b"<11>a\n\nDuring handling:\n\n<13>b\n",
        [(b"<11>a\n\nDuring handling:", False), (b"<13>b", False)],
        {},
    ),
    (
        "lines without a PRI are a record each when the first has none",
        b"plain one\nplain two\n",
        [(b"plain one", False), (b"plain two", False)],
        {},
    ),
    (
        "NUL-framed: LFs are part of the message, even before a <",
        b"<11>a\nTraceback\x00<11>b\n<html>\n  x\x00<13>c\x00",
        [(b"<11>a\nTraceback", False), (b"<11>b\n<html>\n  x", False), (b"<13>c", False)],
        {},
    ),
    (
        "NUL-framed: octet-counted frames are still told apart",
        b"<11>a\x004 <b\nc<13>d\nx\x00",
        [(b"<11>a", False), (b"<b\nc", False), (b"<13>d\nx", False)],
        {},
    ),
    (
        "a multi-line message over max bytes is cut once, its rest discarded",
        b"<11>" + X64 + b"\n more\n more\n<13>ok\n",
        [(b"<11>" + X64[:60], True), (b"<13>ok", False)],
        {},
    ),
    (
        "octet-counted frames keep their LFs and take no continuation",
        b"6 <a\nb\nc\nd\n<13>e\n",
        [(b"<a\nb\nc", False), (b"d", False), (b"<13>e", False)],
        {},
    ),
    (
        "an over-long incomplete counted frame keeps its cut head",
        b"500 <" + X64 + b"more",
        [(b"<" + X64[:63], True)],
        {},
    ),
    (
        "invalid UTF-8 and control bytes pass through untouched",
        b"<13>\xff\xfe\x01\n",
        [(b"<13>\xff\xfe\x01", False)],
        {},
    ),
]


@pytest.mark.parametrize(
    ("name", "stream", "expected", "drops"), SYSLOG_CASES, ids=[c[0] for c in SYSLOG_CASES]
)
def test_syslog_framing_gives_the_same_frames_however_the_stream_is_split(
    name: str, stream: bytes, expected: Frames, drops: dict[str, int]
) -> None:
    for how, chunks in _splits(stream):
        frames, dropped = _run(syslog_framer, chunks, 64)
        assert frames == expected, how
        assert dropped == drops, how


LINE_CASES: list[tuple[str, bytes, Frames]] = [
    ("JSON lines with CRLF", b'{"a":1}\r\n{"b":2}\n', [(b'{"a":1}', False), (b'{"b":2}', False)]),
    ("a leading number is not an octet count", b"5 abcde\n", [(b"5 abcde", False)]),
    (
        "a NUL is not a delimiter but is stripped at the end",
        b'{"a":"x\x00y"}\x00\n',
        [(b'{"a":"x\x00y"}', False)],
    ),
    (
        "an unterminated last line is a message",
        b'{"a":1}\n{"b"',
        [(b'{"a":1}', False), (b'{"b"', False)],
    ),
    ("an over-long line is cut and flagged", X64 + b"rest\n{}\n", [(X64, True), (b"{}", False)]),
]


@pytest.mark.parametrize(("name", "stream", "expected"), LINE_CASES, ids=[c[0] for c in LINE_CASES])
def test_line_framing_gives_the_same_frames_however_the_stream_is_split(
    name: str, stream: bytes, expected: Frames
) -> None:
    for how, chunks in _splits(stream):
        frames, dropped = _run(line_framer, chunks, 64)
        assert frames == expected, how
        assert dropped == {}, how


def test_ten_megabytes_without_a_delimiter_hold_at_most_max_bytes_and_give_one_cut_frame() -> None:
    framer = syslog_framer(65536)
    out: Frames = []
    chunk = b"A" * 65536
    for _ in range(160):
        out += framer.feed(chunk)
        assert framer.buffered <= 65536
    out += framer.feed(b"\n<13>after\n")
    out += framer.eof()
    assert out == [(b"A" * 65536, True), (b"<13>after", False)]


def test_a_slow_sender_does_not_make_scanning_quadratic() -> None:
    # 512 KiB one byte per read: linear is ~1 s; rescanning the buffer on every
    # read would be ~1.4e11 byte comparisons.
    size = 512 * 1024
    for make in (syslog_framer, line_framer):
        framer = make(size + 16)
        t0 = time.perf_counter()
        for _ in range(size):
            framer.feed(b"a")
        frames = framer.feed(b"\n")
        elapsed = time.perf_counter() - t0
        assert frames == [(b"a" * size, False)]
        assert elapsed < 10.0


def test_a_counted_frame_split_inside_its_length_prefix_is_whole() -> None:
    framer = syslog_framer(1024)
    assert framer.feed(b"1") == []
    assert framer.feed(b"1") == []
    assert framer.feed(b" ") == []
    assert framer.feed(b"<13>hello") == []
    assert framer.feed(b"!\n") == [(b"<13>hello!", False)]


def test_many_frames_in_one_read_come_out_in_order() -> None:
    msgs = [b"<13>message %d" % i for i in range(1000)]
    stream = b"".join(b"%d %s" % (len(m), m) for m in msgs)
    assert syslog_framer(1024).feed(stream) == [(m, False) for m in msgs]


def test_a_line_ended_by_lf_is_held_until_the_next_lines_first_byte_tells() -> None:
    framer = syslog_framer(1024)
    assert framer.feed(b"<13>one\n") == []
    assert framer.pending
    assert framer.feed(b"<") == [(b"<13>one", False)]
    assert not framer.pending
    assert framer.feed(b"13>two\n  more\n") == []
    assert framer.eof() == [(b"<13>two\n  more", False)]


def test_flush_ends_the_wait_for_a_continuation_line() -> None:
    framer = syslog_framer(1024)
    assert framer.feed(b"<13>one\n12") == []
    assert framer.flush() == [(b"<13>one", False)]
    assert not framer.pending
    # What came after the wait is a frame of its own, never glued to the last one.
    assert framer.feed(b"3 rest\n") == [(b"123 rest", False)]
    assert framer.flush() == []


def test_json_lines_never_wait_for_a_continuation() -> None:
    framer = line_framer(1024)
    assert framer.feed(b'{"a":1}\n') == [(b'{"a":1}', False)]
    assert not framer.pending


# -- properties ---------------------------------------------------------------

# A syslog message as senders produce it: starts with "<", no LF or NUL inside
# when delimited; anything at all when octet counted.
_body = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ").replace(b"\x00", b" "))
_message = _body.map(lambda b: b"<13>" + b)
# One connection ends its delimited frames either with LF/CRLF or with NUL
# (after a NUL, LF is part of the message); octet counting mixes with either.
_encoding_lf = st.sampled_from(["counted", "counted+LF", "LF", "CRLF"])
_encoding_nul = st.sampled_from(["counted", "counted+LF", "NUL"])
_stream_items = st.lists(st.tuples(_message, _encoding_lf), max_size=12) | st.lists(
    st.tuples(_message, _encoding_nul), max_size=12
)


def _encode(msg: bytes, how: str) -> bytes:
    if how == "counted":
        return b"%d %s" % (len(msg), msg)
    if how == "counted+LF":
        return b"%d %s\n" % (len(msg) + 1, msg)
    return msg + {"LF": b"\n", "CRLF": b"\r\n", "NUL": b"\x00"}[how]


def _cut(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p % (len(data) + 1) for p in points})
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=300, deadline=None)
@given(_stream_items, st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_of_a_valid_stream_yields_its_messages(
    items: list[tuple[bytes, str]], points: list[int]
) -> None:
    stream = b"".join(_encode(m, how) for m, how in items)
    expected = [(m.rstrip(b"\n\r\x00"), False) for m, _ in items if m.rstrip(b"\n\r\x00")]
    frames, drops = _run(syslog_framer, _cut(stream, points), 1024)
    assert frames == expected
    assert drops == {}


# Multi-line messages: continuation lines that do not start like a frame
# (LF-framed), or anything but NUL (NUL-framed).
_cont_line = st.binary(max_size=15).map(
    lambda b: b" " + b.replace(b"\n", b" ").replace(b"\x00", b" ")
)
_nul_line = st.binary(max_size=15).map(lambda b: b.replace(b"\n", b" ").replace(b"\x00", b" "))


def _multiline(lines: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(_message, st.lists(lines, max_size=3)).map(
        lambda t: t[0] + b"".join(b"\n" + line for line in t[1])
    )


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_multiline(_cont_line), max_size=8),
    st.lists(_multiline(_nul_line), max_size=8),
    st.sampled_from([b"\n", b"\x00"]),
    st.lists(st.integers(0, 10_000), max_size=12),
)
def test_any_split_of_multi_line_messages_yields_each_message_whole(
    lf_msgs: list[bytes], nul_msgs: list[bytes], delim: bytes, points: list[int]
) -> None:
    # A NUL-framed connection is known as one from its first NUL on; before
    # it, a line starting with "<" would start a frame (the LF rule).
    msgs = lf_msgs if delim == b"\n" else [b"<13>first", *nul_msgs]
    stream = b"".join(m + delim for m in msgs)
    expected = [(m.rstrip(b"\n\r\x00"), False) for m in msgs if m.rstrip(b"\n\r\x00")]
    frames, drops = _run(syslog_framer, _cut(stream, points), 1024)
    assert frames == expected
    assert drops == {}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 10_000), max_size=20), st.booleans())
def test_any_split_of_any_bytes_gives_what_the_whole_gives(
    stream: bytes, points: list[int], lines: bool
) -> None:
    make = line_framer if lines else syslog_framer
    whole = _run(make, [stream], 32)
    split = _run(make, _cut(stream, points), 32)
    assert split == whole
    for frame, cut in whole[0]:
        assert 0 < len(frame) <= 32
        assert not frame.endswith((b"\n", b"\r", b"\x00"))
        assert cut or len(frame) <= 32


_json_line = st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=3).map(
    lambda d: json.dumps(d).encode()
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_json_line, st.sampled_from([b"\n", b"\r\n"])), max_size=12),
    st.lists(st.integers(0, 10_000), max_size=12),
)
def test_any_split_of_json_lines_yields_its_lines(
    items: list[tuple[bytes, bytes]], points: list[int]
) -> None:
    stream = b"".join(line + end for line, end in items)
    frames, drops = _run(line_framer, _cut(stream, points), 1024)
    assert frames == [(line, False) for line, _ in items]
    assert drops == {}
