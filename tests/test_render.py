"""The native record renderer (collector/_render.c) against the pure one:
the same bytes for every record, unusual ones included, and the same errors.
Skipped where the extension is not built (COLLECTOR_PURE=1, no compiler)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector import query
from collector.http import _query_params
from collector.query import (
    Query,
    _records_pure,
    logs_json,
    logs_json_rows,
    object_json,
    record_json,
    records_json,
)
from collector.record import FACILITIES, Record, record_to_dict
from collector.store import Store
from collector.times import MAX_US, MIN_US

native = pytest.mark.skipif(query.RENDERER != "native", reason="collector._render is not built")

T0 = 1_769_774_400_000_000  # 2026-01-30T12:00:00Z


def rec(**kw: Any) -> Record:
    base: dict[str, Any] = dict(
        timestamp=T0, received_at=T0 + 1, host="web-1", service="sshd", procid="42",
        msgid=None, facility=4, level=3, message="Failed password", structured_data=None,
        fields=None, format="rfc5424",
    )  # fmt: skip
    base.update(kw)
    return Record(**base)


def contract_bytes(items: list[tuple[str, Record]]) -> bytes:
    """What the standard library writes for the contract's shape of each record."""
    return b",".join(
        json.dumps(record_to_dict(r, rid), separators=(",", ":")).encode() for rid, r in items
    )


_text = st.text(st.characters(blacklist_categories=()), max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_times = st.integers(MIN_US, MAX_US) | st.sampled_from(
    [MIN_US, MAX_US, 0, -1, 1, T0, -999_999, -1_000_000, 951_782_400_000_000]
)
_records = st.builds(
    Record,
    timestamp=_times,
    received_at=_times,
    host=st.none() | _text,
    service=st.none() | _text,
    procid=st.none() | _text,
    msgid=st.none() | _text,
    facility=st.none() | st.integers(0, len(FACILITIES) - 1),
    level=st.integers(0, 7),
    message=_text,
    structured_data=st.none()
    | st.dictionaries(_text, st.dictionaries(_text, _text | st.lists(_text, max_size=2))),
    fields=st.none() | st.dictionaries(_text, _json, max_size=4),
    format=st.sampled_from(["rfc5424", "rfc3164", "json", "raw"]),
)


@native
@given(st.lists(st.tuples(_text, _records), max_size=5))
def test_the_native_renderer_writes_the_pure_renderers_bytes(
    items: list[tuple[str, Record]],
) -> None:
    assert records_json(items) == _records_pure(items, b",")
    assert records_json(items, b"\n") == _records_pure(items, b"\n")


@native
@given(st.lists(st.tuples(_text, _records), max_size=3))
def test_the_native_renderer_writes_what_json_dumps_writes_for_the_contract_shape(
    items: list[tuple[str, Record]],
) -> None:
    # NaN and infinities aside: json.dumps spells them the same in both.
    assert records_json(items) == contract_bytes(items)


@native
@pytest.mark.parametrize(
    "message",
    [
        "",
        'quote " backslash \\ slash /',
        "\x00\x01\x1f\x7f\x80\x9f\xa0\xff",
        "\b\f\n\r\t",
        "caf\u00e9 \u2028\u2029 \ufeff \uffff",
        "astral \U0001f600 \U0010ffff",
        "lone \ud800 and \udfff and pair-looking \ud83d\ude00",
        "replacement \ufffd from invalid UTF-8",
        "~" * 1000 + "\x1b[31m",
    ],
)
def test_every_kind_of_character_is_escaped_as_the_standard_library_escapes_it(
    message: str,
) -> None:
    items = [("a-1", rec(message=message, host=message or None, fields={message: [message]}))]
    assert records_json(items) == contract_bytes(items) == _records_pure(items, b",")


@native
@pytest.mark.parametrize(
    "changes",
    [
        {"timestamp": MIN_US - 1},  # outside what RFC 3339 writes: Python's spelling
        {"received_at": -(2**70)},
        {"timestamp": True},
        {"level": -1},  # a Python index from the end, as the pure renderer reads it
        {"facility": True},
        {"host": type("Name", (str,), {})("subclass")},
        {"structured_data": {}},
        {"fields": {"n": 1.5, "big": 2**80, "inf": float("inf"), "t": (1, 2)}},
        {"fields": {1: "an int key"}},
    ],
)
def test_unusual_records_are_written_as_the_pure_renderer_writes_them(
    changes: dict[str, Any],
) -> None:
    items = [("a-1", rec()), ("a-2", rec(**changes)), ("a-3", rec())]
    assert records_json(items) == _records_pure(items, b",")
    assert b'"id":"a-3"' in records_json(items)


@native
@pytest.mark.parametrize(
    "changes",
    [
        {"level": 8},
        {"facility": 24},
        {"message": None},
        {"format": None},
        {"received_at": MAX_US + 1},
        {"timestamp": 2**70},
    ],
)
def test_a_record_the_pure_renderer_refuses_is_refused_alike(changes: dict[str, Any]) -> None:
    items = [("a-1", rec()), ("a-2", rec(**changes))]
    try:
        _records_pure(items, b",")
    except Exception as e:
        pure = type(e)
    else:
        pytest.fail("the pure renderer wrote it")
    with pytest.raises(pure):
        records_json(items)


@native
def test_a_thousand_large_records_render_whole() -> None:
    items = [(f"id-{i}", rec(message="\u00e9\x01" * 5000)) for i in range(1000)]
    body = records_json(items)
    assert body == _records_pure(items, b",")
    assert len(body) > 1000 * 5000 * 12


def test_a_page_is_the_contract_shape_on_either_path() -> None:
    r = rec(fields={"user": "u7"})
    body = logs_json([("a-1", r)], "a-1")
    assert json.loads(body) == {
        "logs": [record_to_dict(r, "a-1")],
        "count": 1,
        "next_cursor": "a-1",
    }
    assert body.startswith(b'{"logs":[' + record_json(r, "a-1").encode())


# --- pages from the store's columns ----------------------------------------------

_values = st.recursive(  # no NaN: records are compared with ==
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_store_records = st.builds(
    Record,
    timestamp=st.integers(T0, T0 + 300_000_000),
    received_at=st.integers(T0, T0 + 300_000_000),
    host=st.none() | st.sampled_from(["web-1", "web-2", "caf\u00e9"]),
    service=st.none() | st.sampled_from(["sshd", "cron"]),
    procid=st.none() | st.sampled_from(["1", "42"]),
    msgid=st.none() | st.just("ID47"),
    facility=st.none() | st.integers(0, len(FACILITIES) - 1),
    level=st.integers(0, 7),
    message=_text,
    structured_data=st.none() | st.just({"origin@1": {"ip": "10.0.0.1"}}),
    fields=st.none() | st.dictionaries(_text, _values, max_size=2),
    format=st.sampled_from(["rfc5424", "rfc3164", "json", "raw"]),
)


@native
@given(
    st.lists(st.lists(_store_records, min_size=1, max_size=30), min_size=1, max_size=4),
    st.booleans(),
    st.sampled_from(["asc", "desc"]),
    st.integers(1, 40),
)
def test_a_page_written_from_the_stores_columns_is_the_page_of_its_records(
    batches: list[list[Record]], seal: bool, order: str, limit: int
) -> None:
    s = Store(
        ttl_us=10**15, max_records=10**6, max_memory=1 << 30, shard_span_us=60_000_000,
        block_records=7, freeze_bytes=64,
    )  # fmt: skip
    for batch in batches:  # out of order across batches: late arrivals
        s.add_many(batch)
    if seal:
        while s.seal():
            pass
    cursor: str | None = ""
    while cursor is not None:
        q = Query(limit=limit, order=order, cursor=cursor or None)
        page = s.query(q)
        rows, count, next_cursor = s.query_json(q, record_json, object_json)
        assert (rows, count, next_cursor) == (
            _records_pure(page.items, b","),
            len(page.items),
            page.next_cursor,
        )
        assert logs_json_rows(rows, count, None) == logs_json(page.items, None)
        cursor = next_cursor


@native
@pytest.mark.parametrize("seal", [False, True])
def test_a_record_the_native_rows_cannot_write_is_written_by_record_json(seal: bool) -> None:
    s = Store(ttl_us=10**15, max_records=10**6, max_memory=1 << 30, block_records=64)
    odd = rec(received_at=MIN_US - 5_000_000, message="caf\u00e9 \ud800", fields={"n": 1.5})
    s.add_many([rec(), odd, rec(timestamp=T0 + 1, structured_data={"a@1": {"b": ["c", "d"]}})])
    s.add_many([rec(timestamp=T0 + 2 + k) for k in range(300)])  # enough for sealing to pay
    if seal:
        s.add_many(
            [rec(timestamp=T0 + k * 60 * 10**6) for k in (5, 10)]
        )  # the newest two stay open
        while s.seal():
            pass
        assert s.sealed_records == 303  # every record of the first minute
    q = Query(limit=3)
    rows, count, _ = s.query_json(q, record_json, object_json)
    assert count == 3
    assert rows == _records_pure(s.query(q).items, b",")
    assert rows.count(b'"received_at":"0001-01-01T') == 0  # Python's own spelling, not clamped


@native
def test_the_native_rows_refuse_indices_outside_their_columns() -> None:
    s = Store(ttl_us=10**15, max_records=10**6, max_memory=1 << 30)
    s.add_many([rec(), rec(timestamp=T0 + 1)])
    shard = next(iter(s._shards.values()))
    assert shard.rows_json([1, 0], str, object_json).count(b'"id":') == 2
    for idx in ([2], [-1]):
        with pytest.raises(IndexError):
            shard.rows_json(idx, str, object_json)
    from collector import _render

    cols = (shard.recv, shard.host, shard.service, shard.procid, shard.msgid, shard.fac, shard.lvl, shard.fmt)  # fmt: skip
    names = tuple(t.values for t in shard.tables)
    text = ([bytes(shard.text.tail)], [0], shard.text.offs)
    with pytest.raises(IndexError):  # a physical index past the columns
        _render.rows(shard.ts, shard.seqs, [0], [5], cols, names, text, None, b",", str, str)
    with pytest.raises(IndexError):  # a message past its buffer
        _render.rows(shard.ts, shard.seqs, [0], [0], cols, names, ([b""], [0], shard.text.offs), None, b",", str, str)  # fmt: skip
    with pytest.raises(TypeError):  # columns that are not integer arrays
        _render.rows(shard.ts, shard.seqs, [0], [0], (*cols[:-1], [0.5]), names, text, None, b",", str, str)  # fmt: skip


@given(st.text(st.sampled_from("ab=&%+;2 \u00e9"), max_size=12))
def test_query_strings_are_read_as_parse_qs_reads_them(raw: str) -> None:
    assert _query_params(raw) == parse_qs(raw, keep_blank_values=True)
