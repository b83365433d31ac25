"""Sealed blocks: every record comes back as it went in, the word filter never
misses a word a message holds, and the substring search answers exactly as
`needle in message.lower()`."""

from __future__ import annotations

import marshal
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.block import FORMAT_VERSION, Block, columns_from_records, encode_block
from collector.blockcache import BlockCache
from collector.blockrun import find_substring, records
from collector.record import Record
from collector.wordfilter import WordFilter, message_words, word_keys, words

# Letters whose lower case changes length or leaves ASCII (İ, the Kelvin
# sign), non-ASCII punctuation (an em dash), a lone surrogate, a non-Latin digit,
# a NUL (a group holding one stores message lengths instead of separators).
TEXT = st.lists(
    st.sampled_from(
        [
            *'aAbBzZ09 _-.:/=\n\t"',
            "é",
            "É",
            "İ",
            "\u212a",
            "ß",
            "—",
            "日本",
            "\ud800",
            "\u0661",
            "\x00",
        ]
    ),
    max_size=40,
).map("".join)
NAMES = st.sampled_from(["web-1", "db", "sshd", "é", "", None])
# Structured data and fields as parsers make them (sampled: generating
# nested values per record would dominate the test's time).
SDS = st.sampled_from(
    [None, None, None, {"meta@32473": {"region": "eu", "ip": ["10.0.0.1", "::1"]}}, {"a": {}}]
)
FIELDS = st.sampled_from(
    [None, None, {"user_id": 42, "http": {"status": 500, "ok": False}}, {"x": [1, 2.5, None, "é"]}]
)


@st.composite
def record_batches(draw: st.DrawFn) -> list[tuple[int, Record]]:
    n = draw(st.integers(1, 25))
    items = []
    for seq in draw(st.lists(st.integers(0, 10**12), min_size=n, max_size=n, unique=True)):
        ts = draw(st.integers(-(10**15), 10**16))
        items.append(
            (
                seq,
                Record(
                    timestamp=ts,
                    received_at=ts + draw(st.integers(-(10**9), 10**9)),
                    host=draw(NAMES),
                    service=draw(NAMES),
                    procid=draw(st.none() | st.text(max_size=6)),
                    msgid=draw(NAMES),
                    facility=draw(st.none() | st.integers(0, 23)),
                    level=draw(st.integers(0, 7)),
                    message=draw(TEXT),
                    structured_data=draw(SDS),
                    fields=draw(FIELDS),
                    format=draw(st.sampled_from(["rfc5424", "rfc3164", "json", "raw"])),
                ),
            )
        )
    items.sort(key=lambda p: (p[1].timestamp, p[0]))
    return items


@settings(max_examples=60, deadline=None)
@given(record_batches(), st.sampled_from([1, 3, 512]))
def test_every_record_comes_back_unchanged_from_a_block_and_from_its_bytes(
    items: list[tuple[int, Record]], group_records: int
) -> None:
    block = encode_block(columns_from_records(items), group_records)
    cache = BlockCache(1 << 20)
    for b in (block, Block.from_bytes(block.to_bytes())):
        assert records(b, range(len(items)), cache) == [r for _, r in items]
        keys = cache.keys(b)
        assert list(zip(keys.ts, keys.seqs, strict=True)) == [(r.timestamp, s) for s, r in items]
        assert (b.min_ts, b.max_ts) == (items[0][1].timestamp, items[-1][1].timestamp)
    picked = list(range(len(items) - 1, -1, -3))
    assert records(block, picked, cache) == [items[i][1] for i in picked]


@settings(max_examples=60, deadline=None)
@given(record_batches())
def test_the_word_filter_passes_every_word_and_phrase_of_every_message(
    items: list[tuple[int, Record]],
) -> None:
    block = encode_block(columns_from_records(items))
    for _, rec in items:
        ws = words(rec.message)
        assert block.may_contain_words(ws)
        for w in ws:
            assert block.may_contain_words([w])
            assert block.may_contain_words([w.upper().lower()]) or w.upper().lower() != w


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=20))
def test_ascii_words_found_at_c_speed_are_the_words_the_definition_gives(msgs: list[str]) -> None:
    expected = {w.encode("utf-8", "surrogatepass") for m in msgs for w in words(m)}
    assert message_words(msgs) == expected


def test_a_word_is_a_run_of_letters_and_digits_compared_lower_cased() -> None:
    assert words("connection_timeout: 5s, Timeouts=10.0.0.1 Été") == [
        "connection",
        "timeout",
        "5s",
        "timeouts",
        "10",
        "0",
        "0",
        "1",
        "été",
    ]


@settings(max_examples=100, deadline=None)
@given(
    record_batches(),
    st.sampled_from(
        ["a", "é", "ab", "k", "i̇", "z0", " ", "-", "\n", "日本", "b b", "ss", "x", "\x00", "a\x00"]
    ),
    st.integers(0, 45),
    st.integers(0, 45),
)
def test_substring_search_answers_exactly_as_needle_in_message_lower(
    items: list[tuple[int, Record]], needle: str, a: int, b: int
) -> None:
    block = encode_block(columns_from_records(items), group_records=4)
    n = len(items)
    a, b = min(a, n), min(b, n)
    expected = [i for i in range(a, b) if needle in items[i][1].message.lower()]
    assert find_substring(block, BlockCache(1 << 20), needle, a, b) == expected


def test_the_word_filter_rejects_almost_every_absent_word() -> None:
    rng = random.Random(7)
    present = {"".join(rng.choices(string.ascii_lowercase, k=9)) for _ in range(20_000)}
    absent = {"".join(rng.choices(string.ascii_lowercase, k=10)) for _ in range(20_000)}
    f = WordFilter.build(word_keys(present))
    assert all(f.may_contain([k]) for k in word_keys(present))
    false_positives = sum(f.may_contain([k]) for k in word_keys(absent))
    assert false_positives < 0.005 * len(absent)
    assert f.nbytes < 2.5 * len(present) + 2000  # ~16 bits per distinct word


def test_summaries_answer_value_sets_and_counts_without_decoding() -> None:
    items = [
        (
            i,
            Record(
                timestamp=1000 + i,
                received_at=1000 + i,
                host="web-1" if i % 3 else "db",
                service="sshd",
                procid=None,
                msgid=None,
                facility=None if i % 2 else 4,
                level=3 if i < 2 else 6,
                message=f"disk full on sda{i}",
                structured_data=None,
                fields=None,
                format="rfc3164",
            ),
        )
        for i in range(10)
    ]
    block = encode_block(columns_from_records(items))
    assert block.counts("host") == {"db": 4, "web-1": 6}
    assert block.counts("service") == {"sshd": 10}
    assert block.counts("level") == {3: 2, 6: 8}
    assert block.counts("facility") == {4: 5, None: 5}
    assert block.codes("host", ["db", "nope"]) == {block.dicts[0].index("db")}
    assert block.codes("service", ["cron"]) == set()
    assert block.may_contain_words(["disk", "full"])
    assert block.may_contain_words(["sda7"])
    assert not block.may_contain_words(["disk", "timeout"])


def test_a_block_refuses_unsorted_keys_and_out_of_range_levels() -> None:
    rec = Record(
        timestamp=5,
        received_at=5,
        host=None,
        service=None,
        procid=None,
        msgid=None,
        facility=None,
        level=6,
        message="x",
        structured_data=None,
        fields=None,
        format="raw",
    )
    with pytest.raises(ValueError, match="sorted"):
        encode_block(columns_from_records([(2, rec), (1, rec)]))
    bad = Record(**{**{f: getattr(rec, f) for f in rec.__slots__}, "level": 300})
    with pytest.raises(ValueError, match="range"):
        encode_block(columns_from_records([(1, bad)]))
    with pytest.raises(ValueError, match="at least one"):
        encode_block(columns_from_records([]))


def test_bytes_that_are_not_a_block_are_refused() -> None:
    for data in (b"", b"junk", Block.from_bytes.__name__.encode()):
        with pytest.raises(ValueError, match="block"):
            Block.from_bytes(data)


def test_the_cache_stays_within_its_bytes_and_drops_the_least_recently_used() -> None:
    blocks = []
    for k in range(6):
        recs = [
            (
                i,
                Record(
                    timestamp=i,
                    received_at=i,
                    host="h",
                    service="s",
                    procid=None,
                    msgid=None,
                    facility=1,
                    level=6,
                    message=f"block {k} message {i} " + "x" * 200,
                    structured_data=None,
                    fields=None,
                    format="raw",
                ),
            )
            for i in range(100)
        ]
        blocks.append(encode_block(columns_from_records(recs)))
    one = blocks[0].decode_group(0).nbytes
    cache = BlockCache(3 * one + one // 2)
    for b in blocks:
        cache.group(b, 0)
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 3
    cache.group(blocks[3], 0)  # the oldest of the three kept: a hit, now the newest
    hits = cache.hits
    cache.group(blocks[0], 0)  # a miss that pushes out blocks[4]
    assert cache.hits == hits
    cache.group(blocks[3], 0)
    assert cache.hits == hits + 1
    cache.forget(blocks[3])
    assert len(cache) == 2
    assert cache.nbytes <= cache.max_bytes


def _plain(i: int, message: str) -> tuple[int, Record]:
    return (
        i,
        Record(
            timestamp=1000 + i,
            received_at=1000 + i + (i % 3),
            host="h",
            service="s",
            procid=None,
            msgid=None,
            facility=1,
            level=6,
            message=message,
            structured_data={"m@1": {"i": str(i)}} if i % 5 == 0 else None,
            fields=None,
            format="raw",
        ),
    )


def test_a_page_decodes_only_the_groups_holding_its_records() -> None:
    items = [_plain(i, f"message {i} " + "x" * 100) for i in range(64)]
    block = encode_block(columns_from_records(items), group_records=8)
    assert block.ngroups == 8
    cache = BlockCache(1 << 20)
    ts = [items[i][1].timestamp for i in (17, 18, 19)]  # a shard keeps them in the clear
    assert records(block, [17, 18, 19], cache, ts) == [items[i][1] for i in (17, 18, 19)]
    assert (len(cache), cache.misses) == (1, 1)  # group 2 alone
    assert records(block, [23, 24], cache) == [items[23][1], items[24][1]]
    assert len(cache) == 3  # group 2 again (a hit), group 3, and the keys


def test_a_long_scan_reads_through_the_cache_without_filling_it() -> None:
    items = [_plain(i, f"message {i} " + "x" * 100) for i in range(64)]
    block = encode_block(columns_from_records(items), group_records=8)
    cache = BlockCache(1 << 20)
    assert find_substring(block, cache, "message 3", keep=False) == [3, *range(30, 40)]
    assert len(cache) == 0
    assert find_substring(block, cache, "xxx") == list(range(64))
    assert len(cache) == 8


def test_bytes_of_another_block_layout_are_refused() -> None:
    block = encode_block(columns_from_records([_plain(1, "one")]))
    fields = list(marshal.loads(block.to_bytes()))
    assert Block.from_bytes(marshal.dumps(tuple(fields))).n == 1
    fields[0] = FORMAT_VERSION - 1  # the layout before groups
    with pytest.raises(ValueError, match="format version"):
        Block.from_bytes(marshal.dumps(tuple(fields)))


def test_a_group_where_most_records_have_structured_data_reads_back() -> None:
    # 255 or more such records in a group: their count is kept in the frame.
    items = [_plain(i, f"m{i}") for i in range(600)]
    items = [
        (s, Record(**{**{f: getattr(r, f) for f in r.__slots__}, "fields": {"n": s}}))
        for s, r in items
    ]
    block = encode_block(columns_from_records(items))
    assert block.extras_in == bytes([255, 88])
    cache = BlockCache(1 << 20)
    for b in (block, Block.from_bytes(block.to_bytes())):
        assert records(b, range(600), cache) == [r for _, r in items]
