"""What the CLI prints, without a daemon: record lines, k=v fields,
multi-line messages, time zones, the stats table and the sparkline."""

from __future__ import annotations

import datetime as dt
from typing import Any

from collector.terminal import (
    INDENT,
    format_record,
    more_matched,
    pairs,
    sd_text,
    shown_time,
    sparkline,
    stats_table,
)

REC: dict[str, Any] = {
    "id": "x",
    "timestamp": "2026-01-30T12:00:00.000000Z",
    "host": "web-1",
    "service": "sshd",
    "procid": "42",
    "level": "err",
    "message": "Failed password",
    "structured_data": {},
    "fields": {},
}
PLUS_ONE = dt.timezone(dt.timedelta(hours=1))


def test_a_record_reads_as_time_host_service_pid_level_message() -> None:
    assert format_record(REC) == "2026-01-30T12:00:00.000000Z web-1 sshd[42] err: Failed password"
    assert "\x1b[91merr\x1b[0m" in format_record(REC, colour=True)
    bare = {**REC, "host": None, "service": None, "procid": None}
    assert format_record(bare).startswith("2026-01-30T12:00:00.000000Z - - err: ")


def test_times_print_in_the_given_zone_with_its_offset() -> None:
    line = format_record(REC, tz=PLUS_ONE)
    assert line.startswith("2026-01-30T13:00:00.000000+01:00 web-1 ")
    assert shown_time("2026-01-30T12:00:00.250000Z", dt.timezone.utc) == (
        "2026-01-30T12:00:00.250000+00:00"
    )
    assert shown_time("garbage", PLUS_ONE) == "garbage"


def test_a_multi_line_message_prints_indented_under_its_first_line() -> None:
    rec = {**REC, "message": "Traceback (most recent call last):\r\n  File x\nValueError: boom\n"}
    lines = format_record(rec).split("\n")
    assert lines[0].endswith("err: Traceback (most recent call last):")
    assert lines[1:] == [INDENT + "  File x", INDENT + "ValueError: boom"]


def test_control_characters_cannot_drive_the_terminal() -> None:
    line = format_record({**REC, "message": "a\x1b[2Jb\rc\td", "host": "h\x1b"})
    assert "\x1b" not in line
    assert "a\\x1b[2Jb\\rc\td" in line
    assert "h\\x1b" in line


def test_fields_print_as_k_equals_v_after_the_first_line() -> None:
    rec = {
        **REC,
        "message": "one\ntwo",
        "fields": {"user_id": 42, "http": {"status": 500}, "note": "a b", "ok": True},
    }
    first, second = format_record(rec).split("\n")
    assert first.endswith('err: one user_id=42 http.status=500 note="a b" ok=true')
    assert second == INDENT + "two"
    assert pairs({"e": "", "q": 'say "x"', "n": None, "l": [1, 2]}) == (
        'e="" q="say \\"x\\"" n=null l=[1,2]'
    )
    assert pairs({"x": "a\nb"}) == 'x="a\\nb"'


def test_structured_data_prints_as_rfc5424_writes_it() -> None:
    sd = {"origin": {"ip": "10.0.0.1"}, "meta@32473": {"tag": ["a", "b c"]}}
    assert sd_text(sd) == '[origin ip=10.0.0.1][meta@32473 tag=a tag="b c"]'
    line = format_record({**REC, "structured_data": {"origin": {"ip": "1"}}, "fields": {"k": 1}})
    assert line.endswith("Failed password [origin ip=1] k=1")


def test_more_matched_counts_what_was_not_printed() -> None:
    assert more_matched(150, 100) == "50 more matched (use -n to see more, or --since to narrow)"
    assert more_matched(100, 100) is None
    assert more_matched(3, 5) is None


def test_a_sparkline_scales_to_the_largest_and_shows_gaps() -> None:
    assert sparkline([0, 1, 4, 8]) == " ▁▄█"
    assert sparkline([5]) == "█"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([]) == ""
    assert len(sparkline(list(range(60)))) == 60


def test_stats_print_as_a_table_with_shares_and_others_last() -> None:
    answer = {
        "total": 10,
        "by": {"level": {"err": 3, "info": 7}, "fields.user": {"others": 5, "bob": 2, "-": 3}},
        "histogram": [
            {"start": "2026-01-30T12:00:00.000000Z", "count": 2},
            {"start": "2026-01-30T12:01:00.000000Z", "count": 8},
        ],
    }
    text = stats_table(answer)
    lines = text.split("\n")
    assert lines[0] == "total 10"
    assert "level  count  share" in lines
    assert lines[lines.index("level  count  share") + 1] == "info       7  70.0%"
    user = lines.index("fields.user  count  share")
    assert [ln.split()[0] for ln in lines[user + 1 : user + 4]] == ["-", "bob", "others"]
    assert lines[-1] == "2026-01-30T12:01:00.000000Z  8"
    spark = stats_table(answer, spark=True).split("\n")
    assert spark[-2] == "▂█  max 8/bucket"
    assert spark[-1] == "2026-01-30T12:00:00.000000Z .. 2026-01-30T12:01:00.000000Z"
