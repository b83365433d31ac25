"""The native hot path against its specification: collector/_native.c must
give exactly the Record `parse_syslog_pure` gives (same values, same types,
same key order), or decline (None) and leave the frame to Python. Random,
adversarial and real device lines; `make fuzz` runs this module with the C
code built under AddressSanitizer and UndefinedBehaviorSanitizer."""

from __future__ import annotations

import codecs
import datetime as dt
import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.messages import malformed, mixed, rfc3164_messages, rfc5424_messages
from collector import parse
from collector.framing import Framer, StreamFramer
from collector.parse import parse_syslog, parse_syslog_pure
from collector.record import ParseOptions, Record

NOW = 1767323045_500000  # 2026-01-02T03:04:05.5Z
OPTS = ParseOptions(ttl_us=100 * 365 * 86400 * 1_000_000)
# Receipt after year 9999 and a TTL past year 1: every valid time is inside
# the clock-skew window, so time tests see the time rules and nothing else.
LATE = 260_000_000_000_000_000
WIDE = ParseOptions(ttl_us=10**18)
SENDER = "192.0.2.7"
CORPUS = Path(__file__).parent / "corpus" / "syslog-devices.txt"
FAST = os.environ.get("COLLECTOR_FUZZ_EXAMPLES")  # `make fuzz` asks for more examples
EXAMPLES = int(FAST) if FAST else 300


# Skipped when not built or when COLLECTOR_PURE is set (tests/test_cli.py
# checks that a machine with a compiler does build it).
native = pytest.importorskip(
    "collector._native", reason="native module not loaded", exc_type=ImportError
)


def _same(data: bytes, now: int = NOW, opts: ParseOptions = OPTS, cut: bool = False) -> bool:
    """Assert native == pure for one frame; True when native read it."""
    got = native.parse(data, now, SENDER, opts.ttl_us, cut, parse._zone(opts.tz))
    want = parse_syslog_pure(data, now, SENDER, opts, cut)
    # parse_syslog never differs from the pure parser, whichever reads it.
    assert repr(parse_syslog(data, now, SENDER, opts, cut)) == repr(want), data
    if got is None:
        return False
    assert isinstance(got, Record)
    # repr: values, their types (str vs list) and dict key order, all at once.
    assert repr(got) == repr(want), data
    assert type(got.timestamp) is int
    assert type(got.facility) is int
    return True


def _corpus() -> list[bytes]:
    lines = CORPUS.read_bytes().split(b"\n")
    return [codecs.escape_decode(x)[0] for x in lines if x and not x.startswith(b"#")]


def test_device_corpus_lines_read_the_same_natively_and_in_python() -> None:
    lines = _corpus()
    assert len(lines) > 40
    read = sum(_same(x, LATE, WIDE) for x in lines)
    # The common shapes really take the native path (not all declined).
    assert read >= 20
    # Received in 2026 (RFC 3164 dates get a year near it), UTC and +05:30.
    kolkata = ParseOptions(tz=dt.timezone(dt.timedelta(hours=5, minutes=30)), ttl_us=OPTS.ttl_us)
    for opts in (OPTS, kolkata):
        for x in lines:
            _same(x, NOW, opts)
        zone = parse._zone(opts.tz)
        got = [native.parse(x, NOW, SENDER, opts.ttl_us, False, zone) for x in lines]
        assert sum(r is not None and r.format == "rfc3164" for r in got) >= 15


def test_every_test_table_line_reads_the_same_natively_and_in_python() -> None:
    from tests import test_parse, test_rfc3164, test_rfc5424

    found = []
    for mod in (test_rfc5424, test_parse, test_rfc3164):
        for name, table in vars(mod).items():
            if name.endswith("_CASES") and isinstance(table, list):
                for case in table:
                    values = getattr(case, "values", case)
                    found += [v for v in values if isinstance(v, bytes)]
    assert len(found) > 50
    for data in found:
        _same(data)
        _same(data, cut=True)


def test_benchmark_rfc5424_messages_all_take_the_native_path() -> None:
    start = NOW / 1e6 - 30
    msgs = rfc5424_messages(2000, seed=3, start=start)
    assert all(_same(m) for m in msgs)


def test_benchmark_mixed_and_malformed_messages_read_the_same() -> None:
    start = NOW / 1e6 - 30
    for m in mixed(2000, seed=4, start=start) + malformed(2000, seed=5, start=start):
        _same(m)


def test_rfc3164_lines_read_the_same_and_mostly_natively_in_a_fixed_zone() -> None:
    msgs = rfc3164_messages(500, seed=6, start=NOW / 1e6 - 30)
    assert sum(_same(m) for m in msgs) > 250
    plus2 = ParseOptions(tz=dt.timezone(dt.timedelta(hours=2)), ttl_us=OPTS.ttl_us)
    assert sum(_same(m, opts=plus2) for m in msgs) > 250


def test_rfc3164_times_in_a_zone_with_dst_rules_are_left_to_python() -> None:
    from zoneinfo import ZoneInfo

    paris = ParseOptions(tz=ZoneInfo("Europe/Paris"), ttl_us=OPTS.ttl_us)
    for m in rfc3164_messages(200, seed=6, start=NOW / 1e6 - 30):
        assert not _same(m, opts=paris)
        # and without the zone argument at all
        assert native.parse(m, NOW, SENDER, OPTS.ttl_us, False) is None


def test_a_batch_gives_what_each_frame_gives_alone() -> None:
    start = NOW / 1e6 - 30
    msgs = mixed(300, seed=7, start=start) + _corpus()
    frames = [(m, i % 5 == 0) for i, m in enumerate(msgs)]
    got = native.parse_frames(frames, NOW, SENDER, OPTS.ttl_us)
    assert len(got) == len(frames)
    for rec, (m, cut) in zip(got, frames, strict=True):
        alone = native.parse(m, NOW, SENDER, OPTS.ttl_us, cut)
        assert repr(rec) == repr(alone)
    assert parse.parse_frames(frames, NOW, SENDER, OPTS) is not None
    # parse_batch: the same records, with the count of Nones.
    recs, declined, _ = native.parse_batch(frames, NOW, SENDER, OPTS.ttl_us)
    assert repr(recs) == repr(got)
    assert declined == got.count(None) > 0


def test_a_batch_read_whole_natively_counts_its_truncated_frames() -> None:
    msgs = rfc5424_messages(50, seed=11, start=NOW / 1e6 - 30)
    frames = [(m, i % 7 == 0) for i, m in enumerate(msgs)]
    recs, declined, cut = native.parse_batch(frames, NOW, SENDER, OPTS.ttl_us)
    assert declined == 0
    assert cut == 8
    assert [r is not None and bool(r.fields and r.fields.get("truncated")) for r in recs] == [
        c for _, c in frames
    ]
    assert native.parse_batch([(msgs[0], False)], NOW, SENDER, 2**70) == ([None], 1, 0)


def test_outside_the_times_it_handles_the_native_code_declines_every_frame() -> None:
    m = b"<13>1 - h a - - - x"
    assert native.parse(m, NOW, SENDER, -1, False) is None
    assert native.parse(m, 2**70, SENDER, OPTS.ttl_us, False) is None
    assert native.parse_frames([(m, False)], NOW, SENDER, 2**70) == [None]
    assert parse.parse_frames([(m, False)], NOW, SENDER, ParseOptions(ttl_us=2**70)) is None


def test_bad_arguments_raise_type_errors_not_crashes() -> None:
    with pytest.raises(TypeError):
        native.parse("text", NOW, SENDER, 1, False)
    with pytest.raises(TypeError):
        native.parse_frames([b"<13>1 - - - - -"], NOW, SENDER, 1)
    with pytest.raises(TypeError):
        native.parse_frames(((b"x", False),), NOW, SENDER, 1)


def test_clock_skew_is_left_to_python_and_recorded_there() -> None:
    old = b"<13>1 2000-01-01T00:00:00Z h a - - - old"
    assert native.parse(old, NOW, SENDER, 3600 * 10**6, False) is None
    rec = parse_syslog(old, NOW, SENDER, ParseOptions())
    assert rec.fields == {"original_timestamp": "2000-01-01T00:00:00.000000Z"}


# --- generated -------------------------------------------------------------

_TOKENS = [
    b"[",
    b"]",
    b" ",
    b'"',
    b"\\",
    b"=",
    b"a",
    b"x=",
    b'x="',
    b"[a",
    b"[b@1",
    b"] ",
    b"\x00",
    b"\x01",
    b"\xc3\xa9",
    b"\xff",
    b"\xe2\x82",
    b"\xef\xbb\xbf",
    b"-",
    b"\\]",
    b'\\"',
    b"\\\\",
    b"\n",
]
_TAIL = st.lists(st.sampled_from(_TOKENS), max_size=25).map(b"".join)
_FIELD = st.one_of(
    st.just(b"-"),
    st.binary(min_size=0, max_size=6),
    st.sampled_from([b"host", b"h\xc3\xa9", b"app", b"12", b"ID47", b"\xff", b"a b"]),
)
_PRI = st.one_of(
    st.integers(0, 200).map(lambda n: b"<%d>" % n),
    st.sampled_from([b"<013>", b"<>", b"<1", b"<0001>", b"< 1>", b"<1a>", b""]),
)
_VERSION = st.sampled_from([b"1 ", b"1", b"2 ", b"10 ", b"1  ", b""])


def _ts_text(t: dt.datetime, digits: int, offset: str, sep: str) -> bytes:
    s = t.strftime("%Y-%m-%d") + sep + t.strftime("%H:%M:%S")
    if digits:
        s += "." + f"{t.microsecond:06d}{t.microsecond:06d}"[:digits]
    return (s + offset).encode()


_OFFSETS = st.one_of(
    st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+0530", "-0800", "+24:00", "+01:60"]),
    st.builds(
        lambda sign, h, m, colon: f"{sign}{h:02d}{colon}{m:02d}",
        st.sampled_from("+-"),
        st.integers(0, 25),
        st.integers(0, 61),
        st.sampled_from([":", ""]),
    ),
)
_TIMESTAMP = st.one_of(
    st.just(b"-"),
    st.builds(
        _ts_text,
        st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
        st.integers(0, 10),
        _OFFSETS,
        st.sampled_from(["T", "t", "T", "_"]),
    ),
)


@st.composite
def _mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A value with a few bytes replaced: dates like 2026-13-45, stray signs."""
    b = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 2))):
        if b:
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.sampled_from(b"0123456789:+-.TZz \x80"))
    return bytes(b)


_MESSAGE = st.builds(
    lambda pri, ver, ts, h, a, p, m, tail: pri + ver + ts + b" " + b" ".join([h, a, p, m]) + tail,
    _PRI,
    _VERSION,
    st.one_of(_TIMESTAMP, _mutated(_TIMESTAMP)),
    _FIELD,
    _FIELD,
    _FIELD,
    _FIELD,
    st.one_of(_TAIL.map(lambda t: b" " + t), _TAIL, st.just(b"")),
)


# Headers the native code takes (and near misses): its real work, not declines.
_GOOD_FIELD = st.one_of(
    st.sampled_from([b"-", b"host", b"h\xc3\xa9", b"\xff", b"app", b"12", b"ID47", b"[x]"]),
    st.binary(min_size=1, max_size=6).filter(lambda b: b" " not in b),
)
_GOOD_MESSAGE = st.builds(
    lambda pri, ts, h, a, p, m, tail: b"<%d>1 " % pri + b" ".join([ts, h, a, p, m]) + tail,
    st.integers(0, 191),
    st.one_of(_TIMESTAMP, _mutated(_TIMESTAMP)),
    _GOOD_FIELD,
    _GOOD_FIELD,
    _GOOD_FIELD,
    _GOOD_FIELD,
    st.one_of(_TAIL.map(lambda t: b" " + t), _TAIL, st.just(b"")),
)


@settings(max_examples=EXAMPLES * 5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_MESSAGE, _GOOD_MESSAGE), st.booleans())
def test_generated_rfc5424ish_messages_read_the_same(data: bytes, cut: bool) -> None:
    _same(data, NOW, OPTS, cut)
    _same(data, LATE, WIDE, cut)


@st.composite
def _sd(draw: st.DrawFn) -> bytes:
    """Well-formed SD (or nearly: one token swapped in), values full of escapes."""
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        out += b"[" + draw(st.sampled_from([b"a", b"origin", b"meta@32473", b"x.y"]))
        for _ in range(draw(st.integers(0, 3))):
            name = draw(st.sampled_from([b"ip", b"x", b"ip", b"k-1"]))
            value = draw(_TAIL).replace(b'"', b'\\"')
            out += b" " + name + b'="' + value + b'"'
        out += b"]"
    if draw(st.booleans()):
        i = draw(st.integers(0, len(out)))
        out = out[:i] + draw(st.sampled_from(_TOKENS)) + out[i:]
    return out


@settings(max_examples=EXAMPLES * 5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sd(), _TAIL)
def test_generated_structured_data_reads_the_same(sd: bytes, msg: bytes) -> None:
    _same(b"<13>1 2026-01-02T03:04:05.1Z host app 12 ID " + sd + b" " + msg)
    _same(b"<13>1 - host app 12 ID " + sd + msg)
    _same(b"<13>1 - host app 12 ID " + sd)


@settings(max_examples=EXAMPLES * 3, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_after_a_header_read_the_same(tail: bytes) -> None:
    _same(b"<165>1 2026-01-02T03:04:05.123456+01:00 h a p m " + tail)
    _same(b"<165>1 " + tail)
    _same(tail)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(st.one_of(_MESSAGE, _GOOD_MESSAGE), st.booleans()), max_size=20))
def test_generated_batches_give_what_each_frame_gives_alone(
    frames: list[tuple[bytes, bool]],
) -> None:
    got = native.parse_frames(frames, NOW, SENDER, OPTS.ttl_us)
    for rec, (m, cut) in zip(got, frames, strict=True):
        assert repr(rec) == repr(native.parse(m, NOW, SENDER, OPTS.ttl_us, cut))


def test_records_survive_many_batches_without_leaking_references() -> None:
    msgs = [(m, False) for m in rfc5424_messages(200, seed=8, start=NOW / 1e6 - 30)]
    for _ in range(3):
        native.parse_frames(msgs, NOW, SENDER, OPTS.ttl_us)
    before = sys.getrefcount(SENDER)
    for _ in range(50):
        native.parse_frames(msgs, NOW, SENDER, OPTS.ttl_us)
    assert sys.getrefcount(SENDER) == before


def test_records_are_filled_slot_by_slot_as_the_record_type_allows() -> None:
    # Record is a slots dataclass: the native code fills its slots directly
    # (the differential tests above then check that path).
    assert native.direct_slots()
    rec = native.parse(b"<13>1 - h a - - - x", NOW, SENDER, OPTS.ttl_us, False)
    assert rec is not None
    rec.message = "changed"  # an ordinary, mutable Record
    assert rec == Record(NOW, NOW, "h", "a", None, None, 1, 5, "changed", None, None, "rfc5424")


# --- framing: the native Framer against framing.StreamFramer ------------------

_FRAME_TOKENS = [
    b"<13>1 - h a - - - x",
    b"<13>",
    b"<",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\r",
    b" ",
    b"x",
    b"hello world",
    b"1",
    b"9",
    b"0",
    b"12 ",
    b"5 <abc",
    b"19 <13>1 - h a - - - x",
    b"3 <a\n",
    b"500 Internal",
    b"99999999999999999999 <",
    b"9999999999999999999 <x",
    b"70000 <",
    b"200 <",
    b"  at line 3",
    b"\tTraceback",
    b'{"k": 1}',
    b"\xff\xfe",
]
_STREAM = st.lists(
    st.one_of(st.sampled_from(_FRAME_TOKENS), st.binary(max_size=12)), max_size=40
).map(b"".join)


Drops = list[tuple[str, int]]


def _framers(
    max_bytes: int, counting: bool, max_count: int | None
) -> tuple[tuple[Framer, Drops], tuple[Framer, Drops]]:
    """A native and a pure framer with the same options, each with its drop log."""
    logs: tuple[Drops, Drops] = ([], [])

    def logger(log: Drops) -> Callable[[str, int], None]:
        return lambda reason, n=1: log.append((reason, n))

    nat = native.Framer(
        max_bytes,
        octet_counting=counting,
        nul_delimits=counting,
        max_count=max_count,
        drop=logger(logs[0]),
    )
    pure = StreamFramer(
        max_bytes,
        octet_counting=counting,
        nul_delimits=counting,
        max_count=max_count,
        drop=logger(logs[1]),
    )
    return (nat, logs[0]), (pure, logs[1])


@settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _STREAM,
    st.lists(st.integers(0, 10_000), max_size=15),
    st.sets(st.integers(0, 16), max_size=4),
    st.sampled_from([1, 4, 16, 64, 1024]),
    st.booleans(),
    st.sampled_from([None, 0, 10, 300, 2**70]),
)
def test_the_native_framer_gives_the_python_framers_frames_and_drops_for_any_split(
    stream: bytes,
    points: list[int],
    flush_after: set[int],
    max_bytes: int,
    counting: bool,
    max_count: int | None,
) -> None:
    cuts = sorted({p % (len(stream) + 1) for p in points})
    edges = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(edges)]
    (nat, nat_log), (pure, pure_log) = _framers(max_bytes, counting, max_count)
    for i, chunk in enumerate(chunks):
        assert nat.feed(chunk) == pure.feed(chunk), (stream, chunks, i)
        assert nat.pending == pure.pending
        assert nat.buffered == pure.buffered
        if i in flush_after:
            assert nat.flush() == pure.flush()
    assert nat.eof() == pure.eof()
    assert nat_log == pure_log
    # And a framer used after eof starts afresh, the same way.
    assert nat.feed(stream) == pure.feed(stream)
    assert nat.eof() == pure.eof()
    assert nat_log == pure_log


def test_the_native_framer_frames_a_benchmark_stream_as_python_does() -> None:
    start = NOW / 1e6 - 30
    msgs = mixed(3000, seed=9, start=start) + malformed(1000, seed=10, start=start)
    parts = [b"%d %s" % (len(m), m) if i % 3 else m + b"\n" for i, m in enumerate(msgs)]
    stream = b"".join(parts)
    for size in (1, 7, 1000, 65536):
        (nat, nat_log), (pure, pure_log) = _framers(2048, True, None)
        got: list[tuple[bytes, bool]] = []
        want: list[tuple[bytes, bool]] = []
        for i in range(0, len(stream), size):
            got += nat.feed(stream[i : i + size])
            want += pure.feed(stream[i : i + size])
        got += nat.eof()
        want += pure.eof()
        assert got == want
        assert len(got) > 3000
        assert nat_log == pure_log


def test_an_oversized_counted_frame_is_skipped_exactly_by_both_framers() -> None:
    body = b"<13>" + b"y" * 5000
    stream = b"%d %s" % (len(body), body) + b"5 <next"
    for size in (1, 100, len(stream)):
        (nat, _), (pure, _) = _framers(64, True, None)
        got = [f for i in range(0, len(stream), size) for f in nat.feed(stream[i : i + size])]
        want = [f for i in range(0, len(stream), size) for f in pure.feed(stream[i : i + size])]
        assert got == want == [(body[:64], True), (b"<next", False)]


def test_the_native_framer_reports_a_failing_drop_callback_and_rejects_bad_options() -> None:
    def boom(reason: str, n: int) -> None:
        raise ValueError(reason)

    f = native.Framer(64, max_count=5, drop=boom)
    with pytest.raises(ValueError, match="bad_length"):
        f.feed(b"99 <x\n")
    with pytest.raises(ValueError, match="max_bytes"):
        native.Framer(0)
    with pytest.raises(TypeError):
        native.Framer(64, drop=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        native.Framer(64).feed("text")  # type: ignore[arg-type]


def test_syslog_and_line_framers_are_native_when_the_module_is_built() -> None:
    from collector.framing import line_framer, syslog_framer

    assert isinstance(syslog_framer(64), native.Framer)
    assert isinstance(line_framer(64), native.Framer)


# --- RFC 3164: generated headers around the shapes the native code takes ----

_MONTH = st.sampled_from([b"Jan", b"Feb", b"DEC", b"dec", b"jAn", b"Foo", b"Nov", b"Ma"])
_DAY = st.sampled_from([b" 1", b"  3", b" 03", b" 29", b" 30", b" 31", b" 123", b"   4", b"4"])
_YEAR = st.sampled_from([b"", b"", b" 2026", b" 2024", b" 0000", b" 99999", b" 202"])
_TIME = st.one_of(
    st.sampled_from([b" 00:00:00", b" 23:59:60", b" 24:00:00", b" 12:60:00", b" 1:2:3"]),
    st.builds(
        lambda h, m, s: b" %02d:%02d:%02d" % (h, m, s),
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 60),
    ),
)
_FRAC = st.sampled_from([b"", b"", b".1", b".123", b".123456", b".1234567", b".", b".x"])
_ZONE_WORD = st.sampled_from([b"", b"", b" UTC", b" CET", b" ABCDEF", b" utc"])
_END = st.sampled_from([b" ", b": ", b":", b"", b"  ", b":x", b"\t"])
_HOST = st.sampled_from(
    [b"host", b"h-1.example.org", b"10.0.0.1", b"::1", b"fe80::1", b"host-", b"-h", b"h_",
     b"h\xc3\xa9", b"", b"a", b"X4711", b"sshd[12]:", b"root:", b"--", b"host:"]
)  # fmt: skip
_SEP = st.sampled_from([b" ", b" ", b"", b"\t", b"  "])
_TAG = st.sampled_from(
    [b"sshd", b"postfix/smtpd", b"sshd(pam_unix)", b"--", b"", b"date=2026", b"a=b",
     b"%ASA-4-106023", b"{", b"MSWinEventLog", b"t\xc3\xa9", b"x" * 40]
)  # fmt: skip
_PID = st.sampled_from(
    [b"", b"", b"[12]", b"[]", b"[a b]", b"[" + b"9" * 130 + b"]", b"[1", b"[\xff]"]
)
_AFTER = st.sampled_from([b": ", b":", b" ", b"", b":\t", b"::", b": %SYS-5-CONFIG_I: x"])
_BODY = st.one_of(_TAIL, st.binary(max_size=20))


@st.composite
def _rfc3164(draw: st.DrawFn) -> bytes:
    pri = draw(st.sampled_from([b"<13>", b"<0>", b"<191>", b"<013>", b"<192>", b""]))
    head = draw(_MONTH) + draw(_DAY) + draw(_YEAR) + draw(_TIME) + draw(_FRAC) + draw(_ZONE_WORD)
    rest = draw(_HOST) + draw(_SEP) + draw(_TAG) + draw(_PID) + draw(_AFTER) + draw(_BODY)
    return pri + head + draw(_END) + rest


_ZONES = st.sampled_from(
    [OPTS, ParseOptions(tz=dt.timezone(dt.timedelta(hours=-8)), ttl_us=OPTS.ttl_us),
     ParseOptions(tz=dt.timezone(dt.timedelta(hours=5, minutes=30)), ttl_us=OPTS.ttl_us),
     ParseOptions(ttl_us=3600 * 10**6)]
)  # fmt: skip
# Receipt times around year ends and leap days, where the nearest year turns.
_RECEIVED = st.one_of(
    st.just(NOW),
    st.sampled_from([1767225599_000000, 1767225600_999999, 1709164800_000000, 1735689599_500000]),
    st.integers(946684800_000000, 4102444800_000000),
)


@settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rfc3164(), _ZONES, _RECEIVED, st.booleans())
def test_generated_rfc3164_lines_read_the_same(
    data: bytes, opts: ParseOptions, now: int, cut: bool
) -> None:
    _same(data, now, opts, cut)
    _same(data, LATE, WIDE, cut)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.dates(dt.date(1990, 1, 1), dt.date(2100, 12, 31)), st.integers(0, 86399))
def test_a_yearless_date_gets_the_nearest_year_natively_as_in_python(
    day: dt.date, second: int
) -> None:
    now = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) + second
    for text in (b"<13>Jan  1 00:00:00 h t: x", b"<13>Dec 31 23:59:59 h t: x",
                 b"<13>Feb 29 12:00:00 h t: x", b"<13>Jul  1 00:00:00 h t: x"):  # fmt: skip
        _same(text, now * 1_000_000, WIDE)


@st.composite
def _good_rfc3164(draw: st.DrawFn) -> bytes:
    """Near the shapes the native code reads: each part usually a taken one."""

    def part(good: list[bytes], bad: st.SearchStrategy[bytes]) -> bytes:
        return draw(st.one_of(st.sampled_from(good), st.sampled_from(good), bad))

    head = (
        b"<%d>" % draw(st.integers(0, 191))
        + part([b"Jan", b"Feb", b"Dec", b"DEC", b"mar"], _MONTH)
        + part([b" 1", b"  3", b" 03", b" 29", b" 31"], _DAY)
        + part([b"", b" 2026", b" 2024"], _YEAR)
        + draw(_TIME)
        + part([b"", b".5", b".123456"], _FRAC)
        + part([b""], _ZONE_WORD)
        + part([b" ", b": "], _END)
    )
    rest = (
        part([b"host", b"10.0.0.1", b"h-1.example.org", b"X4711"], _HOST)
        + part([b" "], _SEP)
        + part([b"sshd", b"postfix/smtpd", b"--", b"kernel"], _TAG)
        + part([b"", b"[12]", b"[]"], _PID)
        + part([b": ", b" "], _AFTER)
        + draw(_BODY)
    )
    return head + rest


@settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_good_rfc3164(), _ZONES, _RECEIVED, st.booleans())
def test_generated_common_rfc3164_lines_read_the_same(
    data: bytes, opts: ParseOptions, now: int, cut: bool
) -> None:
    _same(data, now, opts, cut)


def test_the_native_framer_keeps_no_references_it_should_not() -> None:
    drops: list[str] = []

    def drop(reason: str, n: int) -> None:
        drops.append(reason)

    stream = b"99999999999 <x\n5 <abc" + b"<13>a\n<13>b\x00" * 10
    framer = native.Framer(64, max_count=1000, drop=drop)
    for _ in range(3):
        framer.feed(stream)
        framer.eof()
    before = sys.getrefcount(drop), sys.getrefcount(stream)
    for _ in range(200):
        framer.feed(stream)
        framer.eof()
    assert (sys.getrefcount(drop), sys.getrefcount(stream)) == before
    assert drops.count("bad_length") == 203
    assert drops.count("incomplete_frame") == 0
